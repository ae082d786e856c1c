"""Finite-width networks against the Gaussian limit: convergence rates and helpers."""

import math

import numpy as np
import pytest
import torch
from scipy import special, stats

from widelimit.layers.activations import Erf, ReLU, Tanh
from widelimit.propagation import (
    default_inputs,
    finite_width_study,
    fit_loglog,
    preactivations,
    propagation_net,
    trajectory,
    w1_to_normal,
)


def test_w1_to_normal_matches_scipy_wasserstein():
    """Exact ∫|F_n − Φ| vs scipy.stats.wasserstein_distance against m midpoint quantiles
    of N(0, 1); discretisation error of the reference ≲ √(log m)/m ≈ 1e-5 (m = 2·10⁵)."""
    rng = np.random.default_rng(0)
    m = 200_000
    ref = special.ndtri((np.arange(m) + 0.5) / m)
    for z in (rng.standard_normal(50), 1.3 * rng.standard_normal(500) + 0.2, np.array([0.3])):
        assert w1_to_normal(z) == pytest.approx(stats.wasserstein_distance(z, ref), abs=5e-5)
    # a point mass at 0: W1 = E|Z| = √(2/π)
    assert w1_to_normal(np.zeros(7)) == pytest.approx(math.sqrt(2 / math.pi), rel=1e-14)


def test_fit_loglog_recovers_power_law():
    n = np.array([10.0, 100.0, 1000.0])
    fit = fit_loglog(n, 3 * n**-0.5, 0.1 * 3 * n**-0.5)
    assert fit.slope == pytest.approx(-0.5, abs=1e-12)
    assert fit.intercept == pytest.approx(math.log(3), abs=1e-12)
    # σ(log y) = 0.1 at each point: se = 0.1 / √Σ(x − x̄)²
    xc = np.log(n) - np.log(n).mean()
    assert fit.stderr == pytest.approx(0.1 / math.sqrt((xc**2).sum()), rel=1e-12)


def test_default_inputs_have_exact_input_kernel():
    x = default_inputs(3, 8, q0=2.0, c0=0.3)
    k0 = x @ x.T / 8
    expected = torch.full((3, 3), 0.6, dtype=torch.float64)
    expected.fill_diagonal_(2.0)
    torch.testing.assert_close(k0, expected, rtol=1e-13, atol=1e-13)


def test_preactivations_are_the_dense_outputs():
    """Hooks return h^1 ... h^L; h^1 recomputed by hand from the module's parameters."""
    x = default_inputs()
    net = propagation_net(Tanh(), 1.2, 0.3, 3, width=16).module(
        None, input_shape=8, seed=1, dtype=torch.float64
    )
    hs = preactivations(net, x)
    assert [tuple(h.shape) for h in hs] == [(3, 16)] * 3
    d1 = net.layers[0]
    h1 = x @ (1.2 / math.sqrt(8) * d1.weight).T + 0.3 * d1.bias
    torch.testing.assert_close(hs[0], h1, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(hs[2], net(x), rtol=0, atol=0)


def test_finite_widths_converge_at_rate_one_half():
    """Finite nets of widths 64, 256, 1024 (24 seeds each): every statistic's log-log
    slope in n is −1/2 ± 0.15.

    Error model: a std estimated from S seeds has relative SE 1/√(2(S−1)) ≈ 0.15;
    the KS/W1 means have relative SE ≈ 0.3/√S ≈ 0.06; with ln-width spread
    Σ(x − x̄)² = 3.84 the slope SEs are ≲ 0.08 and ≲ 0.03 (checked below from the
    study's own error propagation), so ±0.15 is ≳ 2σ for the spreads (which are
    also averaged over 3 inputs and 3 layers, reducing the SE further) and ≳ 5σ
    for the distances.  The O(1/n) corrections shift slopes by ≲ 0.02 at n ≥ 64.
    """
    st = finite_width_study(Tanh(), 1.5, 0.3, 3, (64, 256, 1024), n_seeds=24, progress=False)
    for key in ("q_spread", "corr_spread", "ks", "w1", "output_ks", "output_cov_err"):
        assert st.slopes[key] == pytest.approx(-0.5, abs=0.15), key
    assert st.slopes_se["ks"] < 0.05 and st.slopes_se["q_spread"] < 0.1
    # the finite nets are centred on the infinite-width q^l: the seed-mean of q̂/q − 1
    # is within 4 standard errors (spread/√S) plus the O(1/n) bias (≤ 2/n here)
    se = st.stats["q_spread"] / math.sqrt(st.n_seeds)
    assert np.all(np.abs(st.q_bias) <= 4 * se + 2 / st.widths[:, None])
    # the theory used is the trajectory of the same inputs
    traj = trajectory(Tanh(), 1.5, 0.3, 3, input_cov=st.inputs @ st.inputs.T / 8)
    np.testing.assert_allclose(st.q_theory, traj.q, rtol=1e-14)
    assert [s.shape for s in st.samples] == [(3, 64), (3, 256), (3, 1024)]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("act", "sw", "sb"),
    [
        (Tanh(), math.sqrt(1.7609546396), math.sqrt(0.05)),
        (ReLU(), math.sqrt(2), 0.1),
        (Erf(), 1.2, 0.2),
    ],
    ids=["tanh-critical", "relu", "erf"],
)
def test_finite_widths_converge_wide_range(act, sw, sb):
    """Widths 64 … 4096 (ln-spread 4.2), 32 seeds: every statistic within −1/2 ± 0.15 and
    within 4 of its own standard errors (+0.03 for O(1/n) corrections)."""
    st = finite_width_study(act, sw, sb, 3, (64, 256, 1024, 4096), n_seeds=32, progress=False)
    for key, slope in st.slopes.items():
        assert slope == pytest.approx(-0.5, abs=0.15), key
        assert abs(slope + 0.5) <= 4 * st.slopes_se[key] + 0.03, key


def test_finite_study_errors():
    with pytest.raises(ValueError, match="widths"):
        finite_width_study(Tanh(), 1.0, 0.1, 2, (64,), progress=False)
    with pytest.raises(ValueError, match="widths"):
        finite_width_study(Tanh(), 1.0, 0.1, 2, (256, 64), progress=False)
    with pytest.raises(ValueError, match="n_seeds"):
        finite_width_study(Tanh(), 1.0, 0.1, 2, (8, 16), n_seeds=1, progress=False)
    with pytest.raises(TypeError, match="activation"):
        finite_width_study(torch.tanh, 1.0, 0.1, 2, (8, 16), progress=False)
    with pytest.raises(ValueError, match="at least 2 inputs"):
        finite_width_study(Tanh(), 1.0, 0.1, 2, (8, 16), x=torch.ones(1, 4), progress=False)
    with pytest.raises(ValueError, match="n_inputs"):
        default_inputs(5, 3)
