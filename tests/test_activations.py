"""Closed-form activation duals against independent quadrature, identities and finite nets.

Reference: ``_expect2`` below, a composite Gauss–Legendre rule in float64 over
``z1, z2 ~ N(0, 1)`` i.i.d. with ``u = √q1 z1``, ``v = √q2 (c z1 + √(1−c²) z2)``,
panels split at the kink lines ``u = 0`` (``z1 = 0``) and ``v = 0``
(``z2 = −c z1/√(1−c²)``) and graded geometrically towards them, truncated at
``|z| ≤ 10`` (Gaussian mass beyond < 1e-22).  On every panel the integrand is
analytic, so 12 nodes a panel give ~1e-14 relative (checked against nested
``scipy.integrate.quad`` in ``test_reference_matches_scipy``).  Error model for
the closed forms: ``|closed − ref| ≤ 1e-8 |ref| + 1e-13 · scale`` with
``scale = √(E[φ(u)²] E[φ(v)²])`` (Cauchy–Schwarz bound on |E[φ(u)φ(v)]|), the
floor only matters where the exact value is 0 (e.g. odd φ at c = 0).
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest
import torch

from widelimit.layers import Dense, serial
from widelimit.layers.activations import (
    ACTIVATIONS,
    GELU,
    RBF,
    ABReLU,
    Abs,
    Cos,
    Elementwise,
    Erf,
    Exp,
    Gaussian,
    Hermite,
    LeakyReLU,
    Monomial,
    NumericalActivation,
    RectifiedMonomial,
    ReLU,
    Sign,
    Sin,
    activation_from_name,
)
from widelimit.monte_carlo import monte_carlo_kernel

F64 = torch.float64

# --------------------------------------------------------------------------
# Independent reference quadrature (numpy float64)
# --------------------------------------------------------------------------

_X, _W = np.polynomial.legendre.leggauss(12)
# graded offsets from the kinks: coarse for activations without an intrinsic scale or at
# moderate variances; fine to resolve φ(√q z) at q = 1e4 (transition width ~1e-2 in z)
_OFF = {
    False: [1e-3, 1e-2, 0.03, 0.1, 0.3],
    True: [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 2e-2, 4e-2, 0.07, 0.1, 0.2, 0.3, 0.5, 0.7],
}


def _panel_rule(breaks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = breaks[:-1, None], breaks[1:, None]
    nodes = ((b - a) / 2 * _X + (a + b) / 2).ravel()
    w = ((b - a) / 2 * _W).ravel() * np.exp(-(nodes**2) / 2) / math.sqrt(2 * math.pi)
    return nodes, w


_OUTER = {
    fine: _panel_rule(
        np.array(sorted({0.0} | {s * d for s in (1, -1) for d in [*off, 1, 2, 3, 4, 6, 8, 10]}))
    )
    for fine, off in _OFF.items()
}
# inner panels relative to the kink; the kink is clipped to ±11 (outside |z| ≤ 10 its
# position does not matter) and the pattern spans ±22, so [-10, 10] is always covered
_PATTERN = {
    fine: np.array(
        sorted({0.0} | {s * d for s in (1, -1) for d in [*off, 1, 2, 3, 4, *range(6, 23, 2)]})
    )
    for fine, off in _OFF.items()
}


@cache
def _nodes(c: float, fine: bool = False) -> tuple[np.ndarray, ...]:
    """2-D nodes ``(z1, y, w)`` with ``y = c z1 + √(1−c²) z2`` for correlation ``c``."""
    z1, w1 = _OUTER[fine]
    if abs(c) == 1.0:
        return z1, c * z1, w1
    s = math.sqrt((1 - c) * (1 + c))
    center = np.clip(-c * z1 / s, -11.0, 11.0)
    a, b = _PATTERN[fine][:-1], _PATTERN[fine][1:]
    half, mid = (b - a) / 2, (a + b) / 2
    z2 = center[:, None, None] + mid[None, :, None] + half[None, :, None] * _X
    z2 = z2.reshape(len(z1), -1)
    w2 = np.tile((half[:, None] * _W).ravel(), (len(z1), 1))
    w2 = w2 * np.exp(-(z2**2) / 2) / math.sqrt(2 * math.pi)
    y = c * z1[:, None] + s * z2
    zz1 = np.broadcast_to(z1[:, None], y.shape)
    return zz1.ravel(), y.ravel(), (w1[:, None] * w2).ravel()


def _np(f, t: np.ndarray) -> np.ndarray:
    return f(torch.from_numpy(np.ascontiguousarray(t))).numpy()


def _expect2(f, g, q1: float, q2: float, c: float, fine: bool = False) -> float:
    """``E[f(u) g(v)]``, ``(u, v)`` centred Gaussian with variances q1, q2, correlation c."""
    z1, y, w = _nodes(float(c), fine)
    return float(np.sum(w * _np(f, math.sqrt(q1) * z1) * _np(g, math.sqrt(q2) * y)))


def _expect1(f, q: float) -> float:
    """``E[f(√q z)]`` for ``z ~ N(0, 1)`` (1-D rule, split at 0)."""
    z, w = _OUTER[True]
    return float(np.sum(w * _np(f, math.sqrt(q) * z)))


def _sq(f):
    return lambda x: f(x) ** 2


def _t(*vals: float, dtype=F64) -> torch.Tensor:
    return torch.tensor(vals, dtype=dtype)


# --------------------------------------------------------------------------
# Activations under test
# --------------------------------------------------------------------------

CLOSED = {
    "relu": ReLU(),
    "leaky_relu": LeakyReLU(0.2),
    "leaky_relu_neg": LeakyReLU(-1.5),
    "abrelu": ABReLU(-0.4, 1.3),
    "abs": Abs(),
    "erf": Erf(),
    "gelu": GELU(),
    "sin": Sin(),
    "sin_general": Sin(1.3, 0.7, 0.4),
    "cos": Cos(),
    "cos_general": Cos(0.8, 1.5, -0.3),
    "rbf": RBF(0.6),
    "gaussian": Gaussian(0.7),
    "exp": Exp(),
    "sign": Sign(),
    "monomial0": Monomial(0),
    "monomial3": Monomial(3),
    "monomial4": Monomial(4),
    "rect_monomial0": RectifiedMonomial(0),
    "rect_monomial2": RectifiedMonomial(2),
    "rect_monomial3": RectifiedMonomial(3),
    "hermite0": Hermite(0),
    "hermite3": Hermite(3),
    "hermite4": Hermite(4),
}
# φ' is a delta for these: E[φ'φ'] follows the a.e.-derivative convention (0), see Sign
JUMPS = {"sign", "rect_monomial0"}

Q_GRID = [(1.0, 1.0), (0.25, 2.5), (3.0, 0.7)]
C_GRID = [-1.0, -0.9, -0.4, 0.0, 0.3, 0.8, 0.999, 1.0]


def _grid(q_pairs, cs):
    pts = [(q1, q2, c) for q1, q2 in q_pairs for c in cs]
    q1 = _t(*[p[0] for p in pts])
    q2 = _t(*[p[1] for p in pts])
    s12 = _t(*[p[2] * math.sqrt(p[0] * p[1]) for p in pts])
    return pts, q1, q2, s12


def _check_against_reference(
    act: Elementwise, pts, q1, q2, s12, check_dd: bool, fine: bool = False
) -> None:
    nngp, dd = act.dual(q1, q2, s12, ntk=True)
    assert nngp.dtype == F64 and dd is not None and dd.shape == nngp.shape
    for i, (a, b, c) in enumerate(pts):
        pairs = [("E[φφ]", act.fn, float(nngp[i]))]
        if check_dd:
            pairs.append(("E[φ'φ']", act.derivative, float(dd[i])))
        for label, f, got in pairs:
            ref = _expect2(f, f, a, b, c, fine)
            scale = math.sqrt(_expect1(_sq(f), a) * _expect1(_sq(f), b))
            err = abs(got - ref)
            assert err <= 1e-8 * abs(ref) + 1e-13 * scale, (
                f"{act} {label} at q1={a}, q2={b}, c={c}: closed form {got!r}, "
                f"quadrature {ref!r}, rel err {err / max(abs(ref), 1e-300):.2e}"
            )


# --------------------------------------------------------------------------
# Closed forms against quadrature
# --------------------------------------------------------------------------


def test_reference_matches_scipy() -> None:
    """The test's own quadrature against nested scipy quad (kinks passed as break points)."""
    from scipy import integrate, special

    q1, q2, c = 0.7, 2.0, -0.6
    s = math.sqrt(1 - c * c)
    dens = 1 / (2 * math.pi)
    cases = [
        (lambda x: np.where(x > 0, 1.3 * x, -0.4 * x), ABReLU(-0.4, 1.3).fn),
        (lambda x: x * special.ndtr(x), GELU().fn),
    ]
    for f_np, f_t in cases:

        def inner(z1, f_np=f_np):
            def g(z2):
                return f_np(math.sqrt(q2) * (c * z1 + s * z2)) * math.exp(-z2 * z2 / 2)

            kink = -c * z1 / s
            return integrate.quad(g, -12, 12, points=[kink], epsabs=1e-15, limit=200)[0]

        def outer(z1, f_np=f_np, inner=inner):
            return f_np(math.sqrt(q1) * z1) * math.exp(-z1 * z1 / 2) * inner(z1)

        ref = dens * integrate.quad(outer, -12, 12, points=[0.0], epsabs=1e-15, limit=200)[0]
        ours = _expect2(f_t, f_t, q1, q2, c)
        assert abs(ours - ref) <= 1e-11 * abs(ref)


@pytest.mark.parametrize("name", sorted(CLOSED))
def test_closed_form_matches_quadrature(name: str) -> None:
    """E[φφ] and E[φ'φ'] at ≤1e-8 relative over (q1, q2, c), c = ±1 and 0 included."""
    pts, q1, q2, s12 = _grid(Q_GRID, C_GRID)
    _check_against_reference(CLOSED[name], pts, q1, q2, s12, check_dd=name not in JUMPS)


EXTREME = [
    "relu",
    "leaky_relu",
    "abrelu",
    "abs",
    "erf",
    "gelu",
    "gaussian",
    "sign",
    "monomial3",
    "rect_monomial0",
    "rect_monomial2",
    "hermite3",
]


@pytest.mark.parametrize("name", EXTREME)
def test_closed_form_extreme_variances(name: str) -> None:
    """Variances 1e-4 … 1e4 (sin/cos/rbf oscillate too fast for the reference there,
    exp overflows; they are covered by the finiteness test)."""
    pts, q1, q2, s12 = _grid([(1e-4, 1e-4), (1e-4, 1e4), (1e4, 1e4)], [-1.0, -0.5, 0.999, 1.0])
    fine = name in ("erf", "gelu", "gaussian", "hermite3")  # φ has a scale: resolve it
    _check_against_reference(CLOSED[name], pts, q1, q2, s12, check_dd=name not in JUMPS, fine=fine)


@pytest.mark.parametrize("name", ["relu", "rect_monomial2", "rect_monomial3"])
def test_arc_cosine_near_anticorrelation(name: str) -> None:
    """c → −1, where the kernel vanishes like (π − θ)^{2k+1}: still ≤1e-8 relative."""
    pts, q1, q2, s12 = _grid([(1.0, 1.0), (0.5, 3.0)], [-0.99, -0.9999, -0.999999])
    _check_against_reference(CLOSED[name], pts, q1, q2, s12, check_dd=True)


def test_rectified_monomial_high_degree() -> None:
    """k = 8: the alternating J_k sum cancels for c < 0; the integral form must not."""
    act = RectifiedMonomial(8)
    pts, q1, q2, s12 = _grid([(1.0, 1.0)], [-0.95, -0.5, -0.1, 0.0, 0.6, 1.0])
    _check_against_reference(act, pts, q1, q2, s12, check_dd=True)


# --------------------------------------------------------------------------
# Identities (formulas typed here, independent of the implementation)
# --------------------------------------------------------------------------


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-12, atol: float = 1e-14) -> None:
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


_, Q1, Q2, S12 = _grid(Q_GRID, C_GRID)
PROD = (Q1 * Q2).sqrt()
CC = (S12 / PROD).clamp(-1, 1)
THETA = torch.arccos(CC)


def test_relu_family_identities() -> None:
    relu_nngp = PROD / (2 * math.pi) * (torch.sin(THETA) + (math.pi - THETA) * CC)  # DESIGN §2
    relu_dd = (math.pi - THETA) / (2 * math.pi)
    for act in (ReLU(), ABReLU(0, 1), RectifiedMonomial(1), LeakyReLU(0.0)):
        n, d = act.dual(Q1, Q2, S12)
        _close(n, relu_nngp)
        _close(d, relu_dd)
    n, d = LeakyReLU(1.0).dual(Q1, Q2, S12)  # identity map: E[uv] = s12, φ' = 1
    _close(n, S12)
    _close(d, torch.ones_like(d))
    n, d = ABReLU(-1, 1).dual(Q1, Q2, S12)  # |x|
    _close(n, 2 * PROD / math.pi * (torch.sin(THETA) + (math.pi / 2 - THETA) * CC))
    _close(d, 1 - 2 * THETA / math.pi)
    _close(n, Abs().dual(Q1, Q2, S12)[0])
    # ABReLU(a, b)(x) = -ABReLU(-b, -a)(-x): same dual
    _close(ABReLU(0.3, -2.0).dual(Q1, Q2, S12)[0], ABReLU(2.0, -0.3).dual(Q1, Q2, S12)[0])


def test_polynomial_identities() -> None:
    n, d = Monomial(1).dual(Q1, Q2, S12)
    _close(n, S12)
    _close(d, torch.ones_like(d))
    n, d = Monomial(2).dual(Q1, Q2, S12)  # Isserlis: E[u²v²] = q1 q2 + 2 s²
    _close(n, Q1 * Q2 + 2 * S12**2)
    _close(d, 4 * S12)
    n, _ = Monomial(3).dual(Q1, Q2, S12)  # E[u³v³] = 9 q1 q2 s + 6 s³
    _close(n, 9 * Q1 * Q2 * S12 + 6 * S12**3)
    one = torch.ones_like(CC)
    for k in range(7):  # Mehler: unit variances give c^k and k c^{k-1}
        n, d = Hermite(k).dual(one, one, CC)
        _close(n, CC**k)
        _close(d, k * CC ** max(k - 1, 0) if k else torch.zeros_like(CC))
    # Hermite(2) = (x² − 1)/√2: E = (q1 q2 + 2 s² − q1 − q2 + 1)/2 at any variances
    _close(Hermite(2).dual(Q1, Q2, S12)[0], (Q1 * Q2 + 2 * S12**2 - Q1 - Q2 + 1) / 2)


def test_trigonometric_and_exponential_identities() -> None:
    decay = torch.exp(-(Q1 + Q2) / 2)
    n, d = Sin().dual(Q1, Q2, S12)
    _close(n, decay * torch.sinh(S12))
    _close(d, decay * torch.cosh(S12))
    n, d = Cos().dual(Q1, Q2, S12)
    _close(n, decay * torch.cosh(S12))
    _close(d, decay * torch.sinh(S12))
    n, d = Sin(phase=math.pi / 2).dual(Q1, Q2, S12)  # sin(x + π/2) = cos x
    _close(n, decay * torch.cosh(S12))
    n, d = RBF(0.6).dual(Q1, Q2, S12)
    _close(n, torch.exp(-0.6 * (Q1 + Q2 - 2 * S12)))
    _close(d, 1.2 * torch.exp(-0.6 * (Q1 + Q2 - 2 * S12)))
    n, d = Exp().dual(Q1, Q2, S12)
    _close(n, torch.exp((Q1 + Q2 + 2 * S12) / 2))
    n, d = Gaussian(0.0).dual(Q1, Q2, S12)  # constant 1
    _close(n, torch.ones_like(n))
    _close(d, torch.zeros_like(d))
    n, d = Sign().dual(Q1, Q2, S12)
    _close(n, 2 / math.pi * torch.arcsin(CC))
    assert bool((d == 0).all())


# --------------------------------------------------------------------------
# Price's theorem: d/ds12 E[φ(u)φ(v)] = E[φ'(u)φ'(v)]
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(set(CLOSED) - JUMPS))
def test_price_theorem(name: str) -> None:
    """The NTK factor equals the s12-derivative of the NNGP dual (autograd), an
    independent check of the two formulas.  Not for jumps (φ' a delta)."""
    act = CLOSED[name]
    _, q1, q2, s12 = _grid(Q_GRID, [-0.9, -0.4, 0.0, 0.3, 0.8, 0.99])
    s12 = s12.clone().requires_grad_(True)
    nngp, dd = act.dual(q1, q2, s12)
    (grad,) = torch.autograd.grad(nngp.sum(), s12)
    _close(grad, dd.detach(), rtol=1e-10, atol=1e-13)


# --------------------------------------------------------------------------
# Finite functions
# --------------------------------------------------------------------------


ALL_INSTANCES = {**CLOSED, **{f"registry_{n}": ctor() for n, ctor in ACTIVATIONS.items()}}


@pytest.mark.parametrize("name", sorted(ALL_INSTANCES))
def test_derivative_matches_autograd(name: str) -> None:
    """``derivative`` is the derivative of ``fn`` (kink values included: as autograd)."""
    act = ALL_INSTANCES[name]
    x = torch.cat([torch.linspace(-3, 3, 61, dtype=F64), _t(0.0, 1e-3, -1e-3)])
    xx = x.clone().requires_grad_(True)
    out = act.fn(xx)
    if out.requires_grad:
        (g,) = torch.autograd.grad(out.sum(), xx, allow_unused=True)
    else:  # constant φ (e.g. Hermite(0))
        g = None
    g = torch.zeros_like(x) if g is None else g
    _close(act.derivative(x), g, rtol=1e-12, atol=1e-12)


def test_finite_functions() -> None:
    x = _t(-2.0, -0.5, 0.0, 0.5, 2.0)
    _close(ABReLU(-0.4, 1.3).fn(x), torch.where(x < 0, -0.4 * x, 1.3 * x))
    _close(GELU().fn(x), x * 0.5 * (1 + torch.erf(x / math.sqrt(2))))
    _close(Hermite(3).fn(x), (x**3 - 3 * x) / math.sqrt(6))
    _close(RectifiedMonomial(2).fn(x), torch.relu(x) ** 2)
    _close(RectifiedMonomial(0).fn(x), (x > 0).to(F64))
    _close(Gaussian(0.7).fn(x), torch.exp(-0.7 * x * x))
    _close(RBF(0.6).fn(x), math.sqrt(2) * torch.sin(math.sqrt(1.2) * x + math.pi / 4))


# --------------------------------------------------------------------------
# Conformance over the registry (covers activations added later)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_registry_conformance(name: str) -> None:
    """Symmetric in (q1, q2), finite, c = 1 gives the 1-D moment, float32 works."""
    act = activation_from_name(name)
    assert isinstance(act, Elementwise)
    q1, q2 = _t(0.3, 1.0, 2.5, 1.0), _t(1.7, 1.0, 0.4, 1.0)
    s12 = _t(-0.5, 0.99, 0.2, 1.0) * (q1 * q2).sqrt()
    n12, d12 = act.dual(q1, q2, s12)
    n21, d21 = act.dual(q2, q1, s12)
    _close(n12, n21, rtol=1e-12, atol=1e-14)
    _close(d12, d21, rtol=1e-12, atol=1e-14)
    assert bool(torch.isfinite(n12).all() and torch.isfinite(d12).all())
    n_only, d_none = act.dual(q1, q2, s12, ntk=False)
    assert d_none is None
    _close(n_only, n12, rtol=1e-14, atol=0)
    # c = 1 and q1 = q2: E[φ(√q z)²] and E[φ'(√q z)²] (1-D reference)
    for q in (0.2, 1.0, 3.0):
        n, d = act.dual(_t(q), _t(q), _t(q))
        ref_n = _expect1(_sq(act.fn), q)
        assert abs(float(n[0]) - ref_n) <= 1e-8 * abs(ref_n) + 1e-14, (q, float(n[0]), ref_n)
        if name != "sign":
            ref_d = _expect1(_sq(act.derivative), q)
            assert abs(float(d[0]) - ref_d) <= 1e-8 * abs(ref_d) + 1e-14, (q, float(d[0]), ref_d)
    # float32 in, float32 out, close to float64
    n32, d32 = act.dual(q1.float(), q2.float(), s12.float())
    assert n32.dtype == torch.float32 and d32.dtype == torch.float32
    scale = float(n12.abs().max())
    _close(n32.double(), n12, rtol=1e-4, atol=1e-5 * scale)
    _close(d32.double(), d12, rtol=1e-4, atol=1e-5 * float(d12.abs().max()))


ROBUST = {**CLOSED, **{f"registry_{n}": ctor() for n, ctor in ACTIVATIONS.items()}}


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("name", sorted(ROBUST))
def test_never_nan(name: str, dtype: torch.dtype) -> None:
    """q → 0, q up to 1e4, |c| = 1 exactly, |s12| a hair above √(q1 q2): no NaN.

    Exp overflows to +inf where exp((q1 + q2 + 2 s)/2) is not representable;
    every other closed form stays finite.
    """
    act = ROBUST[name]
    qs = [0.0, 1e-12, 1e-4, 1.0, 1e4]
    cs = [-1.0, -1 + 1e-7, -0.3, 0.0, 0.5, 1 - 1e-7, 1.0, 1.0 + 1e-7, -1.0 - 1e-7]
    if isinstance(act, NumericalActivation):  # quadrature: tested in test_quadrature.py
        if dtype == torch.float32:
            pytest.skip("numerical duals: float32 covered by the conformance test")
        qs, cs = [0.0, 1e-4, 1e4], [-1.0, 0.5, 1.0 + 1e-7]
    pts = [(a, b, c) for a in qs for b in qs for c in cs]
    q1 = torch.tensor([p[0] for p in pts], dtype=dtype)
    q2 = torch.tensor([p[1] for p in pts], dtype=dtype)
    s12 = torch.tensor([p[2] * math.sqrt(p[0] * p[1]) for p in pts], dtype=dtype)
    n, d = act.dual(q1, q2, s12)
    assert n.dtype == dtype and d.dtype == dtype
    assert not bool(torch.isnan(n).any() or torch.isnan(d).any()), name
    if not isinstance(act, Exp) and not (isinstance(act, Monomial | Hermite) and act.k > 3):
        assert bool(torch.isfinite(n).all() and torch.isfinite(d).all()), name


# --------------------------------------------------------------------------
# Registry and errors
# --------------------------------------------------------------------------


def test_registry_names() -> None:
    expected = {
        "relu", "leaky_relu", "abrelu", "abs", "erf", "gelu", "sin", "cos", "sign", "rbf",
        "gaussian", "exp", "monomial", "rectified_monomial", "hermite", "tanh", "softplus",
        "silu", "elu", "sigmoid",
    }  # fmt: skip
    assert expected <= set(ACTIVATIONS)
    assert activation_from_name("leaky_relu", slope=0.1) == LeakyReLU(0.1)
    assert activation_from_name("LeakyReLU", slope=0.1) == LeakyReLU(0.1)
    assert activation_from_name(" Rectified-Monomial ", k=2) == RectifiedMonomial(2)
    assert activation_from_name("abrelu", a=-1, b=1) == ABReLU(-1.0, 1.0)
    with pytest.raises(ValueError, match=r"unknown activation 'swishy'.*gelu.*relu"):
        activation_from_name("swishy")
    with pytest.raises(TypeError, match="bad parameters for activation 'relu'"):
        activation_from_name("relu", slope=0.1)


@pytest.mark.parametrize(
    ("build", "err", "match"),
    [
        (lambda: Monomial(-1), ValueError, "`k` must be an integer in"),
        (lambda: Hermite(2.5), TypeError, "`k` must be an integer"),
        (lambda: RectifiedMonomial(True), TypeError, "`k`"),
        (lambda: Monomial(99), ValueError, "32"),
        (lambda: Gaussian(-1.0), ValueError, "`gamma` must be >= 0"),
        (lambda: RBF(float("nan")), ValueError, "`gamma` must be finite"),
        (lambda: LeakyReLU("a"), TypeError, "`slope` must be a real number"),
        (lambda: ABReLU(0.0, float("inf")), ValueError, "`b` must be finite"),
        (lambda: Sin(frequency=None), TypeError, "`frequency`"),
    ],
)
def test_bad_parameters(build, err, match) -> None:
    with pytest.raises(err, match=match):
        build()


def test_integer_valued_float_degree_is_accepted() -> None:
    assert Monomial(2.0) == Monomial(2)


# --------------------------------------------------------------------------
# Finite networks (Monte Carlo)
# --------------------------------------------------------------------------
# Error model: |analytic − MC| ≤ Z·sem per entry, Z = 4.5 (two-sided 7e-6 per entry for a
# normal mean; ≤ 30 entries per test).  One hidden layer: the hidden pre-activations are
# exactly Gaussian at any width and, under the NTK parameterization, E[readout²] = 1
# factors out of the empirical NTK, so both estimates are unbiased (no 1/width term).
# n_samples = 100 keeps the sem estimate within ~±7% and the mean close to normal
# (the per-draw NNGP is a skewed product of Gaussians).

Z = 4.5


def _mc_inputs() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 5, generator=g, dtype=F64)
    x[1] = 0.9 * x[0] + 0.1 * x[1]
    x[3] = -x[2]  # an anticorrelated pair
    return x


@pytest.mark.parametrize(
    ("act", "seed"), [(GELU(), 11), (Sign(), 5), (RectifiedMonomial(2), 6)], ids=repr
)
def test_finite_nets_match_monte_carlo(act: Elementwise, seed: int) -> None:
    """Sign also checks its NTK convention (φ' = 0 a.e.) against the empirical NTK."""
    width = 512
    x = _mc_inputs()
    net = serial(Dense(8, 1.3, 0.2), act, Dense(2, 1.1, 0.1))
    k = net.with_width(width).kernel(x)
    mc = monte_carlo_kernel(net, x, width=width, n_samples=100, seed=seed)
    for analytic, est, sem in ((k.nngp, mc.nngp, mc.nngp_sem), (k.ntk, mc.ntk, mc.ntk_sem)):
        # floor: entries that are the same for every draw (Sign's NTK diagonal) have sem 0
        floor = 1e-10 * float(analytic.abs().max())
        worst = float(((analytic - est).abs() / (Z * sem + floor)).max())
        assert worst <= 1.0, f"{act}: max |analytic − MC| / (Z·sem) = {worst:.3g}"


def test_two_hidden_layers_match_monte_carlo() -> None:
    """Depth 2 (ABReLU then Cos): the second layer's pre-activations are only
    asymptotically Gaussian, allowed for by a bias ≤ 3·max|K|/width (Hanin & Nica 2019)."""
    width = 512
    x = _mc_inputs()
    net = serial(
        Dense(8, 1.3, 0.2), ABReLU(-0.3, 1.2), Dense(8, 1.2, 0.1), Cos(), Dense(2, 1.1, 0.1)
    )
    k = net.with_width(width).kernel(x)
    mc = monte_carlo_kernel(net, x, width=width, n_samples=60, seed=3)
    for analytic, est, sem in ((k.nngp, mc.nngp, mc.nngp_sem), (k.ntk, mc.ntk, mc.ntk_sem)):
        bias = 3 * float(analytic.abs().max()) / width
        worst = float(((analytic - est).abs() / (Z * sem + bias)).max())
        assert worst <= 1.0, f"max |analytic − MC| / (Z·sem + bias) = {worst:.3g}"
