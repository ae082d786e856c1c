"""Empirical (finite-width) NTK of any ``torch.nn.Module`` via ``torch.func``.

``Θ(x, x') = Σ_p ∂f(x)/∂p · ∂f(x')/∂p`` over all trainable parameters ``p``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev

from widelimit._validation import as_float_tensor, check_same_dtype_device


def _jacobian(module: nn.Module, x: Tensor) -> Tensor:
    """``(N, *out_shape, P)`` Jacobian of the module output w.r.t. all trainable parameters."""
    params = {k: v.detach() for k, v in module.named_parameters() if v.requires_grad}
    buffers = dict(module.named_buffers())

    def f(p: dict[str, Tensor]) -> Tensor:
        return functional_call(module, (p, buffers), (x,))

    jac = jacrev(f)(params)
    n_out = f(params).ndim
    return torch.cat([j.flatten(start_dim=n_out) for j in jac.values()], dim=-1)


def empirical_ntk(module: nn.Module, x1: Tensor, x2: Tensor | None = None) -> Tensor:
    """Empirical NTK traced over output channels (mean over channels).

    Args:
        module: maps ``(N, *in_shape)`` to ``(N, k)`` or ``(N, k, *spatial)``.
        x1: ``(N1, *in_shape)``; x2: ``(N2, *in_shape)`` or ``None`` (= ``x1``).
    Returns:
        ``(N1, N2)`` — or ``(N1, N2, *spatial)`` for spatial outputs — equal to
        ``(1/k) Σ_c Σ_p ∂f_c(x1)/∂p ∂f_c(x2)/∂p``, comparable with the analytic NTK.
    """
    x1 = as_float_tensor("x1", x1, min_ndim=2)
    if x2 is not None:
        x2 = as_float_tensor("x2", x2, min_ndim=2)
        check_same_dtype_device("x1", x1, "x2", x2)
    j1 = _jacobian(module, x1)
    j2 = j1 if x2 is None else _jacobian(module, x2)
    k = j1.shape[1]
    # j: (N, k, *S, P) -> Θ[n, m, *S] = (1/k) Σ_c Σ_p j1[n,c,S,p] j2[m,c,S,p]
    return torch.einsum("nc...p,mc...p->nm...", j1, j2) / k


__all__ = ["empirical_ntk"]
