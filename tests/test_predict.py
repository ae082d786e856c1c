"""Inference: GP posterior, gradient flow and ensembles against independent routes.

Independent routes: dense ``numpy.linalg.solve`` / ``scipy.linalg.expm`` written
here; explicit Euler integration of the linearised ODE; Monte Carlo over finite
wide networks trained by gradient descent (see ``test_predict_monte_carlo.py``).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.linalg as sla
import torch

from widelimit import Dense, ReLU, serial
from widelimit.predict import (
    IllConditionedWarning,
    gp_inference,
    gradient_descent_mse,
    gradient_descent_mse_ensemble,
)

torch.set_num_threads(1)


def _problem(n=12, m=5, d=4, k=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n + m, d, generator=g, dtype=torch.float64)
    net = serial(Dense(64, w_std=1.5, b_std=0.1), ReLU(), Dense(1, w_std=1.2, b_std=0.2))
    ker = net.kernel(x)
    y = torch.randn(n, k, generator=g, dtype=torch.float64)
    return net, x[:n], x[n:], y, ker.nngp.numpy(), ker.ntk.numpy()


def test_gp_posterior_matches_dense_solve():
    _, _, _, y, kn, _ = _problem()
    n = y.shape[0]
    kxx, ktx, ktt = kn[:n, :n], kn[n:, :n], kn[n:, n:]
    reg = 0.05
    sigma2 = reg * np.mean(np.diag(kxx))  # relative convention (DESIGN.md §1)
    a = kxx + sigma2 * np.eye(n)
    mean_ref = ktx @ np.linalg.solve(a, y.numpy())
    cov_ref = ktt - ktx @ np.linalg.solve(a, ktx.T)
    post = gp_inference(torch.tensor(kxx), y, torch.tensor(ktx), torch.tensor(ktt), diag_reg=reg)
    np.testing.assert_allclose(post.mean.numpy(), mean_ref, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(post.cov.numpy(), cov_ref, rtol=1e-8, atol=1e-10)
    # absolute regularisation
    post_abs = gp_inference(
        torch.tensor(kxx), y, torch.tensor(ktx), diag_reg=sigma2, diag_reg_absolute=True
    )
    np.testing.assert_allclose(post_abs.mean.numpy(), mean_ref, rtol=1e-9, atol=1e-11)
    assert post_abs.cov is None
    ev = np.linalg.eigvalsh(a)
    assert post.conditioning.cond == pytest.approx(ev[-1] / ev[0], rel=1e-6)


def test_gradient_flow_infinite_time_is_kernel_regression():
    _, _, _, y, _, kt = _problem()
    n = y.shape[0]
    kxx, ktx = kt[:n, :n], kt[n:, :n]
    g = torch.Generator().manual_seed(3)
    f0 = torch.randn(n, 2, generator=g, dtype=torch.float64)
    f0t = torch.randn(5, 2, generator=g, dtype=torch.float64)
    flow = gradient_descent_mse(torch.tensor(kxx), y, diag_reg=0.0)
    for t in (None, math.inf):
        out = flow(t, f0, f0t, torch.tensor(ktx))
        ref = f0t.numpy() + ktx @ np.linalg.solve(kxx, (y - f0).numpy())
        np.testing.assert_allclose(out.test.numpy(), ref, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(out.train.numpy(), y.numpy(), atol=1e-10)


def _euler(kxx, ktx, y, f0, f0t, t, steps, lr=1.0):
    """Explicit Euler for df/dt = −lr Θ (f − y)/n_targets, n_targets = N·k (DESIGN.md §1)."""
    h = t / steps
    f, ft = f0.copy(), f0t.copy()
    n_targets = y.size
    for _ in range(steps):
        r = f - y
        f = f - h * lr * kxx @ r / n_targets
        ft = ft - h * lr * ktx @ r / n_targets
    return f, ft


def test_gradient_flow_small_t_matches_euler_first_order():
    _, _, _, y, _, kt = _problem()
    n = y.shape[0]
    kxx, ktx = kt[:n, :n], kt[n:, :n]
    yn = y.numpy()
    f0 = np.random.default_rng(1).normal(size=yn.shape)
    f0t = np.random.default_rng(2).normal(size=(5, 2))
    lr = 0.7
    lam_max = np.linalg.eigvalsh(kxx)[-1]
    t = 2.0 * yn.size / (lam_max * lr)  # the fastest mode decays by e^-2
    flow = gradient_descent_mse(torch.tensor(kxx), y, learning_rate=lr, diag_reg=0.0)
    out = flow(t, torch.tensor(f0), torch.tensor(f0t), torch.tensor(ktx))
    errs = []
    for steps in (200, 400):
        ftr, fte = _euler(kxx, ktx, yn, f0, f0t, t, steps, lr)
        errs.append(
            max(np.abs(ftr - out.train.numpy()).max(), np.abs(fte - out.test.numpy()).max())
        )
    # Euler is first order: halving the step halves the error (ratio 2 ± 5 %), so
    # the closed form is the h -> 0 limit, not just close to one Euler run.
    assert 1.9 < errs[0] / errs[1] < 2.1
    assert errs[1] < 1e-2 * np.abs(yn).max()


def test_time_array_shape_and_n_targets_scaling():
    _, _, _, y, _, kt = _problem(k=3)
    n = y.shape[0]
    kxx = torch.tensor(kt[:n, :n])
    flow = gradient_descent_mse(kxx, y, diag_reg=0.0)
    ts = torch.tensor([[0.0, 1.0], [10.0, 100.0]])
    out = flow(ts)
    assert out.train.shape == (2, 2, n, 3)
    np.testing.assert_allclose(out.train[0, 0].numpy(), 0.0, atol=1e-12)  # f0 = 0 at t = 0
    # one column alone has n_targets = N instead of 3N: its time runs 3x faster
    flow1 = gradient_descent_mse(kxx, y[:, :1], diag_reg=0.0)
    np.testing.assert_allclose(
        flow1(10.0 / 3).train[:, 0].numpy(), out.train[1, 0, :, 0].numpy(), rtol=1e-10
    )
    # direct matrix exponential check at t = 10 with n_targets = 3N
    ref = (np.eye(n) - sla.expm(-kt[:n, :n] * 10.0 / y.numel())) @ y.numpy()
    np.testing.assert_allclose(out.train[1, 0].numpy(), ref, rtol=1e-8, atol=1e-10)


def _ensemble_reference(kn, kt, n, y, t, get):
    """Lee et al. 2019 eqs. (15)–(16) with scipy.linalg.expm and dense solves."""
    kxx, ktx, ktt = kn[:n, :n], kn[n:, :n], kn[n:, n:]
    th, thx = (kt[:n, :n], kt[n:, :n]) if get == "ntk" else (kxx, ktx)
    a = np.eye(n) - sla.expm(-th * t / y.size)
    b = thx @ np.linalg.solve(th, a)
    mean = b @ y
    cov = ktt + b @ kxx @ b.T - b @ ktx.T - (b @ ktx.T).T
    return mean, cov


@pytest.mark.parametrize("get", ["ntk", "nngp"])
def test_ensemble_matches_dense_formula(get):
    net, xtr, xte, y, kn, kt = _problem()
    n = y.shape[0]
    ens = gradient_descent_mse_ensemble(net, xtr, y, diag_reg=0.0)
    for t in (3.0, 40.0):
        out = ens(xte, t, kernel=get)
        mean, cov = _ensemble_reference(kn, kt, n, y.numpy(), t, get)
        np.testing.assert_allclose(out.mean.numpy(), mean, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(out.cov.numpy(), cov, rtol=1e-7, atol=1e-9)
    # t = ∞: NNGP posterior / NTK kernel regression
    out = ens(xte, None, kernel=get)
    kxx, ktx, ktt = kn[:n, :n], kn[n:, :n], kn[n:, n:]
    if get == "nngp":
        np.testing.assert_allclose(
            out.cov.numpy(), ktt - ktx @ np.linalg.solve(kxx, ktx.T), rtol=1e-6, atol=1e-8
        )
    else:
        np.testing.assert_allclose(
            out.mean.numpy(), kt[n:, :n] @ np.linalg.solve(kt[:n, :n], y.numpy()), rtol=1e-7
        )
    # training inputs: mean A_t y, array of times gives leading axes
    tr = ens(None, torch.tensor([0.0, 5.0]), kernel=get)
    assert tr.mean.shape == (2, n, 2) and tr.cov.shape == (2, n, n)
    np.testing.assert_allclose(tr.cov[0].numpy(), kxx, rtol=1e-8, atol=1e-10)  # prior at t=0
    th = kt[:n, :n] if get == "ntk" else kxx
    ref = (np.eye(n) - sla.expm(-th * 5.0 / y.numel())) @ y.numpy()
    np.testing.assert_allclose(tr.mean[1].numpy(), ref, rtol=1e-7, atol=1e-9)


def test_bad_inputs():
    _, _, _, y, kn, _ = _problem()
    n = y.shape[0]
    k = torch.tensor(kn[:n, :n])
    ktx = torch.tensor(kn[n:, :n])
    with pytest.raises(ValueError, match="y_train"):
        gradient_descent_mse(k, y[:-1])
    with pytest.raises(ValueError, match="k_test_train"):
        gp_inference(k, y, ktx[:, :-1])
    ynan = y.clone()
    ynan[3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"y_train.*non-finite"):
        gp_inference(k, ynan, ktx)
    with pytest.raises(ValueError, match="diag_reg"):
        gradient_descent_mse(k, y, diag_reg=-1e-3)
    bad = k.clone()
    bad[0, 0] = -5.0 * bad[0, 0]
    with pytest.raises(ValueError, match="positive semi-definite"):
        gp_inference(bad, y, ktx)
    asym = k.clone()
    asym[0, 1] += 1.0
    with pytest.raises(ValueError, match="symmetric"):
        gradient_descent_mse(asym, y)
    with pytest.raises(ValueError, match="square"):
        gradient_descent_mse(k[:, :-1], y)
    with pytest.raises(ValueError, match="`t`"):
        gradient_descent_mse(k, y)(-1.0)


def test_singular_kernel_gets_visible_jitter_not_nan():
    x = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = torch.cat([x, x[:2]])  # duplicated inputs: exactly singular NNGP
    k = serial(Dense(8), ReLU(), Dense(1)).kernel(x).nngp
    y = torch.randn(8, dtype=torch.float64)
    with pytest.warns(IllConditionedWarning, match="jitter"):
        post = gp_inference(k, y, k, k, diag_reg=0.0)
    assert post.conditioning.jitter > 0
    assert post.conditioning.cond <= 1.0001e12
    assert torch.isfinite(post.mean).all() and torch.isfinite(post.cov).all()
    # with explicit regularisation there is no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedWarning)
        post = gp_inference(k, y, k, diag_reg=1e-3)
    assert post.conditioning.jitter == 0.0


def test_ill_conditioned_warning_and_float32_roundtrip():
    q, _ = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64))
    k = q @ torch.diag(torch.tensor([1.0, 1e-1, 1e-3, 1e-6, 1e-11], dtype=torch.float64)) @ q.T
    y = torch.randn(5, dtype=torch.float64)
    with pytest.warns(IllConditionedWarning, match="ill-conditioned"):
        gradient_descent_mse(k, y, diag_reg=0.0)
    post = gp_inference(k.float(), y.float(), k[:2].float(), diag_reg=1e-3)
    assert post.mean.dtype == torch.float32 and post.mean.shape == (2,)
