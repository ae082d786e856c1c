"""Numerical bivariate Gaussian expectations for arbitrary activations.

Public contract (used by ``widelimit.layers.activations.Activation``)::

    gaussian_dual(fn, dfn, q1, q2, s12, *, ntk) -> (E[fn(u) fn(v)], E[dfn(u) dfn(v)] or None)

with ``(u, v) ~ N(0, [[q1, s12], [s12, q2]])``.  ``q1, q2, s12`` are tensors that
broadcast together (any shape, float32/float64, any device); the outputs have the
broadcast shape, dtype and device.  ``fn``/``dfn`` are elementwise torch callables
whose only non-smooth point (kink or jump) may be at 0.

Method.  Write ``c = s12/√(q1 q2)``, ``u = √q1 z1``, ``v = √q2 z2``, corr(z1, z2) = c.

1. *Mehler series* (separable, cheap):  with normalised Hermite polynomials
   ``h_k = He_k/√k!`` and per-variance coefficients ``α_k(q) = E[φ(√q z) h_k(z)]``,

       E[φ(u) φ(v)] = Σ_k c^k α_k(q1) α_k(q2)            (Mehler 1866; O'Donnell 2014, §11.2)

   The ``α_k`` (k < 256) are 1-D integrals, computed once per distinct variance
   with a composite Gauss–Legendre rule graded towards the kink at 0.  By
   Cauchy–Schwarz the tail after ``K`` terms is at most ``|c|^K √(T_K(q1) T_K(q2))``
   with ``T_K(q) = E[φ(√q z)²] − Σ_{k<K} α_k(q)²`` (Parseval): a *certified*
   per-entry bound, required to be ``<= rtol·√(E[φ(u)²] E[φ(v)²])``.  The sum is
   done by Horner's rule in ``c²`` (even and odd parts; terms vanishing by
   symmetry, e.g. all even ones for tanh, are skipped) on blocks of entries, with
   one length for the block chosen by a cost model; entries the block's length
   does not certify are redone with their own length (≤ 256).
2. ``|c| = 1`` (within 4 ulps): ``E[φ(√q1 z) φ(±√q2 z)]``, a 1-D integral.
3. Entries no Mehler length certifies (|c| near 1 with a kinked or steep
   activation): polar coordinates.  With ``θ = arccos c``, ``z1 = r cos(ψ − θ/2)``,
   ``z2 = r cos(ψ + θ/2)``, the kinks ``u = 0`` and ``v = 0`` lie on the rays
   ``ψ = ±θ/2 ± π/2``; the four arcs between them and the radius get Gauss rules
   (Gauss–Legendre on the arcs, the Gauss rule of ``r e^{-r²/2}`` radially) — for
   variances > 4 composite rules graded towards the arc ends and ``r = 0`` to
   resolve the activation scale ``1/√q`` — so the integrand is analytic on every
   panel.  ~5·10³ (q ≤ 4) to ~5·10⁴ (q = 10⁴) points an entry.  When there are
   many such entries, the polar rule is tabulated on a tensor Chebyshev grid in
   ``(θ, log q1, log q2)`` and interpolated (barycentric formula); the
   interpolant is checked against the direct rule on 24 random entries and
   refined, or abandoned for the direct rule, if it is off by > 1e-11 of the
   table's largest value.

Accuracy, float64, against nested ``scipy.integrate.quad`` (tests/test_quadrature.py,
grid q1, q2 ∈ {1e-4, 1e-2, 1, 30, 1e4}, 17 correlations from −1 to 1 including
±(1 − 1e-12)): worst relative error 5.9e-11 over tanh, softplus, SiLU, ELU,
sigmoid, for both ``E[φφ]`` and ``E[φ'φ']``.  float32 inputs: coefficients and
polar rules in float64, the Horner sum in float32 (rtol 1e-7; ~1e-6 relative).

Cost: one 4000×4000 tanh layer (NNGP and NTK factors) costs about as much as the
ReLU arc-cosine closed form (``benchmarks/quadrature.py``).  Values are
computed under ``torch.no_grad``.

Memory: blocks of ``_BLOCK`` (2^17) entries with ~6 block-sized temporaries
besides the outputs; polar rules on at most ``_POLAR_BLOCK`` (2^21) points at a
time; coefficient tables ``(256, #distinct variances)`` and, for q tensors of at
most 2^15 entries, ``(256, *q.shape)``.  So a few tens of MB beyond the outputs
for a 4000×4000 kernel, independent of the input size otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache, lru_cache

import numpy as np
import torch
from torch import Tensor

from widelimit._validation import broadcast_shapes

__all__ = [
    "autograd_derivative",
    "gauss_legendre",
    "gaussian_dual",
    "gaussian_expectation",
    "gaussian_mean",
]

Fn = Callable[[Tensor], Tensor]
Pair = tuple[Fn, Fn]  # (function of u, function of v)
Names = tuple[str, str]  # their argument names, for error messages

_KMAX = 256  # Hermite coefficients per variance
_LADDER = (8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)  # Mehler lengths tried per entry
_BLOCK = 1 << 17  # entries per Horner block
_SMALL = 1 << 15  # q tensors up to this size get precomputed coefficient tables
_HARD_COST = 2000  # cost of an entry left to the polar paths, in Horner terms
_POLAR_BLOCK = 1 << 21  # quadrature points per polar block
_ZMAX = 12.0  # |z| cut-off: e^{-z²/4} ≤ 2e-16 beyond (Hermite functions are ≤ O(1))
_RMAX = 10.0  # radial cut-off of the polar rule: r³ e^{-r²/2} < 2e-19
_GL = 16  # Gauss–Legendre points per panel (Mehler coefficients)
_GL_POLAR = 12  # Gauss–Legendre points per panel (polar rule)


# --------------------------------------------------------------------------
# Quadrature rules (numpy float64; cached)
# --------------------------------------------------------------------------


@cache
def gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n``-point Gauss–Legendre nodes and weights on ``[-1, 1]`` (float64, cached, read-only).

    Exact for polynomials of degree ``<= 2n − 1``.  The one cached copy of
    :func:`numpy.polynomial.legendre.leggauss` used by the quadrature rules.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"`n` must be a positive integer number of nodes; got {n!r}")
    x, w = np.polynomial.legendre.leggauss(n)
    x.flags.writeable = False
    w.flags.writeable = False
    return x, w


def _panels(breaks: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss–Legendre nodes/weights on consecutive ``breaks``."""
    x, w = gauss_legendre(n)
    a, b = breaks[:-1, None], breaks[1:, None]
    return ((b - a) / 2 * x + (a + b) / 2).ravel(), ((b - a) / 2 * w).ravel()


def _graded_breaks(smallest: float, top: float, ratio: float = 0.25) -> list[float]:
    """Breakpoints ``0 < smallest·… < top`` growing geometrically by 1/ratio."""
    out = [top]
    while out[-1] * ratio > smallest:
        out.append(out[-1] * ratio)
    out.append(0.0)
    return out[::-1]


@lru_cache(maxsize=64)
def _line_rule(levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes/weights for ``E_{z~N(0,1)}[h(z)]`` with ``h`` analytic off ``z = 0``.

    Unit panels on ``1 ≤ |z| ≤ 12``; below 1, panels graded by factor 4 down to
    ``4^-levels`` so that features of ``φ(√q z)`` at scale ``1/√q`` are resolved.
    """
    breaks = np.array(_graded_breaks(4.0**-levels, 1.0) + list(np.arange(2.0, _ZMAX + 1)))
    z, w = _panels(breaks, _GL)
    z = np.concatenate([-z[::-1], z])
    w = np.concatenate([w[::-1], w]) * np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    return z, w


def _levels(qmax: float, scale: float) -> int:
    """Geometric levels (factor 4) needed to reach a panel of ``scale/√qmax``."""
    if qmax <= 0:
        return 1
    return max(1, math.ceil(math.log(max(1.0, math.sqrt(qmax) / scale), 4)) + 1)


@cache
def _rayleigh(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss rule for the weight ``r e^{-r²/2}`` on ``[0, ∞)`` (Golub–Welsch).

    Recurrence coefficients by the discretised Stieltjes procedure (Gautschi 2004,
    §2.2.3) on a fine composite Gauss–Legendre grid of ``[0, 13]`` (mass beyond
    13 is e^{-84}).
    """
    r, w = _panels(np.linspace(0.0, 13.0, 66), 30)
    w = w * r * np.exp(-r * r / 2)
    alpha, beta = np.zeros(n), np.zeros(n)
    p_prev, p = np.zeros_like(r), np.ones_like(r)
    norm = beta[0] = w.sum()
    for k in range(n):
        alpha[k] = (w * r * p * p).sum() / norm
        p_prev, p = p, (r - alpha[k]) * p - (beta[k] if k else 0.0) * p_prev
        new_norm = (w * p * p).sum()
        if k + 1 < n:
            beta[k + 1] = new_norm / norm
        norm = new_norm
    off = np.sqrt(beta[1:])
    nodes, vecs = np.linalg.eigh(np.diag(alpha) + np.diag(off, 1) + np.diag(off, -1))
    return nodes, beta[0] * vecs[0] ** 2


@lru_cache(maxsize=64)
def _polar_rules(levels: int) -> tuple[np.ndarray, ...]:
    """Arc rules on [0, 1] for short and long arcs, radial rule with ``r e^{-r²/2}``.

    ``levels = 0`` (variances <= 4, the activation varies on scales >= 1/2):
    plain Gauss–Legendre on the arcs (12 nodes short, 40 long) and the 48-node
    Gauss rule of the radial weight.  ``levels >= 1``: composite rules graded
    geometrically (factor 4, ``levels`` steps) to both arc ends and to ``r = 0``.
    Returns ``(t_short, w_short, t_long, w_long, r, w_r)``.
    """
    if levels == 0:
        (ts, ws), (tl, wl) = gauss_legendre(12), gauss_legendre(40)
        r, wr = _rayleigh(48)
        return (ts + 1) / 2, ws / 2, (tl + 1) / 2, wl / 2, r, wr
    half = np.array(_graded_breaks(0.5 * 4.0**-levels, 0.5))
    t, wt = _panels(np.concatenate([half, 1.0 - half[-2::-1]]), _GL_POLAR)
    rb = np.array([*_graded_breaks(4.0**-levels, 1.0), 2.0, 3.0, 4.0, 6.0, _RMAX])
    r, wr = _panels(rb, _GL_POLAR)
    return t, wt, t, wt, r, wr * r * np.exp(-r * r / 2)


@lru_cache(maxsize=8)
def _hermite_table(levels: int, kmax: int) -> np.ndarray:
    """``(len(z), kmax)`` normalised Hermite polynomials ``He_k(z)/√k!`` at the line nodes."""
    z, _ = _line_rule(levels)
    h = np.empty((z.size, kmax))
    h[:, 0] = 1.0
    h[:, 1] = z
    for k in range(1, kmax - 1):  # h_{k+1} = (z h_k − √k h_{k−1}) / √(k+1)
        h[:, k + 1] = (z * h[:, k] - math.sqrt(k) * h[:, k - 1]) / math.sqrt(k + 1)
    return h


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def autograd_derivative(fn: Fn) -> Fn:
    """Elementwise derivative of an elementwise torch function, by autograd (vectorised).

    ``d(x)[i] = ∂ fn(x)[i] / ∂ x[i]``, obtained as the gradient of ``fn(x).sum()``,
    which is exact for elementwise functions.  Constant functions give zeros.  When
    autograd records ``x`` the result is differentiable itself (``create_graph``), so
    ``autograd_derivative(autograd_derivative(fn))`` is the second derivative.
    """

    def dfn(x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            y = fn(x)
            if not isinstance(y, Tensor) or not y.requires_grad:
                return torch.zeros_like(x)
            (g,) = torch.autograd.grad(y.sum(), x, create_graph=True, allow_unused=True)
            return torch.zeros_like(x) if g is None else g
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            y = fn(xx)
            if not isinstance(y, Tensor) or not y.requires_grad:
                return torch.zeros_like(x)
            (g,) = torch.autograd.grad(y.sum(), xx, allow_unused=True)
        return torch.zeros_like(x) if g is None else g.detach()

    return dfn


def _call(fn: Fn, x: Tensor, name: str) -> Tensor:
    y = fn(x)
    if not isinstance(y, Tensor) or y.shape != x.shape:
        got = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(
            f"`{name}` must be an elementwise torch function (same output shape as input); "
            f"called on shape {tuple(x.shape)} it returned {got}"
        )
    return y.to(x.dtype)


class _Coefficients:
    """Mehler coefficients of one function ``f`` for a set of distinct variances ``q``.

    Attributes:
        a: ``(U, KMAX)``, ``a[i, k] = E[f(√q_i z) h_k(z)]`` (float64).
        tail: ``(U, len(_LADDER))``, ``√(T_K(q_i)/E[f²])`` for ``K = _LADDER[j]``
            (relative Parseval tail, see the module docstring).
        values: ``(U, L)``, ``f(√q_i z_l)`` at the nodes of the line rule.
        w: ``(L,)`` weights of the line rule (Gaussian density included).
    """

    def __init__(self, fn: Fn, name: str, q: Tensor, levels: int) -> None:
        dev = q.device
        z = torch.as_tensor(_line_rule(levels)[0], device=dev)
        self.w = torch.as_tensor(_line_rule(levels)[1], device=dev)
        h = torch.as_tensor(_hermite_table(levels, _KMAX), device=dev)
        sq = q.sqrt()
        vals = _call(fn, sq[:, None] * z[None, :], name)
        if not bool(torch.isfinite(vals).all()):
            raise ValueError(
                f"`{name}` returned NaN/inf on Gaussian inputs up to |x| = "
                f"{_ZMAX * float(sq.max()):.3g}; it must be finite on the whole real line"
            )
        self.values = vals
        self.a = (vals * self.w) @ h
        self.aT = self.a.T.contiguous()  # (KMAX, U): row k is contiguous
        e2 = (vals * vals) @ self.w
        # the rule stops at |z| = 12: the last unit panel must carry a small part of E[f²]
        # (1e-4 flags f² growing like e^{z²/2} or faster, an infinite integral, and growth
        # so fast that the truncation error would exceed 1e-4; e^{1.2 x} at q = 30 has 5e-6)
        far = z.abs() > _ZMAX - 1
        outer = (vals * vals)[:, far] @ self.w[far]
        if bool((outer > 1e-4 * e2).any()):
            i = int((outer / e2.clamp_min(1e-300)).argmax())
            raise ValueError(
                f"`{name}` grows too fast for the Gaussian quadrature: under x ~ N(0, "
                f"{float(q[i]):.6g}), |x| > {(_ZMAX - 1) * float(sq[i]):.4g} (11 standard "
                f"deviations) carries {float(outer[i] / e2[i]):.2g} of E[{name}(x)²], so that "
                "second moment is infinite or not resolved. Use a function with finite "
                "Gaussian moments at these variances (e.g. growing at most polynomially)"
            )
        # T_K = E[f²] − Σ_{k<K} α_k²  (Parseval), relative to E[f²], floored at
        # 1e-14 to cover rounding and quadrature error of the subtraction.
        cum = torch.cumsum(self.a * self.a, dim=1)
        rel = torch.stack([e2 - cum[:, k - 1] for k in _LADDER], 1)
        rel = rel / e2.clamp_min(torch.finfo(e2.dtype).tiny)[:, None]
        self.tail = torch.where(e2[:, None] > 0, rel.clamp_min(0) + 1e-14, 0.0).sqrt()
        self.logtail = self.tail.clamp_min(1e-300).log().T.contiguous()  # (LADDER, U)
        # |α_k| relative to √E[f²], to skip terms that vanish by symmetry (odd/even f)
        self.size = (self.a.abs() / e2.clamp_min(1e-300).sqrt()[:, None]).amax(0)


def _horner(
    c: Tensor,
    x: Tensor,
    a: Callable[[int], Tensor],
    b: Callable[[int], Tensor],
    active: list[bool],
    k: int,
    out: Tensor,
) -> Tensor:
    """``out = Σ_{k'<k, active} c^k' a(k') b(k')`` as ``P_even(c²) + c P_odd(c²)``.

    Horner's rule in ``x = c²``.  ``a(j)``/``b(j)`` return the ``j``-th Mehler
    coefficients, broadcasting against ``c``; terms with ``active[j] = False``
    (zero by symmetry of the function) are skipped.
    """
    first = True
    for parity in (0, 1):
        ks = [j for j in range(parity, k, 2) if active[j]]
        if not ks:
            continue
        r = out if first else torch.empty_like(out)
        r.copy_(a(ks[-1]) * b(ks[-1]))
        for j in range(ks[-1] - 2, -1, -2):
            r.mul_(x)
            if active[j]:
                r.addcmul_(a(j), b(j))
        if parity:
            r.mul_(c)
        if not first:
            out.add_(r)
        first = False
    if first:
        out.zero_()
    return out


# --------------------------------------------------------------------------
# Polar rule for the hard entries
# --------------------------------------------------------------------------


def _polar(fn: Pair, name: Names, q1: Tensor, q2: Tensor, c: Tensor) -> Tensor:
    """``E[f(u) g(v)]`` for ``fn = (f, g)`` by the polar rule (module docstring, step 3);
    1-D float64."""
    dev = q1.device
    out = torch.empty_like(q1)
    # group entries by the grading depth they need (activation scale 1/√q) and
    # by the sign of c (which pair of arcs is the short one)
    qm = torch.maximum(q1, q2).tolist()
    lev = [0 if v <= 4 else _levels(v, 0.5) for v in qm]
    key = torch.tensor(lev, device=dev, dtype=torch.long) * 2 + (c < 0).long()
    h = math.pi / 2
    for kk in torch.unique(key).tolist():
        idx = (key == kk).nonzero().squeeze(1)
        ts, ws, tl, wl, r, wr = (torch.as_tensor(v, device=dev) for v in _polar_rules(kk // 2))
        # arcs in order: [θ-arc, (π−θ)-arc, θ-arc, (π−θ)-arc]; the short ones get ts
        arcs = [(ts, ws), (tl, wl)] if kk % 2 == 0 else [(tl, wl), (ts, ws)]
        arcs = arcs + arcs
        npts = sum(t.numel() for t, _ in arcs) * r.numel()
        step = max(1, _POLAR_BLOCK // npts)
        for s in range(0, idx.numel(), step):
            j = idx[s : s + step]
            cc = c[j]
            # θ = arccos c, stable near c = ±1
            th = 2 * torch.atan2((1 - cc).clamp_min(0).sqrt(), (1 + cc).clamp_min(0).sqrt())
            # the four arcs between the rays where u = 0 or v = 0
            starts = [-h - th / 2, -h + th / 2, h - th / 2, h + th / 2]
            lengths = [th, math.pi - th, th, math.pi - th]
            psi = torch.cat(
                [
                    a[:, None] + ln[:, None] * t
                    for a, ln, (t, _) in zip(starts, lengths, arcs, strict=True)
                ],
                1,
            )
            wpsi = torch.cat([ln[:, None] * w for ln, (_, w) in zip(lengths, arcs, strict=True)], 1)
            # z1 = r cos(ψ − θ/2), z2 = r cos(ψ + θ/2)
            u = (q1[j].sqrt()[:, None] * torch.cos(psi - th[:, None] / 2))[:, :, None] * r
            v = (q2[j].sqrt()[:, None] * torch.cos(psi + th[:, None] / 2))[:, :, None] * r
            g = _call(fn[0], u, name[0]) * _call(fn[1], v, name[1])  # (n, points on arcs, R)
            out[j] = ((g @ wr) * wpsi).sum(1) / (2 * math.pi)
    return out


def _cheb_nodes(lo: float, hi: float, n: int) -> Tensor:
    """Chebyshev points of the second kind on ``[lo, hi]`` (one point if ``lo == hi``)."""
    if hi <= lo or n == 1:
        return torch.tensor([lo], dtype=torch.float64)
    x = torch.cos(torch.arange(n, dtype=torch.float64) * math.pi / (n - 1))
    return (lo + hi) / 2 + (hi - lo) / 2 * x


def _barycentric(x: Tensor, nodes: Tensor) -> Tensor:
    """``(len(x), len(nodes))`` Lagrange basis at ``x`` (Berrut & Trefethen 2004, §5)."""
    n = nodes.numel()
    if n == 1:
        return torch.ones(x.numel(), 1, dtype=x.dtype, device=x.device)
    w = torch.ones(n, dtype=x.dtype, device=x.device)
    w[1::2] = -1
    w[0] /= 2
    w[-1] /= 2
    diff = x[:, None] - nodes[None, :]
    hit = diff == 0
    t = w / torch.where(hit, 1.0, diff)
    basis = t / t.sum(1, keepdim=True)
    rows = hit.any(1)
    return torch.where(rows[:, None], hit.to(x.dtype), basis)


def _polar_many(fn: Pair, name: Names, q1: Tensor, q2: Tensor, c: Tensor) -> Tensor:
    """Polar rule for many entries: tensor Chebyshev interpolation in
    ``(θ, log q1, log q2)`` from the polar rule at the nodes, checked against the
    direct rule on a random sample (falls back to the direct rule if the sample
    is off by more than 1e-11 of the largest tabulated value).  1-D float64."""
    out = torch.empty_like(q1)
    th = 2 * torch.atan2((1 - c).clamp_min(0).sqrt(), (1 + c).clamp_min(0).sqrt())
    x1, x2 = q1.log(), q2.log()
    for group in (c >= 0, c < 0):
        idx = group.nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        out[idx] = _interpolated(fn, name, th[idx], x1[idx], x2[idx], q1[idx], q2[idx], c[idx])
    return out


def _interpolated(fn, name, th, x1, x2, q1, q2, c) -> Tensor:
    n = th.numel()
    spans = [(float(v.min()), float(v.max())) for v in (th, x1, x2)]
    for base in (8, 16, 32):  # node counts grow until the sample check passes
        sizes = [base + 1] + [
            1 if hi <= lo else min(base + 1 + math.ceil(base * (hi - lo) / 2), 65)
            for lo, hi in spans[1:]
        ]
        if math.prod(sizes) * 2 > n:  # the table must be cheaper than the direct rule
            break
        nodes = [
            _cheb_nodes(lo, hi, k).to(th.device) for (lo, hi), k in zip(spans, sizes, strict=True)
        ]
        gt, g1, g2 = torch.meshgrid(*nodes, indexing="ij")
        table = _polar(fn, name, g1.exp().reshape(-1), g2.exp().reshape(-1), gt.cos().reshape(-1))
        table = table.reshape(sizes)
        res = torch.empty_like(th)
        step = max(1, _POLAR_BLOCK // (sizes[1] * sizes[2]))
        for s in range(0, n, step):
            j = slice(s, s + step)
            y = _barycentric(th[j], nodes[0]) @ table.reshape(sizes[0], -1)
            y = (y.reshape(-1, sizes[1], sizes[2]) * _barycentric(x1[j], nodes[1])[:, :, None]).sum(
                1
            )
            res[j] = (y * _barycentric(x2[j], nodes[2])).sum(1)
        gen = torch.Generator(device=th.device).manual_seed(n)
        probe = torch.randperm(n, generator=gen, device=th.device)[:24]
        direct = _polar(fn, name, q1[probe], q2[probe], c[probe])
        if float((direct - res[probe]).abs().max()) <= 1e-11 * float(table.abs().max()):
            return res
    return _polar(fn, name, q1, q2, c)


# --------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------


def _check_inputs(q1: object, q2: object, s12: object) -> tuple[Tensor, Tensor, Tensor]:
    ts = []
    for name, t in (("q1", q1), ("q2", q2), ("s12", s12)):
        if not isinstance(t, Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor; got {type(t).__name__}")
        if t.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"`{name}` must be a float32/float64 tensor; got dtype {t.dtype}")
        ts.append(t)
    for name, t in (("q2", ts[1]), ("s12", ts[2])):
        if t.dtype != ts[0].dtype or t.device != ts[0].device:
            raise TypeError(
                f"`q1` ({ts[0].dtype}, {ts[0].device}) and `{name}` ({t.dtype}, {t.device}) "
                "must share dtype and device"
            )
    try:
        broadcast_shapes(*(t.shape for t in ts))
    except ValueError as err:
        raise ValueError(
            f"`q1`, `q2`, `s12` must broadcast together; got shapes "
            f"{tuple(ts[0].shape)}, {tuple(ts[1].shape)}, {tuple(ts[2].shape)}"
        ) from err
    for name, t in zip(("q1", "q2"), ts[:2], strict=True):  # s12: checked block by block
        if t.numel() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"`{name}` contains NaN or inf; variances/covariances must be finite")
    for name, t in (("q1", ts[0]), ("q2", ts[1])):
        if t.numel() and bool((t < 0).any()):
            raise ValueError(f"`{name}` holds variances and must be >= 0; got min {float(t.min())}")
    return ts[0], ts[1], ts[2]


def _distinct(q: Tensor) -> tuple[Tensor, Tensor]:
    """Distinct variances (float64) and the index of each entry of ``q`` into them."""
    return torch.unique(q.to(torch.float64), return_inverse=True)


def gaussian_dual(
    fn: Fn,
    dfn: Fn | None,
    q1: Tensor,
    q2: Tensor,
    s12: Tensor,
    *,
    ntk: bool,
    rtol: float | None = None,
) -> tuple[Tensor, Tensor | None]:
    """``E[fn(u) fn(v)]`` and, if ``ntk``, ``E[dfn(u) dfn(v)]``.

    ``(u, v) ~ N(0, [[q1, s12], [s12, q2]])``; see the module docstring for the method.

    Args:
        fn: elementwise torch function φ (non-smooth at most at 0).
        dfn: its derivative φ'; ``None`` derives it with autograd when ``ntk``.
        q1, q2: variances, ``>= 0``; ``s12``: covariance.  Broadcastable tensors of
            one float dtype and device, e.g. ``(N1, 1)``, ``(1, N2)``, ``(N1, N2)``.
            ``q1 = 0`` means ``u = 0`` deterministically.
        ntk: also return ``E[φ'(u) φ'(v)]``.
        rtol: bound on the truncation error of the Mehler series relative to
            ``√(E[φ(u)²] E[φ(v)²])`` (default 1e-11 in float64, 1e-7 in float32).

    Returns:
        Tensors of the broadcast shape, dtype and device of the inputs (computed
        without autograd: not differentiable with respect to ``q1, q2, s12``).

    Raises:
        TypeError: non-tensor/non-float inputs, mixed dtypes/devices, non-callable fn.
        ValueError: negative variance, NaN/inf, ``|s12| > √(q1 q2)`` beyond rounding,
            non-broadcastable shapes, or ``fn`` not elementwise/finite.
    """
    if not callable(fn):
        raise TypeError(f"`fn` must be callable; got {type(fn).__name__}")
    if dfn is not None and not callable(dfn):
        raise TypeError(f"`dfn` must be callable or None; got {type(dfn).__name__}")
    q1, q2, s12 = _check_inputs(q1, q2, s12)
    if rtol is not None and not 0 < rtol < 1:
        raise ValueError(f"`rtol` must be in (0, 1); got {rtol!r}")
    with torch.no_grad():
        return _dual(fn, dfn, q1, q2, s12, ntk, rtol)


def gaussian_expectation(
    f: Fn,
    g: Fn,
    q1: Tensor,
    q2: Tensor,
    s12: Tensor,
    *,
    rtol: float | None = None,
    names: Names = ("f", "g"),
) -> Tensor:
    """``E[f(u) g(v)]`` with ``(u, v) ~ N(0, [[q1, s12], [s12, q2]])``: :func:`gaussian_dual`
    with a different function on each side (same method, inputs and accuracy; ``rtol``
    relative to ``√(E[f(u)²] E[g(v)²])``).  Used by the gradients of the numerical duals
    (:mod:`widelimit.layers.dual_gradients`).  ``names`` label ``f``/``g`` in errors.
    Not differentiable (computed under ``torch.no_grad``).
    """
    for name, h in zip(names, (f, g), strict=True):
        if not callable(h):
            raise TypeError(f"`{name}` must be callable; got {type(h).__name__}")
    q1, q2, s12 = _check_inputs(q1, q2, s12)
    if rtol is not None and not 0 < rtol < 1:
        raise ValueError(f"`rtol` must be in (0, 1); got {rtol!r}")
    if rtol is None:
        rtol = 1e-11 if q1.dtype == torch.float64 else 1e-7
    with torch.no_grad():
        return _expectations([(f, g)], [names], q1, q2, s12, rtol)[0]


def gaussian_mean(f: Fn, q: Tensor) -> Tensor:
    """``E[f(√q z)]``, ``z ~ N(0, 1)``, per entry of the 1-D tensor ``q >= 0`` (same dtype).

    The line rule of the Mehler coefficients (graded towards a non-smooth point at 0).
    Many entries (> 4096): a Chebyshev interpolant in ``log q`` of the rule (33 to 129
    nodes), used only if it agrees with the rule within 1e-11 of the table's largest value
    on 24 random entries (else the rule at every entry).  Not differentiable.
    """
    if q.ndim != 1:
        raise ValueError(f"`q` must be 1-D; got shape {tuple(q.shape)}")
    if q.numel() == 0:
        return torch.empty_like(q)
    with torch.no_grad():
        qd = q.to(torch.float64).clamp_min(0)
        levels = _levels(float(qd.max()), 0.25)
        out = None
        if qd.numel() > 4096:
            out = _mean_interpolated(f, qd, levels)
        if out is None:
            out = _mean_direct(f, qd, levels)
    return out.to(q.dtype)


def _mean_direct(f: Fn, q: Tensor, levels: int) -> Tensor:
    """``E[f(√q z)]`` by the line rule with ``levels`` (float64, 1-D), in blocks."""
    z, w = (torch.as_tensor(v, device=q.device) for v in _line_rule(levels))
    out = torch.empty_like(q)
    step = max(1, _POLAR_BLOCK // z.numel())
    for s in range(0, q.numel(), step):
        out[s : s + step] = _call(f, q[s : s + step, None].sqrt() * z, "f") @ w
    return out


def _mean_interpolated(f: Fn, q: Tensor, levels: int) -> Tensor | None:
    """:func:`gaussian_mean` by interpolation in ``log q`` (docstring there), or ``None``."""
    pos = q > 0
    x = q[pos].log()
    lo, hi = float(x.min()), float(x.max())
    gen = torch.Generator(device=q.device).manual_seed(x.numel())
    probe = torch.randperm(x.numel(), generator=gen, device=q.device)[:24]
    direct = _mean_direct(f, x[probe].exp(), levels)
    for n in (33, 65, 129):
        nodes = _cheb_nodes(lo, hi, n).to(q.device)
        table = _mean_direct(f, nodes.exp(), levels)
        scale = float(table.abs().max())
        if float((_barycentric(x[probe], nodes) @ table - direct).abs().max()) > 1e-11 * scale:
            continue
        res = torch.empty_like(x)
        step = max(1, _POLAR_BLOCK // n)
        for s in range(0, x.numel(), step):
            res[s : s + step] = _barycentric(x[s : s + step], nodes) @ table
        out = torch.empty_like(q)
        out[pos] = res
        if not bool(pos.all()):
            out[~pos] = _mean_direct(f, q[~pos], levels)
        return out
    return None


def _dual(
    fn: Fn, dfn: Fn | None, q1: Tensor, q2: Tensor, s12: Tensor, ntk: bool, rtol: float | None
) -> tuple[Tensor, Tensor | None]:
    """:func:`gaussian_dual` on checked inputs: the dense Mehler pass over blocks of
    entries, then the entries it could not certify (module docstring, steps 1-3)."""
    if rtol is None:
        rtol = 1e-11 if q1.dtype == torch.float64 else 1e-7
    pairs: list[Pair] = [(fn, fn)]
    names: list[Names] = [("fn", "fn")]
    if ntk:
        d = dfn if dfn is not None else autograd_derivative(fn)
        pairs.append((d, d))
        names.append(("dfn", "dfn"))
    out = _expectations(pairs, names, q1, q2, s12, rtol)
    return out[0], (out[1] if ntk else None)


def _expectations(
    pairs: list[Pair], names: list[Names], q1: Tensor, q2: Tensor, s12: Tensor, rtol: float
) -> list[Tensor]:
    """``[E[f(u) g(v)] for (f, g) in pairs]`` on checked inputs: the dense Mehler pass
    over blocks of entries, then the entries it could not certify (module docstring,
    steps 1-3); ``rtol`` relative to ``√(E[f(u)²] E[g(v)²])``."""
    dtype, dev = q1.dtype, q1.device
    shape = broadcast_shapes(q1.shape, q2.shape, s12.shape)
    if len(shape) == 0:  # scalars: compute as one-element vectors
        out = _expectations(pairs, names, q1.reshape(1), q2.reshape(1), s12.reshape(1), rtol)
        return [t.reshape(()) for t in out]
    out = [torch.empty(shape, dtype=dtype, device=dev) for _ in pairs]
    if math.prod(shape) == 0:
        return out

    nd = len(shape)
    q1, q2, s12 = (t.reshape((1,) * (nd - t.ndim) + tuple(t.shape)) for t in (q1, q2, s12))
    terms = _MehlerTerms(pairs, names, q1, q2)
    hard = _mehler_pass(terms, q1, q2, s12, rtol, out)
    for m, entries in enumerate(hard):
        if entries:
            _fill_hard(terms, m, entries, rtol, out[m])
    return out


class _MehlerTerms:
    """Mehler coefficients of each pair of functions (e.g. ``(fn, fn)``, and ``(dfn, dfn)``
    for the NTK): the first on side 1 (``u``), the second on side 2 (``v``).

    Attributes (lists are per pair):
        fns, names: the pairs ``(f, g)`` and their argument names (for error messages).
        u1, inv1 / u2, inv2: distinct variances of ``q1`` / ``q2`` (float64) and the index
            of each entry into them (shaped like ``q1`` / ``q2``).
        co1, co2: :class:`_Coefficients` of side 1 / 2 (the same objects when the
            functions and the distinct variances agree).
        active: which Mehler terms are non-zero on either side (others vanish by symmetry).
        rows1, rows2: ``(KMAX, U)`` coefficients in the dtype of ``q1``.
        a1, a2: ``(KMAX, *q.shape)`` coefficient tables broadcasting like ``q1`` / ``q2``,
            so that the k-th slice is contiguous; only for small ``q`` tensors (e.g.
            ``(N1, 1)``, ``(1, N2)``), else ``None`` (the k-th slice is gathered term by term).
    """

    def __init__(self, fns: list[Pair], names: list[Names], q1: Tensor, q2: Tensor) -> None:
        self.fns, self.names = fns, names
        self.u1, self.inv1 = _distinct(q1)
        self.u2, self.inv2 = _distinct(q2)
        levels = _levels(max(float(self.u1[-1]), float(self.u2[-1])), 0.25)
        self.co1 = [
            _Coefficients(f, n, self.u1, levels) for (f, _), (n, _) in zip(fns, names, strict=True)
        ]
        same_q = self.u1.shape == self.u2.shape and bool(torch.equal(self.u1, self.u2))
        self.co2 = [
            co if same_q and f is g else _Coefficients(g, n, self.u2, levels)
            for co, (f, g), (_, n) in zip(self.co1, fns, names, strict=True)
        ]
        self.active = [
            (torch.maximum(a.size, b.size) > 1e-14).tolist()
            for a, b in zip(self.co1, self.co2, strict=True)
        ]
        self.rows1 = [co.aT.to(q1.dtype) for co in self.co1]
        self.rows2 = [
            r if b is a else b.aT.to(q1.dtype)
            for r, a, b in zip(self.rows1, self.co1, self.co2, strict=True)
        ]
        self.a1 = [r[:, self.inv1] if self.inv1.numel() <= _SMALL else None for r in self.rows1]
        self.a2 = [r[:, self.inv2] if self.inv2.numel() <= _SMALL else None for r in self.rows2]


_HardEntries = list[tuple[tuple[Tensor, ...], Tensor]]  # (where in the output, s12 there)


def _mehler_pass(
    terms: _MehlerTerms, q1: Tensor, q2: Tensor, s12: Tensor, rtol: float, out: list[Tensor]
) -> list[_HardEntries]:
    """Fill ``out`` by Horner sums of one Mehler length per block of entries (step 1).

    Blocks run along the largest broadcast dimension (memory bound: module docstring).
    Returns, per function, the entries whose ``|c|`` the block's length does not certify.
    """
    shape = out[0].shape
    nd, dtype = len(shape), q1.dtype
    rs1, rs2 = (torch.where(q > 0, q.rsqrt(), 0.0) for q in (q1, q2))
    slack = max(math.sqrt(torch.finfo(dtype).eps), 1e-6)  # rounding of |c| <= 1, not more
    zero_var = bool((q1 == 0).any()) or bool((q2 == 0).any())
    d = max(range(nd), key=lambda i: shape[i])
    step = max(1, _BLOCK // (math.prod(shape) // shape[d]))
    ladder = torch.tensor(_LADDER, dtype=torch.float64, device=q1.device)
    hard: list[_HardEntries] = [[] for _ in terms.fns]
    for s in range(0, shape[d], step):
        n = min(step, shape[d] - s)

        def cut(t: Tensor, s: int = s, n: int = n, dim: int = d) -> Tensor:
            return t if t.shape[dim] == 1 else t.narrow(dim, s, n)

        bs = cut(s12)
        c = bs * cut(rs1) * cut(rs2)  # c = s12 / √(q1 q2), 0 where q1 q2 = 0
        absc = c.abs()
        _check_correlations(bs, c, absc, cut(rs1) * cut(rs2), slack, zero_var)
        c.clamp_(-1, 1)
        absc.clamp_(max=1)
        x = c * c
        probe = absc.reshape(-1)[:: max(1, absc.numel() // 2048)].double().sort().values
        for m in range(len(terms.fns)):
            # conservative block bound |c|^K max τ1 max τ2 <= rtol (Cauchy–Schwarz)
            t12 = (
                terms.co1[m].tail.index_select(0, cut(terms.inv1).reshape(-1)).amax(0)
                * terms.co2[m].tail.index_select(0, cut(terms.inv2).reshape(-1)).amax(0)
            ).tolist()
            thr = [
                2.0 if t <= rtol else (rtol / t) ** (1.0 / k)
                for t, k in zip(t12, _LADDER, strict=True)
            ]
            j = _mehler_length(thr, probe, ladder)
            _horner(
                c,
                x,
                _slices(terms.a1[m], terms.rows1[m], cut(terms.inv1), d, s, n),
                _slices(terms.a2[m], terms.rows2[m], cut(terms.inv2), d, s, n),
                terms.active[m],
                _LADDER[j],
                cut(out[m]),
            )
            if thr[j] < 1:
                sel = (absc > thr[j]).nonzero(as_tuple=True)
                if sel[0].numel():
                    full = list(sel)
                    full[d] = full[d] + s
                    hard[m].append((tuple(full), bs.expand(c.shape)[sel]))
    return hard


def _check_correlations(
    s12: Tensor, c: Tensor, absc: Tensor, rs: Tensor, slack: float, zero_var: bool
) -> None:
    """``ValueError`` unless ``|c| <= 1`` up to rounding and ``s12 = 0`` wherever a
    variance is 0 (``rs = 1/√(q1 q2)``, 0 there); also rejects NaN/inf in ``s12``."""
    bad = not bool((absc <= 1 + slack).all())  # also catches NaN/inf
    if zero_var and not bad:
        bad = bool(((s12 != 0) & (c == 0) & (rs == 0)).any())
    if bad:
        if not bool(torch.isfinite(s12).all()):
            raise ValueError("`s12` contains NaN or inf; covariances must be finite")
        raise ValueError(
            "`s12` must satisfy |s12| <= sqrt(q1*q2) (a valid covariance); got "
            f"max |s12|/sqrt(q1 q2) = {float((s12.abs() * rs).max()):.6g}"
        )


def _mehler_length(thr: list[float], probe: Tensor, ladder: Tensor) -> int:
    """Index into ``_LADDER`` of the Mehler length of a block's dense pass.

    ``thr[j]``: the largest ``|c|`` that length ``_LADDER[j]`` certifies.  Minimises
    ``K`` + the cost of the entries it leaves over (gathered Mehler ≈ 4 K' for the K'
    they need, or ≈ ``_HARD_COST`` for the polar paths), estimated on ``probe``, a
    sorted sample of the block's ``|c|``.
    """
    thr_t = torch.tensor(thr, dtype=torch.float64, device=probe.device).cummax(0).values
    need = torch.searchsorted(thr_t, probe)  # ladder index each entry needs
    each = torch.where(
        need < len(_LADDER),
        4.0 * ladder[need.clamp_max(len(_LADDER) - 1)],
        float(_HARD_COST),
    )
    left = torch.bincount(need, weights=each, minlength=len(_LADDER) + 1)
    left = left.flip(0).cumsum(0).flip(0)[1:] / need.numel()  # cost of need > j
    cost = (ladder + left).tolist()
    return min(range(len(_LADDER)), key=cost.__getitem__)


def _fill_hard(
    terms: _MehlerTerms, m: int, entries: _HardEntries, rtol: float, out: Tensor
) -> None:
    """Write function ``m``'s uncertified entries into ``out`` (steps 1-3 per entry)."""
    shape, nd = out.shape, out.ndim
    eps = torch.finfo(out.dtype).eps
    loc = tuple(torch.cat([h[0][k] for h in entries]) for k in range(nd))
    i1, i2 = terms.inv1.expand(shape)[loc], terms.inv2.expand(shape)[loc]
    # c again, in float64 (these entries are sensitive to 1 − |c|)
    c = torch.cat([h[1] for h in entries]).to(torch.float64)
    c = (c * terms.u1[i1].rsqrt() * terms.u2[i2].rsqrt()).clamp(-1, 1)
    # |c| within rounding of 1 is ±1: c itself is only known to a few ulps
    c = torch.where(c.abs() >= 1 - 4 * eps, c.sign(), c)
    res = _hard_entries(
        terms.fns[m], terms.names[m], terms.co1[m], terms.co2[m], terms.active[m],
        terms.u1, terms.u2, i1, i2, c, rtol,
    )  # fmt: skip
    out[loc] = res.to(out.dtype)


def _slices(
    tab: Tensor | None, rows: Tensor, inv: Tensor, d: int, s: int, n: int
) -> Callable[[int], Tensor]:
    """``j -> α_j`` on one block: a slice of the precomputed table, or a gather."""
    if tab is not None:
        tab = tab if tab.shape[d + 1] == 1 else tab.narrow(d + 1, s, n)
        return tab.__getitem__
    return lambda j: rows[j][inv]


def _hard_entries(
    fn: Pair,
    name: Names,
    co1: _Coefficients,
    co2: _Coefficients,
    active: list[bool],
    u1: Tensor,
    u2: Tensor,
    i1: Tensor,
    i2: Tensor,
    c: Tensor,
    rtol: float,
) -> Tensor:
    """Entries the dense pass could not certify: exact per-entry Mehler length,
    else the ``|c| = 1`` line rule, else the polar rule.  1-D float64 in and out."""
    absc = c.abs()
    # smallest K of the ladder with |c|^K τ1 τ2 <= rtol, per entry
    logc = torch.log(absc.clamp_min(1e-300))
    cls = torch.full_like(i1, -1)
    for j, k in reversed(list(enumerate(_LADDER))):
        lt = co1.logtail[j].index_select(0, i1) + co2.logtail[j].index_select(0, i2)
        cls = torch.where((k * logc + lt <= math.log(rtol)) & (absc < 1.0), j, cls)
    res = torch.empty_like(c)
    for j, k in enumerate(_LADDER):
        idx = (cls == j).nonzero().squeeze(1)
        for s in range(0, idx.numel(), _BLOCK):
            jj = idx[s : s + _BLOCK]
            cc = c[jj]
            j1, j2 = i1[jj], i2[jj]

            def a(t: int, j1: Tensor = j1) -> Tensor:
                return co1.aT[t].index_select(0, j1)

            def b(t: int, j2: Tensor = j2) -> Tensor:
                return co2.aT[t].index_select(0, j2)

            res[jj] = _horner(cc, cc * cc, a, b, active, k, torch.empty_like(cc))
    rest = (cls < 0).nonzero().squeeze(1)
    # |c| == 1: E[f(√q1 z) f(±√q2 z)] on the (symmetric) line rule
    edge = rest[absc[rest] >= 1.0]
    step = max(1, _POLAR_BLOCK // co1.w.numel())
    for s in range(0, edge.numel(), step):
        jj = edge[s : s + step]
        v2 = co2.values[i2[jj]]
        v2 = torch.where((c[jj] < 0)[:, None], v2.flip(1), v2)
        res[jj] = (co1.values[i1[jj]] * v2) @ co1.w
    poly = rest[absc[rest] < 1.0]
    if poly.numel():
        res[poly] = _polar_many(fn, name, u1[i1[poly]], u2[i2[poly]], c[poly])
    return res
