"""The order/chaos phase diagram in the ``(σw², σb²)`` plane and its critical line.

The critical line (edge of chaos) is ``χ₁(σw², σb²) = 1`` with
``χ₁ = σw² E[φ'(√q* z)²]`` and ``q*`` solved self-consistently from
``q* = σw² E[φ(√q* z)²] + σb²`` (Poole et al. 2016, eq. (7); Schoenholz et al.
2017, Fig. 1).  For each ``σb²`` it is found by Brent's method
(:func:`scipy.optimize.brentq`) on ``σw² ↦ χ₁ − 1``, every evaluation solving
``q*`` anew (:func:`~widelimit.propagation.fixed_points.q_star_many`); the grid
of χ₁ values is only for the picture.

For scale-invariant φ (ReLU) with ``σb > 0`` the q-map has no finite fixed
point at ``χ₁ = 1``: the root ``σw² = 2`` is returned with ``q* = inf`` and
``finite_q=False`` (only ``σb = 0`` is a genuine critical point, where every
``q`` is preserved).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from widelimit.layers.activations import Elementwise
from widelimit.propagation.fixed_points import _d, q_star_many
from widelimit.propagation.maps import activation_label, check_activation

__all__ = [
    "CriticalLine",
    "PhaseDiagram",
    "chi1_grid",
    "critical_line",
    "critical_sigma_w2",
    "phase_diagram",
]

_SW2_MIN, _SW2_MAX = 1e-8, 1e6


def _chi1(
    act: Elementwise, sw2: np.ndarray, sb2: np.ndarray, q0: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(χ₁, q*)`` for arrays of ``σw², σb²``."""
    qs = q_star_many(act, sw2, sb2, q0=q0)
    return np.asarray(sw2) * _d(act, qs), qs


def _check_sb2(value: object) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`sigma_b2` values must be real numbers; got {value!r}") from err
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"`sigma_b2` values must be finite and >= 0 (a variance); got {value!r}")
    return v


def critical_sigma_w2(
    act: Elementwise, sigma_b2: float, *, q0: float = 1.0, xtol: float = 1e-14
) -> tuple[float, float]:
    """``σw²`` on the critical line at bias variance ``σb²``, and ``q*`` there.

    Brackets the root of ``χ₁(σw²) − 1`` by doubling ``σw²`` from 1 (down to
    1e-8, up to 1e6), then :func:`scipy.optimize.brentq` with ``xtol`` and
    ``rtol = 4 eps``.  Raises ``ValueError`` if ``χ₁ − 1`` has no sign change
    in ``[1e-8, 1e6]``.
    """
    act = check_activation(act)
    sb2 = _check_sb2(sigma_b2)

    def f(sw2: float) -> float:
        x1, _ = _chi1(act, np.array([sw2]), np.array([sb2]), q0)
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
            f"no critical point for {activation_label(act)} at sigma_b2={sb2}: χ₁ − 1 does "
            f"not change sign for σw² in [{_SW2_MIN}, {_SW2_MAX}]"
        )
    if f_lo == 0:
        root = lo
    elif f_hi == 0:
        root = hi
    else:
        root = brentq(f, lo, hi, xtol=xtol, rtol=4 * np.finfo(float).eps, maxiter=200)
    qs = float(q_star_many(act, np.array([root]), np.array([sb2]), q0=q0)[0])
    return float(root), qs


@dataclass(frozen=True)
class CriticalLine:
    """Points of the critical line ``χ₁ = 1``.

    Attributes:
        activation: label of φ.
        sigma_b2: ``(K,)`` bias variances σb².
        sigma_w2: ``(K,)`` critical weight variances σw².
        q_star: ``(K,)`` ``q*`` on the line (``inf``: no finite fixed point).
        chi1: ``(K,)`` χ₁ re-evaluated at the root (equals 1 to the root tolerance).
        finite_q: ``(K,)`` whether ``q*`` is finite.
    """

    activation: str
    sigma_b2: np.ndarray
    sigma_w2: np.ndarray
    q_star: np.ndarray
    chi1: np.ndarray
    finite_q: np.ndarray


def critical_line(
    act: Elementwise,
    sigma_b2: Sequence[float] | np.ndarray,
    *,
    q0: float = 1.0,
    progress: bool = True,
) -> CriticalLine:
    """Critical ``σw²`` for every ``σb²`` in ``sigma_b2`` (see :func:`critical_sigma_w2`)."""
    from rich.progress import Progress

    act = check_activation(act)
    sb2 = np.array([_check_sb2(v) for v in np.atleast_1d(np.asarray(sigma_b2, dtype=object))])
    sw2 = np.empty_like(sb2)
    qs = np.empty_like(sb2)
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("critical line", total=sb2.size)
        for i, b in enumerate(sb2):
            sw2[i], qs[i] = critical_sigma_w2(act, b, q0=q0)
            bar.advance(task)
    x1 = sw2 * _d(act, qs)
    return CriticalLine(
        activation=activation_label(act),
        sigma_b2=sb2,
        sigma_w2=sw2,
        q_star=qs,
        chi1=x1,
        finite_q=np.isfinite(qs),
    )


def chi1_grid(
    act: Elementwise, sigma_w2: np.ndarray, sigma_b2: np.ndarray, *, q0: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """``(χ₁, q*)`` on the grid ``σb² × σw²``: both ``(len(sigma_b2), len(sigma_w2))``."""
    act = check_activation(act)
    w = np.asarray(sigma_w2, dtype=np.float64).ravel()
    b = np.asarray(sigma_b2, dtype=np.float64).ravel()
    if (w < 0).any() or (b < 0).any() or not (np.isfinite(w).all() and np.isfinite(b).all()):
        raise ValueError("`sigma_w2` and `sigma_b2` must be finite variances >= 0")
    ww, bb = np.meshgrid(w, b)
    x1, qs = _chi1(act, ww, bb, q0)
    return x1.reshape(ww.shape), qs.reshape(ww.shape)


@dataclass(frozen=True)
class PhaseDiagram:
    """χ₁ on a grid plus the root-found critical line.

    Attributes:
        activation: label of φ.
        sigma_w2: ``(W,)`` grid of σw².
        sigma_b2: ``(B,)`` grid of σb².
        chi1: ``(B, W)`` χ₁ at each grid point.
        q_star: ``(B, W)`` q* at each grid point.
        line: :class:`CriticalLine` at ``line_sigma_b2``.
    """

    activation: str
    sigma_w2: np.ndarray
    sigma_b2: np.ndarray
    chi1: np.ndarray
    q_star: np.ndarray
    line: CriticalLine


def phase_diagram(
    act: Elementwise,
    *,
    sigma_w2: Sequence[float] | np.ndarray | None = None,
    sigma_b2: Sequence[float] | np.ndarray | None = None,
    line_sigma_b2: Sequence[float] | np.ndarray | None = None,
    q0: float = 1.0,
    progress: bool = True,
) -> PhaseDiagram:
    """χ₁ on a ``σb² × σw²`` grid (default ``[0.05, 4] × [0, 1]``, 40 × 30) and the
    critical line at ``line_sigma_b2`` (default 12 values spanning the σb² grid,
    denser at small σb²); the dashed grid contour χ₁ = 1 in the plot is only a cross-check."""
    act = check_activation(act)
    w = np.linspace(0.05, 4.0, 40) if sigma_w2 is None else np.asarray(sigma_w2, dtype=float)
    b = np.linspace(0.0, 1.0, 30) if sigma_b2 is None else np.asarray(sigma_b2, dtype=float)
    if line_sigma_b2 is None:
        # quadratic spacing: the line bends most at small σb²
        line_sigma_b2 = (
            float(b.min()) + (float(b.max()) - float(b.min())) * np.linspace(0, 1, 12) ** 2
        )
    x1, qs = chi1_grid(act, w, b, q0=q0)
    line = critical_line(act, line_sigma_b2, q0=q0, progress=progress)
    return PhaseDiagram(
        activation=activation_label(act), sigma_w2=w, sigma_b2=b, chi1=x1, q_star=qs, line=line
    )
