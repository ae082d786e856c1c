"""Checks of scalar arguments (numbers, counts) with errors naming the argument.

Torch-free, so that the tile planner and the command line can use them without importing
torch; the tensor checks are in ``widelimit._validation``, which re-exports these.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["check_nonnegative", "check_positive", "check_positive_int", "check_std"]


def check_nonnegative(name: str, value: float) -> float:
    """Return ``float(value)`` or raise if it is negative or not finite."""
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`{name}` must be a real number; got {value!r}") from err
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"`{name}` must be a finite number >= 0; got {value!r}")
    return v


def check_positive(name: str, value: float) -> float:
    """Return ``float(value)`` or raise if it is not a finite number ``> 0``."""
    v = check_nonnegative(name, value)
    if v == 0:
        raise ValueError(f"`{name}` must be > 0")
    return v


def check_std(name: str, value: float) -> float:
    """Return ``float(value)``, a standard deviation whose square is finite, or raise.

    Kernels use the variance ``value²``; above ``√(float64 max) ≈ 1.3e154`` it overflows,
    which would surface as a bare ``OverflowError`` or an infinite kernel.
    """
    v = check_nonnegative(name, value)
    if not math.isfinite(v * v):
        raise ValueError(
            f"`{name}` = {value!r} is too large: the kernel uses its square, which overflows "
            "float64 (the limit is about 1.3e154); rescale the inputs or the outputs instead"
        )
    return v


def check_positive_int(name: str, value: object) -> int:
    """Return ``int(value)`` or raise if it is not a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"`{name}` must be a positive integer; got {value!r}")
    if int(value) <= 0:
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}")
    return int(value)
