"""Log-log slope fits: the one least-squares fit of ``log y = intercept + slope · log x``.

Used wherever a convergence rate is read off a width sweep (finite-width signal
propagation, mean-field gaps, parameterization studies, the demo report).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["LogLogFit", "fit_loglog", "loglog_slope"]


@dataclass(frozen=True)
class LogLogFit:
    """Ordinary least-squares fit ``log y = intercept + slope · log x`` (natural logs).

    Attributes:
        slope, intercept: the fitted line.
        stderr: standard error of ``slope``.  With per-point standard errors ``y_se``
            it is propagated from them through the least-squares weights
            (``σ(log y_i) ≈ y_se_i / y_i``); without, it is estimated from the residual
            scatter, ``√(Σ r_i² / (n − 2) / Σ (log x_i − mean)²)`` (as
            :func:`scipy.stats.linregress`), and ``nan`` for two points.
        n_points: number of points fitted.
    """

    slope: float
    intercept: float
    stderr: float
    n_points: int

    def __iter__(self) -> Iterator[float]:
        """Deprecated tuple unpacking ``slope, intercept, stderr = fit`` (the old return)."""
        warnings.warn(
            "unpacking fit_loglog(...) as a tuple is deprecated; use the attributes "
            "`.slope`, `.intercept` and `.stderr` of the returned LogLogFit",
            DeprecationWarning,
            stacklevel=2,
        )
        return iter((self.slope, self.intercept, self.stderr))


def _positive_1d(name: str, values: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be one-dimensional; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or not np.all(arr > 0):
        raise ValueError(f"`{name}` must be finite and > 0 to take logarithms; got {arr.tolist()}")
    return arr


def fit_loglog(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    y_se: Sequence[float] | np.ndarray | None = None,
) -> LogLogFit:
    """Least-squares slope of ``log y`` against ``log x`` with its standard error.

    Args:
        x: ``(n,)`` positive abscissae (e.g. widths), ``n >= 2`` with at least two
            distinct values.
        y: ``(n,)`` positive values (e.g. errors at those widths).
        y_se: ``(n,)`` non-negative standard errors of ``y``, or ``None``; selects how
            :attr:`LogLogFit.stderr` is computed (see there).
    Returns:
        :class:`LogLogFit`.
    Raises:
        ValueError: shapes differ, fewer than two points, non-positive or non-finite
            ``x``/``y``, negative ``y_se``, or all ``x`` equal.
    """
    lx = np.log(_positive_1d("x", x))
    yy = _positive_1d("y", y)
    if yy.shape != lx.shape:
        raise ValueError(f"`x` and `y` must have the same length; got {lx.size} and {yy.size}")
    if lx.size < 2:
        raise ValueError(f"need at least two points to fit a slope; got {lx.size}")
    ly = np.log(yy)
    xc = lx - lx.mean()
    sxx = float((xc * xc).sum())
    if sxx == 0:
        raise ValueError("`x` must contain at least two distinct values to fit a slope")
    slope = float((xc * (ly - ly.mean())).sum() / sxx)
    intercept = float(ly.mean() - slope * lx.mean())
    if y_se is not None:
        se = np.asarray(y_se, dtype=np.float64)
        if se.shape != yy.shape:
            raise ValueError(f"`y_se` must have the shape of `y` {yy.shape}; got {se.shape}")
        if not np.all(np.isfinite(se)) or np.any(se < 0):
            raise ValueError(f"`y_se` must be finite and >= 0; got {se.tolist()}")
        sig = se / yy
        stderr = float(np.sqrt((xc * xc * sig * sig).sum()) / sxx)
    elif lx.size > 2:
        resid = ly - (intercept + slope * lx)
        stderr = math.sqrt(float((resid * resid).sum()) / (lx.size - 2) / sxx)
    else:
        stderr = float("nan")
    return LogLogFit(slope=slope, intercept=intercept, stderr=stderr, n_points=int(lx.size))


def loglog_slope(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """``fit_loglog(x, y).slope``, or ``nan`` when some ``y`` is ``<= 0`` (no rate to read off).

    For sweeps whose measured quantity may vanish exactly (e.g. a gap that is 0 at every
    width); other invalid input raises as in :func:`fit_loglog`.
    """
    yy = np.asarray(y, dtype=np.float64)
    if yy.size and np.all(np.isfinite(yy)) and np.any(yy <= 0):
        return float("nan")
    return fit_loglog(x, yy).slope
