"""GP posterior mean from an in-memory ``(N, N)`` kernel at large N: Cholesky or PCG.

:func:`~widelimit.scale.solve.posterior_mean` sends a kernel held in memory (a tensor, an
array or a :class:`~widelimit.kernel.Kernel`) here; a store goes through the streaming
solvers of :mod:`.solve` and :mod:`.cholesky`.  The matrix stays in its dtype and on its
device; nothing of size ``N × N`` is made except the Cholesky factor.

* ``method="cholesky"``: ``L = chol(K + σ²I)`` (``torch.linalg.cholesky_ex``, LAPACK
  ``potrf``), then two triangular solves (``torch.cholesky_solve``): ``N³/3`` flops and one
  ``N × N`` factor besides ``K``.  Exact to rounding.
* ``method="cg"``: preconditioned conjugate gradients (Hestenes & Stiefel 1952; Saad 2003,
  Alg. 9.1), one ``K V`` product per iteration (``N²`` multiply-adds per right-hand side),
  no factor: the route for a float32 kernel too large to factor twice in memory.  The
  products run in the kernel's dtype; the CG vectors and scalars in float64.
  Preconditioners ``P = L Lᵀ + σ²I`` inverted by Woodbury,
  ``P⁻¹ v = (v − L (σ²I + LᵀL)⁻¹ Lᵀ v) / σ²``, with ``L`` ``(N, m)`` from

  - ``"pivoted_cholesky"`` (default in memory): the rank-``m`` partial Cholesky with
    diagonal pivoting (Harbrecht, Peters & Schneider 2012, Alg. 1; the preconditioner of
    Gardner et al. 2018, GPyTorch), which takes the row of the largest remaining variance
    at every step: ``m`` rows of ``K`` and ``N m²`` flops;
  - ``"nystrom"``: ``m`` random landmark columns ``S``, ``L = K[:, S] chol(K[S, S])⁻ᵀ``
    (Williams & Seeger 2001; Frangella, Tropp & Udell 2023), as for a store;

  or ``"jacobi"`` (the diagonal) and ``"none"``.

The stopping rule is the true relative residual ``‖y − (K + σ²I) α‖ / ‖y‖ ≤ tol`` of every
column.  CG's own (recursive) residual drifts from it, and a float32 product ``K v`` has an
error floor ``~ε₃₂·‖K‖·‖v‖``, far above ``tol·‖y‖`` when ``σ²`` is small; so when CG's
residual reaches ``tol`` the true one is computed with float64 sums (float32 blocks of
``K`` widened on the fly) and CG restarts from it for the correction (mixed-precision
iterative refinement), until the true residual is below ``tol`` or ``maxiter`` iterations
were run.  Default ``tol``: ``1e-8`` for float64, ``1e-4`` for float32 kernels
(:func:`default_tol`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from widelimit._threads import engine_threads, run_jobs

__all__ = ["MemorySolve", "default_tol", "pivoted_cholesky", "solve_in_memory"]

PRECONDITIONERS = ("pivoted_cholesky", "nystrom", "jacobi", "none")


def default_tol(dtype: torch.dtype) -> float:
    """The default relative residual of CG: ``1e-8`` for float64, ``1e-4`` below (float32)."""
    return 1e-8 if dtype == torch.float64 else 1e-4


@dataclass(frozen=True)
class MemorySolve:
    """``alpha = (K + σ²I)⁻¹ y`` ``(N, k)`` float64 and how it was found."""

    alpha: Tensor
    iterations: int
    residual: Tensor  # (k,) true relative residuals at the end
    history: list[float]
    preconditioner: str


def pivoted_cholesky(k: Tensor, rank: int, *, rtol: float = 0.0) -> Tensor:
    """Partial Cholesky with diagonal pivoting: ``L`` ``(N, m)``, ``K ≈ L Lᵀ``, ``m ≤ rank``.

    Harbrecht, Peters & Schneider 2012, Alg. 1: at step ``j`` take the pivot ``p`` with the
    largest remaining variance ``d_p`` (``d = diag(K − L Lᵀ)``), set
    ``L[:, j] = (K[:, p] − L L[p]ᵀ) / √d_p``, and stop early when ``max d ≤ rtol·trace K``
    (``trace(K − L Lᵀ) = Σ d``).  ``k`` symmetric PSD ``(N, N)``; its rows are read (equal
    to its columns), in float64.  Deterministic: no random choice.
    """
    n = k.shape[0]
    m = min(rank, n)
    d = k.diagonal().to(torch.float64).clone()
    stop = rtol * float(d.sum())
    lt = torch.zeros((m, n), dtype=torch.float64, device=k.device)  # Lᵀ, filled by rows
    for j in range(m):
        p = int(torch.argmax(d))
        dp = float(d[p])
        if dp <= max(stop, 0.0):
            return lt[:j].T.contiguous()
        row = k[p].to(torch.float64) - lt[:j, p] @ lt[:j]  # (K − L Lᵀ)[p, :]
        lt[j] = row / dp**0.5
        d -= lt[j] ** 2
        d[p] = 0.0  # exactly: the pivot's variance is used up
    return lt.T.contiguous()


def _nystrom_factor(k: Tensor, rank: int, seed: int) -> Tensor:
    """``L = K[:, S] chol(K[S, S] + jitter)⁻ᵀ`` for ``rank`` random landmarks ``S``."""
    n = k.shape[0]
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n, generator=g)[: min(rank, n)].sort().values.to(k.device)
    c = k[idx].to(torch.float64).T  # K[:, S] = K[S, :]ᵀ (symmetric)
    w = c[idx]
    jitter = 1e-10 * float(w.diagonal().mean().clamp_min(1e-300))
    for _ in range(8):  # K[S, S] may be singular to rounding: add jitter until it factors
        lw, info = torch.linalg.cholesky_ex(w + jitter * torch.eye(len(idx), dtype=w.dtype))
        if int(info) == 0:
            return torch.linalg.solve_triangular(lw, c.T, upper=False).T
        jitter *= 10
    raise ValueError(  # pragma: no cover - K[S, S] hopelessly indefinite
        "Nyström preconditioner failed: K[S, S] is not positive definite; "
        "use preconditioner='pivoted_cholesky'"
    )


def _woodbury(low: Tensor, noise: float) -> Callable[[Tensor], Tensor]:
    """``v ↦ (L Lᵀ + σ²I)⁻¹ v`` by Woodbury (float64)."""
    m = low.shape[1]
    inner = torch.linalg.cholesky(noise * torch.eye(m, dtype=low.dtype) + low.T @ low)

    def apply(r: Tensor) -> Tensor:
        return (r - low @ torch.cholesky_solve(low.T @ r, inner)) / noise

    return apply


#: Rows of ``K`` per job of a product ``K V`` (fixed, so that the result does not depend on
#: the number of workers), and per job of a float64-accumulated product of a float32 ``K``.
PRODUCT_ROWS = 1024
EXACT_ROWS = 32


def _matmat(k: Tensor, v: Tensor, noise: float, workers: int, *, exact: bool = False) -> Tensor:
    """``(K + σ²I) v`` in float64, by blocks of rows on workers.

    The product runs in ``K``'s dtype; with ``exact`` a float32 ``K`` is read in blocks of
    ``EXACT_ROWS`` rows converted to float64 (a float64 sum: the true residual below the
    float32 floor ``ε₃₂·‖K‖·‖v‖``).  Every block is one matrix product on one intra-op
    thread (:mod:`widelimit._threads`), so a busy core slows one block, not every product.
    """
    wide = exact and k.dtype != torch.float64
    rows = EXACT_ROWS if wide else PRODUCT_ROWS
    vk = v if wide else v.to(k.dtype)
    out = torch.empty((k.shape[0], v.shape[1]), dtype=vk.dtype, device=k.device)

    def block(r0: int) -> None:
        kb = k[r0 : r0 + rows]
        torch.mm(kb.to(torch.float64) if wide else kb, vk, out=out[r0 : r0 + rows])

    run_jobs(block, range(0, k.shape[0], rows), workers)
    return out.to(torch.float64) + noise * v


def solve_in_memory(
    k: Tensor,
    y: Tensor,
    noise: float,
    *,
    method: str,
    tol: float,
    maxiter: int,
    preconditioner: str,
    rank: int,
    seed: int,
    overwrite_k: bool = False,
) -> MemorySolve:
    """``(K + σ²I)⁻¹ y`` for a symmetric in-memory ``k`` ``(N, N)``, ``y`` ``(N, k)`` float64.

    Arguments as :func:`~widelimit.scale.solve.posterior_mean` (module docstring).
    ``overwrite_k``: the caller gives ``k`` away; the Cholesky route adds ``σ²`` to its
    diagonal in place instead of copying it (one ``N × N`` matrix less: ``K`` and ``L``).
    """
    y = y.to(device=k.device, dtype=torch.float64)
    if method == "cholesky":  # LAPACK's own threads: large blocked operations
        low = _cholesky(k, noise, overwrite_k=overwrite_k)
        alpha = torch.cholesky_solve(y.to(k.dtype), low).to(torch.float64)
        del low
        with engine_threads(k.device) as workers:  # k holds K + σ²I when overwritten
            res = _residual(k, y, alpha, 0.0 if overwrite_k else noise, workers)
        return MemorySolve(alpha, 0, res, [], "cholesky")
    # many small operations: on one intra-op thread, the products split across workers
    with engine_threads(k.device) as workers:
        return _pcg(k, y, noise, tol, maxiter, preconditioner, rank, seed, workers)


def _cholesky(k: Tensor, noise: float, *, overwrite_k: bool = False) -> Tensor:
    """``chol(K + σ²I)`` lower, or a ``ValueError`` naming the failing minor
    (``overwrite_k``: ``σ²`` is added to ``k``'s own diagonal)."""
    a = k if overwrite_k else k.clone()
    a.diagonal().add_(noise)
    low, info = torch.linalg.cholesky_ex(a)
    if int(info) != 0:
        raise ValueError(
            f"K + σ²I is not numerically positive definite (leading minor {int(info)} of "
            f"{k.shape[0]}, σ² = {noise:.3g}); increase diag_reg or use float64"
        )
    return low


def _residual(k: Tensor, y: Tensor, x: Tensor, noise: float, workers: int) -> Tensor:
    """True relative residuals ``‖y − (K + σ²I) x‖ / ‖y‖`` per column."""
    ynorm = torch.linalg.vector_norm(y, dim=0).clamp_min(1e-300)
    return torch.linalg.vector_norm(y - _matmat(k, x, noise, workers, exact=True), dim=0) / ynorm


def _pcg(
    k: Tensor,
    y: Tensor,
    noise: float,
    tol: float,
    maxiter: int,
    preconditioner: str,
    rank: int,
    seed: int,
    workers: int,
) -> MemorySolve:
    """Preconditioned CG (module docstring), restarted from the true residual while it is
    above ``tol`` (the recursive one drifts; float32 products have a floor)."""
    if preconditioner == "pivoted_cholesky":
        low = pivoted_cholesky(k, rank)
        apply_p, pname = _woodbury(low, noise), f"pivoted_cholesky(rank={low.shape[1]})"
    elif preconditioner == "nystrom":
        low = _nystrom_factor(k, rank, seed)
        apply_p, pname = _woodbury(low, noise), f"nystrom(rank={low.shape[1]})"
    elif preconditioner == "jacobi":
        inv_d = 1.0 / (k.diagonal().to(torch.float64) + noise)
        apply_p, pname = (lambda r: inv_d[:, None] * r), "jacobi"
    else:
        apply_p, pname = (lambda r: r), "none"

    ynorm = torch.linalg.vector_norm(y, dim=0).clamp_min(1e-300)
    x = torch.zeros_like(y)
    r = y.clone()
    res = torch.linalg.vector_norm(r, dim=0) / ynorm
    history: list[float] = []
    it = 0
    while it < maxiter and bool((res > tol).any()):
        # Preconditioned CG, one recursion per column (Saad 2003, Alg. 9.1).
        z = apply_p(r)
        p = z.clone()
        rz = (r * z).sum(0)
        while it < maxiter and bool((res > tol).any()):
            it += 1
            ap = _matmat(k, p, noise, workers)
            pap = (p * ap).sum(0)
            active = (res > tol) & (pap > 0)
            step = torch.where(active, rz / torch.where(pap > 0, pap, 1.0), 0.0)
            x += step * p
            r -= step * ap
            res = torch.linalg.vector_norm(r, dim=0) / ynorm
            history.append(float(res.max()))
            z = apply_p(r)
            rz_new = (r * z).sum(0)
            beta = torch.where(rz != 0, rz_new / torch.where(rz != 0, rz, 1.0), 0.0)
            p = z + beta * p
            rz = rz_new
        # the true residual (float64 sums): restart from it while it is above tol (mixed-
        # precision iterative refinement: float32 products solve for the correction)
        r = y - _matmat(k, x, noise, workers, exact=True)
        res = torch.linalg.vector_norm(r, dim=0) / ynorm
    return MemorySolve(x, it, res, history, pname)
