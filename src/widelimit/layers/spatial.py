"""Spatial layout helpers shared by the kernel state, convolutions and pooling.

Layouts (see :mod:`widelimit.kernel`): a *diagonal* kernel tensor is
``(N1, N2, S1, S2, ...)`` (same position in both inputs); a *full* one is
``(N1, N2, S1, S1', S2, S2', ...)`` (every pair of positions, separable over
axes).  Self-covariances drop the second example axis: ``(N, S1, S1', ...)``.
"""

from __future__ import annotations

from torch import Tensor

__all__ = [
    "AXIS_NAMES",
    "expand_first",
    "expand_second",
    "pair_variances",
    "self_pairs",
    "spatial_diagonal",
]

#: Names of the spatial axes, by number of spatial axes (used in error messages).
AXIS_NAMES = {1: ("L",), 2: ("H", "W")}


def spatial_diagonal(cov: Tensor, n_spatial: int) -> Tensor:
    """``(N, S1, S1', S2, S2', ...)`` -> ``(N, S1, S2, ...)``: each pair's diagonal (a view)."""
    out = cov
    for _ in range(n_spatial):
        # the pair axes of the current dimension are always at positions 1, 2
        out = out.diagonal(dim1=1, dim2=2)  # moves the diagonal to the end
    return out


def expand_first(var: Tensor) -> Tensor:
    """``(N, S1, S2)`` -> ``(N, S1, 1, S2, 1)``: variance at the first position of a pair."""
    shape = [var.shape[0]]
    for s in var.shape[1:]:
        shape += [s, 1]
    return var.reshape(shape)


def expand_second(var: Tensor) -> Tensor:
    """``(N, S1, S2)`` -> ``(N, 1, S1, 1, S2)``: variance at the second position of a pair."""
    shape = [var.shape[0]]
    for s in var.shape[1:]:
        shape += [1, s]
    return var.reshape(shape)


def pair_variances(
    cov1: Tensor, cov2: Tensor, spatial: tuple[int, ...], full_spatial: bool
) -> tuple[Tensor, Tensor]:
    """Variances ``Σ(x,x)``, ``Σ(x',x')`` of every entry of an ``(N1, N2, ...)`` kernel tensor.

    Shapes broadcast against it: ``(N1, 1, ...)`` and ``(1, N2, ...)``.
    """
    if not spatial or not full_spatial:
        return cov1.unsqueeze(1), cov2.unsqueeze(0)
    n = len(spatial)
    v1 = expand_first(spatial_diagonal(cov1, n))
    v2 = expand_second(spatial_diagonal(cov2, n))
    return v1.unsqueeze(1), v2.unsqueeze(0)


def self_pairs(t: Tensor, n_lead: int, n_spatial: int, full: bool) -> Tensor:
    """View of the entries of ``t`` that pair an example and a position with themselves.

    ``t`` is a symmetric kernel tensor (``n_lead = 2``: ``(N, N, ...)``) or a
    self-covariance (``n_lead = 1``: ``(N, ...)``) in the full (``full``) or
    diagonal layout; the view is ``(N, S1, S2, ...)`` (``(N,)`` for dense features)
    and writes through to ``t``.
    """
    v = t.diagonal(dim1=0, dim2=1).movedim(-1, 0) if n_lead == 2 else t
    return spatial_diagonal(v, n_spatial) if full and n_spatial else v
