"""The order/chaos phase diagram and its critical line.

Arguments and results are standard deviations ``w_std`` (σw) and ``b_std`` (σb), as
everywhere in widelimit (docs/conventions.md); the maps themselves depend on the
variances σw², σb², which the root finding uses internally and the plots show.

The critical line (edge of chaos) is ``χ₁(σw², σb²) = 1`` with
``χ₁ = σw² E[φ'(√q* z)²]`` and ``q*`` solved self-consistently from
``q* = σw² E[φ(√q* z)²] + σb²`` (Poole et al. 2016, eq. (7); Schoenholz et al.
2017, Fig. 1).  For each ``σb²`` it is found by Brent's method
(:func:`scipy.optimize.brentq`) on ``σw² ↦ χ₁ − 1``, every evaluation solving
``q*`` anew (:func:`~widelimit.propagation.fixed_points.q_star_many`); the grid
of χ₁ values is only for the picture.

For scale-invariant φ (ReLU) with ``σb > 0`` the q-map has no finite fixed
point at ``χ₁ = 1``: the root ``σw = √2`` is returned with ``q* = inf`` and
``finite_q=False`` (only ``σb = 0`` is a genuine critical point, where every
``q`` is preserved).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from widelimit.deprecation import (
    deprecated_attribute,
    deprecated_function,
    renamed_kwargs,
    sqrt_variance,
    square_std,
)
from widelimit.layers.activations import Elementwise
from widelimit.progress import progress_bar
from widelimit.propagation.fixed_points import mean_sq_derivative, q_star_many
from widelimit.propagation.maps import activation_label, check_activation

__all__ = [
    "CriticalLine",
    "PhaseDiagram",
    "chi1_grid",
    "critical_line",
    "critical_sigma_w2",
    "critical_w_std",
    "phase_diagram",
]

_SW2_MIN, _SW2_MAX = 1e-8, 1e6


def _chi1(
    activation: Elementwise, sw2: np.ndarray, sb2: np.ndarray, q0: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(χ₁, q*)`` for arrays of variances ``σw², σb²``."""
    qs = q_star_many(activation, np.sqrt(sw2), np.sqrt(sb2), q0=q0)
    return np.asarray(sw2) * mean_sq_derivative(activation, qs), qs


def _check_scale(name: str, value: object, what: str) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as err:
        raise TypeError(f"`{name}` values must be real numbers; got {value!r}") from err
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"`{name}` values must be finite and >= 0 ({what}); got {value!r}")
    return v


def _critical_w2(
    activation: Elementwise, sb2: float, q0: float, xtol: float
) -> tuple[float, float]:
    """Root ``σw²`` of ``χ₁(σw², σb²) − 1`` and ``q*`` there (see :func:`critical_w_std`)."""

    def f(sw2: float) -> float:
        x1, _ = _chi1(activation, np.array([sw2]), np.array([sb2]), q0)
        return float(x1[0]) - 1.0

    lo, hi = 1.0, 1.0
    f_lo = f_hi = f(1.0)
    while f_lo > 0 and lo > _SW2_MIN:
        hi, f_hi = lo, f_lo
        lo = lo / 2
        f_lo = f(lo)
    while f_hi < 0 and hi < _SW2_MAX:
        lo, f_lo = hi, f_hi
        hi = hi * 2
        f_hi = f(hi)
    if f_lo > 0 or f_hi < 0:
        raise ValueError(
            f"no critical point for {activation_label(activation)} at σb² = {sb2}: χ₁ − 1 "
            f"does not change sign for σw² in [{_SW2_MIN}, {_SW2_MAX}]"
        )
    if f_lo == 0:
        root = lo
    elif f_hi == 0:
        root = hi
    else:
        root = brentq(f, lo, hi, xtol=xtol, rtol=4 * np.finfo(float).eps, maxiter=200)
    qs = float(q_star_many(activation, np.sqrt([root]), np.sqrt([sb2]), q0=q0)[0])
    return float(root), qs


@renamed_kwargs(act="activation")
def critical_w_std(
    activation: Elementwise, b_std: float, *, q0: float = 1.0, xtol: float = 1e-14
) -> tuple[float, float]:
    """``w_std`` (σw) on the critical line at bias standard deviation ``b_std``, and ``q*``.

    Brackets the root of ``χ₁(σw²) − 1`` by doubling ``σw²`` from 1 (down to 1e-8, up
    to 1e6), then :func:`scipy.optimize.brentq` in ``σw²`` with ``xtol`` (in σw² units)
    and ``rtol = 4 eps``; returns ``(√root, q*)``.  Raises ``ValueError`` if ``χ₁ − 1``
    has no sign change in ``σw² ∈ [1e-8, 1e6]``.
    """
    activation = check_activation(activation)
    sb = _check_scale("b_std", b_std, "a standard deviation")
    w2, qs = _critical_w2(activation, sb * sb, q0, xtol)
    return math.sqrt(w2), qs


@deprecated_function("critical_w_std(activation, b_std), which takes and returns σ, not σ²")
def critical_sigma_w2(
    act: Elementwise, sigma_b2: float, *, q0: float = 1.0, xtol: float = 1e-14
) -> tuple[float, float]:
    """Deprecated: ``(σw², q*)`` on the critical line at bias *variance* ``sigma_b2``.

    Use :func:`critical_w_std` (standard deviations in and out).
    """
    act = check_activation(act)
    return _critical_w2(act, _check_scale("sigma_b2", sigma_b2, "a variance"), q0, xtol)


@dataclass(frozen=True)
class CriticalLine:
    """Points of the critical line ``χ₁ = 1``.

    Attributes:
        activation: label of φ.
        b_std: ``(K,)`` bias standard deviations σb.
        w_std: ``(K,)`` critical weight standard deviations σw.
        q_star: ``(K,)`` ``q*`` on the line (``inf``: no finite fixed point).
        chi1: ``(K,)`` χ₁ re-evaluated at the root (equals 1 to the root tolerance).
        finite_q: ``(K,)`` whether ``q*`` is finite.
    """

    activation: str
    b_std: np.ndarray
    w_std: np.ndarray
    q_star: np.ndarray
    chi1: np.ndarray
    finite_q: np.ndarray

    sigma_b2 = deprecated_attribute("b_std", square_std)
    sigma_w2 = deprecated_attribute("w_std", square_std)


@renamed_kwargs(act="activation", sigma_b2=("b_std", sqrt_variance))
def critical_line(
    activation: Elementwise,
    b_std: Sequence[float] | np.ndarray,
    *,
    q0: float = 1.0,
    progress: bool = True,
) -> CriticalLine:
    """Critical ``w_std`` for every ``b_std`` (standard deviations; see :func:`critical_w_std`).

    The old keyword ``sigma_b2=`` (variances) is deprecated and converted.
    """
    activation = check_activation(activation)
    sb = np.array(
        [
            _check_scale("b_std", v, "a standard deviation")
            for v in np.atleast_1d(np.asarray(b_std, dtype=object))
        ],
        dtype=np.float64,
    )
    sw2 = np.empty_like(sb)
    qs = np.empty_like(sb)
    with progress_bar(progress) as bar:
        task = bar.add_task("critical line", total=sb.size)
        for i, b in enumerate(sb):
            sw2[i], qs[i] = _critical_w2(activation, b * b, q0, 1e-14)
            bar.advance(task)
    x1 = sw2 * mean_sq_derivative(activation, qs)
    return CriticalLine(
        activation=activation_label(activation),
        b_std=sb,
        w_std=np.sqrt(sw2),
        q_star=qs,
        chi1=x1,
        finite_q=np.isfinite(qs),
    )


@renamed_kwargs(
    act="activation", sigma_w2=("w_std", sqrt_variance), sigma_b2=("b_std", sqrt_variance)
)
def chi1_grid(
    activation: Elementwise, w_std: np.ndarray, b_std: np.ndarray, *, q0: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """``(χ₁, q*)`` on the grid ``b_std × w_std``: both ``(len(b_std), len(w_std))``."""
    activation = check_activation(activation)
    w = np.asarray(w_std, dtype=np.float64).ravel()
    b = np.asarray(b_std, dtype=np.float64).ravel()
    if (w < 0).any() or (b < 0).any() or not (np.isfinite(w).all() and np.isfinite(b).all()):
        raise ValueError("`w_std` and `b_std` must be finite standard deviations >= 0")
    ww, bb = np.meshgrid(w, b)
    x1, qs = _chi1(activation, ww * ww, bb * bb, q0)
    return x1.reshape(ww.shape), qs.reshape(ww.shape)


@dataclass(frozen=True)
class PhaseDiagram:
    """χ₁ on a grid plus the root-found critical line.

    Attributes:
        activation: label of φ.
        w_std: ``(W,)`` grid of σw.
        b_std: ``(B,)`` grid of σb.
        chi1: ``(B, W)`` χ₁ at each grid point.
        q_star: ``(B, W)`` q* at each grid point.
        line: :class:`CriticalLine` at ``line_b_std``.
    """

    activation: str
    w_std: np.ndarray
    b_std: np.ndarray
    chi1: np.ndarray
    q_star: np.ndarray
    line: CriticalLine

    sigma_w2 = deprecated_attribute("w_std", square_std)
    sigma_b2 = deprecated_attribute("b_std", square_std)


@renamed_kwargs(
    act="activation",
    sigma_w2=("w_std", sqrt_variance),
    sigma_b2=("b_std", sqrt_variance),
    line_sigma_b2=("line_b_std", sqrt_variance),
)
def phase_diagram(
    activation: Elementwise,
    *,
    w_std: Sequence[float] | np.ndarray | None = None,
    b_std: Sequence[float] | np.ndarray | None = None,
    line_b_std: Sequence[float] | np.ndarray | None = None,
    q0: float = 1.0,
    progress: bool = True,
) -> PhaseDiagram:
    """χ₁ on a ``b_std × w_std`` grid and the critical line at ``line_b_std``.

    Defaults: the grid is uniform in the variances, ``σw² ∈ [0.05, 4]`` (40 points) ×
    ``σb² ∈ [0, 1]`` (30 points), given as standard deviations ``√σ²``; the line has 12
    points spanning the σb² grid, quadratically spaced in σb² (denser at small σb², where
    it bends most).  The dashed grid contour χ₁ = 1 in the plot is only a cross-check.
    The old keywords ``sigma_w2``, ``sigma_b2``, ``line_sigma_b2`` (variances) are
    deprecated and converted.
    """
    activation = check_activation(activation)
    w = np.sqrt(np.linspace(0.05, 4.0, 40)) if w_std is None else np.asarray(w_std, dtype=float)
    b = np.sqrt(np.linspace(0.0, 1.0, 30)) if b_std is None else np.asarray(b_std, dtype=float)
    if line_b_std is None:
        b2_lo, b2_hi = float(b.min()) ** 2, float(b.max()) ** 2
        line_b_std = np.sqrt(b2_lo + (b2_hi - b2_lo) * np.linspace(0, 1, 12) ** 2)
    x1, qs = chi1_grid(activation, w, b, q0=q0)
    line = critical_line(activation, line_b_std, q0=q0, progress=progress)
    return PhaseDiagram(
        activation=activation_label(activation), w_std=w, b_std=b, chi1=x1, q_star=qs, line=line
    )
