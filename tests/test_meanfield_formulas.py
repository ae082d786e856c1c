"""Mean-field formulas (V, U, risks, Hermite coefficients) against independent routes.

Error model for Monte Carlo checks: a sample mean of ``n`` i.i.d. draws has standard
error ``sd/√n``; we accept ``|analytic − MC| ≤ 5 SE`` (two-sided false-alarm rate
< 1e-6 per check).  Deterministic routes (scipy quad, a second quadrature) are compared
at tolerances set by their own accuracy.
"""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from widelimit import ReLU
from widelimit.meanfield import IsotropicGaussians, PiecewiseLinear, TeacherStudent, relu_kernel

torch.set_num_threads(1)
F64 = torch.float64


def _close_mc(analytic, samples, n_se=5.0):
    """Assert ``analytic`` is within ``n_se`` standard errors of ``samples.mean(-1)``."""
    mean = samples.mean(-1)
    se = samples.std(-1) / math.sqrt(samples.shape[-1])
    err = (analytic - mean).abs()
    assert bool((err <= n_se * se + 1e-12).all()), (analytic, mean, se)


def test_piecewise_gauss_moments_vs_scipy_quad():
    sig = PiecewiseLinear(t1=0.3, t2=1.7, s1=-1.0, s2=4.0)
    s_vals = [0.05, 0.4, 1.0, 3.0]
    s = torch.tensor(s_vals, dtype=F64)
    alpha = sig.hermite_coefficients(s, 7)
    m2 = sig.gauss_second_moment(s)
    for i, sv in enumerate(s_vals):

        def sig_np(t):  # σ written independently in numpy
            return sig.s1 + (sig.s2 - sig.s1) * np.clip((t - sig.t1) / (sig.t2 - sig.t1), 0, 1)

        def f(z, sv=sv, sig_np=sig_np):
            return sig_np(sv * z) * stats.norm.pdf(z)

        pts = [sig.t1 / sv, sig.t2 / sv]
        for k in range(7):
            he = np.polynomial.hermite_e.HermiteE.basis(k)
            ref = integrate.quad(
                lambda z, k=k, he=he: f(z) * he(z), -40, 40, points=pts, limit=400, epsabs=1e-13
            )[0] / math.sqrt(math.factorial(k))
            assert abs(float(alpha[i, k]) - ref) < 1e-9
        ref2 = integrate.quad(
            lambda z, sv=sv, sig_np=sig_np: sig_np(sv * z) ** 2 * stats.norm.pdf(z),
            -40,
            40,
            points=pts,
            limit=400,
        )[0]
        assert abs(float(m2[i]) - ref2) < 1e-9
    # derivative vs central differences (h = 1e-6: truncation ~1e-12, rounding ~1e-10)
    _, da = sig.hermite_coefficients(s, 30, derivative=True)
    h = 1e-6
    fd = (sig.hermite_coefficients(s + h, 30) - sig.hermite_coefficients(s - h, 30)) / (2 * h)
    assert torch.allclose(da, fd, atol=1e-7)


def test_pair_expectation_mehler_vs_quadrature_vs_mc():
    sig = PiecewiseLinear()
    a = torch.tensor([0.3, 1.0, 2.5, 0.8], dtype=F64)
    b = torch.tensor([1.2, 0.7, 0.4, 2.0], dtype=F64)
    c = torch.tensor([0.3, 0.6, -0.6, -0.2], dtype=F64)
    quad = sig.pair_expectation_quadrature(a, b, c)
    K = 400  # |c|^K sup σ² < 1e-80: Mehler truncation negligible
    mehler = (
        sig.hermite_coefficients(a, K)
        * sig.hermite_coefficients(b, K)
        * c.unsqueeze(-1) ** torch.arange(K)
    ).sum(-1)
    assert torch.allclose(quad, mehler, atol=1e-9, rtol=0)
    g = torch.Generator().manual_seed(3)
    z1 = torch.randn(4, 400_000, generator=g, dtype=F64)
    z2 = c[:, None] * z1 + (1 - c[:, None] ** 2).sqrt() * torch.randn(
        4, 400_000, generator=g, dtype=F64
    )
    _close_mc(quad, sig(a[:, None] * z1) * sig(b[:, None] * z2))
    # |c| = 1 exactly: E σ(aZ)σ(bZ) from the second moment when a = b
    one = torch.ones(1, dtype=F64)
    assert torch.allclose(
        sig.pair_expectation_quadrature(one, one, one), sig.gauss_second_moment(one), atol=1e-9
    )


def test_isotropic_V_and_U_vs_monte_carlo_on_data():
    prob = IsotropicGaussians(d=12, tol=1e-9)
    g = torch.Generator().manual_seed(1)
    r = torch.tensor([0.4, 1.1, 2.0], dtype=F64)
    x, y = prob.sample(200_000, seed=g)
    u = torch.randn(3, prob.d, generator=g, dtype=F64)
    w = r[:, None] * u / u.norm(dim=1, keepdim=True)
    _close_mc(prob.V(w), -(y[:, None] * prob.unit(w, x)).T)
    # Ū(r, r'): fresh independent uniform directions for every sample
    n = 200_000
    u1 = torch.randn(n, prob.d, generator=g, dtype=F64)
    u2 = torch.randn(n, prob.d, generator=g, dtype=F64)
    u1, u2 = u1 / u1.norm(dim=1, keepdim=True), u2 / u2.norm(dim=1, keepdim=True)
    x, _ = prob.sample(n, seed=g)
    ra, rb = 0.9, 1.6
    prod = prob.activation(ra * (u1 * x).sum(1)) * prob.activation(rb * (u2 * x).sum(1))
    ubar = prob.U_radial(torch.tensor([ra], dtype=F64), torch.tensor([rb], dtype=F64))[0, 0]
    _close_mc(ubar, prod)


def test_isotropic_finite_risk_vs_monte_carlo_and_radial():
    prob = IsotropicGaussians(d=10, tol=1e-9)
    g = torch.Generator().manual_seed(2)
    w = prob.init_particles(25, seed=g) * 2.0
    x, y = prob.sample(400_000, seed=g)
    loss = (y - prob.unit(w, x).mean(-1)) ** 2
    _close_mc(prob.population_risk(w), loss)
    # the pairwise quadrature U agrees with the Mehler/closed-form risk (independent routes)
    r_pairs = prob.r_sharp + 2 * prob.V(w).mean() + prob.U(w, w).mean()
    assert abs(float(r_pairs - prob.population_risk(w))) < 1e-8


def test_teacher_student_formulas():
    prob = TeacherStudent(noise_std=0.3)
    g = torch.Generator().manual_seed(4)
    th = prob.init_particles(6, seed=g)
    x, y = prob.sample(400_000, seed=g)
    _close_mc(prob.population_risk(th), (y - prob.unit(th, x).mean(-1)) ** 2)
    _close_mc(torch.tensor(prob.r_sharp, dtype=F64), y**2)
    # relu_kernel equals the library's ReLU dual (now its source; closed-form check in
    # tests/test_shared_formulas.py)
    w = th[:, 1:]
    q = (w * w).sum(-1)
    k_ref, _ = ReLU().dual(q[:, None], q[None, :], w @ w.T, ntk=False)
    assert torch.allclose(relu_kernel(w, w), k_ref, rtol=1e-10, atol=1e-12)


def test_sgd_direction_matches_pde_velocity():
    """Time convention: E[2(y − ŷ)∇σ*(x; θ_i)] = −2∇Ψ(θ_i; ρ̂) = −N ∂R_N/∂θ_i."""
    for prob in (IsotropicGaussians(d=8, tol=1e-9), TeacherStudent()):
        g = torch.Generator().manual_seed(5)
        th = prob.init_particles(5, seed=g) * 1.5
        th_req = th.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(prob.population_risk(th_req), th_req)
        target = -5 * grad  # −N ∂R_N/∂θ_i
        x, y = prob.sample(300_000, seed=g)
        resid = y - prob.unit(th, x).mean(-1)
        chunks = torch.stack(
            [2 * prob.sgd_direction(th, x[j::50], resid[j::50]) for j in range(50)], dim=-1
        )  # 50 batch means
        _close_mc(target, chunks)


@pytest.mark.parametrize(
    "bad",
    [dict(d=0), dict(delta=1.0), dict(delta=-0.1), dict(init_std=0.0)],
)
def test_isotropic_bad_arguments(bad):
    with pytest.raises((ValueError, TypeError)):
        IsotropicGaussians(**bad)


def test_bad_activation_and_teacher():
    with pytest.raises(ValueError, match="t1 < t2"):
        PiecewiseLinear(t1=1.0, t2=0.5)
    with pytest.raises(ValueError, match="teacher_a"):
        TeacherStudent(teacher_a=(1.0,))
    with pytest.raises(ValueError, match="too small"):
        _ = IsotropicGaussians(d=3).n_terms
