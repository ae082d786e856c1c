"""Fixed points of the q- and c-maps, their stability, χ₁ and the depth scales.

Definitions (Poole et al. 2016; Schoenholz et al. 2017), with
``V(q) = E_z[φ(√q z)²] = dual(q, q, q)[0]`` and
``D(q) = E_z[φ'(√q z)²] = dual(q, q, q)[1]``:

* ``q*``: the fixed point ``q* = σw² V(q*) + σb²`` reached by iterating the
  q-map from ``q0`` (default 1).  ``inf`` when the iteration diverges (e.g.
  ReLU with ``σw² > 2``; also ``σw² = 2, σb > 0``).
* ``χ_q = dq^{l+1}/dq^l`` at ``q*`` ``= σw² V'(q*)`` (Schoenholz et al. 2017,
  eq. (6): ``χ₁ + σw² E[φ''φ]``); ``ξ_q = −1/ln χ_q``.  ``V'`` is a 5-point
  finite difference of ``V`` (relative accuracy ~1e-7).
* ``χ₁ = σw² D(q*)`` (Poole et al. 2016, eq. (7)): the slope of the c-map at
  ``c = 1``; ordered phase ``χ₁ < 1``, chaotic ``χ₁ > 1``.  At ``q* = 0`` it is
  the ``q → 0⁺`` limit (evaluated at ``q = 1e-150``), at ``q* = inf`` the
  ``q → ∞`` limit (evaluated at ``q = 1e10``).
* ``c*``: the fixed point of the c-map at ``q*`` reached by iterating from
  ``c0`` (default 0.5); ``c = 1`` is always a fixed point.
  ``χ_c = σw² E[φ'(u)φ'(v)]`` at ``(q*, c*)`` (Price's theorem: the c-map's
  slope); ``ξ_c = −1/ln χ_c`` (Schoenholz et al. 2017, eq. (9)).
  When ``q* = 0`` the c-map degenerates (identity for φ differentiable at 0)
  and ``c* = 1`` by convention.
* ``ξ = inf`` when ``χ ≥ 1 − 1e-9`` (no exponential approach: critical or unstable).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from widelimit._validation import check_nonnegative
from widelimit.deprecation import deprecated_attribute, renamed_kwargs, sqrt_variance
from widelimit.layers.activations import Elementwise
from widelimit.propagation.maps import DTYPE, activation_label, check_activation

__all__ = [
    "FixedPoint",
    "c_star",
    "chi1",
    "fixed_point",
    "mean_sq_derivative",
    "q_star",
    "q_star_many",
]

Q_FLOOR = 1e-150  # evaluation point of the q -> 0+ limit
Q_CAP = 1e10  # iterations beyond this variance are treated as diverging
CRITICAL_TOL = 1e-9  # |χ₁ − 1| below this is reported as "critical"
_C_TOL = 1e-13  # c-map residuals below this are rounding, not a sign change

_TABLE: dict[object, tuple[np.ndarray, np.ndarray]] = {}


def _dual(activation: Elementwise, q: np.ndarray, s: np.ndarray | None = None, ntk: bool = False):
    qt = torch.as_tensor(np.asarray(q, dtype=np.float64), dtype=DTYPE)
    st = qt if s is None else torch.as_tensor(np.asarray(s, dtype=np.float64), dtype=DTYPE)
    qt, st = torch.broadcast_tensors(qt, st)
    e, d = activation.dual(qt, qt, st, ntk=ntk)
    return e.numpy(), (None if d is None else d.numpy())


def _v(activation: Elementwise, q: np.ndarray) -> np.ndarray:
    """``V(q) = E[φ(√q z)²]``."""
    return _dual(activation, q)[0]


def mean_sq_derivative(activation: Elementwise, q: np.ndarray) -> np.ndarray:
    """``D(q) = E[φ'(√q z)²]`` (``q`` any shape, float64) with the q → 0⁺ / ∞ limits
    (module docstring); ``χ₁ = σw² D(q*)``."""
    q = np.clip(np.asarray(q, dtype=np.float64), Q_FLOOR, Q_CAP)
    return _dual(activation, q, ntk=True)[1]


def _table(activation: Elementwise) -> tuple[np.ndarray, np.ndarray]:
    """Variance grid ``0, 1e-12 … 1e10`` and ``V`` on it (only to bracket roots)."""
    try:
        hit = _TABLE.get(activation)
    except TypeError:  # unhashable user activation
        hit = None
    if hit is not None:
        return hit
    grid = np.concatenate([[0.0], np.logspace(-12, 10, 661)])
    out = (grid, _v(activation, grid))
    try:
        if len(_TABLE) > 64:
            _TABLE.clear()
        _TABLE[activation] = out
    except TypeError:
        pass
    return out


def _illinois(f, a, b, fa, fb) -> np.ndarray:
    """Vectorised Illinois (modified regula falsi) on brackets with ``fa·fb ≤ 0``.

    ``f(x, idx)`` evaluates the functions of the entries ``idx`` at ``x``.
    Stops at relative bracket width 1e-15 (or an exact zero).
    """
    a, b, fa, fb = (np.array(v, dtype=np.float64).copy() for v in (a, b, fa, fb))
    x = np.where(fa == 0, a, np.where(fb == 0, b, 0.5 * (a + b)))
    active = (fa != 0) & (fb != 0)
    for _ in range(300):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        aa, bb, ffa, ffb = a[idx], b[idx], fa[idx], fb[idx]
        xi = (aa * ffb - bb * ffa) / (ffb - ffa)
        lo, hi = np.minimum(aa, bb), np.maximum(aa, bb)
        xi = np.where((xi > lo) & (xi < hi), xi, 0.5 * (aa + bb))
        fx = f(xi, idx)
        x[idx] = xi
        flip = np.sign(fx) * np.sign(ffb) < 0
        # root between x and b: old b becomes a; else keep a and halve f(a) (Illinois)
        a[idx] = np.where(flip, bb, aa)
        fa[idx] = np.where(flip, ffb, 0.5 * ffa)
        b[idx], fb[idx] = xi, fx
        width = np.abs(b[idx] - a[idx])
        done = (fx == 0) | (width <= 1e-15 * np.abs(xi)) | (width == 0)
        active[idx[done]] = False
    return x


@renamed_kwargs(
    act="activation",
    sigma_w2=("w_std", sqrt_variance),
    sigma_b2=("b_std", sqrt_variance),
)
def q_star_many(
    activation: Elementwise, w_std: np.ndarray, b_std: np.ndarray, q0: float = 1.0
) -> np.ndarray:
    """``q*`` for many ``(σw, σb)`` at once (standard deviations; arrays that broadcast,
    float64 result of the broadcast shape).

    The fixed point reached by the q-map iteration from ``q0``: the q-map is
    increasing for the usual activations, so the iteration moves towards the
    nearest root of ``g(q) = σw² V(q) + σb² − q`` in the direction of
    ``g(q0)``.  The root is bracketed on a log grid and refined by Illinois
    iterations on the exact dual to relative accuracy ~1e-15.
    Returns ``inf`` where no root lies below ``1e10`` (divergence).
    The old keywords ``sigma_w2``/``sigma_b2`` (variances) are deprecated.
    """
    w = np.asarray(w_std, dtype=np.float64)
    b = np.asarray(b_std, dtype=np.float64)
    if not (np.isfinite(w).all() and np.isfinite(b).all() and (w >= 0).all() and (b >= 0).all()):
        raise ValueError("`w_std` and `b_std` must be finite standard deviations >= 0")
    return _q_star_var(activation, w * w, b * b, q0)


def _q_star_var(
    activation: Elementwise, sigma_w2: np.ndarray, sigma_b2: np.ndarray, q0: float = 1.0
) -> np.ndarray:
    """:func:`q_star_many` on variances ``σw², σb²`` (float64 arrays of one shape)."""
    activation = check_activation(activation)
    sw2 = np.atleast_1d(np.asarray(sigma_w2, dtype=np.float64))
    sb2 = np.atleast_1d(np.asarray(sigma_b2, dtype=np.float64))
    sw2, sb2 = np.broadcast_arrays(sw2, sb2)
    shape = sw2.shape
    sw2, sb2 = sw2.ravel().copy(), sb2.ravel().copy()
    q0 = check_nonnegative("q0", q0)
    grid, vgrid = _table(activation)
    g = sw2[:, None] * vgrid[None, :] + sb2[:, None] - grid[None, :]  # (M, G)
    g0 = sw2 * _v(activation, np.array([q0]))[0] + sb2 - q0
    m = sw2.size
    lo, hi = np.zeros(m), np.zeros(m)
    out = np.full(m, np.nan)
    out[g0 == 0] = q0
    above, below = grid[None, :] > q0, grid[None, :] < q0
    # g0 > 0: first grid point above q0 with g <= 0
    up = (g <= 0) & above
    has_up = up.any(axis=1)
    j_up = np.argmax(up, axis=1)
    # g0 < 0: last grid point below q0 with g >= 0 (grid[0] = 0 has g >= 0)
    down = (g >= 0) & below
    has_down = down.any(axis=1)
    j_down = down.shape[1] - 1 - np.argmax(down[:, ::-1], axis=1)
    go_up, go_down = g0 > 0, g0 < 0
    out[go_up & ~has_up] = math.inf
    sel = go_up & has_up
    lo[sel] = np.maximum(q0, grid[np.maximum(j_up[sel] - 1, 0)])
    hi[sel] = grid[j_up[sel]]
    sel2 = go_down & has_down
    lo[sel2] = grid[j_down[sel2]]
    hi[sel2] = np.minimum(q0, grid[np.minimum(j_down[sel2] + 1, grid.size - 1)])
    if bool((go_down & ~has_down).any()):  # φ(0)² σw² + σb² < 0 cannot happen
        raise ValueError("q-map below the identity at q = 0: the activation's dual is invalid")
    todo = np.flatnonzero(sel | sel2)
    if todo.size:

        def f(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
            return sw2[todo][idx] * _v(activation, x) + sb2[todo][idx] - x

        a, b = lo[todo], hi[todo]
        fa = sw2[todo] * _v(activation, a) + sb2[todo] - a
        fb = sw2[todo] * _v(activation, b) + sb2[todo] - b
        out[todo] = _illinois(f, a, b, fa, fb)
    return out.reshape(shape)


@renamed_kwargs(act="activation", sigma_w="w_std", sigma_b="b_std")
def q_star(activation: Elementwise, w_std: float, b_std: float, *, q0: float = 1.0) -> float:
    """Fixed point ``q*`` of the q-map reached from ``q0`` (``inf`` if it diverges)."""
    sw = check_nonnegative("w_std", w_std)
    sb = check_nonnegative("b_std", b_std)
    return float(_q_star_var(activation, np.array([sw * sw]), np.array([sb * sb]), q0=q0)[0])


@renamed_kwargs(act="activation", sigma_w="w_std", sigma_b="b_std")
def chi1(activation: Elementwise, w_std: float, b_std: float, *, q0: float = 1.0) -> float:
    """``χ₁ = σw² E[φ'(√q* z)²] = σw² · dual(q*, q*, q*)[1]`` (Poole et al. 2016, eq. (7))."""
    activation = check_activation(activation)
    qs = q_star(activation, w_std, b_std, q0=q0)
    return float(w_std**2 * mean_sq_derivative(activation, np.array([qs]))[0])


def _derivative(fun, x: float) -> float:
    """``f'(x)`` for ``x ≥ 0`` by 5-point stencils (central, or forward near 0)."""
    h = 1e-2 * x if x > 0 else 1e-4
    if x > 0:
        pts = x + h * np.array([-2.0, -1.0, 1.0, 2.0])
        f = fun(pts)
        return float((f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h))
    pts = h * np.arange(5.0)
    f = fun(pts)
    return float((-25 * f[0] + 48 * f[1] - 36 * f[2] + 16 * f[3] - 3 * f[4]) / (12 * h))


def _depth_scale(chi: float) -> float:
    if not math.isfinite(chi):
        return math.nan
    if chi >= 1.0 - CRITICAL_TOL:  # critical (to the accuracy of χ) or unstable
        return math.inf
    if chi <= 0.0:
        return 0.0
    return -1.0 / math.log(chi)  # Schoenholz et al. 2017, eqs. (6), (9)


@renamed_kwargs(act="activation", sigma_w="w_std", sigma_b="b_std")
def c_star(
    activation: Elementwise, w_std: float, b_std: float, *, q: float | None = None, c0: float = 0.5
) -> float:
    """Fixed point ``c*`` of the c-map at ``q`` (default ``q*``) reached from ``c0``.

    The c-map is increasing in ``c`` (slope ``σw² E[φ'φ'] ≥ 0`` for monotone
    φ), so the iteration moves to the nearest root of ``c_map(c) − c`` in the
    direction of ``c_map(c0) − c0``; bracketed on a grid (dense near ±1) and
    refined by Illinois iterations.
    """
    activation = check_activation(activation)
    sw = check_nonnegative("w_std", w_std)
    sb = check_nonnegative("b_std", b_std)
    c0 = float(c0)
    if not -1.0 <= c0 <= 1.0:
        raise ValueError(f"`c0` must be a correlation in [-1, 1]; got {c0!r}")
    qs = q_star(activation, sw, sb) if q is None else float(q)
    if not qs >= 0:  # NaN or negative
        raise ValueError(f"`q` must be a variance >= 0 (inf allowed: q -> ∞ limit); got {q!r}")
    if qs == 0.0:
        return 1.0  # degenerate c-map at q* = 0 (module docstring)
    qe = min(qs, Q_CAP)
    w2, b2 = sw * sw, sb * sb
    denom = w2 * _v(activation, np.array([qe]))[0] + b2

    def gfun(c: np.ndarray) -> np.ndarray:
        e, _ = _dual(activation, np.full_like(c, qe), c * qe)
        return (w2 * e + b2) / denom - c  # Poole et al. 2016, eq. (5)

    edge = np.logspace(-12, -2, 41)
    grid = np.unique(np.concatenate([np.linspace(-1, 1, 201), 1 - edge, -1 + edge]))
    gv = gfun(grid)
    g0 = float(gfun(np.array([c0]))[0])
    if g0 == 0.0:
        return c0
    if g0 > 0:
        hit = np.flatnonzero((grid > c0) & (grid < 1) & (gv <= -_C_TOL))
        if hit.size == 0:
            return 1.0
        j = hit[0]
        a, b = max(c0, grid[j - 1]), grid[j]
    else:
        hit = np.flatnonzero((grid < c0) & (grid > -1) & (gv >= _C_TOL))
        if hit.size == 0:
            return -1.0
        j = hit[-1]
        a, b = grid[j], min(c0, grid[j + 1])
    fa, fb = gfun(np.array([a])), gfun(np.array([b]))
    return float(_illinois(lambda x, _i: gfun(x), [a], [b], fa, fb)[0])


@dataclass(frozen=True)
class FixedPoint:
    """Fixed points, stability and depth scales at one ``(σw, σb)`` (module docstring).

    Attributes:
        activation, w_std, b_std: the setting.
        q_star: fixed point of the q-map (``inf``: diverges).
        chi_q: slope of the q-map at ``q*`` (``nan`` if ``q* = inf``); stable if < 1.
        xi_q: ``−1/ln χ_q``.
        chi1: ``σw² E[φ'(√q* z)²]``.
        c_star: stable fixed point of the c-map reached from ``c0``.
        chi_c: slope of the c-map at ``c*``; ``ξ_c = −1/ln χ_c``.
        xi_c: correlation depth scale.
        phase: ``"ordered"`` (χ₁ < 1), ``"chaotic"`` (χ₁ > 1) or ``"critical"`` (|χ₁ − 1| ≤ 1e-9).
    """

    activation: str
    w_std: float
    b_std: float
    q_star: float
    chi_q: float
    xi_q: float
    chi1: float
    c_star: float
    chi_c: float
    xi_c: float
    phase: str

    sigma_w = deprecated_attribute("w_std")
    sigma_b = deprecated_attribute("b_std")


@renamed_kwargs(act="activation", sigma_w="w_std", sigma_b="b_std")
def fixed_point(
    activation: Elementwise, w_std: float, b_std: float, *, q0: float = 1.0, c0: float = 0.5
) -> FixedPoint:
    """Compute ``q*, χ_q, ξ_q, χ₁, c*, χ_c, ξ_c`` and the phase (module docstring)."""
    activation = check_activation(activation)
    sw = check_nonnegative("w_std", w_std)
    sb = check_nonnegative("b_std", b_std)
    w2 = sw * sw
    qs = q_star(activation, sw, sb, q0=q0)
    x1 = float(w2 * mean_sq_derivative(activation, np.array([qs]))[0])
    if math.isfinite(qs):
        chi_q = w2 * _derivative(lambda q: _v(activation, q), qs)  # σw² V'(q*), Schoenholz eq. (6)
    else:
        chi_q = math.nan
    cs = c_star(activation, sw, sb, q=qs, c0=c0)
    qe = min(max(qs, Q_FLOOR), Q_CAP)
    _, dd = _dual(activation, np.array([qe]), np.array([cs * qe]), ntk=True)
    chi_c = float(w2 * dd[0])  # σw² E[φ'(u)φ'(v)] at (q*, c*)
    if abs(x1 - 1) <= CRITICAL_TOL:
        phase = "critical"
    else:
        phase = "ordered" if x1 < 1 else "chaotic"
    return FixedPoint(
        activation=activation_label(activation),
        w_std=sw,
        b_std=sb,
        q_star=qs,
        chi_q=chi_q,
        xi_q=_depth_scale(chi_q),
        chi1=x1,
        c_star=cs,
        chi_c=chi_c,
        xi_c=_depth_scale(chi_c),
        phase=phase,
    )
