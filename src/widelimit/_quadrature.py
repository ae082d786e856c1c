"""Numerical bivariate Gaussian expectations for arbitrary activations.

Public contract (used by ``widelimit.layers.activations.Activation``)::

    gaussian_dual(fn, dfn, q1, q2, s12, *, ntk) -> (E[fn(u) fn(v)], E[dfn(u) dfn(v)] or None)

with ``(u, v) ~ N(0, [[q1, s12], [s12, q2]])``; ``q1, q2, s12`` are tensors
that broadcast together (any shape, float32/float64, any device); the
outputs have the broadcast shape, dtype and device.  ``fn``/``dfn`` are
elementwise torch callables.

This first version is a plain tensor Gauss–Hermite rule (placeholder).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

Fn = Callable[[Tensor], Tensor]


def gaussian_dual(
    fn: Fn, dfn: Fn | None, q1: Tensor, q2: Tensor, s12: Tensor, *, ntk: bool
) -> tuple[Tensor, Tensor | None]:
    """E[fn(u)fn(v)] and (if ``ntk``) E[dfn(u)dfn(v)] by product Gauss–Hermite."""
    q1, q2, s12 = torch.broadcast_tensors(q1, q2, s12)
    z, w = np.polynomial.hermite_e.hermegauss(64)
    z = torch.as_tensor(z, dtype=q1.dtype, device=q1.device)
    w = torch.as_tensor(w / np.sqrt(2 * np.pi), dtype=q1.dtype, device=q1.device)
    sq1 = q1.clamp_min(0).sqrt()
    sq2 = q2.clamp_min(0).sqrt()
    c = (s12 / (sq1 * sq2).clamp_min(torch.finfo(q1.dtype).tiny)).clamp(-1, 1)
    s = (1 - c * c).clamp_min(0).sqrt()
    u = sq1[..., None, None] * z[:, None]
    v = sq2[..., None, None] * (c[..., None, None] * z[:, None] + s[..., None, None] * z[None, :])
    ww = w[:, None] * w[None, :]
    out = (fn(u) * fn(v) * ww).sum((-1, -2))
    dout = None
    if ntk:
        if dfn is None:
            raise ValueError("`dfn` is required when ntk=True")
        dout = (dfn(u) * dfn(v) * ww).sum((-1, -2))
    return out, dout
