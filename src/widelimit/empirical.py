"""Empirical (finite-width) NTK of any ``torch.nn.Module`` via ``torch.func``.

``Θ(x, x')[c, d] = Σ_p ∂f_c(x)/∂p · ∂f_d(x')/∂p`` over all trainable parameters
``p`` (buffers are passed through unchanged).  The module must act on each
example independently (no batch statistics): it is evaluated one example at a
time for Jacobians.

Outputs ``f(x)`` of shape ``(k,)`` (dense) or ``(k, *S)`` (channels + spatial):

* :func:`empirical_ntk` — traced over output channels (mean over ``c = d``),
  shape ``(N1, N2)`` or ``(N1, N2, *S)`` (same position on both sides),
  comparable with the analytic NTK;
* :func:`empirical_ntk_full` — every channel pair, shape ``(N1, N2, k, k)`` or
  ``(N1, N2, k, k, *S)``.

Two strategies, chosen by :func:`plan_empirical_ntk` from a memory estimate
(``s`` = bytes per scalar, ``P`` = number of trainable parameters,
``K = k·|S|`` output entries per example, ``b`` = examples per block):

* ``"jacobian"`` — per-example Jacobians of blocks of ``b`` examples, contracted
  block by block and parameter tensor by parameter tensor.
  Peak extra memory ≈ ``8·b·K·P·s`` + the output: two Jacobian blocks, each
  also held once more as the raw autograd result and once as the flattened
  copy used by the contraction (measured by ``benchmarks/inference.py``: peak
  RSS 1111 MB vs ``8·b·K·P·s`` = 1058 MB at b=31, K=1, P=1.07M, float32).
  ``b`` is the largest block with
  ``8·b·K·P·s ≤ memory_budget``.
* ``"ntvp"`` — NTK-vector products: for each ``x2`` example and output entry a
  gradient row ``g = ∂f_c(x')/∂p`` (one vjp) and then ``Θ[:, x', :, c] = J(x1)·g``
  (one jvp over a block of ``x1``).  Peak extra memory ≈ ``3·P·s`` + forward-mode
  activations of a block of ``x1`` + the output; used when even ``b = 1`` does
  not fit the Jacobian route.  Slower: ``N2·K`` vjp/jvp pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from widelimit._validation import as_float_tensor, check_positive_int, check_same_dtype_device

__all__ = ["NTKPlan", "empirical_ntk", "empirical_ntk_full", "plan_empirical_ntk"]

Strategy = Literal["auto", "jacobian", "ntvp"]
DEFAULT_BUDGET = 2**30  # 1 GiB


@dataclass(frozen=True)
class NTKPlan:
    """How :func:`empirical_ntk` will run and what memory it expects.

    Attributes:
        strategy: ``"jacobian"`` or ``"ntvp"``.
        batch_size: examples per Jacobian block (``"jacobian"``) or per jvp block of ``x1``.
        n_params: ``P``; out_entries: ``K = k·|S|``; bytes_per_scalar: ``s``.
        bytes_estimate: the formula of the module docstring (excluding the output and
            forward activations).
        output_bytes: size of the returned tensor.
    """

    strategy: str
    batch_size: int
    n_params: int
    out_entries: int
    bytes_per_scalar: int
    bytes_estimate: int
    output_bytes: int


def _params(module: nn.Module) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    params = {k: v.detach() for k, v in module.named_parameters() if v.requires_grad}
    if not params:
        raise ValueError("`module` has no trainable parameters; its NTK is zero")
    return params, dict(module.named_buffers())


def plan_empirical_ntk(
    module: nn.Module,
    x1: Tensor,
    x2: Tensor | None = None,
    *,
    trace: bool = True,
    strategy: Strategy = "auto",
    batch_size: int | None = None,
    memory_budget: int = DEFAULT_BUDGET,
) -> NTKPlan:
    """Choose the strategy/block size for ``empirical_ntk`` (see module docstring)."""
    if strategy not in ("auto", "jacobian", "ntvp"):
        raise ValueError(f"`strategy` must be 'auto', 'jacobian' or 'ntvp'; got {strategy!r}")
    check_positive_int("memory_budget", memory_budget)
    params, buffers = _params(module)
    n_params = sum(p.numel() for p in params.values())
    with torch.no_grad():
        out = functional_call(module, (params, buffers), (x1[:1],))
    if out.ndim < 2:
        raise ValueError(
            f"`module` must map (N, ...) inputs to (N, k, ...) outputs; got {tuple(out.shape)}"
        )
    k, spatial = out.shape[1], tuple(out.shape[2:])
    out_entries = out[0].numel()
    s = out.element_size()
    n1 = x1.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    out_elems = n1 * n2 * math.prod(spatial) * (1 if trace else k * k)
    b_fit = memory_budget // max(1, 8 * out_entries * n_params * s)
    if strategy == "auto":
        strategy = "jacobian" if b_fit >= 1 else "ntvp"
    if batch_size is not None:
        b = check_positive_int("batch_size", batch_size)
    elif strategy == "jacobian":
        b = max(1, min(b_fit, max(n1, n2)))
    else:
        b = max(1, min(n1, 256))
    if strategy == "jacobian":
        est = 8 * b * out_entries * n_params * s
    else:
        est = 3 * n_params * s
    return NTKPlan(strategy, b, n_params, out_entries, s, est, out_elems * s)


def _check_inputs(x1: object, x2: object) -> tuple[Tensor, Tensor | None]:
    x1 = as_float_tensor("x1", x1, min_ndim=2)
    if x2 is not None:
        x2 = as_float_tensor("x2", x2, min_ndim=2)
        check_same_dtype_device("x1", x1, "x2", x2)
        if x2.shape[1:] != x1.shape[1:]:
            raise ValueError(
                f"`x1` and `x2` must share the per-example shape; got {tuple(x1.shape)} and "
                f"{tuple(x2.shape)}"
            )
    return x1, x2


def _compute(
    module: nn.Module,
    x1: object,
    x2: object,
    trace: bool,
    strategy: Strategy,
    batch_size: int | None,
    memory_budget: int,
) -> Tensor:
    x1, x2 = _check_inputs(x1, x2)
    plan = plan_empirical_ntk(
        module,
        x1,
        x2,
        trace=trace,
        strategy=strategy,
        batch_size=batch_size,
        memory_budget=memory_budget,
    )
    params, buffers = _params(module)
    if plan.strategy == "jacobian":
        return _by_jacobian(module, params, buffers, x1, x2, trace, plan.batch_size)
    return _by_ntvp(module, params, buffers, x1, x2, trace, plan.batch_size)


def empirical_ntk(
    module: nn.Module,
    x1: Tensor,
    x2: Tensor | None = None,
    *,
    strategy: Strategy = "auto",
    batch_size: int | None = None,
    memory_budget: int = DEFAULT_BUDGET,
) -> Tensor:
    """Empirical NTK traced over output channels (mean over channels).

    Args:
        module: maps ``(N, *in_shape)`` to ``(N, k)`` or ``(N, k, *S)``, per example.
        x1: ``(N1, *in_shape)``; x2: ``(N2, *in_shape)`` or ``None`` (= ``x1``).
        strategy: ``"auto"`` (by memory estimate), ``"jacobian"`` or ``"ntvp"``.
        batch_size: override the block size chosen by :func:`plan_empirical_ntk`.
        memory_budget: bytes allowed for Jacobian blocks (default 1 GiB).
    Returns:
        ``(N1, N2)`` — or ``(N1, N2, *S)`` — equal to
        ``(1/k) Σ_c Σ_p ∂f_c(x1)/∂p ∂f_c(x2)/∂p``, comparable with the analytic NTK.
    """
    return _compute(module, x1, x2, True, strategy, batch_size, memory_budget)


def empirical_ntk_full(
    module: nn.Module,
    x1: Tensor,
    x2: Tensor | None = None,
    *,
    strategy: Strategy = "auto",
    batch_size: int | None = None,
    memory_budget: int = DEFAULT_BUDGET,
) -> Tensor:
    """Empirical NTK between every pair of output channels.

    Same arguments as :func:`empirical_ntk`.  Returns ``(N1, N2, k, k)`` — or
    ``(N1, N2, k, k, *S)`` for spatial outputs (same position on both sides) —
    with entry ``[n, m, c, d] = Σ_p ∂f_c(x1_n)/∂p ∂f_d(x2_m)/∂p``.
    """
    return _compute(module, x1, x2, False, strategy, batch_size, memory_budget)


# --------------------------------------------------------------------------- jacobian
def _single(module: nn.Module, buffers: dict[str, Tensor]):
    def f(p: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(module, (p, buffers), (x[None],))[0]

    return f


def _jac_block(f, params: dict[str, Tensor], x: Tensor) -> dict[str, Tensor]:
    """Per-example Jacobians ``{name: (b, k, *S, *p.shape)}``."""
    return vmap(jacrev(f), in_dims=(None, 0))(params, x)


def _contract(ja: dict[str, Tensor], jb: dict[str, Tensor], trace: bool, n_out: int) -> Tensor:
    """Σ over parameters of Jacobian products, accumulated tensor by tensor."""
    total = None
    for name, a in ja.items():
        b = jb[name]
        a = a.flatten(start_dim=1 + n_out)
        b = b.flatten(start_dim=1 + n_out)
        if trace:
            term = torch.einsum("nc...p,mc...p->nm...", a, b) / a.shape[1]
        else:
            term = torch.einsum("nc...p,md...p->nmcd...", a, b)
        total = term if total is None else total + term
    return total


def _by_jacobian(module, params, buffers, x1, x2, trace, b):
    f = _single(module, buffers)
    with torch.no_grad():
        n_out = f(params, x1[0]).ndim
    sym = x2 is None
    xb = x1 if sym else x2
    rows = []
    blocks2 = [(j, min(j + b, len(xb))) for j in range(0, len(xb), b)]
    fixed = _jac_block(f, params, xb) if not sym and len(blocks2) == 1 else None
    for i in range(0, len(x1), b):
        ja = _jac_block(f, params, x1[i : i + b])
        cols = []
        for j0, j1 in blocks2:
            if sym and j0 < i:  # lower triangle: transpose of an earlier block
                cols.append(None)
                continue
            if sym and j0 == i:
                jb = ja
            elif fixed is not None:
                jb = fixed
            else:
                jb = _jac_block(f, params, xb[j0:j1])
            cols.append(_contract(ja, jb, trace, n_out))
        rows.append(cols)
    if sym:
        for r, row in enumerate(rows):
            for c in range(r):
                t = rows[c][r].transpose(0, 1)
                row[c] = t if trace else t.transpose(2, 3)
    return torch.cat([torch.cat(row, dim=1) for row in rows], dim=0)


# --------------------------------------------------------------------------- ntvp
def _by_ntvp(module, params, buffers, x1, x2, trace, b1):
    f = _single(module, buffers)
    xb = x1 if x2 is None else x2

    def f_batch(p: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(module, (p, buffers), (x,))

    with torch.no_grad():
        out_shape = tuple(f(params, x1[0]).shape)
    k, spatial = out_shape[0], out_shape[1:]
    n_s = math.prod(spatial)
    n1, n2 = len(x1), len(xb)
    dt = dict(dtype=x1.dtype, device=x1.device)
    # internal layout: (N1, N2, k, k, |S|), or traced (N1, N2, |S|)
    out = torch.zeros((n1, n2, n_s) if trace else (n1, n2, k, k, n_s), **dt)
    for j in range(n2):
        _, pull = vjp(lambda p, _x=xb[j]: f(p, _x).reshape(k, n_s), params)
        for c in range(k):
            for s in range(n_s):
                e = torch.zeros((k, n_s), **dt)
                e[c, s] = 1.0
                (g,) = pull(e)  # gradient row ∂f_{c,s}(x2_j)/∂p
                for i in range(0, n1, b1):
                    xi = x1[i : i + b1]
                    _, tang = jvp(lambda p, _x=xi: f_batch(p, _x), (params,), (g,))
                    tang = tang.reshape(len(xi), k, n_s)  # J(x1)·g
                    if trace:
                        out[i : i + b1, j, s] += tang[:, c, s] / k
                    else:
                        out[i : i + b1, j, :, c, s] = tang[:, :, s]
    return out.reshape(n1, n2, *spatial) if trace else out.reshape(n1, n2, k, k, *spatial)
