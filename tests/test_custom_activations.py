"""User-supplied duals (``Activation(fn, dual_fn=...)``), the affine forms of Erf/Exp/Gaussian,
and ``Polynomial``, ``Gabor``, ``ExpNormalized`` against independent routes.

References:

* ``_gauss_hermite``: a tensor Gauss–Hermite rule (numpy, 200×200 nodes) for
  ``E[f(u) g(v)]`` with ``u = √q1 z1``, ``v = √q2 (c z1 + √(1 − c²) z2)``.  Every
  function checked with it is entire, and variances (≤ 2) and parameters are chosen so
  that no factor is narrower than ``e^{−7 z²}``, which the rule integrates to ~1e-13
  (it is exact for polynomials of degree < 400).  Sharper cases (``E[φ'φ']`` of
  ``erf(1.8 x)`` at q = 30 is ``e^{−194 z²}``) are checked against the next reference.
* widelimit's own quadrature (``widelimit._quadrature.gaussian_dual``; ≤ 1e-10
  relative against nested scipy quad, ``tests/test_quadrature.py``).
* Price's theorem ``∂E[φ(u)φ(v)]/∂s12 = E[φ'(u)φ'(v)]`` by autograd.
* Monte Carlo through finite one-hidden-layer networks.
* Neural Tangents 0.6.5 (optional: a subprocess in its own environment, skipped when absent).

Error model of the deterministic checks: ``|closed − ref| ≤ 1e-9 · scale`` with
``scale = √(E[φ(u)²] E[φ(v)²])`` (Cauchy–Schwarz bound on the value), as the
references are accurate to ~1e-12 of it.
"""

from __future__ import annotations

import json
import math
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from widelimit import parse_net
from widelimit._quadrature import gaussian_dual
from widelimit.layers import (
    ACTIVATIONS,
    Activation,
    Dense,
    Elementwise,
    Erf,
    Exp,
    ExpNormalized,
    Gabor,
    Gaussian,
    Monomial,
    Polynomial,
    ReLU,
    Sin,
    activation_from_name,
    serial,
)
from widelimit.layers.inputs import input_kernel
from widelimit.monte_carlo import monte_carlo_kernel

F64 = torch.float64

# --------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------

_Z, _W = np.polynomial.hermite_e.hermegauss(200)
_W = _W / math.sqrt(2 * math.pi)


def _np(f, t: np.ndarray) -> np.ndarray:
    return f(torch.from_numpy(np.ascontiguousarray(t))).numpy()


def _gauss_hermite(f, g, q1: float, q2: float, c: float) -> float:
    """``E[f(u) g(v)]`` by a 200×200 Gauss–Hermite rule (probabilists' weight)."""
    z1, z2 = np.meshgrid(_Z, _Z, indexing="ij")
    w = np.outer(_W, _W)
    u = math.sqrt(q1) * z1
    v = math.sqrt(q2) * (c * z1 + math.sqrt(max(0.0, (1 - c) * (1 + c))) * z2)
    return float(np.sum(w * _np(f, u) * _np(g, v)))


Q_PAIRS = [(1.0, 1.0), (0.25, 2.0), (1.5, 0.7), (0.0, 1.3)]
CORRS = [-1.0, -0.85, -0.3, 0.0, 0.45, 0.9, 0.999, 1.0]


def _grid():
    pts = [(a, b, c) for a, b in Q_PAIRS for c in CORRS]
    q1 = torch.tensor([p[0] for p in pts], dtype=F64)
    q2 = torch.tensor([p[1] for p in pts], dtype=F64)
    s12 = torch.tensor([p[2] * math.sqrt(p[0] * p[1]) for p in pts], dtype=F64)
    return pts, q1, q2, s12


ELEMENTWISE = {
    "erf_affine": Erf(0.7, 1.2, 0.3),
    "erf_negative_scale": Erf(-1.2, -0.6, -0.5),
    "sigmoid_like": Erf(0.5, 1 / 2.4020563531719796, 0.5),  # Neural Tangents' Sigmoid_like
    "exp_affine": Exp(0.8, 0.6),
    "exp_negative": Exp(-1.5, -0.4),
    "gaussian_affine": Gaussian(0.6, 1.7),
    "polynomial": Polynomial((0.5, -1.0, 0.3, 0.2, -0.1)),
    "polynomial_even": Polynomial((1.0, 0.0, -0.5, 0.0, 0.05)),
    "polynomial_constant": Polynomial((0.7,)),
    "polynomial_deg8": Polynomial((0.1, 0.2, -0.3, 0.0, 0.05, -0.02, 0.01, 0.0, 0.001)),
    "gabor": Gabor(),
    "gabor_general": Gabor(1.3, 0.4, 2.0, 0.7),
    "gabor_cos_phase": Gabor(0.9, 0.8, 0.8, math.pi / 2),
}
SHARP = {  # narrow features at large variances: for the adaptive quadrature only
    "erf_sharp": Erf(0.7, 1.8, 0.3),
    "gabor_sharp": Gabor(0.9, 2.5, 0.8, math.pi / 2),
    "gaussian_sharp": Gaussian(3.0, 0.5),
}


def _check(act: Elementwise, f, df, label: str) -> None:
    pts, q1, q2, s12 = _grid()
    nngp, dd = act.dual(q1, q2, s12)
    for i, (a, b, c) in enumerate(pts):
        for what, fun, got in (("E[φφ]", f, nngp[i]), ("E[φ'φ']", df, dd[i])):
            ref = _gauss_hermite(fun, fun, a, b, c)
            scale = math.sqrt(
                _gauss_hermite(fun, fun, a, a, 1.0) * _gauss_hermite(fun, fun, b, b, 1.0)
            )
            err = abs(float(got) - ref)
            assert err <= 1e-9 * scale + 1e-300, (
                f"{label} {what} at q1={a}, q2={b}, c={c}: closed form {float(got)!r}, "
                f"Gauss–Hermite {ref!r} (scale {scale:.3g})"
            )


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_closed_forms_match_gauss_hermite(name: str) -> None:
    """E[φφ] and E[φ'φ'] of the new closed forms at ≤1e-9 of the Cauchy–Schwarz scale,
    c = ±1 and a zero variance included."""
    act = ELEMENTWISE[name]
    _check(act, act.fn, act.derivative, name)


@pytest.mark.parametrize("name", sorted(ELEMENTWISE | SHARP))
def test_closed_forms_match_widelimit_quadrature(name: str) -> None:
    """The second reference: widelimit's Mehler/polar quadrature (variances up to 30)."""
    act = (ELEMENTWISE | SHARP)[name]
    pts = [(a, b, c) for a, b in [(1.0, 1.0), (0.05, 4.0), (30.0, 2.0)] for c in CORRS]
    q1, q2, cs = (torch.tensor(col, dtype=F64) for col in zip(*pts, strict=True))
    s12 = cs * (q1 * q2).sqrt()
    n, d = act.dual(q1, q2, s12)
    rn, rd = gaussian_dual(act.fn, act.derivative, q1, q2, s12, ntk=True)
    sn = gaussian_dual(act.fn, None, q1, q1, q1, ntk=False)[0]
    sn = (sn * gaussian_dual(act.fn, None, q2, q2, q2, ntk=False)[0]).sqrt()
    sd = gaussian_dual(act.derivative, None, q1, q1, q1, ntk=False)[0]
    sd = (sd * gaussian_dual(act.derivative, None, q2, q2, q2, ntk=False)[0]).sqrt()
    # the quadrature's own error: ≤ 1e-10 for moderate features; for the sharp Gabor bump
    # (γ = 2.5 at q = 30: width 0.08 in z) it is 3.6e-9 of E[φ'φ'] at c = 0.999 (measured
    # against a 40-digit mpmath evaluation, which the closed form matches to 1e-16)
    tol = 1e-8 if name in SHARP else 1e-9
    assert float(((n - rn).abs() / sn).max()) <= tol
    assert float(((d - rd).abs() / sd.clamp_min(1e-300)).max()) <= tol


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_price_theorem(name: str) -> None:
    """The NTK factor is the s12-derivative of the NNGP dual (autograd)."""
    act = ELEMENTWISE[name]
    _, q1, q2, s12 = _grid()
    keep = (s12.abs() < 0.98 * (q1 * q2).sqrt()) & (q1 > 0)  # inside |c| < 1
    q1, q2, s12 = q1[keep], q2[keep], s12[keep].clone().requires_grad_(True)
    nngp, dd = act.dual(q1, q2, s12)
    (grad,) = torch.autograd.grad(nngp.sum(), s12)
    torch.testing.assert_close(grad, dd.detach(), rtol=1e-10, atol=1e-13)


# --------------------------------------------------------------------------
# Identities (formulas typed here)
# --------------------------------------------------------------------------

_, Q1, Q2, S12 = _grid()
_close = torch.testing.assert_close


def test_defaults_keep_the_plain_functions() -> None:
    """Erf(), Exp(), Gaussian(γ) are the functions they were before the affine parameters."""
    p = (1 + 2 * Q1) * (1 + 2 * Q2)
    n, d = Erf().dual(Q1, Q2, S12)  # Williams 1997
    _close(n, 2 / math.pi * torch.arcsin((2 * S12 / p.sqrt()).clamp(-1, 1)), rtol=1e-12, atol=0)
    _close(d, 4 / math.pi / (p - 4 * S12**2).sqrt(), rtol=1e-9, atol=0)
    n, d = Exp().dual(Q1, Q2, S12)
    _close(n, torch.exp((Q1 + Q2 + 2 * S12) / 2), rtol=1e-14, atol=0)
    _close(d, n, rtol=0, atol=0)
    n, _ = Gaussian(0.7).dual(Q1, Q2, S12)
    _close(n, ((1 + 1.4 * Q1) * (1 + 1.4 * Q2) - 1.96 * S12**2).rsqrt(), rtol=1e-12, atol=0)
    x = torch.linspace(-3, 3, 13, dtype=F64)
    assert torch.equal(Erf().fn(x), torch.erf(x)) and torch.equal(Exp().fn(x), torch.exp(x))


def test_affine_forms_from_the_plain_duals() -> None:
    """a·φ(b·x) + c: a² · dual at b²·(q1, q2, s) (+ c² for the odd erf), NTK factor · a²b²."""
    a, b, c = 0.7, 1.8, 0.3
    n0, d0 = Erf().dual(b * b * Q1, b * b * Q2, b * b * S12)
    n, d = Erf(a, b, c).dual(Q1, Q2, S12)
    _close(n, a * a * n0 + c * c, rtol=1e-13, atol=1e-15)
    _close(d, a * a * b * b * d0, rtol=1e-13, atol=0)
    n0, d0 = Exp().dual(0.36 * Q1, 0.36 * Q2, 0.36 * S12)
    n, d = Exp(0.8, 0.6).dual(Q1, Q2, S12)
    _close(n, 0.64 * n0, rtol=1e-13, atol=0)
    _close(d, 0.64 * 0.36 * d0, rtol=1e-13, atol=0)
    n0, d0 = Gaussian(0.6).dual(Q1, Q2, S12)
    n, d = Gaussian(0.6, -1.7).dual(Q1, Q2, S12)
    _close(n, 2.89 * n0, rtol=1e-14, atol=0)
    _close(d, 2.89 * d0, rtol=1e-14, atol=0)


def test_polynomial_identities() -> None:
    for k in range(6):  # x^k as a polynomial
        n, d = Polynomial((0.0,) * k + (1.0,)).dual(Q1, Q2, S12)
        n0, d0 = Monomial(k).dual(Q1, Q2, S12)
        _close(n, n0, rtol=1e-12, atol=1e-13)
        _close(d, d0, rtol=1e-12, atol=1e-13)
    # 1 + x + x²: E = 1 + q1 + q2 + s + q1q2 + 2s² (Isserlis), E[φ'φ'] = E[(1+2u)(1+2v)] = 1 + 4s
    n, d = Polynomial([1, 1, 1]).dual(Q1, Q2, S12)
    _close(n, 1 + Q1 + Q2 + S12 + Q1 * Q2 + 2 * S12**2, rtol=1e-13, atol=1e-14)
    _close(d, 1 + 4 * S12, rtol=1e-13, atol=1e-14)
    x = torch.linspace(-2, 2, 9, dtype=F64)
    _close(Polynomial((0.5, -1.0, 0.3)).fn(x), 0.5 - x + 0.3 * x * x, rtol=1e-15, atol=1e-15)
    assert Polynomial([1, 2]) == Polynomial((1.0, 2.0)) and Polynomial([3]).degree == 0


def test_gabor_and_exp_normalized_identities() -> None:
    for p in (0.0, 0.4, math.pi / 2):  # no damping: Sin
        n, d = Gabor(1.3, 0.0, 0.7, p).dual(Q1, Q2, S12)
        n0, d0 = Sin(1.3, 0.7, p).dual(Q1, Q2, S12)
        _close(n, n0, rtol=1e-12, atol=1e-15)
        _close(d, d0, rtol=1e-12, atol=1e-15)
    x = torch.linspace(-2, 2, 9, dtype=F64)
    _close(Gabor().fn(x), torch.exp(-x * x) * torch.sin(x), rtol=1e-15, atol=1e-16)
    g, shift = 1.3, -0.4
    n, d = ExpNormalized(g, shift).dual(Q1, Q2, S12)
    rho = (Q1 * Q2).sqrt()
    c = torch.where(rho > 0, S12 / rho, torch.zeros_like(rho)).clamp(-1, 1)
    _close(n, rho * torch.exp(g * (c + shift)), rtol=1e-14, atol=0)
    _close(d, g * torch.exp(g * (c + shift)), rtol=1e-14, atol=0)


def test_exp_normalized_finite_map_has_the_dual() -> None:
    """φ(h) = r e^{γ(shift−1)/2} e^{√γ h/r} with r → √q: at a fixed r = √q it is an
    exponential whose Gauss–Hermite dual is ρ e^{γ(c + shift)}."""
    g, shift = 0.8, -1.0
    act = ExpNormalized(g, shift)
    for q1, q2, c in [(1.0, 1.0, 0.3), (0.4, 2.0, -0.7), (2.0, 0.5, 1.0)]:

        def f(r: float):
            return lambda t: r * math.exp(g * (shift - 1) / 2) * torch.exp(math.sqrt(g) * t / r)

        ref = _gauss_hermite(f(math.sqrt(q1)), f(math.sqrt(q2)), q1, q2, c)
        s = torch.tensor([c * math.sqrt(q1 * q2)], dtype=F64)
        got = act.dual(torch.tensor([q1], dtype=F64), torch.tensor([q2], dtype=F64), s)[0]
        assert abs(float(got) - ref) <= 1e-11 * abs(ref)
    h = torch.randn(3, 5000, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    out = act.fn(h)  # normalises over axis 1 at every position
    assert out.shape == h.shape and bool(torch.isfinite(out).all())
    assert bool((act.fn(torch.zeros(2, 4, dtype=F64)) == 0).all())


# --------------------------------------------------------------------------
# A user's own dual: Activation(fn, dual_fn=..., derivative_dual_fn=...)
# --------------------------------------------------------------------------


def _erf_dual(q1, q2, s):
    return 2 / math.pi * torch.arcsin(2 * s / ((1 + 2 * q1) * (1 + 2 * q2)).sqrt())


def _erf_dd(q1, q2, s):
    return 4 / math.pi / ((1 + 2 * q1) * (1 + 2 * q2) - 4 * s * s).sqrt()


def _relu_dual(q1, q2, s):  # Cho & Saul 2009, eq. (6); NaN-free at |c| = 1
    rho = (q1 * q2).sqrt()
    c = torch.where(rho > 0, s / rho, torch.zeros_like(s)).clamp(-1, 1)
    theta = torch.arccos(c)
    return rho / (2 * math.pi) * (torch.sin(theta) + (math.pi - theta) * c)


def _relu_dd(q1, q2, s):
    rho = (q1 * q2).sqrt()
    c = torch.where(rho > 0, s / rho, torch.zeros_like(s)).clamp(-1, 1)
    return (math.pi - torch.arccos(c)) / (2 * math.pi)


def test_user_dual_is_used_and_matches_the_builtin() -> None:
    """The user's formula is what the kernel uses (dual and autograd NTK factor)."""
    mine = Activation(torch.erf, dual_fn=_erf_dual)
    both = Activation(torch.erf, dual_fn=_erf_dual, derivative_dual_fn=_erf_dd)
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    x[4] = x[0]
    ref = serial(Dense(8, 1.3, 0.2), Erf(), Dense(1)).kernel(x)
    for act in (mine, both):
        k = serial(Dense(8, 1.3, 0.2), act, Dense(1)).kernel(x)
        _close(k.nngp, ref.nngp, rtol=1e-13, atol=1e-15)
        _close(k.ntk, ref.ntk, rtol=1e-12, atol=1e-15)
    # the dual really is the user's: a formula off by 1e-8 (below check_rtol) shows through
    off = Activation(torch.erf, dual_fn=lambda q1, q2, s: _erf_dual(q1, q2, s) * (1 + 1e-8))
    n, _ = off.dual(Q1, Q2, S12)
    _close(n, Erf().dual(Q1, Q2, S12)[0] * (1 + 1e-8), rtol=1e-14, atol=1e-300)


def test_user_dual_runs_on_the_tiled_engine_and_with_autograd(monkeypatch) -> None:
    from widelimit.layers import tiles

    monkeypatch.setattr(tiles, "PANEL_ROWS", 3)
    monkeypatch.setattr(tiles, "TILE_ENTRIES_CPU", 12)
    net = serial(Dense(8, 1.3, 0.2), Activation(torch.erf, dual_fn=_erf_dual), Dense(1))
    x = torch.randn(9, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    k = net.kernel(x)  # tiles
    ref = net.transform_kernel(input_kernel(x, None, full_spatial=False, ntk=True))
    _close(k.nngp, 0.5 * (ref.nngp + ref.nngp.T), rtol=1e-12, atol=1e-14)
    _close(k.ntk, 0.5 * (ref.ntk + ref.ntk.T), rtol=1e-12, atol=1e-14)
    # gradients with respect to the inputs flow through the user's dual and its autograd
    # NTK factor; they equal those of the built-in Erf
    xg = x.clone().requires_grad_(True)
    (g_user,) = torch.autograd.grad(net.kernel(xg).ntk.sum(), xg)
    xg = x.clone().requires_grad_(True)
    (g_ref,) = torch.autograd.grad(
        serial(Dense(8, 1.3, 0.2), Erf(), Dense(1)).kernel(xg).ntk.sum(), xg
    )
    _close(g_user, g_ref, rtol=1e-10, atol=1e-12)


def test_wrong_user_dual_is_refused_with_the_worst_point() -> None:
    # arguments swapped: a typical slip
    with pytest.raises(ValueError) as info:
        Activation(torch.erf, dual_fn=lambda q1, q2, s: _erf_dual(s, q2, q1))
    msg = str(info.value)
    assert "`dual_fn` disagrees with quadrature" in msg and "q1=" in msg and "c=" in msg
    assert "formula gives" in msg and "quadrature" in msg and "check_rtol=1e-06" in msg
    # a right dual with a wrong derivative dual
    with pytest.raises(ValueError, match="`derivative_dual_fn` disagrees"):
        Activation(
            torch.erf,
            dual_fn=_erf_dual,
            derivative_dual_fn=lambda q1, q2, s: 2 * _erf_dd(q1, q2, s),
        )
    # the dual of another function
    with pytest.raises(ValueError, match="disagrees"):
        Activation(torch.tanh, dual_fn=_erf_dual)
    with pytest.raises(ValueError, match="disagrees"):  # 1e-4 off: above the tolerance
        Activation(torch.erf, dual_fn=lambda q1, q2, s: _erf_dual(q1, q2, s) + 1e-4)
    Activation(torch.erf, dual_fn=lambda q1, q2, s: _erf_dual(q1, q2, s) + 1e-4, check_rtol=1e-3)
    Activation(torch.tanh, dual_fn=_erf_dual, check_rtol=None)  # unchecked on request


def test_autograd_ntk_factor_of_a_nonsmooth_dual_is_caught() -> None:
    """Neural Tangents differentiates nngp_fn with autodiff and returns NaN at c = ±1 for the
    arc-cosine form (arccos' is infinite there); here the check refuses it and says what to
    pass instead, and the closed-form NTK factor is accepted."""
    with pytest.raises(ValueError, match=r"autograd; pass `derivative_dual_fn`.*formula gives nan"):
        Activation(torch.relu, dual_fn=_relu_dual)
    act = Activation(torch.relu, dual_fn=_relu_dual, derivative_dual_fn=_relu_dd)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(3), dtype=F64)
    x[3] = x[1]
    k = serial(Dense(8, 1.2, 0.0), act, Dense(1)).kernel(x)
    ref = serial(Dense(8, 1.2, 0.0), ReLU(), Dense(1)).kernel(x)
    _close(k.nngp, ref.nngp, rtol=1e-12, atol=1e-15)
    _close(k.ntk, ref.ntk, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"dual_fn": 3.0}, TypeError, "`dual_fn` must be callable"),
        ({"derivative_dual_fn": _erf_dd}, ValueError, "`derivative_dual_fn` needs `dual_fn`"),
        (
            {"dual_fn": _erf_dual, "check_rtol": 0.0},
            ValueError,
            r"`check_rtol` must be in \(0, 1\)",
        ),
        ({"dual_fn": _erf_dual, "check_rtol": "x"}, TypeError, "`check_rtol` must be a real"),
        ({"dual_fn": lambda q1, q2, s: math.sqrt(q1)}, TypeError, "`dual_fn` failed on tensors"),
        ({"dual_fn": lambda q1, q2, s: 1.0}, TypeError, "must return a torch.Tensor"),
        ({"dual_fn": lambda q1, q2, s: torch.ones(3, dtype=F64)}, ValueError, "does not broadcast"),
    ],
)
def test_bad_user_duals(kwargs, err, match) -> None:
    with pytest.raises(err, match=match):
        Activation(torch.erf, **kwargs)


# --------------------------------------------------------------------------
# Registry, parser, tiled engine, robustness, errors
# --------------------------------------------------------------------------


def test_registry_and_parser_know_the_new_names() -> None:
    assert ACTIVATIONS["polynomial"] is Polynomial and ACTIVATIONS["gabor"] is Gabor
    assert activation_from_name("Polynomial", coefficients=[0, 1, 0.5]) == Polynomial((0, 1, 0.5))
    assert activation_from_name("erf", amplitude=2.0, shift=1.0) == Erf(2.0, 1.0, 1.0)
    net = parse_net(
        "Dense(8) -> Polynomial((0.1, 1, 0.5)) -> Dense(8) -> Gabor(gamma=0.5) -> Dense(8) "
        "-> Erf(0.5, 0.4, 0.5) -> Dense(8) -> ExpNormalized(gamma=2.0) -> Dense(8) "
        "-> Exp(0.5, 0.3) -> Dense(8) -> Gaussian(0.5, amplitude=2) -> Dense(1)"
    )
    names = [type(layer).__name__ for layer in net.layers]
    assert names[1::2] == ["Polynomial", "Gabor", "Erf", "ExpNormalized", "Exp", "Gaussian"]
    import widelimit

    for name in ("Polynomial", "Gabor", "ExpNormalized"):
        assert name in widelimit.__all__ and name in widelimit.layers.__all__


TILED = {
    "polynomial": Polynomial((0.5, -1.0, 0.3, 0.2)),
    "gabor": Gabor(1.3, 0.4, 2.0, 0.7),
    "erf": Erf(0.7, 1.8, 0.3),
    "exp_normalized": ExpNormalized(1.3, -0.5),
    "exp": Exp(0.8, 0.6),
    "gaussian": Gaussian(0.6, 1.7),
}


@pytest.mark.parametrize("name", sorted(TILED))
def test_tiled_engine_equals_untiled_route(monkeypatch, name: str) -> None:
    """Small panels and tiles (several partial tiles), then a cross kernel and a spatial net."""
    from widelimit.layers import Conv1d, GlobalAvgPool, tiles

    monkeypatch.setattr(tiles, "PANEL_ROWS", 3)
    monkeypatch.setattr(tiles, "TILE_ENTRIES_CPU", 12)
    act = TILED[name]
    net = serial(Dense(8, 1.3, 0.2), act, Dense(8, 0.9, 0.1), act, Dense(1))
    g = torch.Generator().manual_seed(4)
    x = torch.randn(9, 3, generator=g, dtype=F64)
    x[5] = x[2]  # c = 1 off the diagonal
    k = net.kernel(x)
    ref = net.transform_kernel(input_kernel(x, None, full_spatial=False, ntk=True))
    _close(k.nngp, 0.5 * (ref.nngp + ref.nngp.T), rtol=1e-12, atol=1e-14)
    _close(k.ntk, 0.5 * (ref.ntk + ref.ntk.T), rtol=1e-12, atol=1e-14)
    kx = net.kernel(x[:4], x[3:])
    _close(kx.nngp, k.nngp[:4, 3:], rtol=1e-12, atol=1e-14)
    _close(kx.ntk, k.ntk[:4, 3:], rtol=1e-12, atol=1e-14)
    conv = serial(
        Conv1d(4, 3, padding="same", w_std=1.3, b_std=0.2), act, GlobalAvgPool(), Dense(1)
    )
    xs = torch.randn(5, 2, 6, generator=g, dtype=F64)
    ks = conv.kernel(xs)
    refs = conv.transform_kernel(input_kernel(xs, None, full_spatial=True, ntk=True))
    _close(ks.nngp, refs.nngp, rtol=1e-12, atol=1e-14)
    _close(ks.ntk, refs.ntk, rtol=1e-12, atol=1e-14)


ROBUST = {**TILED, "gabor_default": Gabor(), "polynomial_deg8": ELEMENTWISE["polynomial_deg8"]}


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("name", sorted(ROBUST))
def test_never_nan(name: str, dtype: torch.dtype) -> None:
    """q = 0 … 1e4, |c| = 1 exactly and a hair beyond: finite (Exp may overflow to inf)."""
    act = ROBUST[name]
    qs = [0.0, 1e-12, 1e-4, 1.0, 1e4]
    cs = [-1.0 - 1e-7, -1.0, -0.3, 0.0, 0.5, 1.0, 1.0 + 1e-7]
    pts = [(a, b, c) for a in qs for b in qs for c in cs]
    q1 = torch.tensor([p[0] for p in pts], dtype=dtype)
    q2 = torch.tensor([p[1] for p in pts], dtype=dtype)
    s12 = torch.tensor([p[2] * math.sqrt(p[0] * p[1]) for p in pts], dtype=dtype)
    n, d = act.dual(q1, q2, s12)
    assert n.dtype == dtype and d.dtype == dtype
    assert not bool(torch.isnan(n).any() or torch.isnan(d).any())
    if not isinstance(act, Exp | Polynomial):  # these grow without bound with q
        assert bool(torch.isfinite(n).all() and torch.isfinite(d).all())


@pytest.mark.parametrize(
    ("build", "err", "match"),
    [
        (lambda: Polynomial(()), ValueError, "must not be empty"),
        (lambda: Polynomial("1, 2"), TypeError, "sequence of numbers"),
        (lambda: Polynomial(3.0), TypeError, "sequence of numbers"),
        (lambda: Polynomial([1.0, float("nan")]), ValueError, "`coefficients` must be finite"),
        (lambda: Polynomial([1.0] * 34), ValueError, "degree must be <= 32"),
        (lambda: Gabor(gamma=-0.1), ValueError, "`gamma` must be >= 0"),
        (lambda: Gabor(frequency="a"), TypeError, "`frequency` must be a real number"),
        (lambda: ExpNormalized(gamma=-1.0), ValueError, "`gamma` must be >= 0"),
        (lambda: ExpNormalized(shift=float("inf")), ValueError, "`shift` must be finite"),
        (lambda: Erf(input_scale=None), TypeError, "`input_scale`"),
        (lambda: Exp(amplitude=float("nan")), ValueError, "`amplitude` must be finite"),
        (lambda: Gaussian(1.0, amplitude="x"), TypeError, "`amplitude`"),
    ],
)
def test_bad_parameters(build, err, match) -> None:
    with pytest.raises(err, match=match):
        build()


def test_exp_normalized_is_not_elementwise() -> None:
    with pytest.raises(TypeError, match="not elementwise"):
        ExpNormalized().derivative(torch.zeros(3))
    with pytest.raises(ValueError, match="channel axis 1"):
        ExpNormalized().fn(torch.zeros(3))
    assert "exp_normalized" not in ACTIVATIONS and "expnormalized" not in ACTIVATIONS


# --------------------------------------------------------------------------
# Finite networks (Monte Carlo)
# --------------------------------------------------------------------------
# Error model as in tests/test_activations.py: |analytic − MC| ≤ Z·sem per entry, Z = 4.5
# (≤ 30 entries per test).  One hidden layer of an elementwise φ: the hidden pre-activations
# are exactly Gaussian at any width and E[readout²] = 1 factors out of the empirical NTK,
# so both estimates are unbiased.  ExpNormalized's finite map uses the empirical channel
# norm r in place of √q: a bias O(1/width), allowed for as 3·max|K|/width (as the
# depth-2 test of test_activations.py).

Z = 4.5


def _mc_inputs() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 5, generator=g, dtype=F64)
    x[1] = 0.9 * x[0] + 0.1 * x[1]
    x[3] = -x[2]  # an anticorrelated pair
    return x


MC = {
    "polynomial": (Polynomial((0.2, 1.0, -0.4, 0.15)), 21),
    "gabor": (Gabor(1.5, 0.5, 1.7, 0.3), 22),
    "erf_affine": (Erf(0.7, 1.8, 0.3), 23),
    "exp_affine": (Exp(0.8, 0.6), 24),
    "gaussian_affine": (Gaussian(0.6, 1.7), 25),
    "user_dual": (Activation(torch.erf, dual_fn=_erf_dual, derivative_dual_fn=_erf_dd), 26),
    "exp_normalized": (ExpNormalized(1.3, -0.5), 27),
}


@pytest.mark.parametrize("name", sorted(MC))
def test_finite_nets_match_monte_carlo(name: str) -> None:
    act, seed = MC[name]
    width = 512
    x = _mc_inputs()
    net = serial(Dense(8, 1.3, 0.2), act, Dense(2, 1.1, 0.1))
    k = net.with_width(width).kernel(x)
    mc = monte_carlo_kernel(net, x, width=width, n_samples=100, seed=seed)
    bias_factor = 3.0 / width if isinstance(act, ExpNormalized) else 0.0
    for analytic, est, sem in ((k.nngp, mc.nngp, mc.nngp_sem), (k.ntk, mc.ntk, mc.ntk_sem)):
        bias = bias_factor * float(analytic.abs().max())
        worst = float(((analytic - est).abs() / (Z * sem + bias)).max())
        assert worst <= 1.0, f"{name}: max |analytic − MC| / (Z·sem + bias) = {worst:.3g}"


# --------------------------------------------------------------------------
# Neural Tangents 0.6.5, float64 (optional: its own environment, in a subprocess)
# --------------------------------------------------------------------------

NT_PYTHON = Path("/root/.cache/nt-venv/bin/python")

_NT_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from neural_tangents import stax
    x = np.array(json.loads(sys.argv[1]))
    out = {}
    for name, (act, kw, b_std) in json.loads(sys.argv[2]).items():
        net = stax.serial(stax.Dense(8, W_std=1.3, b_std=b_std), getattr(stax, act)(**kw),
                          stax.Dense(1, W_std=1.1, b_std=0.1))
        k = net[2](x, x, ("nngp", "ntk"))
        out[name] = [np.asarray(k.nngp).tolist(), np.asarray(k.ntk).tolist()]
    print(json.dumps(out))
    """
)

NT_CASES = {
    "erf": ("Erf", {"a": 0.7, "b": 1.8, "c": 0.3}, 0.2, Erf(0.7, 1.8, 0.3)),
    "exp": ("Exp", {"a": 0.8, "b": 0.6}, 0.2, Exp(0.8, 0.6)),
    "gaussian": ("Gaussian", {"a": 1.7, "b": -0.6}, 0.2, Gaussian(0.6, 1.7)),
    "sin": ("Sin", {"a": 1.3, "b": 0.7, "c": 0.4}, 0.2, Sin(1.3, 0.7, 0.4)),
    "polynomial": (
        "Polynomial",
        {"coef": [0.5, -1.0, 0.3, 0.2, -0.1]},
        0.2,
        Polynomial((0.5, -1.0, 0.3, 0.2, -0.1)),
    ),
    "gabor": ("Gabor", {}, 0.0, Gabor()),
    "exp_normalized": (
        "ExpNormalized",
        {"gamma": 1.3, "shift": -1.0},
        0.2,
        ExpNormalized(1.3, -1.0),
    ),
    "polynomial_zero_variance": (
        "Polynomial",
        {"coef": [0.5, -1.0, 0.3]},
        0.0,
        Polynomial((0.5, -1.0, 0.3)),
    ),
}


@pytest.mark.slow
@pytest.mark.skipif(not NT_PYTHON.exists(), reason="Neural Tangents environment not installed")
def test_against_neural_tangents() -> None:
    """Equal to Neural Tangents to 1e-13 of the kernel's scale in float64, except where
    Neural Tangents returns NaN: its Polynomial at a zero variance (a zero input without
    bias), where ours is finite (E[φ(0)²] = a_0² on the diagonal)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=g, dtype=F64)
    x[4] = x[0]  # correlation exactly 1 off the diagonal
    x[5] = 0.0  # zero variance when b_std = 0
    cases = {k: v[:3] for k, v in NT_CASES.items()}
    run = subprocess.run(
        [str(NT_PYTHON), "-c", _NT_SCRIPT, json.dumps(x.tolist()), json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    nt = json.loads(run.stdout.strip().splitlines()[-1])
    for name, (_, _, b_std, act) in NT_CASES.items():
        k = serial(Dense(8, 1.3, b_std), act, Dense(1, 1.1, 0.1)).kernel(x)
        for ours, theirs in ((k.nngp, nt[name][0]), (k.ntk, nt[name][1])):
            theirs = torch.tensor(theirs, dtype=F64)
            if name == "polynomial_zero_variance":
                assert bool(theirs[5].isnan().all()) and bool(torch.isfinite(ours).all())
                if ours is k.nngp:  # u = 0 exactly: E[φ(0)²] = a_0², through the readout
                    assert abs(float(ours[5, 5]) - (1.21 * 0.25 + 0.01)) <= 1e-15
                theirs, ours = theirs[:5, :5], ours[:5, :5]
            scale = float(ours.abs().max())
            assert float((ours - theirs).abs().max()) <= 1e-13 * scale, name
