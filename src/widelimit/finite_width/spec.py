"""The fully connected nets the 1/n theory covers, read from a widelimit spec.

A spec ``serial(Dense(n1, ...), φ1, Dense(n2, ...), φ2, ..., Dense(k, ...))`` (nested
``serial``/``repeat`` allowed) becomes a :class:`DenseChain`: the ``L`` dense layers'
``(σw, σb)``, the ``L − 1`` activations between them and the hidden widths
``n_1, ..., n_{L−1}`` (the fan-ins of dense layers ``2..L``).  Layer ``ℓ``'s pre-activations
are ``z^(ℓ) = W^(ℓ) φ_{ℓ−1}(z^(ℓ−1)) + b^(ℓ)`` with ``Var W^(ℓ)_ij = σw²/n_{ℓ−1}``; at
initialisation this distribution is the same in the ``"ntk"`` and ``"standard"``
parameterizations (they differ in the NTK only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from widelimit._validation import check_positive_int
from widelimit.layers.activations import Elementwise, RectifiedMonomial, Sign
from widelimit.layers.base import Layer
from widelimit.layers.combinators import Serial
from widelimit.layers.dense import Dense

__all__ = ["DenseChain", "dense_chain"]


@dataclass(frozen=True)
class DenseChain:
    """A fully connected net as the recursions see it.

    Attributes:
        dense: the ``L`` dense layers in forward order.
        activations: the ``L − 1`` activations (``activations[ℓ]`` follows ``dense[ℓ]``).
        widths: hidden widths ``n_1..n_{L−1}`` (outputs of ``dense[0..L−2]``).
        out_features: width of the readout ``dense[-1]``.
    """

    dense: tuple[Dense, ...]
    activations: tuple[Elementwise, ...]
    widths: tuple[int, ...]
    out_features: int

    @property
    def depth(self) -> int:
        """Number of hidden layers ``L − 1``."""
        return len(self.activations)


def _leaves(layer: Layer) -> list[Layer]:
    if isinstance(layer, Serial):
        return [leaf for child in layer.layers for leaf in _leaves(child)]
    return [layer]


def dense_chain(net: Layer, widths: int | Sequence[int] | None = None) -> DenseChain:
    """Read ``net`` as ``Dense, φ, Dense, φ, ..., Dense`` (see module docstring).

    Args:
        net: a widelimit spec.
        widths: hidden widths: one int for every hidden layer, a sequence of ``L − 1``
            ints (one per hidden layer), or ``None`` to keep the spec's ``out_features``.
    Raises:
        TypeError/ValueError naming ``net`` or ``widths`` when the spec is not of that form.
    """
    if not isinstance(net, Layer):
        raise TypeError(f"`net` must be a widelimit layer spec; got {type(net).__name__}")
    leaves = _leaves(net)
    expected = "serial(Dense(...), <activation>, Dense(...), ..., Dense(...))"
    dense: list[Dense] = []
    acts: list[Elementwise] = []
    for i, leaf in enumerate(leaves):
        want_dense = i % 2 == 0
        if want_dense and not isinstance(leaf, Dense):
            raise ValueError(
                f"`net`: the finite-width theory covers fully connected nets {expected}; "
                f"layer {i} is {type(leaf).__name__}, expected Dense"
            )
        if not want_dense and not isinstance(leaf, Elementwise):
            raise ValueError(
                f"`net`: the finite-width theory covers fully connected nets {expected}; "
                f"layer {i} is {type(leaf).__name__}, expected an activation"
            )
        (dense if want_dense else acts).append(leaf)  # type: ignore[arg-type]
    if len(dense) == len(acts):
        raise ValueError(
            f"`net` must end with a Dense readout ({expected}); it ends with an activation"
        )
    for a in acts:
        if isinstance(a, Sign) or (isinstance(a, RectifiedMonomial) and a.k == 0):
            raise ValueError(
                f"`net`: {a!r} jumps at 0, so the 1/n recursion (which needs φ' as a function) "
                "does not apply; use a continuous activation"
            )
    spec_widths = tuple(d.out_features * d.width_factor[1] for d in dense[:-1])
    if widths is None:
        ws = spec_widths
    elif isinstance(widths, int) and not isinstance(widths, bool):
        ws = (check_positive_int("widths", widths),) * len(acts)
    else:
        ws = tuple(check_positive_int("widths", w) for w in widths)
        if len(ws) != len(acts):
            raise ValueError(
                f"`widths` must give one width per hidden layer ({len(acts)}); got {len(ws)}"
            )
    out = dense[-1].out_features * dense[-1].width_factor[1]
    return DenseChain(tuple(dense), tuple(acts), ws, out)
