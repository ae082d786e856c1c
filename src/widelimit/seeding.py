"""One way to give randomness: ``seed: int | torch.Generator | None`` (docs/conventions.md).

* an ``int`` seeds a fresh generator, so the same call gives the same draws;
* a :class:`torch.Generator` is used as is (and advanced), so several calls can share
  one stream;
* ``None`` uses torch's global random state.
"""

from __future__ import annotations

import operator

import torch

__all__ = ["Seed", "as_generator"]

Seed = int | torch.Generator | None


def as_generator(seed: Seed, device: torch.device | str | None = None) -> torch.Generator | None:
    """The generator a ``seed`` argument stands for (module docstring).

    Args:
        seed: ``int`` (>= 0), a :class:`torch.Generator`, or ``None`` (global RNG → ``None``).
        device: device of a generator created from an ``int`` (default CPU).
    Raises:
        TypeError: for any other type (e.g. a float or a NumPy generator).
        ValueError: for a negative ``int``.
    """
    if seed is None or isinstance(seed, torch.Generator):
        return seed
    try:
        if isinstance(seed, bool):
            raise TypeError
        seed = operator.index(seed)  # int or NumPy integer
    except TypeError as err:
        raise TypeError(
            f"`seed` must be an int, a torch.Generator or None; got {type(seed).__name__}"
        ) from err
    if seed < 0:
        raise ValueError(f"`seed` must be >= 0; got {seed}")
    return torch.Generator(device=device or "cpu").manual_seed(seed)
