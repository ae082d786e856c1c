"""Drifts of the covariance SDE vs one-layer Monte Carlo of the finite-width map.

Route: the exact finite map is Φ ↦ c·mean_i φ_s(g_i)φ_s(g_i)ᵀ with g_i ~ N(0, Φ); its
expected increment times n must converge to b(Φ).  We estimate
n·E[c φ_s(g)φ_s(g)ᵀ − g gᵀ] by antithetic Monte Carlo (g and −g; odd terms of order
n^{-1/2}·n cancel exactly), error model: |MC − b| ≤ 5·SE + bias, with bias the
O(n^{-1/2}) (ReLU: gain c − 1 ≈ −(c₊+c₋)/√n) or O(1/n) (smooth) finite-width correction.
This is also the sign check DESIGN.md §7 asks for: a flipped sign is off by 2|b| ≫ tol.
"""

import math

import pytest
import torch

from widelimit.layers.activations import ReLU
from widelimit.sde import (
    ReLUDrift,
    ShapedReLU,
    SmoothDrift,
    SmoothShaped,
    b_star,
    derivatives_at_zero,
    norm_stability,
    relu_nu,
)

PHI = torch.tensor([[1.3, 0.4, -0.2], [0.4, 0.8, 0.1], [-0.2, 0.1, 0.6]], dtype=torch.float64)


def _mc_increment(act, phi, n, samples, gen):
    chol = torch.linalg.cholesky(phi)
    g = torch.randn((samples, phi.shape[0]), generator=gen, dtype=torch.float64) @ chol.T
    a, b = act(g), act(-g)
    outer = (a.unsqueeze(-1) * a.unsqueeze(-2) + b.unsqueeze(-1) * b.unsqueeze(-2)) / 2
    x = n * (act.gain * outer - g.unsqueeze(-1) * g.unsqueeze(-2))
    return x.mean(0), x.std(0) / math.sqrt(samples)


@pytest.mark.parametrize(("c_plus", "c_minus"), [(0.0, -1.0), (0.5, -1.5), (-1.0, 1.0)])
def test_relu_drift_matches_one_layer_monte_carlo(c_plus, c_minus):
    n = 16384
    act = ShapedReLU.shaped(c_plus, c_minus, n)
    mean, se = _mc_increment(act, PHI, n, 200_000, torch.Generator().manual_seed(1))
    b = act.drift()(PHI)
    bias = 2 * abs(c_plus + c_minus) / math.sqrt(n) * b.abs()  # gain c = 1 + O(n^-1/2)
    assert torch.all((mean - b).abs() <= 5 * se + bias + 1e-10), (mean, b)
    off = ~torch.eye(3, dtype=torch.bool)
    assert torch.all(b[off] > 0)  # ν ≥ 0: the shaping pushes correlations up
    assert torch.all(b.diagonal() == 0)


@pytest.mark.parametrize(
    ("name", "a"), [("tanh", 1.0), ("sin", 0.8), ("sinh", 0.7), ("quadratic", 1.0)]
)
def test_smooth_drift_matches_one_layer_monte_carlo(name, a):
    n = 4096
    act = SmoothShaped(name, a, n)
    mean, se = _mc_increment(act, PHI, n, 200_000, torch.Generator().manual_seed(2))
    b = act.drift()(PHI)
    # bias O(1/n)·(moments of Φ up to order 3) — a generous 30/n
    assert torch.all((mean - b).abs() <= 5 * se + 30 / n), (mean, b)


def test_nu_closed_form_equals_arccos_kernel_form():
    # ν(ρ) = κ (K₁(ρ) − ρ) with K₁ the arc-cosine map (Cho & Saul, independent code path)
    drift = ReLUDrift(0.3, -1.2)
    rho = torch.linspace(-1, 1, 401, dtype=torch.float64)
    phi = torch.stack(
        [torch.stack([torch.ones_like(rho), rho]), torch.stack([rho, torch.ones_like(rho)])]
    )
    phi = phi.permute(2, 0, 1)
    ones = torch.ones_like(rho)
    k1 = 2 * ReLU().dual(ones, ones, rho, ntk=False)[0]  # Cho & Saul, layers/activations.py
    assert torch.allclose(drift.strength * (k1 - rho), relu_nu(rho, 0.3, -1.2), atol=1e-12)
    # the drift flow is the convex combination (1 − θ)Φ + θK₁(Φ)
    h = 0.3
    theta = 1 - math.exp(-drift.strength * h)
    assert torch.allclose(drift.flow(phi, h)[:, 0, 1], (1 - theta) * rho + theta * k1, atol=1e-12)
    # hand values: ν(0) = (c₊−c₋)²/(2π), ν(1) = 0, ν(−1) = (c₊−c₋)²/2
    k = (0.3 + 1.2) ** 2
    assert float(relu_nu(torch.tensor(0.0, dtype=torch.float64), 0.3, -1.2)) == pytest.approx(
        k / (2 * math.pi), rel=1e-12
    )
    assert float(relu_nu(torch.tensor(1.0, dtype=torch.float64), 0.3, -1.2)) == pytest.approx(
        0, abs=1e-15
    )
    assert float(relu_nu(torch.tensor(-1.0, dtype=torch.float64), 0.3, -1.2)) == pytest.approx(
        k / 2, rel=1e-12
    )
    # the small-angle series joins the direct formula continuously
    theta = torch.tensor([0.999e-3, 1.001e-3], dtype=torch.float64)
    vals = relu_nu(torch.cos(theta), 0.3, -1.2)
    assert float(vals[1] / vals[0]) == pytest.approx((1.001 / 0.999) ** 3, rel=1e-5)


@pytest.mark.parametrize(
    "drift", [ReLUDrift(0.0, -1.0), SmoothDrift(1.0, -2.0, 0.7), SmoothDrift(0.0, 1.0, 1.0)]
)
def test_flow_is_first_order_consistent_with_drift(drift):
    errs = []
    for h in (1e-2, 1e-3, 1e-4):
        errs.append(float(((drift.flow(PHI, h) - PHI) / h - drift(PHI)).abs().max()))
    # O(h) error: each tenfold smaller step cuts it ~tenfold
    assert errs[1] < errs[0] / 5 and errs[2] < errs[1] / 5


def test_one_input_smooth_drift_is_b_star_logistic():
    d = SmoothDrift(0.7, -0.4, 1.3)
    phi = torch.tensor([[2.5]], dtype=torch.float64)
    assert float(d(phi)) == pytest.approx(d.b_star * 2.5 * 1.5, rel=1e-12)


def test_derivatives_and_b_star_hand_values():
    # tanh: φ'' = 0, φ''' = −2; sin: 0, −1; sinh: 0, +1; x + x²/2: 1, 0
    assert derivatives_at_zero("tanh") == pytest.approx((0, 1, 0, -2), abs=1e-12)
    assert derivatives_at_zero("quadratic") == pytest.approx((0, 1, 1, 0), abs=1e-12)
    assert b_star("tanh", 1.0) == pytest.approx(-2.0)
    assert b_star("sin", 2.0) == pytest.approx(-0.25)
    assert b_star("sinh", 1.0) == pytest.approx(1.0)
    assert b_star("quadratic", 0.5) == pytest.approx(3.0)
    assert b_star(lambda x: torch.log1p(x), 1.0) == pytest.approx(0.75 * 1 + 2)  # φ''=−1, φ'''=2
    assert norm_stability("tanh", 1.0).stable
    assert not norm_stability("quadratic", 1.0).stable


def test_shaped_relu_slopes_and_gain():
    act = ShapedReLU.shaped(0.0, -1.0, 256)
    assert (act.s_plus, act.s_minus) == (1.0, 1 - 1 / 16)
    assert act.gain == pytest.approx(2 / (1 + (15 / 16) ** 2))
    x = torch.tensor([-2.0, 0.0, 3.0], dtype=torch.float64)
    assert torch.equal(act(x), torch.tensor([-2 * 15 / 16, 0.0, 3.0], dtype=torch.float64))
    assert torch.equal(ShapedReLU.unshaped()(x), torch.relu(x))
    # identity when c₊ = c₋ = 0: the linear network
    assert torch.equal(ShapedReLU.shaped(0, 0, 10)(x), x) and ShapedReLU.shaped(0, 0, 10).gain == 1


def test_smooth_gain_normalises_unit_variance():
    act = SmoothShaped("sinh", 0.5, 16)
    g = torch.randn(2_000_000, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    second = act(g).pow(2)
    # MC of E[φ_s(g)²]·c = 1 within 5 standard errors
    assert abs(act.gain * float(second.mean()) - 1) < 5 * act.gain * float(
        second.std()
    ) / math.sqrt(g.numel())


def test_errors():
    with pytest.raises(ValueError, match="φ'\\(0\\) = 1"):
        SmoothShaped(torch.sigmoid, 1.0, 16)
    with pytest.raises(ValueError, match="`activation`"):
        SmoothShaped("relu6", 1.0, 16)
    with pytest.raises(ValueError, match="`a`"):
        SmoothShaped("tanh", -1.0, 16)
    with pytest.raises(ValueError, match="`width`"):
        ShapedReLU.shaped(0, -1, 0)
    with pytest.raises(TypeError, match="`width`"):
        ShapedReLU.shaped(0, -1, 2.5)
    with pytest.raises(ValueError, match="no covariance-SDE"):
        ShapedReLU.unshaped().drift()
    with pytest.raises(ValueError, match="`c_minus`"):
        ShapedReLU.shaped(0, float("nan"), 4)


def _sigma(phi):
    # Σ^{αβ,γδ} = Φ^{αγ}Φ^{βδ} + Φ^{αδ}Φ^{βγ} (DESIGN.md §7), written out independently
    return torch.einsum("ac,bd->abcd", phi, phi) + torch.einsum("ad,bc->abcd", phi, phi)


def test_finite_layer_noise_covariance_is_sigma():
    # one layer: n·Cov(ΔΦ) = Cov_neuron(c φ_s(g)φ_s(g)ᵀ) → Σ(Φ) (+ O(n^{-1/2}) for ReLU)
    n, samples = 4096, 400_000
    act = ShapedReLU.shaped(0.0, -1.0, n)
    chol = torch.linalg.cholesky(PHI)
    g = torch.randn((samples, 3), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    a = act(g @ chol.T)
    y = (act.gain * a.unsqueeze(-1) * a.unsqueeze(-2)).reshape(samples, 9)
    cov = torch.cov(y.T).reshape(3, 3, 3, 3)
    # sampling error of a 4th-moment estimate: ~ 8 max|Σ| / √samples at 5 s.e.
    tol = 8 * float(_sigma(PHI).abs().max()) * 5 / math.sqrt(samples) + 4 / math.sqrt(n)
    assert float((cov - _sigma(PHI)).abs().max()) < tol
