"""Posterior mean from an in-memory kernel (``scale.memory_solve``) against a direct solve.

Reference: SciPy's LAPACK Cholesky solve of ``K + σ²I`` in float64 (an independent code
path from the torch routines under test).  Error model: CG stops at a relative residual
``tol`` of ``(K + σ²I) α = y``, so ``α`` is within ``cond(K + σ²I)·tol`` relative (cond from
the eigenvalues) and so is the mean ``K* α``; the Cholesky route is exact up to
``cond·N·ε``.  A float32 kernel is compared with the float64 solve of the *same* float32
matrix (rounded up to float64), so only the solver's error is measured.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
import torch

from widelimit.layers import Dense, Erf, ReLU, serial
from widelimit.scale.memory_solve import pivoted_cholesky
from widelimit.scale.solve import NotConvergedError, posterior_mean

F64 = torch.float64


@pytest.fixture(scope="module")
def problem():
    g = torch.Generator().manual_seed(0)
    xtr = torch.randn(300, 6, generator=g, dtype=F64)
    xte = torch.randn(40, 6, generator=g, dtype=F64)
    net = serial(Dense(64, 1.5, 0.1), ReLU(), Dense(64, 1.5, 0.1), Erf(), Dense(1))
    ktr, kte = net.kernel(xtr), net.kernel(xte, xtr)
    y = np.stack([np.sin(2 * xtr[:, 0].numpy()), xtr[:, 1].numpy() ** 2], axis=1)
    return ktr, kte, y


def _reference(k: torch.Tensor, kt: torch.Tensor, y: np.ndarray, noise: float):
    a = k.double().numpy() + noise * np.eye(k.shape[0])
    mean = kt.double().numpy() @ sla.cho_solve(sla.cho_factor(a), y)
    ev = np.linalg.eigvalsh(a)
    return mean, ev[-1] / ev[0]


@pytest.mark.parametrize(
    ("method", "precond"),
    [
        ("cholesky", None),
        ("cg", "pivoted_cholesky"),
        ("cg", "nystrom"),
        ("cg", "jacobi"),
        ("cg", "none"),
    ],
)
@pytest.mark.parametrize("kernel", ["nngp", "ntk"])
def test_in_memory_mean_matches_direct_solve(problem, method, precond, kernel) -> None:
    ktr, kte, y = problem
    tol = 1e-10
    out = posterior_mean(
        ktr, y, test_store=kte, kernel=kernel, diag_reg=1e-3, method=method,
        preconditioner=precond, rank=40, tol=tol, maxiter=5000,
    )  # fmt: skip
    k, kt = getattr(ktr, kernel), getattr(kte, kernel)
    np.testing.assert_allclose(out.noise, 1e-3 * float(k.diagonal().mean()))
    ref, cond = _reference(k, kt, y, out.noise)
    assert out.converged and out.mean.shape == (40, 2) and out.alpha.shape == (300, 2)
    assert (out.residual < 10 * tol).all()
    err = np.abs(out.mean - ref).max() / np.abs(ref).max()
    bound = cond * (tol if method == "cg" else 300 * np.finfo(np.float64).eps)
    assert err <= 10 * bound, (err, bound)


def test_preconditioners_cut_iterations(problem) -> None:
    ktr, _, y = problem
    its = {
        p: posterior_mean(ktr, y, diag_reg=1e-4, preconditioner=p, rank=60, maxiter=5000).iterations
        for p in ("pivoted_cholesky", "none")
    }
    assert its["pivoted_cholesky"] < its["none"] / 3, its


def test_float32_kernel_by_cg_reaches_the_stated_residual(problem) -> None:
    ktr, kte, y = problem
    k32, kt32 = ktr.nngp.float(), kte.nngp.float()
    out = posterior_mean(k32, y, test_store=kt32, diag_reg=1e-2, maxiter=2000)
    assert out.converged and (out.residual < 10 * 1e-4).all()  # default tol 1e-4 (float32)
    ref, cond = _reference(k32, kt32, y, out.noise)
    err = np.abs(out.mean - ref).max() / np.abs(ref).max()
    assert err <= 10 * cond * 1e-4, (err, cond)


def test_not_converged_is_a_clear_error_with_the_result(problem) -> None:
    ktr, _, y = problem
    with pytest.raises(NotConvergedError, match="did not reach the relative residual") as info:
        posterior_mean(ktr, y, diag_reg=1e-8, preconditioner="none", maxiter=3)
    res = info.value.result
    assert res.iterations == 3 and not res.converged and res.residual.max() > 1e-8
    assert isinstance(info.value, ValueError)


def test_pivoted_cholesky_recovers_a_low_rank_matrix_exactly() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.randn(50, 7, generator=g, dtype=F64)
    k = a @ a.T  # rank 7
    low = pivoted_cholesky(k, 20, rtol=1e-12)
    assert low.shape[1] == 7  # stops once the remaining trace vanishes
    torch.testing.assert_close(low @ low.T, k, rtol=0, atol=1e-12 * float(k.abs().max()))
    # the error trace(K − L Lᵀ) never grows with the rank
    errs = [float((k - (lw := pivoted_cholesky(k, r)) @ lw.T).diagonal().sum()) for r in (1, 3, 5)]
    assert errs[0] >= errs[1] >= errs[2] >= 0


def test_in_memory_input_errors(problem) -> None:
    ktr, _, y = problem
    with pytest.raises(ValueError, match="must be square"):
        posterior_mean(ktr.nngp[:, :10], y)
    with pytest.raises(ValueError, match="not symmetric"):
        posterior_mean(ktr.nngp + torch.triu(torch.ones(300, 300, dtype=F64), 1), y)
    with pytest.raises(ValueError, match="y_train"):
        posterior_mean(ktr, y[:10])
    with pytest.raises(ValueError, match="preconditioner"):
        posterior_mean(ktr, y, preconditioner="ilu")


def test_store_refuses_pivoted_cholesky(tmp_path) -> None:
    with pytest.raises(ValueError, match="needs the training kernel in memory"):
        posterior_mean(
            tmp_path / "none.zarr", np.zeros(3), preconditioner="pivoted_cholesky", in_memory=False
        )
