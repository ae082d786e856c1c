"""The input kernel: covariances of the raw inputs, the start of every recursion.

``Σ⁰(x, x') = x·x'/d`` for dense inputs ``(N, d)`` and the per-position channel
mean ``Σ⁰(x, x')[p, p'] = (1/C) Σ_c x[c, p] x'[c, p']`` for ``(N, C, *spatial)``
inputs (all position pairs in the full spatial layout, ``p = p'`` only in the
diagonal one); ``Θ⁰ = 0`` (Lee et al. 2018; Novak et al. 2019, §3).

This module imports no layer, so :mod:`widelimit.layers.base` (``Layer.kernel``)
and :mod:`widelimit.layers.tiles` can both use it without an import cycle.
"""

from __future__ import annotations

import torch
from torch import Tensor

from widelimit.kernel import Kernel

__all__ = ["gram", "input_kernel", "is_zero_constant", "self_gram"]


def gram(a: Tensor, b: Tensor, full_spatial: bool) -> Tensor:
    """Input covariance Σ⁰ between batches ``a: (N1, C, *S)`` and ``b: (N2, C, *S)``."""
    c = a.shape[1]
    if a.ndim == 2:
        return a @ b.T / c  # Σ⁰ = x·x'/d
    if a.ndim == 3:
        eq = "ncl,mck->nmlk" if full_spatial else "ncl,mcl->nml"
    else:
        eq = "nchw,mcgv->nmhgwv" if full_spatial else "nchw,mchw->nmhw"
    return torch.einsum(eq, a, b) / c  # per-position channel mean


def self_gram(a: Tensor, full_spatial: bool = False) -> Tensor:
    """Covariance of each example with itself: ``(N,)``, ``(N, *S)`` or ``(N, *S-pairs)``."""
    c = a.shape[1]
    if a.ndim == 2 or not full_spatial:
        return (a * a).sum(1) / c
    eq = "ncl,nck->nlk" if a.ndim == 3 else "nchw,ncgv->nhgwv"
    return torch.einsum(eq, a, a) / c


def input_kernel(x1: Tensor, x2: Tensor | None, *, full_spatial: bool, ntk: bool) -> Kernel:
    """Kernel of the raw inputs (module docstring). ``x1: (N1, d | C, *spatial)``.

    ``Θ⁰ = 0`` is a zero of the NNGP's shape expanded from one element (no
    memory; read-only), which affine layers recognise with
    :func:`is_zero_constant` to start from ``Θ = Σ`` without reading it.
    """
    x2_ = x1 if x2 is None else x2
    nngp = gram(x1, x2_, full_spatial)
    cov1 = self_gram(x1, full_spatial)
    if x2 is None and x1.ndim == 2:
        # the matmul and the row sums round differently; make the diagonal exactly the
        # variances so that c = 1 there (arccos amplifies a 1-ulp gap to ~1e-8)
        nngp.diagonal().copy_(cov1)
    return Kernel(
        nngp=nngp,
        ntk=nngp.new_zeros(()).expand(nngp.shape) if ntk else None,
        cov1=cov1,
        cov2=None if x2 is None else self_gram(x2, full_spatial),
        spatial=tuple(x1.shape[2:]),
        full_spatial=full_spatial and x1.ndim > 2,
        channels=int(x1.shape[1]),
        is_gaussian=False,
    )


def is_zero_constant(t: Tensor) -> bool:
    """Whether ``t`` is one zero expanded to its shape (as the input kernel's ``Θ⁰``)."""
    return t.numel() > 0 and all(st == 0 for st in t.stride()) and not bool(t.reshape(-1)[0])
