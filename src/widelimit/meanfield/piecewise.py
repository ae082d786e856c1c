"""Gaussian identities for the piecewise-linear activation of the isotropic problem.

``σ(t) = s1`` for ``t ≤ t1``, ``s2`` for ``t ≥ t2``, linear in between
(Mei, Montanari, Nguyen 2018, isotropic Gaussians).  Writing ``k = (s2 − s1)/(t2 − t1)``
and ``(t)_+ = max(t, 0)``::

    σ(t) = s1 + k [(t − t1)_+ − (t − t2)_+]

so every Gaussian expectation reduces to the ramp identities (``Z ~ N(0, 1)``, ``s > 0``,
``φ``/``Φ`` the standard normal pdf/cdf, ``Φ̄ = 1 − Φ``)::

    E[(sZ − a)_+]          = s φ(a/s) − a Φ̄(a/s)
    E[(sZ − a)_+ He_1(Z)]  = s Φ̄(a/s)                           (Gaussian integration by parts)
    E[(sZ − a)_+ He_k(Z)]  = s He_{k−2}(a/s) φ(a/s),  k ≥ 2      (Stein's lemma, k times)

The normalised Hermite coefficients ``α_k(s) = E[σ(sZ) He_k(Z)]/√k!`` feed Mehler's
formula ``E[σ(aZ1) σ(bZ2)] = Σ_k c^k α_k(a) α_k(b)`` for ``corr(Z1, Z2) = c``
(Mehler 1866; O'Donnell 2014, §11.2), which the isotropic problem uses for ``U``.
All functions are differentiable torch code (autograd gives ``∂/∂s``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from widelimit._quadrature import gauss_legendre

__all__ = ["PiecewiseLinear"]

_SQRT2PI = math.sqrt(2 * math.pi)
_ZCLIP = 40.0  # |a/s| beyond this: φ = 0 in float64 and the ramp terms are exact limits


def _phi(z: Tensor) -> Tensor:
    return torch.exp(-0.5 * z * z) / _SQRT2PI


def _Phi_bar(z: Tensor) -> Tensor:
    return 0.5 * torch.special.erfc(z / math.sqrt(2.0))


def _hermite_functions(z: Tensor, n: int) -> Tensor:
    """``ψ_j(z) = He_j(z) φ(z)/√j!`` for ``j < n``: shape ``z.shape + (n,)``."""
    prev, cur = torch.zeros_like(z), _phi(z)
    seq = [cur]
    for j in range(n - 1):
        prev, cur = cur, (z * cur - math.sqrt(j) * prev) / math.sqrt(j + 1)
        seq.append(cur)
    return torch.stack(seq, dim=-1)


@dataclass(frozen=True)
class PiecewiseLinear:
    """Piecewise-linear activation ``σ`` (defaults: MMN 2018's isotropic-Gaussians values)."""

    t1: float = 0.5
    t2: float = 1.5
    s1: float = -2.5
    s2: float = 7.5

    def __post_init__(self) -> None:
        for name in ("t1", "t2", "s1", "s2"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise TypeError(f"`{name}` must be a finite real number; got {v!r}")
        if not self.t2 > self.t1:
            raise ValueError(f"need t1 < t2 for the ramp; got t1={self.t1}, t2={self.t2}")

    @property
    def slope(self) -> float:
        return (self.s2 - self.s1) / (self.t2 - self.t1)

    @property
    def bound(self) -> float:
        """``sup |σ|``."""
        return max(abs(self.s1), abs(self.s2))

    def __call__(self, t: Tensor) -> Tensor:
        """``σ(t)`` elementwise."""
        return self.s1 + self.slope * ((t - self.t1).clamp_min(0) - (t - self.t2).clamp_min(0))

    def derivative(self, t: Tensor) -> Tensor:
        """``σ'(t)``: ``k`` on ``(t1, t2)``, 0 outside (0 at the two kinks)."""
        return torch.where((t > self.t1) & (t < self.t2), self.slope, 0.0).to(t.dtype)

    # ------------------------------------------------------------------ Gaussian moments
    def _z(self, s: Tensor, a: float) -> Tensor:
        return (a / s.clamp_min(1e-300)).clamp(-_ZCLIP, _ZCLIP)

    def gauss_mean(self, s: Tensor) -> Tensor:
        """``E[σ(sZ)]`` for ``s ≥ 0`` (any shape)."""
        s = s.clamp_min(0)
        out = torch.full_like(s, self.s1)
        for a, sign in ((self.t1, 1.0), (self.t2, -1.0)):
            z = self._z(s, a)
            out = out + sign * self.slope * (s * _phi(z) - a * _Phi_bar(z))
        return out

    def gauss_second_moment(self, s: Tensor) -> Tensor:
        """``E[σ(sZ)²]`` for ``s ≥ 0``, from truncated Gaussian moments on the three pieces."""
        s = s.clamp_min(1e-300)
        alpha, beta = self._z(s, self.t1), self._z(s, self.t2)
        lo, hi = 1 - _Phi_bar(alpha), _Phi_bar(beta)
        # truncated moments of Z on (alpha, beta): M0, M1, M2
        m0 = _Phi_bar(alpha) - _Phi_bar(beta)
        m1 = _phi(alpha) - _phi(beta)
        m2 = m0 + alpha * _phi(alpha) - beta * _phi(beta)
        c0 = self.s1 - self.slope * self.t1  # σ(t) = c0 + k t on the ramp
        k = self.slope
        mid = c0 * c0 * m0 + 2 * c0 * k * s * m1 + k * k * s * s * m2
        return self.s1**2 * lo + self.s2**2 * hi + mid

    def gauss_mean_derivative(self, s: Tensor) -> Tensor:
        """``d/ds E[σ(sZ)] = k [φ(t1/s) − φ(t2/s)]`` (differentiating the ramp identity)."""
        s = s.clamp_min(1e-300)
        return self.slope * (_phi(self._z(s, self.t1)) - _phi(self._z(s, self.t2)))

    def hermite_coefficients(
        self, s: Tensor, n_terms: int, *, derivative: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """``α_k(s) = E[σ(sZ) He_k(Z)]/√k!`` for ``k < n_terms``; shape ``s.shape + (n_terms,)``.

        Uses the normalised Hermite functions ``ψ_j(z) = He_j(z) φ(z)/√j!`` from the
        stable three-term recurrence ``ψ_{j+1} = (z ψ_j − √j ψ_{j−1})/√(j+1)`` (no
        overflow for large ``|z|``), ``He_{k−2}φ/√k! = ψ_{k−2}/√(k(k−1))``.  With
        ``derivative=True`` also returns ``dα_k/ds``, from ``ψ_j' = −√(j+1) ψ_{j+1}``:
        ``d/ds [s ψ_j(t/s)] = ψ_j(z) + √(j+1) z ψ_{j+1}(z)``.
        """
        s = s.clamp_min(1e-300)
        k = self.slope
        z1, z2 = self._z(s, self.t1), self._z(s, self.t2)
        n_psi = max(n_terms - 1, 1)
        p1, p2 = _hermite_functions(z1, n_psi), _hermite_functions(z2, n_psi)
        a0 = self.gauss_mean(s)
        a1 = k * s * (_Phi_bar(z1) - _Phi_bar(z2))
        kk = torch.arange(2, max(n_terms, 2), dtype=s.dtype, device=s.device)
        norm = torch.sqrt(kk * (kk - 1))
        hi = k * s.unsqueeze(-1) * (p1[..., : n_terms - 2] - p2[..., : n_terms - 2]) / norm
        alpha = torch.cat([a0.unsqueeze(-1), a1.unsqueeze(-1), hi], dim=-1)[..., :n_terms]
        if not derivative:
            return alpha
        d0 = self.gauss_mean_derivative(s)
        d1 = k * (_Phi_bar(z1) - _Phi_bar(z2) + z1 * _phi(z1) - z2 * _phi(z2))
        sq = torch.sqrt(kk - 1)
        dhi = []
        for z, p in ((z1, p1), (z2, p2)):
            dhi.append(p[..., : n_terms - 2] + sq * z.unsqueeze(-1) * p[..., 1 : n_terms - 1])
        dhi = k * (dhi[0] - dhi[1]) / norm
        dalpha = torch.cat([d0.unsqueeze(-1), d1.unsqueeze(-1), dhi], dim=-1)[..., :n_terms]
        return alpha, dalpha

    # ------------------------------------------------------------------ bivariate
    def pair_expectation_quadrature(
        self, a: Tensor, b: Tensor, c: Tensor, *, panels: int = 8, nodes: int = 16
    ) -> Tensor:
        """``E[σ(aZ1) σ(bZ2)]``, ``corr(Z1, Z2) = c``, by 1-D quadrature (any ``|c| ≤ 1``).

        Conditioning on ``Z1 = z``, ``bZ2 ~ N(bcz, b²(1 − c²))`` and the inner expectation
        is closed form (ramp identity with a shifted mean); the outer integral over
        ``z ∈ [−12, 12]`` is composite Gauss–Legendre split at the kinks of both factors
        (``t/a`` and ``t/(bc)``), so every panel is analytic.  Broadcasts ``a, b, c``.
        """
        a, b, c = torch.broadcast_tensors(a, b, c)
        a, b = a.clamp_min(1e-300), b.clamp_min(1e-300)
        c = c.clamp(-1.0, 1.0)
        L = 12.0
        bc = b * c
        safe_bc = torch.where(bc.abs() > 1e-300, bc, torch.full_like(bc, 1e-300))
        brk = [torch.full_like(a, -L), torch.full_like(a, L)]
        for t in (self.t1, self.t2):
            brk.append((t / a).clamp(-L, L))
            brk.append((t / safe_bc).clamp(-L, L))
        edges = torch.sort(torch.stack(brk, dim=-1), dim=-1).values  # (..., 6)
        xg_np, wg_np = gauss_legendre(nodes)
        xg = torch.tensor(xg_np, dtype=a.dtype, device=a.device)
        wg = torch.tensor(wg_np, dtype=a.dtype, device=a.device)
        # panels: split every interval into `panels` equal pieces
        frac = torch.arange(panels + 1, dtype=a.dtype, device=a.device) / panels
        lo, hi = edges[..., :-1], edges[..., 1:]
        pe = lo.unsqueeze(-1) + (hi - lo).unsqueeze(-1) * frac  # (..., 5, panels+1)
        plo, phi_ = pe[..., :-1], pe[..., 1:]
        half = (phi_ - plo) / 2
        z = (plo + phi_).unsqueeze(-1) / 2 + half.unsqueeze(-1) * xg  # (..., 5, P, n)
        w = half.unsqueeze(-1) * wg
        ex = lambda t: t.unsqueeze(-1).unsqueeze(-1).unsqueeze(-1)  # noqa: E731
        mu = ex(bc) * z
        tau = ex(b * (1 - c * c).clamp_min(0).sqrt())
        inner = torch.full_like(z, self.s1)
        for t, sign in ((self.t1, 1.0), (self.t2, -1.0)):
            m = mu - t
            safe_tau = tau.clamp_min(1e-300)
            ramp = torch.where(
                tau > 0, tau * _phi(m / safe_tau) + m * (1 - _Phi_bar(m / safe_tau)), m.clamp_min(0)
            )
            inner = inner + sign * self.slope * ramp
        integrand = _phi(z) * self(ex(a) * z) * inner
        return (integrand * w).sum(dim=(-1, -2, -3))
