"""Signal propagation maps, fixed points and the critical line against independent routes.

Routes: closed forms written here (ReLU, erf), scipy quadrature (tanh), the core's
NNGP recursion (``net.kernel``), plain iteration of the maps.  All float64.
"""

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from widelimit.layers.activations import ACTIVATIONS, Erf, ReLU, Sign, Tanh
from widelimit.propagation import (
    c_map,
    c_star,
    chi1,
    critical_line,
    critical_w_std,
    fixed_point,
    propagation_net,
    q_map,
    q_star,
    trajectory,
)


def _erf_v(q):
    """E[erf(√q z)²] = (2/π) arcsin(2q/(1+2q)) (Williams 1997), written independently."""
    return 2 / math.pi * math.asin(2 * q / (1 + 2 * q))


def _erf_d(q):
    """E[erf'(√q z)²] = (4/π)/√(1+4q)."""
    return 4 / math.pi / math.sqrt(1 + 4 * q)


def _tanh_v(q):
    f = lambda z: math.tanh(math.sqrt(q) * z) ** 2 * math.exp(-z * z / 2)  # noqa: E731
    return integrate.quad(f, -40, 40, epsabs=1e-15, epsrel=1e-13, limit=200)[0] / math.sqrt(
        2 * math.pi
    )


def _iterate_q(act, sw, sb, q=1.0, n=400):
    """q* by plain iteration of the q-map (independent of the bracketing solver)."""
    for _ in range(n):
        q_new = float(q_map(act, q, sw, sb))
        if abs(q_new - q) <= 2e-16 * q:
            return q_new
        q = q_new
    return q


# ----------------------------------------------------------------- the maps


@pytest.mark.parametrize("q", [0.0, 1e-3, 0.7, 5.0, 300.0])
def test_q_map_closed_forms_and_quadrature(q):
    sw, sb = 1.3, 0.4
    assert float(q_map(ReLU(), q, sw, sb)) == pytest.approx(sw**2 * q / 2 + sb**2, rel=1e-14)
    assert float(q_map(Erf(), q, sw, sb)) == pytest.approx(sw**2 * _erf_v(q) + sb**2, rel=1e-13)
    # quadrature dual vs scipy.quad (both ~1e-12 accurate)
    assert float(q_map(Tanh(), q, sw, sb)) == pytest.approx(
        sw**2 * _tanh_v(q) + sb**2, rel=1e-9, abs=1e-15
    )


def _c_map_activations():
    out = []
    for name, ctor in sorted(ACTIVATIONS.items()):
        act = ctor()
        if isinstance(act, Sign) or name == "rectified_monomial":
            continue  # jump at 0 (or k = 1 = ReLU, covered): φ' is a delta, χ₁ undefined
        out.append(pytest.param(act, id=name))
    return out


@pytest.mark.parametrize("act", _c_map_activations())
def test_c_equal_one_is_fixed_point_and_slope_is_chi1(act):
    """c = 1 is a fixed point of the c-map for every activation, and the c-map's slope
    there is χ₁ (Poole et al. 2016, eq. (7)).

    Independent routes: the slope is a finite difference of the *NNGP* part of
    the dual at c < 1, χ₁ the *NTK* part at c = 1.  Error model: the c-map is
    ``1 − χ₁ ε + O(ε^{3/2})`` at ``c = 1 − ε`` (ε^{3/2}: kinks), and the dual
    has ≤ 1e-9 relative error, so with ε = 1e-4 the relative error is
    ≲ C·ε^{1/2} + 1e-9/ε ≈ 1e-2.
    """
    sw, sb, q = 0.8, 0.3, 0.6
    assert float(c_map(act, 1.0, q, sw, sb)) == pytest.approx(1.0, abs=1e-12)
    eps = 1e-4
    slope = (1 - float(c_map(act, 1 - eps, q, sw, sb))) / eps
    q_next = float(q_map(act, q, sw, sb))
    # at a general q the slope is σw² q E[φ'φ'] / q_next (chain rule); = χ₁ at q = q*
    _, dd = act.dual(*(torch.tensor(q, dtype=torch.float64),) * 3)
    assert slope == pytest.approx(sw**2 * q * float(dd) / q_next, rel=3e-2)


def test_c_map_slope_at_q_star_is_chi1_tanh():
    sw, sb = 1.2, 0.3
    qs = q_star(Tanh(), sw, sb)
    eps = 1e-5
    # smooth φ: central-free one-sided difference with O(ε) error, Richardson to O(ε²)
    d1 = (1 - float(c_map(Tanh(), 1 - eps, qs, sw, sb))) / eps
    d2 = (1 - float(c_map(Tanh(), 1 - 2 * eps, qs, sw, sb))) / (2 * eps)
    assert 2 * d1 - d2 == pytest.approx(chi1(Tanh(), sw, sb), rel=1e-6)


@pytest.mark.parametrize("act", [ReLU(), Erf(), Tanh()], ids=["relu", "erf", "tanh"])
def test_trajectory_equals_core_nngp_recursion(act):
    """Two routes: the propagation trajectory vs ``net.kernel(x)`` of a serial net of
    the same depth (diagonal = q^l, off-diagonal = c^l √(q q'))."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    sw, sb, depth = 1.4, 0.2, 5
    traj = trajectory(act, sw, sb, depth, input_cov=x @ x.T / x.shape[1])
    for l in range(1, depth + 1):
        k = propagation_net(act, sw, sb, l).kernel(x, get="nngp")
        np.testing.assert_allclose(traj.cov[l - 1], k.nngp.numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(traj.q[l - 1], k.cov1.numpy(), rtol=1e-12)
        c = k.nngp / torch.sqrt(k.cov1[:, None] * k.cov1[None, :])
        np.testing.assert_allclose(traj.c[l - 1], c.numpy(), rtol=1e-12, atol=1e-14)


def test_trajectory_default_two_inputs():
    traj = trajectory(Erf(), 1.0, 0.5, 3, q0=2.0, c0=0.25)
    q1 = 1.0 * 2.0 + 0.25
    assert traj.q[0, 0] == pytest.approx(q1) and traj.c[0, 0, 1] == pytest.approx(0.75 / q1)
    assert traj.q[1, 0] == pytest.approx(_erf_v(q1) + 0.25, rel=1e-13)


# ------------------------------------------------------- known critical points


def test_relu_critical_at_two_preserves_q_exactly():
    sw = math.sqrt(2.0)
    traj = trajectory(ReLU(), sw, 0.0, 30, q0=1.7, c0=0.3)
    np.testing.assert_allclose(traj.q[:, 0], 2 * 1.7, rtol=1e-13)  # q-map is the identity
    assert critical_w_std(ReLU(), 0.0)[0] ** 2 == pytest.approx(2.0, rel=1e-12)
    assert chi1(ReLU(), 1.0, 0.0) == pytest.approx(0.5, rel=1e-14)  # σw²/2 (q → 0⁺)
    # with σb > 0 the q-map has no finite fixed point at χ₁ = 1 (reported as q* = inf)
    line = critical_line(ReLU(), [0.0, math.sqrt(0.1)], progress=False)  # b_std
    np.testing.assert_allclose(line.w_std**2, 2.0, rtol=1e-12)
    assert not line.finite_q[1] and math.isinf(line.q_star[1])


def test_tanh_critical_at_one_and_erf_at_pi_over_4():
    """σb = 0: critical at σw² = 1/φ'(0)² (tanh'(0) = 1, erf'(0) = 2/√π).

    Error model: at σb = 0 the transition is transcritical and χ₁ − 1 = O(δ²) on
    the chaotic side (δ = σw² − σw²_c), so Brent's method resolves σw² only to
    ~√eps ≈ 1.5e-8 — tolerance 1e-6.  On the ordered side q* = 0 exactly and
    χ₁ = σw² φ'(0)² in closed form.
    """
    assert critical_w_std(Tanh(), 0.0)[0] ** 2 == pytest.approx(1.0, abs=1e-6)
    assert critical_w_std(Erf(), 0.0)[0] ** 2 == pytest.approx(math.pi / 4, abs=1e-6)
    for w2 in (0.3, 0.7, 0.99):
        assert q_star(Tanh(), math.sqrt(w2), 0.0) == 0.0
        assert chi1(Tanh(), math.sqrt(w2), 0.0) == pytest.approx(w2, rel=1e-10)
        assert chi1(Erf(), math.sqrt(w2 * math.pi / 4), 0.0) == pytest.approx(w2, rel=1e-12)
    assert fixed_point(Tanh(), 1.0, 0.0).phase == "critical"
    assert fixed_point(Erf(), math.sqrt(math.pi / 4), 0.0).phase == "critical"
    assert fixed_point(Tanh(), 0.9, 0.0).phase == "ordered"
    assert fixed_point(Tanh(), 1.1, 0.0).phase == "chaotic"


def test_erf_critical_line_matches_parametric_closed_form():
    """Independent route: on χ₁ = 1, σw² = 1/D(q*) and σb² = q* − σw² V(q*) in closed
    form (erf), parametrised by q*; the root finder must recover σw² from σb²."""
    for qs in (0.05, 0.4, 2.0):
        w2 = 1 / _erf_d(qs)
        b2 = qs - w2 * _erf_v(qs)
        got, q_got = critical_w_std(Erf(), math.sqrt(b2))
        assert got**2 == pytest.approx(w2, rel=1e-11)
        assert q_got == pytest.approx(qs, rel=1e-10)


_LINE_B2 = (0.0, 0.05, 0.5, 1.0)


@pytest.fixture(scope="module")
def lines():
    """Critical lines of tanh (quadrature dual) and erf (closed form), computed once."""
    return {
        "tanh": (Tanh(), critical_line(Tanh(), np.sqrt(_LINE_B2), progress=False)),
        "erf": (Erf(), critical_line(Erf(), np.sqrt(_LINE_B2), progress=False)),
    }


@pytest.mark.parametrize("name", ["tanh", "erf"])
def test_chi1_is_one_along_critical_line(lines, name):
    """χ₁ = 1 to 1e-8 at the found roots, with q* re-solved by plain iteration of the
    q-map (independent of the bracketing solver); χ_q < 1 so it converges geometrically."""
    act, line = lines[name]
    np.testing.assert_allclose(line.chi1, 1.0, atol=1e-8)
    for i in range(1, len(line.w_std)):
        sw, sb = line.w_std[i], line.b_std[i]
        w2 = sw * sw
        qs = _iterate_q(act, sw, sb)
        assert qs == pytest.approx(line.q_star[i], rel=1e-10)
        t = torch.tensor(qs, dtype=torch.float64)
        _, dd = act.dual(t, t, t)
        assert abs(w2 * float(dd) - 1) <= 1e-8


def test_tanh_critical_line_is_increasing_and_consistent(lines):
    _, line = lines["tanh"]
    assert line.w_std[0] ** 2 == pytest.approx(1.0, abs=1e-6)  # σb = 0: see test above
    assert np.all(np.diff(line.w_std) > 0) and np.all(line.finite_q)


# -------------------------------------------------- fixed points, depth scales


def test_q_star_and_chi_q_erf_closed_form():
    sw, sb = 1.5, 0.3
    fp = fixed_point(Erf(), sw, sb)
    assert fp.q_star == pytest.approx(sw**2 * _erf_v(fp.q_star) + sb**2, rel=1e-14)
    assert fp.q_star == pytest.approx(_iterate_q(Erf(), sw, sb), rel=1e-12)
    # V'(q) = (4/π)/((1+2q)√(1+4q)), derived by hand from the arcsin form
    dv = 4 / math.pi / ((1 + 2 * fp.q_star) * math.sqrt(1 + 4 * fp.q_star))
    assert fp.chi_q == pytest.approx(sw**2 * dv, rel=1e-6)  # 5-point FD error ≲ 1e-7
    assert fp.chi1 == pytest.approx(sw**2 * _erf_d(fp.q_star), rel=1e-13)
    assert fp.xi_q == pytest.approx(-1 / math.log(fp.chi_q), rel=1e-12)


def test_depth_scales_match_iteration_rates_tanh():
    """ξ_q, ξ_c are the inverse log-rates of the approach to q*, c* (Schoenholz et al.
    2017): measured here from plain iterates (ratio of successive distances)."""
    sw, sb = 1.5, 0.3
    fp = fixed_point(Tanh(), sw, sb)
    assert fp.phase == "chaotic" and 0 < fp.c_star < 1
    q = fp.q_star * 1.001
    errs = []
    for _ in range(4):
        q = float(q_map(Tanh(), q, sw, sb))
        errs.append(q - fp.q_star)
    # linearisation error O(distance) ≈ 1e-3 relative
    assert errs[-1] / errs[-2] == pytest.approx(fp.chi_q, rel=5e-3)
    c = fp.c_star + 1e-4
    cerrs = []
    for _ in range(4):
        c = float(c_map(Tanh(), c, fp.q_star, sw, sb))
        cerrs.append(c - fp.c_star)
    assert cerrs[-1] / cerrs[-2] == pytest.approx(fp.chi_c, rel=1e-3)
    assert fp.xi_c == pytest.approx(-1 / math.log(fp.chi_c))


def test_c_star_symmetry_and_phases():
    # odd φ without bias: the c-map is odd, so the chaotic fixed point is c* = 0
    assert abs(c_star(Tanh(), 1.5, 0.0)) <= 1e-10
    assert c_star(Tanh(), 0.8, 0.1) == 1.0  # ordered: correlations converge to 1
    fp = fixed_point(Tanh(), 1.0, 0.0)
    assert math.isinf(fp.xi_c)  # critical: no exponential decay


# ------------------------------------------------------------------- errors


def test_errors_are_clear():
    with pytest.raises(TypeError, match="activation layer"):
        q_map("tanh", 1.0, 1.0, 0.0)
    with pytest.raises(TypeError, match=r"Tanh\(\)"):
        q_map(Tanh, 1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="w_std"):
        q_map(Tanh(), 1.0, -1.0, 0.0)
    with pytest.raises(ValueError, match="`q`"):
        q_map(Tanh(), -1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="`c`"):
        c_map(Tanh(), 1.5, 1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="non-finite"):
        q_map(Tanh(), float("nan"), 1.0, 0.0)
    with pytest.raises(ValueError, match="depth"):
        trajectory(Tanh(), 1.0, 0.0, 0)
    with pytest.raises(ValueError, match="b_std"):
        critical_w_std(Tanh(), -0.1)
