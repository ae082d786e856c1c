"""Input gradients of the numerically integrated duals (``Tanh``, ``SiLU``, ``Activation(fn)``, …).

The quadrature of :mod:`widelimit._quadrature` runs without autograd.  :func:`dual_with_grad`
wraps it in a :class:`torch.autograd.Function` whose backward evaluates the exact
derivatives of ``N = E[φ(u)φ(v)]`` and ``D = E[φ'(u)φ'(v)]``, ``(u, v) ~ N(0, [[q1, s],
[s, q2]])``, with respect to ``q1, q2, s`` by further Gaussian expectations.

For one expectation ``E[ψ(u)ψ(v)]`` (``ψ = φ`` for the NNGP, ``ψ = φ'`` for the NTK factor)::

    ∂/∂s  = S := E[ψ'(u) ψ'(v)]                                    (Price 1958)
    ∂/∂q1 = ½ E[ψ''(u) ψ(v)] = (E[u ψ'(u) ψ(v)] − s S) / (2 q1)      (heat equation, Stein)
    ∂/∂q2 = (E[ψ(u) v ψ'(v)] − s S) / (2 q2)

The second form of ``∂/∂q1`` follows from Stein's lemma ``E[u h(u, v)] = q1 E[∂_u h] +
s E[∂_v h]`` with ``h = ψ'(u) ψ(v)``; it needs no second derivative.  Derivatives are
taken in the sense of distributions: if ``ψ`` jumps by ``J`` at 0 (``ψ = φ'`` for a kink
of ``φ`` at 0, e.g. ``ELU(α ≠ 1)``; ``ψ = φ`` for a jump, e.g. a step function),
``ψ' = ψ'_r + J δ`` with ``ψ'_r`` the a.e. derivative, ``u δ(u) = 0``, and::

    S = E[ψ'_r(u) ψ'_r(v)] + J (p_u(0) E[ψ'_r(v) | u = 0] + p_v(0) E[ψ'_r(u) | v = 0])
        + J² p(0, 0)
    p_u(0) = 1/√(2π q1),   v | u = 0 ~ N(0, Δ/q1),   p(0, 0) = 1/(2π √Δ),   Δ = q1 q2 − s²

``J² p(0, 0)`` is infinite at ``|c| = 1`` (``c = s/√(q1 q2)``): the dual has a kink in
``c`` there.  On those entries (and where a variance is 0) the ``δ`` terms are
left out, so ``S`` is finite; along the self-pair direction ``q1 = q2 = ±s``, which
is how a kernel's diagonal moves with its input, ``S`` cancels from the total
derivative, so the gradients through ``k(x)`` remain exact.  Where a variance is 0
(an all-zero input row without bias) ``∂/∂q1 = ½ ψ''(0) E[ψ(v)]`` by autograd's
``ψ''`` (0 for piecewise-linear ``φ``; the one-sided derivative is infinite there).

The backward costs four Mehler passes for the NNGP and three for the NTK factor
(``S`` of the NNGP is the forward's ``D``) and is not itself differentiable
(``once_differentiable``: second derivatives raise).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from widelimit._quadrature import (
    autograd_derivative,
    gaussian_dual,
    gaussian_expectation,
    gaussian_mean,
)
from widelimit._validation import broadcast_shapes

__all__ = ["dual_with_grad", "jump_at_zero"]

Fn = Callable[[Tensor], Tensor]


def jump_at_zero(f: Fn) -> float:
    """``f(0+) − f(0−)`` (float64), 0.0 when below ``1e-8 · (1 + |f(0±)|)``.

    One-sided limits by Richardson extrapolation from ``±h, ±2h`` (``h = 1e-6``), exact
    to ``O(h²)`` for functions smooth on each side of 0.
    """
    h = 1e-6
    x = torch.tensor([h, 2 * h, -h, -2 * h], dtype=torch.float64)
    y = f(x).to(torch.float64)
    right, left = 2 * y[0] - y[1], 2 * y[2] - y[3]
    jump = float(right - left)
    scale = 1.0 + abs(float(right)) + abs(float(left))
    return jump if abs(jump) > 1e-8 * scale else 0.0


def _check_second_derivative(dfn: Fn, d2fn: Fn) -> None:
    """``ValueError`` unless autograd's derivative of ``dfn`` matches its central
    differences (step 1e-5: error ~1e-10) at six points away from 0: a ``derivative_fn``
    written without differentiable torch operations would give φ'' = 0 silently."""
    x = torch.tensor([-2.9, -1.3, -0.37, 0.37, 1.3, 2.9], dtype=torch.float64)
    h = 1e-5
    with torch.no_grad():
        fd = (dfn(x + h).double() - dfn(x - h).double()) / (2 * h)
        d1 = dfn(x).double()
    ad = d2fn(x).double()
    bad = (ad - fd).abs() > 1e-5 * (1 + fd.abs() + d1.abs())
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"the derivative φ' of this activation is not differentiable by autograd: at "
            f"x = {float(x[i])} autograd gives φ'' = {float(ad[i])!r}, finite differences "
            f"{float(fd[i])!r}. Gradients of kernels with respect to their inputs need φ''; "
            "write `derivative_fn` with differentiable torch operations (or leave it None "
            "to derive φ' by autograd), or detach the inputs"
        )


def _times_x(f: Fn) -> Fn:
    def g(x: Tensor) -> Tensor:
        return x * f(x)

    return g


def _one(x: Tensor) -> Tensor:
    return torch.ones_like(x)


class _Part:
    """One expectation ``E[ψ(u)ψ(v)]`` and the functions its gradient needs."""

    def __init__(self, psi: Fn, dpsi: Fn, name: str) -> None:
        self.psi, self.dpsi, self.name = psi, dpsi, name
        self.jump = jump_at_zero(psi)

    def grads(
        self, q1: Tensor, q2: Tensor, s: Tensor, c: Tensor, grad: Tensor, ss: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``grad ·`` (∂/∂q1, ∂/∂q2, ∂/∂s) on the broadcast shape; ``ss``: the a.e.
        ``E[ψ'_r ψ'_r]`` if already known (the forward's NTK factor)."""
        n = self.name
        if ss is None:
            ss = gaussian_expectation(self.dpsi, self.dpsi, q1, q2, s, names=(f"{n}'", f"{n}'"))
        big = (q1 > 0) & (q2 > 0) & (c.abs() < 1)  # where the δ terms are finite
        if self.jump != 0.0 and bool(big.any()):
            ss = ss + self._delta_terms(q1, q2, c, big)
        xd = _times_x(self.dpsi)
        a1 = gaussian_expectation(xd, self.psi, q1, q2, s, names=(f"x*{n}'", n))
        a2 = gaussian_expectation(self.psi, xd, q1, q2, s, names=(n, f"x*{n}'"))
        g1 = self._q_derivative(a1, q1, q2, s, ss, side=1)
        g2 = self._q_derivative(a2, q1, q2, s, ss, side=2)
        return grad * g1, grad * g2, grad * ss

    def _q_derivative(
        self, a: Tensor, q1: Tensor, q2: Tensor, s: Tensor, ss: Tensor, side: int
    ) -> Tensor:
        q = q1 if side == 1 else q2
        out = (a - s * ss) / (2 * torch.where(q > 0, q, 1.0))
        if bool((q == 0).any()):  # ½ E[ψ''(u) ψ(v)] with u = 0
            d2, n2 = autograd_derivative(self.dpsi), f"{self.name}''"
            if side == 1:
                at0 = gaussian_expectation(d2, self.psi, q1, q2, s, names=(n2, self.name))
            else:
                at0 = gaussian_expectation(self.psi, d2, q1, q2, s, names=(self.name, n2))
            out = torch.where(q == 0, at0 / 2, out)
        return out

    def _delta_terms(self, q1: Tensor, q2: Tensor, c: Tensor, big: Tensor) -> Tensor:
        """``J (p_u(0) E[ψ'_r(v)|u=0] + p_v(0) E[ψ'_r(u)|v=0]) + J² p(0, 0)`` on ``big``."""
        shape = c.shape
        q1b, q2b = q1.expand(shape)[big], q2.expand(shape)[big]
        cb = c[big]
        one_m = ((1 - cb) * (1 + cb)).clamp_min(0)  # Δ = q1 q2 (1 − c²)
        m1 = gaussian_mean(self.dpsi, q2b * one_m)  # v | u = 0 ~ N(0, q2 (1 − c²))
        m2 = gaussian_mean(self.dpsi, q1b * one_m)
        j = self.jump
        two_pi = 2 * math.pi
        val = j * (m1 / (two_pi * q1b).sqrt() + m2 / (two_pi * q2b).sqrt())
        val = val + j * j / (two_pi * (q1b * q2b * one_m).sqrt())
        out = torch.zeros(shape, dtype=c.dtype, device=c.device)
        out[big] = val
        return out


class _NumericalDual(torch.autograd.Function):
    """``(q1, q2, s12) -> (E[φφ], E[φ'φ'])`` with the backward of the module docstring."""

    @staticmethod
    def forward(ctx, q1, q2, s12, parts, ntk):  # type: ignore[override]
        phi, dphi = parts[0].psi, parts[0].dpsi
        nngp, dd = gaussian_dual(phi, dphi, q1, q2, s12, ntk=ntk)
        ctx.parts, ctx.ntk = parts, ntk
        ctx.save_for_backward(q1, q2, s12, dd if ntk else None)
        ctx.set_materialize_grads(False)
        return (nngp, dd) if ntk else nngp

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_nngp, grad_dd=None):  # type: ignore[override]
        q1, q2, s12, dd = ctx.saved_tensors
        shape = broadcast_shapes(q1.shape, q2.shape, s12.shape)
        qq1, qq2 = q1.clamp_min(0), q2.clamp_min(0)
        prod = (qq1 * qq2).sqrt()
        tiny = torch.finfo(prod.dtype).tiny
        c = torch.where(prod > tiny, s12 / prod.clamp_min(tiny), 0.0).clamp(-1, 1)
        c = c.expand(shape)
        s = prod * c  # the covariance the forward used (clamped like the dual's)
        g1 = g2 = gs = None
        work = []
        if grad_nngp is not None:
            work.append((ctx.parts[0], grad_nngp, dd))
        if ctx.ntk and grad_dd is not None:
            work.append((ctx.parts[1], grad_dd, None))
        for part, grad, ss in work:
            a, b, d = part.grads(qq1, qq2, s, c, grad, ss)
            g1, g2, gs = (a, b, d) if g1 is None else (g1 + a, g2 + b, gs + d)
        if g1 is None:
            return None, None, None, None, None
        return (
            g1.sum_to_size(q1.shape) if ctx.needs_input_grad[0] else None,
            g2.sum_to_size(q2.shape) if ctx.needs_input_grad[1] else None,
            gs.sum_to_size(s12.shape) if ctx.needs_input_grad[2] else None,
            None,
            None,
        )


def dual_with_grad(
    fn: Fn, dfn: Fn, q1: Tensor, q2: Tensor, s12: Tensor, *, ntk: bool
) -> tuple[Tensor, Tensor | None]:
    """:func:`~widelimit._quadrature.gaussian_dual` with exact gradients (module docstring).

    ``fn`` φ and ``dfn`` φ' are elementwise torch functions, non-smooth at most at 0;
    φ'' is taken by autograd from ``dfn``.  Same inputs, outputs and errors as
    ``gaussian_dual``; the outputs carry a ``grad_fn`` when an input requires grad.
    """
    d2fn = autograd_derivative(dfn)
    _check_second_derivative(dfn, d2fn)
    parts = (_Part(fn, dfn, "φ"), _Part(dfn, d2fn, "φ'"))
    out = _NumericalDual.apply(q1, q2, s12, parts, ntk)
    return (out[0], out[1]) if ntk else (out, None)
