"""Ensemble of infinite-width nets vs Monte Carlo over finite wide nets trained by GD.

Independent route: ``S`` two-layer ReLU nets in NTK parameterization, written by
hand here (batched over nets), trained by full-batch gradient descent on
``½·mean (f − y)²`` with step ``η`` for ``K`` steps.  DESIGN.md §1 says this
compares with the gradient-flow ensemble at ``t = K·η``.

Error model: the ``S`` nets are i.i.d., so the sample mean of output ``i`` has
standard error ``√(Σ_ii / S)`` and the sample covariance entry ``(i, j)`` has
standard error ``√((Σ_ii Σ_jj + Σ_ij²) / S)`` (Gaussian outputs).  We allow 4.5
standard errors (≈ 1e-4 false-failure rate per entry, ~20 entries).  The other
errors are far smaller: Euler discretisation with ``η λ_max / N = 0.03`` (relative
≲ 1e-3) and finite-width corrections ``O(1/width)`` at width 1024.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from widelimit import Dense, ReLU, serial
from widelimit.predict import gradient_descent_mse_ensemble

torch.set_num_threads(1)

W1, B1, W2, B2 = 1.5, 0.1, 1.2, 0.2


def _train_nets(x, y, n_train, width, n_nets, lr, steps, seed):
    """Train ``n_nets`` independent nets; return outputs ``(n_nets, N+M)`` after ``steps``."""
    g = torch.Generator().manual_seed(seed)
    d = x.shape[1]
    kw = {"generator": g, "dtype": torch.float64}
    w1 = torch.randn(n_nets, width, d, **kw).requires_grad_()
    b1 = torch.randn(n_nets, width, 1, **kw).requires_grad_()
    w2 = torch.randn(n_nets, 1, width, **kw).requires_grad_()
    b2 = torch.randn(n_nets, 1, 1, **kw).requires_grad_()
    params = [w1, b1, w2, b2]

    def forward():
        # NTK parameterization: h = (σw/√fan_in) W x + σb b
        h = W1 / math.sqrt(d) * w1 @ x.T + B1 * b1  # (S, width, N+M)
        return (W2 / math.sqrt(width) * w2 @ torch.relu(h) + B2 * b2)[:, 0, :]

    for _ in range(steps):
        f = forward()
        # sum over nets of ½·mean over the N training targets: independent gradients
        loss = 0.5 * ((f[:, :n_train] - y) ** 2).mean(dim=1).sum()
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, gr in zip(params, grads, strict=True):
                p -= lr * gr
    with torch.no_grad():
        return forward()


def _check(width, n_nets, seed):
    gen = torch.Generator().manual_seed(seed)
    n, m = 4, 3
    x = torch.randn(n + m, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(n, generator=gen, dtype=torch.float64)
    net = serial(Dense(width, w_std=W1, b_std=B1), ReLU(), Dense(1, w_std=W2, b_std=B2))
    ens = gradient_descent_mse_ensemble(net, x[:n], y, diag_reg=0.0)
    lam_max = float(torch.linalg.eigvalsh(ens.k_train_train["ntk"])[-1])
    lr = 0.03 * n / lam_max
    steps = 100  # t·λ_max/N = 3: the fastest mode is mostly trained, slow ones are not
    out = _train_nets(x, y, n, width, n_nets, lr, steps, seed + 1)
    pred_test = ens(x[n:], steps * lr, kernel="ntk")
    pred_train = ens(None, steps * lr, kernel="ntk")
    for sl, pred in ((slice(n, None), pred_test), (slice(0, n), pred_train)):
        samples = out[:, sl]
        mu, cov = pred.mean.numpy(), pred.cov.numpy()
        emp_mu = samples.mean(0).numpy()
        emp_cov = np.cov(samples.numpy().T)
        var = np.diag(cov)
        se_mu = np.sqrt(var / n_nets)
        se_cov = np.sqrt((np.outer(var, var) + cov**2) / n_nets)
        assert np.all(np.abs(emp_mu - mu) <= 4.5 * se_mu), (emp_mu, mu, se_mu)
        assert np.all(np.abs(emp_cov - cov) <= 4.5 * se_cov), (emp_cov, cov, se_cov)
    # the test is not vacuous: training moved the mean far from the prior's zero
    assert np.abs(pred_train.mean.numpy()).max() > 10 * se_mu.max()


def test_ensemble_vs_trained_finite_nets():
    _check(width=1024, n_nets=250, seed=0)


@pytest.mark.slow
def test_ensemble_vs_trained_finite_nets_many():
    _check(width=2048, n_nets=4000, seed=10)
