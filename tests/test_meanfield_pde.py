"""PDE solvers: invariants, radial vs general solver, and finite-N SGD converging to the PDE.

Error models are stated beside each tolerance.  The SGD gap tests fit the slope of the
Wasserstein-1 distance between the law of the particle radii ``‖w_i‖`` and the PDE
solution against N: an empirical measure of N particles is ``~ N^{-1/2}`` away in W1
(MMN 2018, Thm. 3); SGD noise adds a bias ``∝ ε/B`` kept below that floor.
"""

import math

import numpy as np
import pytest
import torch
from scipy.special import roots_genlaguerre
from scipy.stats import wasserstein_distance

from widelimit.meanfield import (
    IsotropicGaussians,
    TeacherStudent,
    compare_with_pde,
    solve_particles,
    solve_radial,
    wasserstein1_1d,
)

torch.set_num_threads(1)
F64 = torch.float64


@pytest.fixture(scope="module")
def radial40():
    return solve_radial(
        IsotropicGaussians(), times=np.linspace(0, 2, 11), n_particles=300, progress=False
    )


def test_radial_mass_order_and_monotone_risk(radial40):
    sol = radial40
    assert math.isclose(float(sol.weights.sum()), 1.0, rel_tol=1e-14)  # mass conserved
    r = sol.particles[..., 0]
    # quantile particles of a 1-D Wasserstein flow never cross: the empirical quantile
    # function stays monotone, i.e. the mass between any two quantiles is conserved
    assert bool((r[:, 1:] >= r[:, :-1]).all())
    assert bool((r >= 0).all())
    # continuous-time risk decreases strictly (dR/dt = −4ξ∫|∇Ψ|²dρ < 0)
    assert bool((sol.risk[1:] < sol.risk[:-1]).all())
    assert bool((sol.dissipation >= 0).all())


def test_energy_identity_dR_dt_equals_minus_dissipation():
    """Central difference of R at step h has error ~h²R'''/6 ≲ 1e-4·|R'| here."""
    prob = IsotropicGaussians()
    h = 1e-3
    for t in (1.0,):
        sol = solve_radial(
            prob, times=[0, t - h, t, t + h], n_particles=200, rtol=1e-8, progress=False
        )
        drdt = float(sol.risk[3] - sol.risk[1]) / (2 * h)
        assert drdt == pytest.approx(-float(sol.dissipation[2]), rel=2e-3)


def test_time_change_xi():
    """ξ ≡ 2 run to t equals ξ ≡ 1 run to 2t (the PDE is autonomous up to the clock ξ)."""
    prob = IsotropicGaussians()
    a = solve_radial(prob, times=[0, 0.5], n_particles=100, xi=2.0, rtol=1e-8, progress=False)
    b = solve_radial(prob, times=[0, 1.0], n_particles=100, xi=1.0, rtol=1e-8, progress=False)
    assert torch.allclose(a.particles[-1], b.particles[-1], atol=1e-6)
    c = solve_radial(prob, times=[0, 1.0], n_particles=100, xi=lambda t: 1.0, progress=False)
    assert torch.allclose(c.particles[-1], b.particles[-1], atol=1e-5)


def test_radial_and_general_solver_agree(radial40):
    """General solver, Gauss–Laguerre nodes of ρ₀ (r² d/(2σ₀²) ~ Gamma(d/2)) and pairwise U,
    vs the radial solver (300 midpoint quantiles, tabulated features).  Discretisation
    error of the quantile rule ~1e-5 in R (measured: 3e-5 at M=500); allow 2e-4."""
    prob = IsotropicGaussians()
    u, w = roots_genlaguerre(8, prob.d / 2 - 1)
    r = torch.tensor(np.sqrt(2 * u / prob.d) * prob.init_std, dtype=F64).unsqueeze(-1)
    gen = solve_particles(
        lambda th: prob.V_radial(th[:, 0]),
        lambda a, b: prob.U_radial(a[:, 0], b[:, 0]),
        r,
        weights=torch.tensor(w, dtype=F64),
        r_sharp=prob.r_sharp,
        times=[0, 0.4],
        progress=False,
    )
    ref = [radial40.risk_at(t) for t in (0, 0.4)]
    assert np.allclose(gen.risk.numpy(), ref, atol=2e-4)
    # radius means agree as well
    mean_gen = (gen.weights * gen.particles[-1, :, 0]).sum()
    mean_rad = radial40.particles[2, :, 0].mean()
    assert float(abs(mean_gen - mean_rad)) < 2e-4


def test_general_solver_teacher_student_monotone():
    """ReLU units: the velocity jumps at w = 0, so fixed-step RK4 (adaptive steps stall)."""
    prob = TeacherStudent()
    g = torch.Generator().manual_seed(0)
    th = prob.init_particles(80, seed=g)
    sol = solve_particles(
        prob.V,
        prob.U,
        th,
        r_sharp=prob.r_sharp,
        times=[0, 0.5, 1, 2, 4],
        method="RK4",
        step=0.01,
        progress=False,
    )
    assert bool((sol.risk[1:] < sol.risk[:-1]).all())
    # the discrete risk is exactly the finite-net population risk of the particles
    assert torch.allclose(sol.risk[-1], prob.population_risk(sol.particles[-1]), atol=1e-12)
    assert float(sol.risk[-1]) < 0.05 * float(sol.risk[0])


def test_wasserstein1_vs_scipy():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 50, generator=g, dtype=F64)
    b = torch.randn(70, generator=g, dtype=F64) + 0.3
    wb = torch.rand(70, generator=g, dtype=F64)
    wb = wb / wb.sum()
    ours = wasserstein1_1d(a, b, wb=wb)
    for i in range(3):
        ref = wasserstein_distance(a[i].numpy(), b.numpy(), v_weights=wb.numpy())
        assert float(ours[i]) == pytest.approx(ref, rel=1e-12, abs=1e-14)


def test_solver_errors():
    prob = TeacherStudent()
    th = prob.init_particles(5)
    with pytest.raises(ValueError, match="symmetric"):
        solve_particles(prob.V, lambda a, b: prob.U(a, b) + a[:, :1], th, times=[0, 1])
    with pytest.raises(ValueError, match="strictly increasing"):
        solve_radial(IsotropicGaussians(), times=[0, 1, 1])
    with pytest.raises(TypeError, match="IsotropicGaussians"):
        solve_radial(prob, times=[0, 1])


def _fit(ns, y):
    return float(np.polyfit(np.log(ns), np.log(y), 1)[0])


def test_sgd_converges_to_pde_w1_slope_small():
    """d = 20, N = 32…256, t = 0.25, ε/B = 8e-6 (SGD-noise bias ≪ W1 floor ~0.1/√N);
    8 seeds per N so the fitted slope has sd ≈ 0.05 (measured over seeds)."""
    comp = compare_with_pde(
        IsotropicGaussians(d=20),
        ns=(32, 64, 128, 256),
        times=(0.0, 0.25),
        eps=5e-4,
        batch_size=64,
        n_seeds=8,
        n_particles=500,
        compute_risk=False,
        progress=False,
    )
    w1 = np.asarray(comp.w1)
    assert abs(comp.w1_slope[0.25] - (-0.5)) <= 0.25
    assert w1[-1, -1] < 0.5 * w1[0, -1]


@pytest.mark.slow
def test_sgd_converges_to_pde_full_d40():
    """The issue's setting: d = 40, N = 100…1600; W1 slope −½ and risk-gap slope −1 (±0.25)."""
    comp = compare_with_pde(
        ns=(100, 200, 400, 800, 1600),
        times=(0.0, 0.5, 1.0),
        eps=5e-4,
        batch_size=128,
        n_seeds=2,
        n_particles=2000,
        progress=False,
    )
    assert abs(comp.w1_slope[0.5] + 0.5) <= 0.25
    assert abs(comp.w1_slope[1.0] + 0.5) <= 0.25
    assert abs(comp.risk_gap_slope[0.5] + 1.0) <= 0.25
