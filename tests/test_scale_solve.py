"""Posterior mean from a stored kernel (PCG) against a dense Cholesky solve of the loaded kernel.

Error model: PCG stops at relative residual ``tol``; the solution error is at
most ``cond(K + σ²I) · tol`` relative, so we compare predictions at
``cond · tol`` (computed from the eigenvalues) plus rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
import torch

from widelimit.layers import Dense, Erf, ReLU, serial
from widelimit.scale import compute_kernel
from widelimit.scale.solve import NotConvergedError, posterior_mean

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("solve")
    g = torch.Generator().manual_seed(0)
    xtr = torch.randn(230, 5, generator=g, dtype=torch.float64)
    xte = torch.randn(37, 5, generator=g, dtype=torch.float64)
    net = serial(Dense(64, 1.5, 0.1), ReLU(), Dense(64, 1.5, 0.1), Erf(), Dense(1))
    train = compute_kernel(net, xtr, store=tmp / "tr.zarr", tile=80, progress=False)
    test = compute_kernel(net, xte, xtr, store=tmp / "te.zarr", tile=80, progress=False)
    y = np.stack([np.sin(xtr[:, 0].numpy()), xtr[:, 1].numpy() ** 2], axis=1)
    return train, test, y


def _dense(train, test, y, kernel, noise):
    k = np.asarray(train[kernel])
    a = k + noise * np.eye(len(k))
    alpha = sla.cho_solve(sla.cho_factor(a), y)
    ev = np.linalg.eigvalsh(a)
    return np.asarray(test[kernel]) @ alpha, ev[-1] / ev[0]


@pytest.mark.parametrize("in_memory", [False, True], ids=["streaming", "loaded"])
@pytest.mark.parametrize("precond", ["nystrom", "jacobi", "none"])
def test_pcg_matches_dense_cholesky(stores, precond, in_memory) -> None:
    train, test, y = stores
    tol = 1e-10
    out = posterior_mean(
        train,
        y,
        test_store=test,
        diag_reg=1e-2,
        tol=tol,
        preconditioner=precond,
        rank=60,
        maxiter=3000,
        in_memory=in_memory,
    )
    ref, cond = _dense(train, test, y, "nngp", out.noise)
    assert out.converged and out.mean.shape == (37, 2)
    np.testing.assert_allclose(out.noise, 1e-2 * np.diag(np.asarray(train.nngp)).mean())
    scale = np.abs(ref).max()
    np.testing.assert_allclose(out.mean, ref, rtol=0, atol=10 * cond * tol * scale + 1e-12)


def test_blocked_cholesky_matches_dense(stores) -> None:
    train, test, y = stores
    # tiny noise: dense and blocked Cholesky both backward stable, error ~ cond · eps
    out = posterior_mean(
        train, y, test_store=test, kernel="ntk", diag_reg=1e-8, method="cholesky", in_memory=False
    )
    ref, cond = _dense(train, test, y, "ntk", out.noise)
    assert out.iterations == 0 and out.preconditioner == "blocked cholesky"
    np.testing.assert_allclose(out.mean, ref, atol=100 * cond * 2.2e-16 * np.abs(ref).max())
    assert not list(train.store.path.parent.glob(".cholesky-*"))  # scratch removed


def test_nystrom_needs_fewer_iterations_than_plain_cg(stores) -> None:
    train, _, y = stores
    kw = dict(diag_reg=1e-2, tol=1e-8, in_memory=False)
    plain = posterior_mean(train, y, preconditioner="none", maxiter=5000, **kw)
    nys = posterior_mean(train, y, preconditioner="nystrom", rank=100, **kw)
    assert nys.converged and plain.converged
    assert nys.iterations < plain.iterations / 2


def test_ntk_and_array_test_kernel(stores) -> None:
    train, test, y = stores
    out = posterior_mean(
        train, y[:, 0], test_store=np.asarray(test.ntk), kernel="ntk", diag_reg=1e-5,
        diag_reg_absolute=True, tol=1e-11, rank=150, maxiter=5000,
    )  # fmt: skip
    ref, cond = _dense(train, test, y[:, :1], "ntk", 1e-5)
    assert out.noise == 1e-5 and out.mean.shape == (37, 1)
    np.testing.assert_allclose(out.mean, ref, atol=10 * cond * 1e-11 * np.abs(ref).max() + 1e-10)


def test_solve_errors(stores) -> None:
    train, test, y = stores
    with pytest.raises(ValueError, match="`y_train` must be"):
        posterior_mean(train, y[:10])
    with pytest.raises(ValueError, match="symmetric store"):
        posterior_mean(test, np.zeros(37))
    with pytest.raises(ValueError, match="`method`"):
        posterior_mean(train, y, method="lu")
    with pytest.raises(ValueError, match="`preconditioner`"):
        posterior_mean(train, y, preconditioner="ilu")
    with pytest.raises(ValueError, match="test-train kernel"):
        posterior_mean(train, y, test_store=np.zeros((3, 5)))
    with pytest.raises(ValueError, match="compute_kernel\\(net, x_test, x_train\\)"):
        posterior_mean(train, y, test_store=train)


def test_store_cholesky_in_memory_equals_in_memory_solve(stores) -> None:
    """The stored kernel read whole (every tile once, lower triangle by transposes) and
    factored by LAPACK gives the in-memory solve of the same matrix, to rounding."""
    train, test, y = stores
    out = posterior_mean(train, y, test_store=test, diag_reg=1e-6, method="cholesky")
    assert out.preconditioner == "cholesky (in memory)"  # default: the kernel fits
    mem = posterior_mean(
        np.asarray(train.nngp), y, test_store=np.asarray(test.nngp), diag_reg=1e-6,
        method="cholesky",
    )  # fmt: skip
    ref, cond = _dense(train, test, y, "nngp", out.noise)
    assert out.noise == mem.noise
    np.testing.assert_allclose(out.alpha, mem.alpha, rtol=0, atol=1e-12 * np.abs(mem.alpha).max())
    np.testing.assert_allclose(out.mean, ref, atol=100 * cond * 2.2e-16 * np.abs(ref).max())
    assert out.residual.max() < 100 * cond * 2.2e-16


@pytest.mark.parametrize("in_memory", [False, True], ids=["streaming", "loaded"])
def test_store_pcg_reaches_stated_residual_and_reports_iterations(stores, in_memory) -> None:
    """The reported residual is the true one, ``‖y − (K + σ²I)α‖/‖y‖`` recomputed here from
    the dense kernel, below ``tol``; the iteration count is the history's length."""
    train, _, y = stores
    tol = 1e-6
    pre = "pivoted_cholesky" if in_memory else "nystrom"
    out = posterior_mean(
        train, y, diag_reg=1e-3, tol=tol, preconditioner=pre, rank=100, in_memory=in_memory
    )
    k = np.asarray(train.nngp)
    true = np.linalg.norm(y - (k + out.noise * np.eye(len(k))) @ out.alpha, axis=0)
    true /= np.linalg.norm(y, axis=0)
    assert out.converged and 0 < out.iterations == len(out.history)
    np.testing.assert_allclose(out.residual, true, rtol=1e-6, atol=1e-13)
    assert (true <= tol).all()


@pytest.mark.parametrize("in_memory", [False, True], ids=["streaming", "loaded"])
def test_store_pcg_not_converged_raises_with_result(stores, in_memory) -> None:
    train, _, y = stores
    with pytest.raises(NotConvergedError, match="did not reach the relative residual") as info:
        posterior_mean(
            train, y, diag_reg=1e-8, tol=1e-12, preconditioner="none", maxiter=3,
            in_memory=in_memory,
        )  # fmt: skip
    assert info.value.result.iterations == 3 and info.value.result.residual.max() > 1e-12
