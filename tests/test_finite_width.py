"""The 1/n four-point vertex against independent routes.

* closed forms: E[relu(u)⁴] = 3q²/2, E[φ(u)²φ(v)²] of the piecewise-linear family from the
  degree-2 arc-cosine dual, the product law 3K²(Π(1 + r/n_ℓ) − 1) of one input through
  homogeneous layers (derived here, not taken from the module);
* exact finite-width moments (linear nets, piecewise-linear single inputs): equal to the
  recursion at one hidden layer, and differing from it like n⁻² deeper;
* finite differences of the activations' duals for the linearisation;
* Monte Carlo over sampled nets (bootstrap errors), and the sampler against nets built by
  ``net.module(width)``.
"""

from __future__ import annotations

import itertools
import json
import math
import warnings
from functools import partial

import numpy as np
import pytest
import torch
from scipy.optimize import curve_fit
from typer.testing import CliRunner

from fw_nets import D, deep_net, inputs
from widelimit import ABReLU, Conv2d, Dense, Erf, LeakyReLU, ReLU, Sign, empirical_ntk, serial
from widelimit.cli import app
from widelimit.finite_width import (
    four_point_function,
    monte_carlo_four_point,
    sample_outputs,
)
from widelimit.finite_width.exact import exact_four_point
from widelimit.finite_width.gaussian import (
    derivative_four_point_expectations,
    four_point_expectations,
    linearisation,
)
from widelimit.finite_width.ntk import monte_carlo_ntk, ntk_of_weights
from widelimit.finite_width.vertex import edgeworth_density
from widelimit.layers.activations import RectifiedMonomial, activation_from_name

_inputs = inputs
_net = partial(deep_net, out=8)


def _cov(n: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    x = _inputs(n, 6, seed)
    return scale * (x @ x.T) / 6 + 0.05


# --------------------------------------------------------------- Gaussian expectations


@pytest.mark.parametrize("act", [ReLU(), LeakyReLU(0.3), ABReLU(-0.5, 2.0)])
def test_piecewise_linear_two_input_expectations_match_arc_cosine_closed_form(act):
    # φ = b·relu(x) − a·relu(−x), so φ² = b² relu(x)² + a² relu(−x)² and E[φ(u)²φ(v)²] is a
    # sum of degree-2 arc-cosine duals with the sign of s flipped for each relu(−·)
    a, b = act.slopes
    k = _cov(3)
    e4 = four_point_expectations(act, k)
    rm2 = RectifiedMonomial(2)
    for i, j in [(0, 1), (1, 2), (0, 2)]:
        q1, q2, s = k[i, i], k[j, j], k[i, j]
        ref = sum(
            ci * cj * rm2.dual(q1, q2, si * sj * s, ntk=False)[0]
            for (ci, si), (cj, sj) in itertools.product([(b * b, 1), (a * a, -1)], repeat=2)
        )
        assert float(e4[i, i, j, j]) == pytest.approx(float(ref), rel=1e-12)
        assert float(e4[i, i, i, i]) == pytest.approx(1.5 * (a**4 + b**4) * float(q1) ** 2)


@pytest.mark.parametrize("name", ["relu", "tanh", "erf", "silu"])
def test_four_point_expectations_match_direct_sampling(name):
    act = activation_from_name(name)
    k = _cov(4)
    e4 = four_point_expectations(act, k)
    g = torch.Generator().manual_seed(1)
    u = torch.randn(1_000_000, 4, generator=g, dtype=D) @ torch.linalg.cholesky(k).T
    f = act.fn(u)
    for idx in [(0, 1, 2, 3), (0, 0, 1, 2), (1, 1, 3, 3), (0, 0, 0, 3), (2, 2, 2, 2)]:
        v = f[:, idx[0]] * f[:, idx[1]] * f[:, idx[2]] * f[:, idx[3]]
        se = float(v.std()) / math.sqrt(v.numel())
        assert abs(float(e4[idx]) - float(v.mean())) < 5 * se, idx


def test_smooth_four_point_expectations_converge_in_the_order():
    act = activation_from_name("tanh")
    k = _cov(4)
    base = four_point_expectations(act, k)
    fine = four_point_expectations(act, k, orders=(96, 64, 40, 28))
    # entries of ≤ 3 distinct inputs to 3e-7; four distinct (a 4-D ridge integrand) to 1e-4
    scale = float(base.abs().max())
    assert float((base[0, 1, 2, 2] - fine[0, 1, 2, 2]).abs()) < 3e-7 * scale
    assert float((base - fine).abs().max()) < 1e-4 * scale


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "tanh", "erf", "silu", "gelu"])
def test_linearisation_matches_finite_differences_of_the_dual(name):
    act = activation_from_name(name)
    k = _cov(3)
    f, a, c, d = linearisation(act, k)
    h = 1e-5
    for i, j in [(0, 1), (2, 1), (0, 2)]:
        q1, q2, s = k[i, i], k[j, j], k[i, j]

        def dual(q1, q2, s):
            return float(act.dual(q1, q2, s, ntk=False)[0])

        fd_q = (dual(q1 + h, q2, s) - dual(q1 - h, q2, s)) / (2 * h)
        fd_s = (dual(q1, q2, s + h) - dual(q1, q2, s - h)) / (2 * h)
        assert float(a[i, j]) == pytest.approx(fd_q, rel=1e-6, abs=1e-9)
        assert float(c[i, j]) == pytest.approx(fd_s, rel=1e-6, abs=1e-9)
        assert float(f[i, j]) == pytest.approx(dual(q1, q2, s), rel=1e-12)
    q = k[1, 1]
    fd_d = (float(act.dual(q + h, q + h, q + h, ntk=False)[0]) - dual(q - h, q - h, q - h)) / (
        2 * h
    )
    assert float(d[1]) == pytest.approx(fd_d, rel=1e-6)


# ------------------------------------------------------------------ the vertex tensor


@pytest.mark.parametrize("name", ["relu", "erf"])
def test_vertex_symmetries_permutation_and_psd(name):
    act = activation_from_name(name)
    net = _net(act, 2, 16)
    x = _inputs(5)
    p = four_point_function(net, x, widths=(16, 32))
    perm = torch.tensor([3, 0, 4, 1, 2])
    pp = four_point_function(net, x[perm], widths=(16, 32))
    for layer in (1, 2):
        v = p.vertices[layer]
        assert torch.equal(v, v.permute(1, 0, 2, 3))
        assert torch.equal(v, v.permute(0, 1, 3, 2))
        assert torch.equal(v, v.permute(2, 3, 0, 1))
        cum = p.cumulant(layer)
        for sigma in itertools.permutations(range(4)):
            torch.testing.assert_close(cum, cum.permute(*sigma), rtol=1e-12, atol=1e-15)
        permuted = v[perm][:, perm][:, :, perm][:, :, :, perm]
        torch.testing.assert_close(pp.vertices[layer], permuted, rtol=1e-10, atol=1e-14)
        # V is the covariance matrix of the N² entries of Ĝ: positive semidefinite
        lam = torch.linalg.eigvalsh(v.reshape(25, 25))
        assert float(lam.min()) > -1e-10 * float(lam.max())
    assert not p.vertices[0].any()


@pytest.mark.parametrize("act", [LeakyReLU(1.0), ReLU(), LeakyReLU(0.3), ABReLU(-0.5, 2.0)])
def test_recursion_is_exact_at_one_hidden_layer_and_first_order_deeper(act):
    x = _inputs(3) if act.slopes[0] == act.slopes[1] else _inputs(1)
    one = _net(act, 1, 10)
    torch.testing.assert_close(
        four_point_function(one, x).cumulant(),
        exact_four_point(one, x).cumulant(),
        rtol=1e-12,
        atol=1e-14,
    )
    widths = np.array([64, 128, 256, 512, 1024])
    gaps, leading = [], []
    for n in widths:
        net = _net(act, 4, int(n))
        pred, exact = four_point_function(net, x), exact_four_point(net, x)
        torch.testing.assert_close(pred.kernels[-1], exact.kernels[-1], rtol=1e-12, atol=0)
        gaps.append(float((pred.cumulant() - exact.cumulant()).abs().max()))
        leading.append(float(exact.cumulant().abs().max()))
    slope = np.polyfit(np.log(widths), np.log(gaps), 1)[0]
    assert slope == pytest.approx(-2.0, abs=0.05)
    assert gaps[-1] < 0.01 * leading[-1]


def test_relu_product_law_for_one_input_without_bias():
    # Ĝ' = σw² Ĝ X/n with X = Σ_j relu(ξ_j)²: E[X/n] = 1/2, Var(relu(ξ)²) = 3/2 − 1/4 = 5/4,
    # so with σw² = 2, E[Ĝ_L²]/K² = Π(1 + 5/n_ℓ) and κ4 = 3K²(Π(1 + 5/n_ℓ) − 1)
    widths = (8, 16, 32, 12)
    layers = []
    for n in widths:
        layers += [Dense(n, w_std=math.sqrt(2.0)), ReLU()]
    net = serial(*layers, Dense(1, w_std=math.sqrt(2.0)))
    x = _inputs(1)
    k = 2.0 * float(x @ x.T) / x.shape[1]
    prod = math.prod(1 + 5 / n for n in widths)
    exact = exact_four_point(net, x)
    assert float(exact.kernels[-1]) == pytest.approx(k, rel=1e-14)
    assert float(exact.cumulant()[0, 0, 0, 0]) == pytest.approx(3 * k * k * (prod - 1), rel=1e-12)
    pred = four_point_function(net, x)
    first = 3 * k * k * 5 * sum(1 / n for n in widths)
    assert float(pred.cumulant()[0, 0, 0, 0]) == pytest.approx(first, rel=1e-12)
    assert float(pred.excess_kurtosis()[0]) == pytest.approx(15 * sum(1 / n for n in widths))
    assert float(pred.cross_kurtosis()[0, 0]) == pytest.approx(5 * sum(1 / n for n in widths))


# ----------------------------------------------------------------------- Monte Carlo


def test_sampler_matches_nets_built_by_module():
    net = serial(Dense(8, w_std=1.4, b_std=0.3), ReLU(), Dense(8, w_std=1.2), Erf(), Dense(1))
    x = _inputs(2)
    n_nets = 2000
    fast = sample_outputs(net, x, n_nets, seed=3)[:, :, 0]  # (nets, 2)
    slow = torch.stack(
        [net.module(input_shape=4, seed=10_000 + s, dtype=D)(x)[:, 0] for s in range(n_nets)]
    ).detach()
    for stat in (
        lambda f: f[:, 0] ** 2,
        lambda f: f[:, 0] * f[:, 1],
        lambda f: f[:, 1] ** 4,
        lambda f: f[:, 0] ** 2 * f[:, 1] ** 2,
    ):
        a, b = stat(fast), stat(slow)
        se = math.sqrt(float(a.var()) / n_nets + float(b.var()) / n_nets)
        assert abs(float(a.mean() - b.mean())) < 4.5 * se


@pytest.mark.parametrize("name", ["relu", "erf", "silu"])
def test_monte_carlo_matches_the_exact_one_hidden_layer_vertex_at_width_8(name):
    act = activation_from_name(name)
    net = _net(act, 1, 8)
    x = _inputs(2)
    pred = four_point_function(net, x)
    mc = monte_carlo_four_point(net, x, n_nets=20_000, seed=7)
    for idx in [(0, 0, 0, 0), (1, 1, 1, 1), (0, 0, 1, 1), (0, 0, 0, 1), (0, 1, 1, 1)]:
        z = (mc.cumulant[idx] - pred.cumulant()[idx]) / mc.cumulant_se[idx]
        zx = (mc.cross_cumulant[idx] - pred.cross_cumulant()[idx]) / mc.cross_cumulant_se[idx]
        assert abs(float(z)) < 4.5 and abs(float(zx)) < 4.5, (idx, float(z), float(zx))
    zk = (mc.kernel - pred.kernels[-1]) / mc.kernel_se
    assert float(zk.abs().max()) < 4.5
    zv = (mc.vertex - pred.vertices[-1]) / mc.vertex_se
    assert float(zv.abs().max()) < 4.5


@pytest.mark.parametrize(("name", "w_std"), [("relu", 2**0.5), ("silu", 1.7)])
def test_one_over_n_correction_of_the_two_point_function_matches_monte_carlo(name, w_std):
    # depth 3, n = 32: E[Ĝ] − K is resolved (the off-diagonal > 5 SE from 0) and agrees with
    # δK = σw²(J δK + ½ H:V) within 4.5 SE; exact zero for one input through ReLU
    act = activation_from_name(name)
    net = _net(act, 3, 32, w_std=w_std, b_std=0.0 if name == "relu" else 0.1, out=4)
    x = _inputs(2)
    pred = four_point_function(net, x)
    mc = monte_carlo_four_point(net, x, n_nets=20_000, seed=11)
    measured = mc.metric - pred.kernels[-1]
    z = (measured - pred.kernel_corrections[-1]) / mc.metric_se
    assert float(z.abs().max()) < 4.5, z
    assert abs(float(measured[0, 1] / mc.metric_se[0, 1])) > 5
    if name == "relu":
        assert not pred.kernel_corrections[-1].diagonal().any()


@pytest.mark.parametrize(
    ("name", "depth", "w_std", "b_std", "widths"),
    [("relu", 1, 2**0.5, 0.0, (8, 64)), ("relu", 2, 2**0.5, 0.0, (8, 64)),
     ("tanh", 2, 1.0, 0.1, (8, 16))],  # tanh's kurtosis at n = 64 is below 10⁴ nets' resolution
)  # fmt: skip
def test_edgeworth_density_beats_the_gaussian_limit_on_sampled_nets(
    name, depth, w_std, b_std, widths
):
    # mean log-likelihood per output of 10⁴ sampled nets (16 outputs each): first-order
    # Edgeworth density minus the infinite-width Gaussian N(0, K), > 4 SE (SE over nets)
    act = activation_from_name(name)
    x = _inputs(1)
    for n in widths:
        net = _net(act, depth, n, w_std=w_std, b_std=b_std, out=16)
        pred = four_point_function(net, x)
        z = sample_outputs(net, x, 10_000, seed=99)[:, 0, :]
        k = pred.kernels[-1][0, 0]
        gauss = -0.5 * z**2 / k - 0.5 * torch.log(2 * math.pi * k)
        gain = (torch.log(pred.output_density(z).clamp_min(1e-300)) - gauss).mean(1)
        assert float(gain.mean()) > 4 * float(gain.std()) / math.sqrt(gain.numel()), (n, gain)


def test_edgeworth_density_integrates_to_one_with_the_right_moments():
    z = torch.linspace(-40, 40, 400_001, dtype=D)
    dz = float(z[1] - z[0])
    p = edgeworth_density(z, 2.0, 1.5)
    assert float(p.sum() * dz) == pytest.approx(1.0, abs=1e-10)
    assert float((z**2 * p).sum() * dz) == pytest.approx(2.0, abs=1e-9)
    assert float((z**4 * p).sum() * dz) == pytest.approx(3 * 4.0 + 1.5, abs=1e-8)


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_batched_ntk_formula_matches_empirical_ntk_of_module_nets(parameterization):
    x = _inputs(3, 5)
    for act in (ReLU(), activation_from_name("tanh")):
        net = serial(
            Dense(7, w_std=1.3, b_std=0.2, parameterization=parameterization), act,
            Dense(6, w_std=1.1, parameterization=parameterization), act,
            Dense(3, w_std=0.9, b_std=0.3, parameterization=parameterization),
        )  # fmt: skip
        mod = net.module(input_shape=5, seed=1, dtype=D)
        dense = [m for m in mod.modules() if hasattr(m, "w_scale")]
        weights = [(m.w_scale * m.weight.detach()).T[None] for m in dense]
        biases = [
            None if m.bias is None else (m.b_scale * m.bias.detach())[None, None] for m in dense
        ]
        theta = ntk_of_weights(net, x, weights, biases)[0]
        torch.testing.assert_close(theta, empirical_ntk(mod, x), rtol=1e-12, atol=1e-13)


def test_monte_carlo_ntk_relative_variance_of_a_one_hidden_layer_relu_net():
    # one hidden layer, no bias, σw² = 2, one output: Θ = (2/d)|x|²·(2/n)Σ_j 1[z_j>0] v_j²
    # + (2/n)Σ_j relu(z_j)²; the terms are i.i.d. over j, so Var Θ/(E Θ)² = Var(T)/(n E[T]²)
    # with T = (2/d)|x|²·1[z>0]v² + relu(z)² and z ~ N(0, 2|x|²/d), v ~ N(0, 1):
    # E T = q/2 + q/2 = q, E T² = E[1[z>0](q v² + z²)²] = ½(3q² + 2q² + 3q²) = 4q² (q = 2|x|²/d)
    x = _inputs(1, 5)
    n = 16
    net = serial(Dense(n, w_std=2**0.5), ReLU(), Dense(1, w_std=2**0.5))
    mc = monte_carlo_ntk(net, x, n_nets=20_000, seed=5)
    expected = (4.0 - 1.0) / n
    assert abs(float(mc.relative_variance[0]) - expected) < 4 * float(mc.relative_variance_se[0])


def test_standard_and_ntk_parameterizations_give_the_same_four_point_function():
    # the forward law at initialisation is the same (Var W = σw²/fan_in either way)
    x = _inputs(3)
    nets = [
        serial(Dense(16, w_std=1.3, b_std=0.2, parameterization=p), Erf(),
               Dense(24, w_std=1.1, b_std=0.1, parameterization=p), ReLU(),
               Dense(2, w_std=0.9, parameterization=p))
        for p in ("ntk", "standard")
    ]  # fmt: skip
    a, b = (four_point_function(net, x) for net in nets)
    for u, v in zip(a.vertices + a.kernels, b.vertices + b.kernels, strict=True):
        assert torch.equal(u, v)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("net", "match"),
    [
        (serial(Conv2d(4, (3, 3)), ReLU(), Dense(1)), "expected Dense"),
        (serial(Dense(4), ReLU(), ReLU(), Dense(1)), "expected Dense"),
        (serial(Dense(4), Dense(4)), "expected an activation"),
        (serial(Dense(4), ReLU()), "ends with an activation"),
        (serial(Dense(4), Sign(), Dense(1)), "jumps"),
    ],
)
def test_bad_nets_are_refused(net, match):
    with pytest.raises(ValueError, match=match):
        four_point_function(net, _inputs(2))


def test_bad_arguments_are_refused():
    net = _net(ReLU(), 2, 8)
    with pytest.raises(ValueError, match="one width per hidden layer"):
        four_point_function(net, _inputs(2), widths=(8, 8, 8))
    with pytest.raises(ValueError, match="widths"):
        four_point_function(net, _inputs(2), widths=0)
    with pytest.raises(ValueError, match="x"):
        four_point_function(net, torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="zero variance"):
        four_point_function(_net(ReLU(), 2, 8, b_std=0.0), torch.zeros(1, 3, dtype=D))
    with pytest.raises(ValueError, match="piecewise-linear"):
        exact_four_point(_net(activation_from_name("tanh"), 2, 8), _inputs(1))
    with pytest.raises(ValueError, match="one input at a time"):
        exact_four_point(net, _inputs(2))
    with pytest.raises(ValueError, match="n_nets"):
        monte_carlo_four_point(net, _inputs(2), n_nets=1)
    with pytest.raises(ValueError, match="more than 8"):
        monte_carlo_four_point(net, _inputs(9), n_nets=10)


# -------------------------------------------------------------------------------- CLI


def test_cli_json_on_stdout_and_plot(tmp_path):
    runner = CliRunner()
    args = ["finite-width", "--net", "Dense(8, w_std=1.4) -> ReLU -> Dense(4)", "--x1", "iris",
            "--n-rows", "2", "--widths", "8,16", "--n-nets", "400", "--no-progress"]  # fmt: skip
    res = runner.invoke(app, [*args, "--json", "--plot", str(tmp_path / "k.png")])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert [(r["width"], r["input"]) for r in data["rows"]] == [(8, 0), (8, 1), (16, 0), (16, 1)]
    for r in data["rows"]:  # one hidden layer: n·kurtosis does not depend on n
        assert r["n_kurtosis_predicted"] == pytest.approx(data["rows"][0]["n_kurtosis_predicted"])
    assert (tmp_path / "k.png").stat().st_size > 0
    bad = runner.invoke(app, [*args[:2], "Dense(8) -> ReLU", *args[3:]])
    assert bad.exit_code == 2 and "Dense readout" in bad.output


# ------------------------------------------------------------------- slow: 1/n convergence


_SLOW_CASES = [
    ("relu", 3, 2**0.5, 0.0),
    ("tanh", 3, 1.0, 0.1),
    ("erf", 3, 1.0, 0.1),
    ("silu", 3, 1.7, 0.1),
    ("relu", 10, 2**0.5, 0.0),
    ("tanh", 10, 1.0, 0.1),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "depth", "w_std", "b_std"), _SLOW_CASES)
def test_monte_carlo_vertex_converges_like_one_over_n(name, depth, w_std, b_std):
    """n·V measured over 10⁴ nets per width (the readout metric's covariance) approaches the
    width-independent prediction n·V like 1/n: the weighted fit n·V = a + b/n has ``a`` within
    4 SE of the prediction, the widest point is within 4 SE, and where the correction is
    resolved a free power law n·V − P = c·n^p gives p = −1 within 3 SE (SE < 0.75).
    Depth 10 starts at n = 32 (at L/n > 1/2 the expansion is not meant to hold)."""
    act = activation_from_name(name)
    x = _inputs(2)
    widths = np.array([16, 32, 64, 128, 256, 512] if depth < 10 else [32, 64, 128, 256, 512])

    def net(n):
        return _net(act, depth, n, w_std=w_std, b_std=b_std, out=4)

    pred = 64 * four_point_function(net(64), x).vertices[-1]
    runs = [
        monte_carlo_four_point(net(int(n)), x, n_nets=10_000, seed=int(n) + depth) for n in widths
    ]

    def power_law(n, c, q):
        return c * n**q

    for idx in [(0, 0, 0, 0), (0, 0, 1, 1)]:
        y = np.array([n * float(m.vertex[idx]) for n, m in zip(widths, runs, strict=True)])
        se = np.array([n * float(m.vertex_se[idx]) for n, m in zip(widths, runs, strict=True)])
        p = float(pred[idx])
        design = np.stack([np.ones(len(widths)), 1 / widths], 1) / se[:, None]
        (a, b), *_ = np.linalg.lstsq(design, y / se, rcond=None)
        cov = np.linalg.inv(design.T @ design)
        assert abs(a - p) < 4 * math.sqrt(cov[0, 0]) + 1e-3 * abs(p), (idx, a, p, cov[0, 0])
        assert abs(y[-1] - p) < 4 * se[-1] + 1e-3 * abs(p)
        # the outputs' own fourth cumulant (no Rao–Blackwell) at the widest net, 4 SE
        if idx == (0, 0, 0, 0):  # one input: κ4 = 3V, so n·κ4 → 3p
            widest, n_max = runs[-1], float(widths[-1])
            gap = abs(n_max * float(widest.cumulant[idx]) - 3 * p)
            assert gap < 4 * n_max * float(widest.cumulant_se[idx]) + 3e-3 * abs(p)
        if abs(b) > 4 * math.sqrt(cov[1, 1]):  # the 1/n correction is resolved: its power
            (_, power), pcov = curve_fit(
                power_law, widths.astype(float), y - p, p0=[b, -1.0],
                sigma=se, absolute_sigma=True, maxfev=20_000,
            )  # fmt: skip
            err = math.sqrt(pcov[1, 1])
            assert abs(power + 1) < max(3 * err, 0.05) and err < 0.75, (power, err)


def _cholesky_trapezoid(fns, cov: np.ndarray, spacing_scale: float = 0.45) -> float:
    """``E[Π_a fns[a](u_a)]`` for ``u ~ N(0, cov)`` (``cov (k, k)``), independently of
    widelimit's rules: a trapezoid in the *Cholesky* basis on ``[−7, 7]`` with spacing
    ``spacing_scale / max_a |L_aj|`` on axis ``j`` (converged to < 1e-9 relative for tanh)."""
    chol = np.linalg.cholesky(cov)
    axes = []
    for s in np.abs(chol).max(0):
        x = np.linspace(-7.0, 7.0, max(40, math.ceil(14.0 * s / spacing_scale) + 1))
        w = np.exp(-x * x / 2)
        axes.append((x, w / w.sum()))
    rest = np.stack([g.ravel() for g in np.meshgrid(*[x for x, _ in axes[1:]], indexing="ij")])
    w_rest = np.prod(np.stack(np.meshgrid(*[w for _, w in axes[1:]], indexing="ij")), 0).ravel()
    total = 0.0
    for x0, w0 in zip(*axes[0], strict=True):
        u = chol[:, :1] * x0 + chol[:, 1:] @ rest  # (k, points)
        prod = np.ones(u.shape[1])
        for a, f in enumerate(fns):
            prod = prod * f(u[a])
        total += w0 * float(prod @ w_rest)
    return total


def _tanh_power(p: int, derivative: bool = False):
    if derivative:
        return lambda v: (1.0 - np.tanh(v) ** 2) ** p
    return lambda v: np.tanh(v) ** p


@pytest.mark.parametrize("q", [4.0, 9.0])
def test_three_and_four_input_expectations_keep_their_accuracy_at_large_variance(q):
    """Regression (quad34): the 3- and 4-input product rules had fixed node counts, so for
    tanh at q = 4 / 9 the entries of 3 distinct inputs were off by 4e-4 / 6e-3 and those of 4
    by 2e-2 / 7e-2 (relative to the largest entry; P, Q worse); the per-axis rule of
    `axis_orders` keeps < 1e-6 (E4) and < 1e-5 (P, Q) (docs/finite_width.md)."""
    act = activation_from_name("tanh")
    k = _cov(4, scale=q)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # q = 9: the 4-input cap (stated there)
        e4 = four_point_expectations(act, k)
    scale = float(e4.abs().max())
    for ds, powers in [
        ((0, 1, 2, 3), (1, 1, 1, 1)),
        ((0, 1, 2), (2, 1, 1)),
        ((1, 2, 3), (1, 2, 1)),
    ]:
        ref = _cholesky_trapezoid([_tanh_power(p) for p in powers], k.numpy()[np.ix_(ds, ds)])
        idx = tuple(d for d, p in zip(ds, powers, strict=True) for _ in range(p))
        assert abs(float(e4[idx]) - ref) < 1e-6 * scale, (idx, float(e4[idx]), ref)
    # φ' products (the NTK's P and Q), three distinct inputs
    k3 = k[:3, :3]
    p4, q4 = derivative_four_point_expectations(act, k3)
    dt = _tanh_power(1, derivative=True)
    ref_p = _cholesky_trapezoid([_tanh_power(2), dt, dt], k3.numpy())  # E[φ0² φ'1 φ'2]
    ref_q = _cholesky_trapezoid([dt, dt, _tanh_power(2, True)], k3.numpy())  # E[φ'0 φ'1 φ'2²]
    assert abs(float(p4[0, 0, 1, 2]) - ref_p) < 1e-5 * float(p4.abs().max())
    assert abs(float(q4[0, 1, 2, 2]) - ref_q) < 1e-5 * float(q4.abs().max())


def test_three_input_rule_warns_with_an_error_estimate_when_its_point_cap_is_hit(monkeypatch):
    from widelimit.finite_width import gaussian

    monkeypatch.setattr(gaussian, "MAX_RULE_POINTS", 20**3)
    k = _cov(3, scale=9.0)
    with pytest.warns(RuntimeWarning, match="estimated relative error"):
        capped = four_point_expectations(activation_from_name("tanh"), k)
    monkeypatch.undo()
    full = four_point_expectations(activation_from_name("tanh"), k)
    # the capped rule is coarser but still a number near the right one, not garbage
    assert float((capped - full).abs().max()) < 0.1 * float(full.abs().max())
