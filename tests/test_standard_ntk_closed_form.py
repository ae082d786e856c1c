"""Closed-form NTK of ``Dense(..., parameterization="standard")``, bias term included.

Convention (src/widelimit/layers/dense.py, docs/conventions.md): ``h = W·x + b`` with
``W ~ N(0, σw²/n)``, ``b ~ N(0, σb²)`` and fan-in ``n``.  Per output unit,
``∂h/∂W_ij = x_j`` gives ``Σ_j x_j x'_j = n·Σ`` (``Σ`` the per-unit input covariance),
``∂h/∂b = 1`` gives ``1`` and the earlier parameters give ``σw²·Θ`` (through
``E[W_ij²] = σw²/n``, summed over ``n`` units).  So

    Θ' = n·Σ + 1[σb > 0] + σw²·Θ.

Here Θ is written out by hand for one and two layers (ReLU in between, arc-cosine closed
form of Cho & Saul 2009, eq. (6), in numpy), compared with ``net.kernel`` and with the
empirical NTK of the finite module.  For the two-layer net the empirical NTK is an
unbiased estimate at every width (the first layer's pre-activations are exactly
Gaussian and the second layer's weights are independent of them), so the tolerance is
five standard errors of a Monte Carlo mean; each test computes every term's
contribution and checks that dropping it would move the result outside the tolerance.
"""

import math

import numpy as np
import torch

from widelimit import Dense, ReLU, monte_carlo_kernel, serial
from widelimit.empirical import empirical_ntk

F64 = torch.float64


def _inputs() -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    return torch.randn(3, 4, generator=g, dtype=F64)


def _relu_duals(q: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``E[relu(u) relu(v)]`` and ``E[relu'(u) relu'(v)]`` for variances ``q`` (diag of s)."""
    rho = np.sqrt(np.outer(q, q))
    c = np.clip(s / rho, -1.0, 1.0)
    th = np.arccos(c)
    return rho * (np.sin(th) + (math.pi - th) * c) / (2 * math.pi), (math.pi - th) / (2 * math.pi)


def _every_term_matters(
    measured: np.ndarray, theta: np.ndarray, terms: dict[str, np.ndarray], tol: np.ndarray
) -> None:
    """Θ without any one of its terms misses ``measured`` by more than ``tol`` somewhere."""
    assert np.allclose(sum(terms.values()), theta, rtol=1e-14, atol=0)
    for name, term in terms.items():
        assert np.any(np.abs(measured - (theta - term)) > tol), name


def test_one_layer_standard_ntk_is_x_dot_x_plus_one():
    """One layer: Θ = d·(x·x'/d) + 1 exactly, for the kernel and for every finite net."""
    x = _inputs()
    net = Dense(5, w_std=1.3, b_std=0.4, parameterization="standard")
    xn = x.numpy()
    terms = {"n·Σ": xn @ xn.T, "bias": np.ones((3, 3))}
    theta = sum(terms.values())
    np.testing.assert_allclose(net.kernel(x, get="ntk").ntk.numpy(), theta, rtol=1e-13)
    module = net.module(None, input_shape=4, seed=3, dtype=F64)
    emp = empirical_ntk(module, x).numpy()  # deterministic: ∂h/∂(W, b) = (x, 1)
    tol = 1e-12 * np.abs(theta).max() * np.ones_like(theta)
    assert np.all(np.abs(emp - theta) <= tol)
    _every_term_matters(emp, theta, terms, tol)
    # no bias parameter, no bias term
    no_bias = Dense(5, w_std=1.3, b_std=0.0, parameterization="standard")
    np.testing.assert_allclose(no_bias.kernel(x, get="ntk").ntk.numpy(), xn @ xn.T, rtol=1e-13)


def test_two_layer_standard_ntk_closed_form_and_monte_carlo():
    x = _inputs()
    n, d = 1024, x.shape[1]
    w1, b1, w2, b2 = 0.1, 0.05, 1.5, 0.3
    net = serial(
        Dense(n, w_std=w1, b_std=b1, parameterization="standard"),
        ReLU(),
        Dense(1, w_std=w2, b_std=b2, parameterization="standard"),
    )
    xn = x.numpy()
    gram = xn @ xn.T
    sigma1 = w1**2 * gram / d + b1**2  # Σ¹ = σw² Σ⁰ + σb²
    e_phi, e_dphi = _relu_duals(np.diag(sigma1), sigma1)
    terms = {
        "n·Σ_φ (second-layer weights)": n * e_phi,
        "1 (second-layer bias)": np.ones_like(gram),
        "σw²·Ė·x·x' (first-layer weights)": w2**2 * e_dphi * gram,
        "σw²·Ė·1 (first-layer bias)": w2**2 * e_dphi,
    }
    theta = sum(terms.values())
    np.testing.assert_allclose(net.kernel(x, get="ntk").ntk.numpy(), theta, rtol=1e-12)

    mc = monte_carlo_kernel(net, x, width=None, n_samples=300, seed=11, get="ntk")
    mean, sem = mc.ntk.numpy(), mc.ntk_sem.numpy()
    tol = 5 * sem
    assert np.all(np.abs(mean - theta) <= tol), (mean - theta) / sem
    _every_term_matters(mean, theta, terms, tol)
    # the bias term alone is larger than the tolerance on every entry
    assert np.all(tol < 1.0), tol
