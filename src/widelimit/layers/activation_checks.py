"""Construction-time checks of the function of :class:`~widelimit.layers.activations.Activation`.

The quadrature dual (:mod:`widelimit._quadrature`) is exact only for functions that are
elementwise, whose square (and the square of the derivative, for the NTK) has a finite
Gaussian mean, and that are smooth except at 0.  These checks refuse, with the reason
and a remedy, the functions that would otherwise give a silently wrong kernel:

* :func:`check_elementwise`: the function applied to a ``(4, 6, 5)`` batch must equal
  it applied to the flattened batch, to a permutation of it and to single entries
  (catches ``softmax(z, -1)``, ``z − z.mean()``, shape changes).
* :func:`moment_problem`: ``E[h(√q z)²]`` for ``q ∈ {0.1, 1, 10}``, integrated over
  ``ε ≤ |z| ≤ Z`` by composite Gauss–Legendre panels graded towards 0, must not move
  (relative 1e-6) when the range widens from ``(1e-8, 12)`` to ``(1e-14, 16)``: a
  divergent integral grows (``exp(z²)`` at infinity, ``1/z`` or ``1/√|z|`` at 0) or
  overflows.  Integrable but strong singularities at 0 (e.g. ``|z|^{-1/2}``) also fail:
  the quadrature's grading would not resolve them.
* :func:`find_jump`: on geometric windows covering ``1e-3 ≤ |x| ≤ 1e3`` (ratio 1.01),
  a window whose variation is concentrated in one tenth of it, twice in a row on
  refinement, holds a jump (of ``φ``: a step; of ``φ'``: a kink).  A smooth function
  spreads its variation (one tenth carries ~1/10 of it).  Windows where the function
  overflows are skipped (that is a question of moments); jumps smaller than
  ``1e-7·(1 + |f|)`` are ignored (``F.softplus`` jumps by 2e-9 at its threshold 20).
  Non-smooth points closer to 0 than 1e-3, or beyond 1e3, are not searched.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from widelimit._quadrature import gauss_legendre

__all__ = ["check_elementwise", "find_jump", "moment_problem"]

Fn = Callable[[Tensor], Tensor]


def _apply(f: Fn, x: Tensor, what: str, label: str) -> Tensor:
    try:
        y = f(x)
    except Exception as err:
        raise TypeError(
            f"{label}: `{what}` failed on a float64 tensor of shape {tuple(x.shape)}: "
            f"{type(err).__name__}: {err}. It must be an elementwise torch function"
        ) from err
    if not isinstance(y, Tensor) or y.shape != x.shape:
        got = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(
            f"{label}: `{what}` must be elementwise (output shaped like its input); on shape "
            f"{tuple(x.shape)} it returned {got}"
        )
    if y.is_complex():
        raise TypeError(
            f"{label}: `{what}` returned complex values (dtype {y.dtype}); activations must be "
            "real-valued (the imaginary part would be dropped). Return e.g. its real part"
        )
    return y.detach().to(torch.float64)


def check_elementwise(f: Fn, what: str, label: str) -> None:
    """``ValueError`` unless ``f`` acts entry by entry (module docstring)."""
    gen = torch.Generator().manual_seed(0)
    x = 2 * torch.randn(4, 6, 5, generator=gen, dtype=torch.float64)
    flat = x.reshape(-1)
    perm = torch.randperm(flat.numel(), generator=gen)
    y = _apply(f, x, what, label).reshape(-1)
    ys = {
        "the flattened batch": (_apply(f, flat, what, label), y),
        "a permutation of the batch": (_apply(f, flat[perm], what, label), y[perm]),
        "single entries": (
            torch.cat([_apply(f, flat[i : i + 1], what, label) for i in range(6)]),
            y[:6],
        ),
    }
    for how, (got, ref) in ys.items():
        same = (
            (got == ref)
            | ((got - ref).abs() <= 1e-10 * (ref.abs() + got.abs()))
            | (got.isnan() & ref.isnan())
        )
        if not bool(same.all()):
            i = int((~same).nonzero()[0, 0])
            raise ValueError(
                f"{label}: `{what}` is not elementwise: applied to {how} it gives "
                f"{float(got[i])!r} where applied to the whole (4, 6, 5) batch it gave "
                f"{float(ref[i])!r}. Activation needs φ(x)[i] to depend on x[i] only (no "
                "softmax/normalisation over an axis); write such maps as their own layer"
            )


def _moment(h: Fn, q: float, eps: float, zmax: float) -> float:
    """``∫_{eps ≤ |z| ≤ zmax} h(√q z)² p(z) dz`` (composite Gauss–Legendre, 16 points a panel)."""
    inner = [eps * 4.0**k for k in range(int(math.log(1 / eps, 4)) + 1)] + [1.0]
    breaks = np.array(sorted(set(inner)) + list(np.arange(2.0, zmax + 1)))
    x, w = gauss_legendre(16)
    a, b = breaks[:-1, None], breaks[1:, None]
    z = ((b - a) / 2 * x + (a + b) / 2).ravel()
    wz = ((b - a) / 2 * w).ravel() * np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    zz = torch.as_tensor(np.concatenate([-z, z]))
    ww = torch.as_tensor(np.concatenate([wz, wz]))
    with torch.no_grad():
        v = h(math.sqrt(q) * zz).to(torch.float64)
        return float((v * v * ww).sum())


def moment_problem(h: Fn, what: str) -> str | None:
    """A sentence saying why ``E[h(x)²]``, ``x ~ N(0, q)``, is infinite or unresolvable
    for some ``q ∈ {0.1, 1, 10}`` (module docstring), or ``None`` when it is finite."""
    for q in (0.1, 1.0, 10.0):
        narrow, wide = _moment(h, q, 1e-8, 12.0), _moment(h, q, 1e-14, 16.0)
        if not (math.isfinite(narrow) and math.isfinite(wide)):
            return (
                f"E[{what}(x)²] under x ~ N(0, {q}) is not finite (the integrand overflows "
                "or is NaN on the integration range)"
            )
        if abs(wide - narrow) > 1e-6 * abs(wide) + 1e-300:
            return (
                f"E[{what}(x)²] under x ~ N(0, {q}) appears infinite: integrated over "
                f"1e-8 ≤ |z| ≤ 12 it is {narrow:.6g}, over 1e-14 ≤ |z| ≤ 16 it is {wide:.6g} "
                "(it grows with the range: a singularity at 0 or growth like exp(z²))"
            )
    return None


def find_jump(f: Fn) -> float | None:
    """A point ``x`` with ``1e-3 ≤ |x| ≤ 1e3`` where ``f`` jumps, or ``None`` (module docstring)."""
    edges = torch.tensor(
        np.geomspace(1e-3, 1e3, int(math.log(1e6) / math.log(1.01)) + 1), dtype=torch.float64
    )
    for sign in (1.0, -1.0):
        lo, hi = sign * edges[:-1], sign * edges[1:]
        for _ in range(3):  # the window, then its busiest tenth, twice
            t = torch.linspace(0, 1, 11, dtype=torch.float64)
            pts = lo[:, None] + (hi - lo)[:, None] * t
            with torch.no_grad():
                v = f(pts.reshape(-1)).to(torch.float64).reshape(pts.shape)
            d = (v[:, 1:] - v[:, :-1]).abs()
            tv = d.sum(1)
            # jumps below 1e-7 of the function's size are ignored: F.softplus jumps by
            # e^{-20} ≈ 2e-9 where it switches to x (threshold 20), an error far below that
            scale = 1e-7 * (1 + v.abs().amax(1))
            # overflow (e.g. exp(x²) far out) is a question of moments, not of jumps
            busy = torch.isfinite(tv) & (d.amax(1) > 0.5 * tv) & (tv > scale)
            if not bool(busy.any()):
                break
            k = d.nan_to_num(nan=math.inf).argmax(1)
            lo, hi = (
                pts.gather(1, k[:, None])[:, 0][busy],
                pts.gather(1, k[:, None] + 1)[:, 0][busy],
            )
        else:
            return float((lo[0] + hi[0]) / 2)
    return None
