"""Finite shaped nets: exact sampler and forward pass vs exact finite-width oracles.

Error model: means within 4.5 standard errors (σ/√N), variances within 4.5·σ²√(2/N)
(near-Gaussian sums of d i.i.d. log-χ² terms), KS distances below the 1e-3 critical
value 1.95·√(1/N₁ + 1/N₂) (two-sample) or 1.95/√N (one-sample).
"""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from widelimit.sde import (
    ShapedMLP,
    ShapedReLU,
    correlations,
    finite_forward_gram,
    linear_log_norm_law,
    relu_correlation_map,
    sample_gram,
    sample_linear_log_norm,
    sample_unshaped_relu_log_norm,
    unshaped_relu_log_norm_law,
)

KS_CRIT = 1.95


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _check_moments(x, mean, var):
    n = x.size
    assert abs(x.mean() - mean) < 4.5 * math.sqrt(var / n), (x.mean(), mean)
    assert abs(x.var() / var - 1) < 4.5 * math.sqrt(2 / n), (x.var(), var)


def test_linear_sampler_matches_chi2_law():
    n, d, nets = 32, 32, 4000
    identity = ShapedReLU.shaped(0.0, 0.0, n)  # s± = 1, gain 1: the linear net
    phi0 = torch.tensor([[2.0]], dtype=torch.float64)
    g = sample_gram(phi0, identity, width=n, depth=d, n_nets=nets, seed=_gen(1), progress=False)
    x = (g[0, :, 0, 0] / 2.0).log().numpy()
    law = linear_log_norm_law(n, d)
    _check_moments(x, law.mean, law.var)
    ref = sample_linear_log_norm(n, d, 20_000, seed=np.random.default_rng(1))
    assert stats.ks_2samp(x, ref).statistic < KS_CRIT * math.sqrt(1 / nets + 1 / 20_000)
    # the oracle's closed-form moments vs its own χ² sampler (scipy digamma vs numpy draws)
    _check_moments(ref, law.mean, law.var)
    # large n, d = Tn: → N(−T, 2T)
    big = linear_log_norm_law(4096, 4096)
    assert big.mean == pytest.approx(-1.0, abs=2e-3) and big.var == pytest.approx(2.0, rel=2e-3)


def test_unshaped_relu_sampler_matches_binomial_chi2_law():
    n, d, nets = 32, 16, 4000
    g = sample_gram(
        torch.eye(1, dtype=torch.float64),
        ShapedReLU.unshaped(),
        width=n,
        depth=d,
        n_nets=nets,
        seed=_gen(2),
        progress=False,
    )
    x = g[0, :, 0, 0].log().numpy()
    law = unshaped_relu_log_norm_law(n, d)
    _check_moments(x, law.mean, law.var)
    ref = sample_unshaped_relu_log_norm(n, d, 20_000, seed=np.random.default_rng(2))
    assert np.isfinite(ref).all()  # P(K = 0) = 2^-32 per layer
    _check_moments(ref, law.mean, law.var)
    assert stats.ks_2samp(x, ref).statistic < KS_CRIT * math.sqrt(1 / nets + 1 / 20_000)


def test_forward_pass_linear_net_matches_chi2_law():
    # the plain forward pass (n × n weight matrices) against the exact law: depth off by
    # one would shift the mean by ≈ 5 standard errors here
    n, d, nets = 8, 8, 4000
    x = torch.randn(1, 5, generator=_gen(3), dtype=torch.float64)
    phi0 = float((x @ x.T)[0, 0] / 5)
    g = finite_forward_gram(
        x,
        ShapedReLU.shaped(0, 0, n),
        width=n,
        depth=d,
        n_nets=nets,
        seed=_gen(4),
        progress=False,
    )
    law = linear_log_norm_law(n, d)
    _check_moments((g[:, 0, 0] / phi0).log().numpy(), law.mean, law.var)


def test_forward_pass_and_sampler_have_the_same_law():
    n, d, nets = 16, 16, 2000
    act = ShapedReLU.shaped(0.0, -2.0, n)
    x = torch.tensor([[1.0, 0.0, 0.5], [0.2, 1.0, -0.4]], dtype=torch.float64)
    phi0 = x @ x.T / 3
    f = finite_forward_gram(x, act, width=n, depth=d, n_nets=nets, seed=_gen(5), progress=False)
    s = sample_gram(phi0, act, width=n, depth=d, n_nets=nets, seed=_gen(6), progress=False)[0]
    crit = KS_CRIT * math.sqrt(2 / nets)
    assert stats.ks_2samp(correlations(f).numpy(), correlations(s).numpy()).statistic < crit
    for a in range(2):
        assert stats.ks_2samp(f[:, a, a].log().numpy(), s[:, a, a].log().numpy()).statistic < crit


def test_shaped_mlp_module():
    n, d, m = 16, 6, 4
    x = torch.randn(m, 10, generator=_gen(7), dtype=torch.float64)
    net = ShapedMLP(10, n, d, ShapedReLU.shaped(0.0, -1.0, n), out_features=3, seed=_gen(8))
    assert net(x).shape == (m, 3)
    with torch.no_grad():
        phi = net.penultimate_gram(x)
    assert phi.shape == (m, m) and torch.allclose(phi, phi.T)
    assert float(torch.linalg.eigvalsh(phi).min()) > -1e-12
    # over many nets the output second moment equals E[Φ_d^{11}] = Φ_0^{11} (ReLU gain keeps
    # the expected squared norm): check within 5 standard errors
    outs, phis = [], []
    for k in range(600):
        net = ShapedMLP(
            10, n, d, ShapedReLU.shaped(0.0, -1.0, n), out_features=4, seed=_gen(100 + k)
        )
        with torch.no_grad():
            outs.append(net(x[:1])[0] ** 2)
            phis.append(net.penultimate_gram(x[:1])[0, 0])
    outs, phis = torch.cat(outs), torch.stack(phis)
    phi00 = float((x[0] @ x[0]) / 10)
    assert abs(float(phis.mean()) - phi00) < 5 * float(phis.std()) / math.sqrt(600)
    assert abs(float(outs.mean()) - phi00) < 5 * float(outs.std()) / math.sqrt(outs.numel())


def test_unshaped_relu_correlation_collapses_as_predicted():
    # infinite-width prediction ρ_{l+1} = K₁(ρ_l) → 1, already at d = n the nets collapse
    n, nets = 64, 1000
    phi0 = torch.tensor([[1.0, 0.3], [0.3, 1.0]], dtype=torch.float64)
    g = sample_gram(
        phi0,
        ShapedReLU.unshaped(),
        width=n,
        depth=n,
        n_nets=nets,
        record=[8, n],
        seed=_gen(9),
        progress=False,
    )
    rho = correlations(g)
    pred = relu_correlation_map(0.3, n)
    for i, layer in enumerate((8, n)):
        se = float(rho[i].std()) / math.sqrt(nets)
        # O(d/n) finite-width bias of the mean correlation, measured ≈ 0.3 (1 − ρ_pred) d/n
        assert (
            abs(float(rho[i].mean()) - float(pred[layer]))
            < 5 * se + (1 - float(pred[layer])) * layer / n
        )
    assert float((rho[1] > 0.9).double().mean()) > 0.99
    assert 1 - float(pred[n]) < 1e-2  # 1 − ρ_l ~ 9π²/(2l²)
    # the shaped ReLU at the same T = 1 keeps a spread of correlations
    shaped = sample_gram(
        phi0,
        ShapedReLU.shaped(0, -1, n),
        width=n,
        depth=n,
        n_nets=nets,
        seed=_gen(10),
        progress=False,
    )
    assert float(correlations(shaped[0]).std()) > 0.4


def test_exploding_nets_are_marked_inf_and_errors():
    from widelimit.sde import SmoothShaped

    act = SmoothShaped("quadratic", 0.2, 16)  # b_* = 18.75: explodes fast
    g = sample_gram(
        torch.eye(1, dtype=torch.float64) * 4,
        act,
        width=16,
        depth=64,
        n_nets=200,
        seed=_gen(11),
        progress=False,
    )
    assert bool(torch.isinf(g).any()) and not bool(torch.isnan(g).any())
    with pytest.raises(ValueError, match="`record`"):
        sample_gram(torch.eye(2), act, width=4, depth=3, n_nets=2, record=[0])
    with pytest.raises(ValueError, match="`phi0`"):
        sample_gram(torch.ones(2, 3), act, width=4, depth=3, n_nets=2)
    with pytest.raises(ValueError, match="`depth`"):
        sample_gram(torch.eye(2), act, width=4, depth=0, n_nets=2)
    with pytest.raises(ValueError, match="`x`"):
        finite_forward_gram(torch.ones(3), act, width=4, depth=3, n_nets=2)
