"""Large-N GP posterior mean from a stored kernel, without loading it whole.

Solves ``(K + σ²I) α = y`` by preconditioned conjugate gradients (PCG;
Hestenes & Stiefel 1952; Saad 2003, Alg. 9.1) where every product
``(K + σ²I) V`` streams the stored tiles once (for a symmetric store each
upper tile ``T`` serves both ``out[r] += T V[c]`` and ``out[c] += Tᵀ V[r]``),
so memory is ``O(N·k + tile²)`` for ``k`` right-hand sides.

Preconditioner (default ``"nystrom"``): a rank-``m`` Nyström approximation
from ``m`` random landmark columns ``S`` (one streaming pass),
``K ≈ C W⁻¹ Cᵀ = B Bᵀ`` with ``C = K[:, S]``, ``W = K[S, S] = L Lᵀ``,
``B = C L⁻ᵀ``; ``P = B Bᵀ + σ²I`` is inverted by Woodbury:
``P⁻¹ v = (v − B (σ²I + BᵀB)⁻¹ Bᵀ v) / σ²`` (Williams & Seeger 2001;
Frangella, Tropp & Udell 2023).

Posterior mean (docs/inference.md, 'GP posterior'): ``μ(x*) = K*x (Kxx + σ²I)⁻¹ y``; with
``kernel="ntk"`` and ``σ² → 0`` this is the infinite-time NTK gradient-flow mean.
Noise ``σ²`` follows docs/conventions.md (regularisation): ``diag_reg · mean(diag K)`` unless
``diag_reg_absolute``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as sla
import torch
from torch import Tensor

from widelimit._validation import check_nonnegative, check_positive_int
from widelimit.deprecation import renamed_kwargs
from widelimit.kernel import Kernel
from widelimit.predict import DIAG_REG
from widelimit.scale.read import KernelArray, StoredKernel, load_kernel
from widelimit.scale.store import StoreMismatchError

__all__ = [
    "NotConvergedError",
    "PosteriorMean",
    "StoredOperator",
    "check_pairing",
    "posterior_mean",
]

PRECONDITIONERS = ("nystrom", "jacobi", "none")


@dataclass(frozen=True)
class PosteriorMean:
    """Result of :func:`posterior_mean`.

    Attributes:
        mean: ``(N*, k)`` posterior mean at the test points, or ``None`` without ``test_store``.
        alpha: ``(N, k)`` weights ``(K + σ²I)⁻¹ y``.
        iterations: PCG iterations run.
        residual: ``(k,)`` final relative residuals ``‖y − (K + σ²I)α‖ / ‖y‖``.
        converged: all residuals below ``tol``.
        noise: the absolute ``σ²`` added to the diagonal.
        kernel: ``"nngp"`` or ``"ntk"``.
        preconditioner: name and rank.
        seconds: wall time.
        history: max relative residual after each iteration.
    """

    mean: np.ndarray | None
    alpha: np.ndarray
    iterations: int
    residual: np.ndarray
    converged: bool
    noise: float
    kernel: str
    preconditioner: str
    seconds: float
    history: list[float] = field(default_factory=list)


class NotConvergedError(ValueError):
    """CG stopped at ``maxiter`` above ``tol``; ``result`` holds what it reached."""

    def __init__(self, result: PosteriorMean, tol: float):
        self.result = result
        super().__init__(
            f"conjugate gradients did not reach the relative residual tol={tol:.3g} in "
            f"{result.iterations} iterations (max residual {float(result.residual.max()):.3g}, "
            f"preconditioner {result.preconditioner}, σ² = {result.noise:.3g}); raise maxiter, "
            "raise the preconditioner's rank, raise diag_reg (a better-conditioned system), "
            "or use method='cholesky' (exact, N³/3 flops)"
        )


class StoredOperator:
    """``V ↦ (K + σ²I) V`` streaming the tiles of a stored symmetric kernel."""

    def __init__(self, k: KernelArray, noise: float = 0.0):
        if not k._plan.symmetric:
            raise ValueError(
                "the training kernel must be a symmetric store (compute_kernel(net, x_train))"
            )
        self.k = k
        self.noise = noise
        self.n = k.shape[0]

    def diagonal(self) -> np.ndarray:
        d = np.empty(self.n, dtype=np.float64)
        for tile, data in self.k.stored_tiles_where(lambda t: t.i == t.j):
            d[tile.rows] = np.diagonal(data)
        return d

    def matmat(self, v: np.ndarray, *, exact: bool = True) -> np.ndarray:
        """``(K + σ²I) v`` in float64.  ``exact=False`` multiplies a float32 kernel's tiles
        in float32 (no float64 copy of each tile; error ``~ε₃₂·‖K‖·‖v‖``, what PCG's
        iterations tolerate: its true residual is then taken with ``exact=True``)."""
        out = self.noise * v
        low = not exact and self.k.dtype == np.float32
        vv = v.astype(np.float32) if low else v
        for tile, data in self.k.stored_tiles():
            out[tile.rows] += data @ vv[tile.cols]
            if tile.i != tile.j:
                out[tile.cols] += data.T @ vv[tile.rows]
        return out

    def columns(self, idx: np.ndarray) -> np.ndarray:
        """``K[:, idx]`` ``(N, m)`` in one pass (``idx`` sorted, unique)."""
        c = np.empty((self.n, len(idx)), dtype=np.float64)
        for tile, data in self.k.stored_tiles():
            lo, hi = np.searchsorted(idx, [tile.c0, tile.c1])
            c[tile.rows, lo:hi] = data[:, idx[lo:hi] - tile.c0]
            if tile.i != tile.j:
                lo, hi = np.searchsorted(idx, [tile.r0, tile.r1])
                c[tile.cols, lo:hi] = data[idx[lo:hi] - tile.r0, :].T
        return c


def _nystrom(op: StoredOperator, rank: int, noise: float, seed: int, scale: float) -> Callable:
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(op.n, size=min(rank, op.n), replace=False))
    c = op.columns(idx)
    w = c[idx]
    jitter = 1e-10 * scale
    for _ in range(8):  # W may be numerically singular: add jitter until Cholesky succeeds
        try:
            lw = sla.cholesky(w + jitter * np.eye(len(idx)), lower=True)
            break
        except np.linalg.LinAlgError:
            jitter *= 10
    else:  # pragma: no cover - W hopelessly indefinite
        raise ValueError("Nyström preconditioner failed: K[S, S] is not positive definite")
    b = sla.solve_triangular(lw, c.T, lower=True).T  # B = C L⁻ᵀ, (N, m)
    m_chol = sla.cho_factor(noise * np.eye(len(idx)) + b.T @ b, lower=True)

    def apply(r: np.ndarray) -> np.ndarray:  # Woodbury: P⁻¹ r
        return (r - b @ sla.cho_solve(m_chol, b.T @ r)) / noise

    return apply


@renamed_kwargs(train="store", y="y_train", test="test_store")
def posterior_mean(
    store: StoredKernel | str | os.PathLike | Kernel | Tensor | np.ndarray,
    y_train: np.ndarray | Tensor,
    *,
    test_store: StoredKernel | str | os.PathLike | Kernel | Tensor | np.ndarray | None = None,
    kernel: str = "nngp",
    diag_reg: float = DIAG_REG,
    diag_reg_absolute: bool = False,
    tol: float | None = None,
    maxiter: int = 500,
    preconditioner: str | None = None,
    rank: int = 500,
    seed: int = 0,
    method: str = "cg",
    in_memory: bool | None = None,
) -> PosteriorMean:
    """GP posterior mean ``K*x (Kxx + σ²I)⁻¹ y`` by PCG (or blocked Cholesky) over stored tiles.

    Args:
        store: symmetric store of the training kernel (``compute_kernel(net, x_train)``), or
            its path.
        y_train: ``(N,)`` or ``(N, k)`` training targets.
        test_store: ``(N*, N)`` test-train kernel: a store made with
            ``compute_kernel(net, x_test, x_train)`` (or its path), a ``Kernel``
            (``net.kernel(x_test, x_train)``), a tensor or an array; ``None`` returns only
            ``alpha``.  A store must belong to ``store`` (same net, same ``x_train`` rows in
            the same order: :func:`check_pairing`), else
            :class:`~widelimit.scale.StoreMismatchError`.
        kernel: the kernel to use, ``"nngp"`` (GP posterior) or ``"ntk"`` (infinite-time NTK
            mean).
        diag_reg: ``σ²`` relative to ``mean(diag K)`` (or absolute, see below); default
            :data:`~widelimit.predict.DIAG_REG` as everywhere; > 0 needed for the Nyström
            preconditioner.
        diag_reg_absolute: take ``diag_reg`` as the absolute ``σ²``.
        tol: stop when every column's relative residual ``‖y − (K + σ²I)α‖/‖y‖`` is below
            ``tol`` (default ``1e-8``; ``1e-4`` for a float32 kernel in memory).
        maxiter: iteration cap; :class:`NotConvergedError` (a ``ValueError`` holding the
            result) if ``tol`` is not reached by then.
        preconditioner: ``"nystrom"`` (rank ``rank``; the default for a store),
            ``"pivoted_cholesky"`` (rank ``rank``; in memory only, its default),
            ``"jacobi"`` (diagonal) or ``"none"``.
        rank: landmarks (Nyström) or pivots (pivoted Cholesky).
        seed: landmark choice.
        method: ``"cg"`` (PCG, ``O(N²)`` per iteration) or ``"cholesky"`` (``N³/3`` flops,
            exact to rounding).
        in_memory: for a store: read the training kernel whole into memory (one pass over
            its tiles) and solve there (:mod:`.memory_solve`: LAPACK's Cholesky, or PCG with
            products on every core), rather than out of core (PCG streaming the tiles at
            every iteration; blocked Cholesky with its factor on disk, :mod:`.cholesky`).
            ``None`` (default): in memory when it fits in half the available memory (the
            kernel, plus its Cholesky factor for ``method="cholesky"``).
    Returns:
        :class:`PosteriorMean` (``mean`` is ``(N*, k)``; ``(N*, 1)`` for 1-D ``y_train``).
        The old keywords ``train=``, ``y=``, ``test=`` still work (deprecated).
    """
    t0 = time.perf_counter()
    if isinstance(store, Kernel | Tensor | np.ndarray):
        return _posterior_mean_in_memory(
            store, y_train, test_store, kernel=kernel, diag_reg=diag_reg,
            diag_reg_absolute=diag_reg_absolute, tol=tol, maxiter=maxiter,
            preconditioner=preconditioner, rank=rank, seed=seed, method=method, t0=t0,
        )  # fmt: skip
    tol = 1e-8 if tol is None else tol
    preconditioner = "nystrom" if preconditioner is None else preconditioner
    refuse_pivoted = ValueError(
        "preconditioner='pivoted_cholesky' reads one kernel row per pivot: it needs the "
        "training kernel in memory (in_memory=True); out of core use 'nystrom', 'jacobi' "
        "or 'none'"
    )
    if preconditioner == "pivoted_cholesky" and in_memory is False:
        raise refuse_pivoted
    train = store if isinstance(store, StoredKernel) else load_kernel(store)
    k = train[kernel]
    if method not in ("cg", "cholesky"):
        raise ValueError(f"`method` must be 'cg' or 'cholesky'; got {method!r}")
    if in_memory is None:
        in_memory = fits_in_memory(k.shape[0], k.dtype.itemsize, 2 if method == "cholesky" else 1)
    if preconditioner == "pivoted_cholesky" and not in_memory:
        raise refuse_pivoted
    if preconditioner not in (*PRECONDITIONERS, "pivoted_cholesky"):
        raise ValueError(
            f"`preconditioner` must be one of {(*PRECONDITIONERS, 'pivoted_cholesky')}; "
            f"got {preconditioner!r}"
        )
    maxiter = check_positive_int("maxiter", maxiter)
    tol = check_nonnegative("tol", tol)
    reg = check_nonnegative("diag_reg", diag_reg)
    yy = np.asarray(y_train, dtype=np.float64)
    if yy.ndim == 1:
        yy = yy[:, None]
    if yy.ndim != 2 or yy.shape[0] != k.shape[0] or not np.isfinite(yy).all():
        raise ValueError(
            f"`y_train` must be finite with shape ({k.shape[0]},) or ({k.shape[0]}, k) to match "
            f"the training kernel; got shape {np.shape(y_train)}"
        )
    op = StoredOperator(k)
    if test_store is not None:  # check the test kernel's shape and pairing before the solve
        _apply_test(test_store, kernel, np.zeros((op.n, 0)), train)
    if in_memory:
        return _stored_in_memory(
            k, yy, train, test_store, kernel=kernel, reg=reg, absolute=diag_reg_absolute,
            tol=tol, maxiter=maxiter, preconditioner=preconditioner, rank=rank, seed=seed,
            method=method, t0=t0,
        )  # fmt: skip
    diag = op.diagonal()
    scale = float(diag.mean())
    noise = reg if diag_reg_absolute else reg * scale
    if noise <= 0 and preconditioner == "nystrom" and method == "cg":
        raise ValueError("the Nyström preconditioner needs diag_reg > 0; use 'jacobi' or 'none'")
    op.noise = noise
    if method == "cholesky":
        from widelimit.scale.cholesky import blocked_cholesky_solve

        x = blocked_cholesky_solve(k, noise, yy)
        res = np.linalg.norm(yy - op.matmat(x), axis=0) / np.linalg.norm(yy, axis=0).clip(1e-300)
        return PosteriorMean(
            mean=None if test_store is None else _apply_test(test_store, kernel, x, train),
            alpha=x, iterations=0, residual=res, converged=bool(np.isfinite(res).all()),
            noise=noise, kernel=kernel, preconditioner="blocked cholesky",
            seconds=time.perf_counter() - t0,
        )  # fmt: skip
    if preconditioner == "nystrom":
        apply_p = _nystrom(op, check_positive_int("rank", rank), noise, seed, scale)
        pname = f"nystrom(rank={min(rank, op.n)})"
    elif preconditioner == "jacobi":
        inv_d = 1.0 / (diag + noise)
        apply_p, pname = (lambda r: inv_d[:, None] * r), "jacobi"
    else:
        apply_p, pname = (lambda r: r), "none"

    # Preconditioned CG, one independent recursion per column (Saad 2003, Alg. 9.1),
    # restarted from the true residual while that is above tol (the recursive residual
    # drifts from it): the stated tol is what the returned alpha reaches.
    x = np.zeros_like(yy)
    r = yy.copy()
    ynorm = np.linalg.norm(yy, axis=0)
    ynorm[ynorm == 0] = 1.0
    history: list[float] = []
    res = np.linalg.norm(r, axis=0) / ynorm
    it = 0
    while it < maxiter and (res > tol).any():
        z = apply_p(r)
        p = z.copy()
        rz = np.einsum("ij,ij->j", r, z)
        while it < maxiter and (res > tol).any():
            it += 1
            ap = op.matmat(p, exact=False)
            pap = np.einsum("ij,ij->j", p, ap)
            active = res > tol
            alpha = np.where(active & (pap > 0), rz / np.where(pap > 0, pap, 1.0), 0.0)
            x += alpha * p
            r -= alpha * ap
            res = np.linalg.norm(r, axis=0) / ynorm
            history.append(float(res.max()))
            z = apply_p(r)
            rz_new = np.einsum("ij,ij->j", r, z)
            beta = np.where(rz != 0, rz_new / np.where(rz != 0, rz, 1.0), 0.0)
            p = z + beta * p
            rz = rz_new
        r = yy - op.matmat(x)  # the true residual (float64 products)
        res = np.linalg.norm(r, axis=0) / ynorm
    mean = None if test_store is None else _apply_test(test_store, kernel, x, train)
    out = PosteriorMean(
        mean=mean,
        alpha=x,
        iterations=it,
        residual=res,
        converged=bool((res <= tol).all()),
        noise=noise,
        kernel=kernel,
        preconditioner=pname,
        seconds=time.perf_counter() - t0,
        history=history,
    )
    if not out.converged:
        raise NotConvergedError(out, tol)
    return out


def fits_in_memory(n: int, itemsize: int, copies: int) -> bool:
    """Whether ``copies`` ``n × n`` matrices fit in half the memory available now
    (``MemAvailable`` of ``/proc/meminfo``; elsewhere the free pages)."""
    avail = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:  # pragma: no cover - not Linux
        pass
    if avail is None:  # pragma: no cover - not Linux
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return copies * n * n * itemsize <= avail / 2


def load_whole(k: KernelArray) -> Tensor:
    """A symmetric stored kernel as one ``(N, N)`` tensor of its dtype: every stored (upper)
    tile read once (size and checksum checked), the lower triangle filled by transposes."""
    n = k.shape[0]
    out = torch.empty((n, n), dtype=torch.from_numpy(np.empty(0, k.dtype)).dtype)
    for tile, data in k.stored_tiles():
        block = torch.from_numpy(data)
        out[tile.rows, tile.cols] = block
        if tile.i != tile.j:
            out[tile.cols, tile.rows] = block.T
    return out


def _stored_in_memory(
    k: KernelArray, yy: np.ndarray, train: StoredKernel, test_store: object, *, kernel: str,
    reg: float, absolute: bool, tol: float, maxiter: int, preconditioner: str, rank: int,
    seed: int, method: str, t0: float,
) -> PosteriorMean:  # fmt: skip
    """:func:`posterior_mean` of a store read whole into memory (``in_memory=True``)."""
    from widelimit.scale import memory_solve as ms

    km = load_whole(k)
    scale = float(km.diagonal().to(torch.float64).mean())
    noise = reg if absolute else reg * scale
    if noise <= 0 and method == "cg" and preconditioner in ("pivoted_cholesky", "nystrom"):
        raise ValueError(
            f"the {preconditioner} preconditioner needs diag_reg > 0; use 'jacobi' or 'none'"
        )
    sol = ms.solve_in_memory(
        km, torch.from_numpy(yy), noise, method=method, tol=tol, maxiter=maxiter,
        preconditioner=preconditioner, rank=check_positive_int("rank", rank), seed=seed,
        overwrite_k=True,
    )  # fmt: skip
    del km
    res = sol.residual.cpu().numpy()
    converged = bool(np.isfinite(res).all()) and (method == "cholesky" or bool((res <= tol).all()))
    alpha = sol.alpha.cpu().numpy()
    out = PosteriorMean(
        mean=None if test_store is None or not converged
        else _apply_test(test_store, kernel, alpha, train),
        alpha=alpha, iterations=sol.iterations, residual=res, converged=converged, noise=noise,
        kernel=kernel, preconditioner=sol.preconditioner + " (in memory)",
        seconds=time.perf_counter() - t0, history=sol.history,
    )  # fmt: skip
    if not converged:
        raise NotConvergedError(out, tol)
    return out


def _as_matrix(name: str, k: object, kernel: str) -> Tensor:
    """The ``kernel`` field of a ``Kernel``, or a tensor/array, as a 2-D floating tensor."""
    if isinstance(k, Kernel):
        m = k.ntk if kernel == "ntk" else k.nngp
        if m is None:
            raise ValueError(f"`{name}` has no {kernel.upper()}; compute it with get=('{kernel}',)")
    else:
        m = torch.as_tensor(k)
    if m.ndim != 2 or not m.is_floating_point():
        raise ValueError(
            f"`{name}` must be a 2-D floating kernel matrix (dense features, readout net); "
            f"got shape {tuple(m.shape)} and dtype {m.dtype}"
        )
    return m.detach()


def _posterior_mean_in_memory(
    store: object,
    y_train: object,
    test_store: object,
    *,
    kernel: str,
    diag_reg: float,
    diag_reg_absolute: bool,
    tol: float | None,
    maxiter: int,
    preconditioner: str | None,
    rank: int,
    seed: int,
    method: str,
    t0: float,
) -> PosteriorMean:
    """:func:`posterior_mean` of a kernel held in memory (:mod:`.memory_solve`)."""
    from widelimit.scale import memory_solve as ms

    if kernel not in ("nngp", "ntk"):
        raise ValueError(f"`kernel` must be 'nngp' or 'ntk'; got {kernel!r}")
    if method not in ("cg", "cholesky"):
        raise ValueError(f"`method` must be 'cg' or 'cholesky'; got {method!r}")
    preconditioner = "pivoted_cholesky" if preconditioner is None else preconditioner
    if preconditioner not in ms.PRECONDITIONERS:
        raise ValueError(
            f"`preconditioner` must be one of {ms.PRECONDITIONERS}; got {preconditioner!r}"
        )
    k = _as_matrix("store", store, kernel)
    n = k.shape[0]
    if k.shape != (n, n):
        raise ValueError(f"the training kernel must be square (N, N); got {tuple(k.shape)}")
    g = torch.Generator().manual_seed(seed)  # spot check of symmetry: 1024 random pairs
    i, j = torch.randint(n, (2, 1024), generator=g).to(k.device)
    gap = float((k[i, j] - k[j, i]).abs().max())
    if gap > 100 * torch.finfo(k.dtype).eps * float(k.diagonal().abs().max()):
        raise ValueError(
            "the training kernel is not symmetric; pass the kernel of the training inputs with "
            "themselves (net.kernel(x_train))"
        )
    maxiter = check_positive_int("maxiter", maxiter)
    rank = check_positive_int("rank", rank)
    tol = ms.default_tol(k.dtype) if tol is None else check_nonnegative("tol", tol)
    reg = check_nonnegative("diag_reg", diag_reg)
    yy = torch.as_tensor(np.asarray(y_train, dtype=np.float64))
    if yy.ndim == 1:
        yy = yy[:, None]
    if yy.ndim != 2 or yy.shape[0] != n or not bool(torch.isfinite(yy).all()):
        raise ValueError(
            f"`y_train` must be finite with shape ({n},) or ({n}, k) to match the training "
            f"kernel; got shape {tuple(np.shape(y_train))}"
        )
    kt = None if test_store is None else _as_matrix("test_store", test_store, kernel)
    if kt is not None and kt.shape[1] != n:
        raise ValueError(
            f"`test_store` must be the (N*, {n}) test-train kernel; got {tuple(kt.shape)}"
        )
    scale = float(k.diagonal().to(torch.float64).mean())
    noise = reg if diag_reg_absolute else reg * scale
    if noise <= 0 and method == "cg" and preconditioner in ("pivoted_cholesky", "nystrom"):
        raise ValueError(
            f"the {preconditioner} preconditioner needs diag_reg > 0; use 'jacobi' or 'none'"
        )
    sol = ms.solve_in_memory(
        k, yy, noise, method=method, tol=tol, maxiter=maxiter,
        preconditioner=preconditioner, rank=rank, seed=seed,
    )  # fmt: skip
    res = sol.residual.cpu().numpy()
    converged = bool(np.isfinite(res).all()) and (method == "cholesky" or bool((res <= tol).all()))
    mean = None
    if kt is not None and converged:
        mean = (kt @ sol.alpha.to(kt.dtype)).to(torch.float64).cpu().numpy()
    out = PosteriorMean(
        mean=mean,
        alpha=sol.alpha.cpu().numpy(),
        iterations=sol.iterations,
        residual=res,
        converged=converged,
        noise=noise,
        kernel=kernel,
        preconditioner=sol.preconditioner,
        seconds=time.perf_counter() - t0,
        history=sol.history,
    )
    if not converged:
        raise NotConvergedError(out, tol)
    return out


def _apply_test(test: object, kernel: str, alpha: np.ndarray, train: StoredKernel) -> np.ndarray:
    if isinstance(test, np.ndarray):
        if test.ndim != 2 or test.shape[1] != alpha.shape[0]:
            raise ValueError(
                f"`test_store` must be the (N*, {alpha.shape[0]}) test-train kernel; "
                f"got {test.shape}"
            )
        return test @ alpha
    store = test if isinstance(test, StoredKernel) else load_kernel(test)  # type: ignore[arg-type]
    kt = store[kernel]
    if store.symmetric or kt.shape[1] != alpha.shape[0]:
        raise ValueError(
            f"`test_store` must be a store of compute_kernel(net, x_test, x_train) with "
            f"{alpha.shape[0]} columns; got shape {kt.shape} (symmetric={store.symmetric})"
        )
    check_pairing(train, store)
    out = np.zeros((kt.shape[0], alpha.shape[1]))
    for tile, data in kt.stored_tiles():
        out[tile.rows] += data @ alpha[tile.cols]
    return out


def check_pairing(train: StoredKernel, test: StoredKernel) -> None:
    """Refuse a test-train store that was not made for the train-train store ``train``.

    Both stores record the network fingerprint and the hashes of their inputs: the
    test store (``compute_kernel(net, x_test, x_train)``) must have the same net,
    dtype and per-example input shape, and its ``x2`` must be the train store's
    ``x1`` byte for byte (same rows, same order, same scaling).  Raises
    :class:`~widelimit.scale.StoreMismatchError` naming what differs.
    """
    a, b = train.meta, test.meta
    problems = []
    if a.spec != b.spec:
        problems.append("it was computed for another network (the net fingerprints differ)")
    if b.x2 != a.x1:
        problems.append(
            "its training-side inputs x2 are not the train store's inputs x1 (hashes of the "
            "bytes differ: other data, rows in another order, or another scaling)"
        )
    if a.input_shape != b.input_shape or a.dtype != b.dtype:
        problems.append(
            f"its inputs are {b.dtype} of shape {b.input_shape} per example, the train "
            f"store's {a.dtype} of shape {a.input_shape}"
        )
    if problems:
        raise StoreMismatchError(
            f"`test_store` {str(test.store.path)!r} does not belong to the train store "
            f"{str(train.store.path)!r}: " + "; ".join(problems) + ". Compute it with the "
            "same net as compute_kernel(net, x_test, x_train), x_train exactly as given to "
            "the train store (CLI: kernel --x1 TEST --x2 TRAIN with the train store's --net "
            "and scaling)"
        )
