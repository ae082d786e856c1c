"""Drifts of the neural covariance SDE and PSD-preserving flows for them.

Conventions (docs/sde.md, Li, Nica, Roy 2022, arXiv 2206.02768): for ``m`` inputs the
state is the ``(m, m)`` penultimate covariance ``Φ^{αβ} = (c/n)⟨φ_s(h_α), φ_s(h_β)⟩``;
one layer of width ``n`` is a time step ``dt = 1/n`` and ``T = d/n``.  Batched states
have shape ``(..., m, m)``.

Both drifts were re-derived by expanding ``c·E[φ_s(g_α)φ_s(g_β)] − Φ^{αβ}`` for
``g ~ N(0, Φ)`` to order ``1/n`` and checked against one-layer Monte Carlo of the exact
finite-width map (``tests/test_sde_drift.py``):

* shaped ReLU, ``φ_s(x) = s₊ max(x,0) + s₋ min(x,0)``, ``s± = 1 + c±/√n``,
  ``c = 2/(s₊² + s₋²)``: ``b^{αβ} = √(Φ^{αα}Φ^{ββ}) ν(ρ^{αβ})`` with
  ``ν(ρ) = (c₊ − c₋)²/(2π) (√(1−ρ²) − ρ arccos ρ) ≥ 0`` (correlations are pushed *up*).
  Equivalently ``b = κ (K₁(Φ) − Φ)`` with ``κ = (c₊ − c₋)²/2`` and ``K₁`` the
  normalised arc-cosine kernel map (Cho & Saul 2009, eq. (6)), which is PSD.  Since
  ``E[relu(u) relu(v)] − E[relu(u) relu(−v)] = E[relu(u) v] = Φ^{αβ}/2`` for
  ``(u, v) ~ N(0, Φ)``, ``b^{αβ} = 2κ E[relu(u) relu(−v)]``: the drift is evaluated with
  the ReLU layer's dual (:meth:`widelimit.layers.activations.ReLU.dual`, the one copy of
  the arc-cosine formulas), which keeps full relative accuracy as ``ρ → 1``.
* smooth ``φ_s(x) = s φ(x/s)``, ``s = a√n``, ``c = 1/E[φ_s(g)²]`` for ``g ~ N(0,1)``:
  ``b^{αβ} = φ''(0)²/(4a²)[Φ^{αα}Φ^{ββ} + Φ^{αβ}(2Φ^{αβ} − 3)]
  + φ'''(0)/(2a²) Φ^{αβ}(Φ^{αα} + Φ^{ββ} − 2)``; one input: ``b_* Φ(Φ − 1)`` with
  ``b_* = (¾φ''(0)² + φ'''(0))/a²``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from widelimit.deprecation import renamed_kwargs
from widelimit.layers.activations import ReLU

__all__ = ["ReLUDrift", "SmoothDrift", "relu_nu", "relu_nu_theta"]


_RELU = ReLU()


def _relu_anti(q1: Tensor, q2: Tensor, s12: Tensor) -> Tensor:
    """``E[relu(u) relu(−v)]`` for ``(u, v) ~ N(0, [[q1, s12], [s12, q2]])`` (ReLU dual at −s12).

    ``= √(q1 q2)/(2π)·(sin θ − θ cos θ)``, ``θ = arccos(s12/√(q1 q2))``; ``0`` where
    ``q1 q2 = 0``.
    """
    return _RELU.dual(q1, q2, -s12, ntk=False)[0]


def relu_nu_theta(theta: Tensor, strength: float) -> Tensor:
    """``ν`` as a function of the angle ``θ = arccos ρ``: ``κ/π·(sin θ − θ cos θ)``.

    ``strength`` is ``κ = (c₊ − c₋)²/2``.  Li, Nica, Roy 2022, Thm 3.2 (ReLU-like drift).
    Evaluated as ``2κ E[relu(u) relu(−v)]`` at correlation ``cos θ`` (see the module
    docstring), so ``θ`` enters through ``cos θ``: relative accuracy ``~ε/θ²`` for tiny
    ``θ`` (absolute accuracy ``~εθ``).
    """
    ones = torch.ones_like(theta)
    return 2 * strength * _relu_anti(ones, ones, torch.cos(theta))


def relu_nu(rho: Tensor, c_plus: float, c_minus: float) -> Tensor:
    """``ν(ρ) = (c₊ − c₋)²/(2π) (√(1−ρ²) − ρ arccos ρ)`` for ``ρ ∈ [-1, 1]`` (any shape).

    ``= 2κ E[relu(u) relu(−v)]`` for unit-variance ``(u, v)`` with correlation ``ρ``.
    """
    strength = (c_plus - c_minus) ** 2 / 2
    ones = torch.ones_like(rho)
    return 2 * strength * _relu_anti(ones, ones, rho.clamp(-1.0, 1.0))


@dataclass(frozen=True)
class ReLUDrift:
    """Drift of the shaped-ReLU covariance SDE (Li, Nica, Roy 2022, Thm 3.2).

    ``c_plus``, ``c_minus``: shaping constants of ``s± = 1 + c±/√n``.
    """

    c_plus: float
    c_minus: float

    @property
    def strength(self) -> float:
        """``κ = (c₊ − c₋)²/2``, with ``b = κ (K₁(Φ) − Φ)``."""
        return (self.c_plus - self.c_minus) ** 2 / 2

    def nu(self, rho: Tensor) -> Tensor:
        """``ν(ρ)`` (any shape)."""
        return relu_nu(rho, self.c_plus, self.c_minus)

    @renamed_kwargs(phi="cov")
    def __call__(self, cov: Tensor) -> Tensor:
        """``b(Φ)``: ``(..., m, m) -> (..., m, m)``, ``b^{αβ} = √(Φ^{αα}Φ^{ββ}) ν(ρ^{αβ})``.

        Computed as ``2κ E[relu(u_α) relu(−u_β)]``, ``u ~ N(0, Φ)`` (module docstring);
        ``0`` where a variance is ``0``.
        """
        d = torch.diagonal(cov, dim1=-2, dim2=-1).clamp_min(0)
        return 2 * self.strength * _relu_anti(d.unsqueeze(-1), d.unsqueeze(-2), cov)

    @renamed_kwargs(phi="cov")
    def flow(self, cov: Tensor, h: float) -> Tensor:
        """PSD-preserving drift step of size ``h ≥ 0``: ``(1−θ)Φ + θK₁(Φ)``, ``θ = 1 − e^{−κh}``.

        ``K₁(Φ) = Φ + b(Φ)/κ`` is the arc-cosine kernel map (PSD), so the step is a convex
        combination of two PSD matrices, PSD for every ``h``; first-order consistent with
        ``dΦ/dt = κ(K₁(Φ) − Φ) = b(Φ)``.
        """
        theta = -math.expm1(-self.strength * h)
        if theta == 0.0:
            return cov
        return cov + (theta / self.strength) * self(cov)


@dataclass(frozen=True)
class SmoothDrift:
    """Drift of the smooth-shaped covariance SDE (Li, Nica, Roy 2022, Thm 3.4).

    ``phi2 = φ''(0)``, ``phi3 = φ'''(0)``, ``a``: shaping ``s = a√n``.
    """

    phi2: float
    phi3: float
    a: float

    @property
    def quad(self) -> float:
        """Coefficient ``φ''(0)²/(4a²)``."""
        return self.phi2**2 / (4 * self.a**2)

    @property
    def cubic(self) -> float:
        """Coefficient ``φ'''(0)/(2a²)``."""
        return self.phi3 / (2 * self.a**2)

    @property
    def b_star(self) -> float:
        """One-input coefficient ``b_* = (¾φ''(0)² + φ'''(0))/a² = 3·quad + 2·cubic``."""
        return 3 * self.quad + 2 * self.cubic

    @renamed_kwargs(phi="cov")
    def __call__(self, cov: Tensor) -> Tensor:
        """``b(Φ)``: ``(..., m, m) -> (..., m, m)``."""
        d = torch.diagonal(cov, dim1=-2, dim2=-1)
        dd = d.unsqueeze(-1) * d.unsqueeze(-2)
        ds = d.unsqueeze(-1) + d.unsqueeze(-2)
        return self.quad * (dd + cov * (2 * cov - 3)) + self.cubic * cov * (ds - 2)

    @renamed_kwargs(phi="cov")
    def flow(self, cov: Tensor, h: float) -> Tensor:
        """PSD-preserving drift step: ``e^{−b_* h} EΦE + h·quad·(d dᵀ + 2Φ∘Φ)``.

        ``E = diag(exp(h·cubic·Φ^{αα}))``.  Each term is PSD (a congruence, a rank-one
        outer product and a Schur product), so the step is PSD for every ``h ≥ 0``;
        its first-order expansion is ``Φ + h b(Φ)``.
        """
        d = torch.diagonal(cov, dim1=-2, dim2=-1)
        e = torch.exp(h * self.cubic * d)
        out = math.exp(-self.b_star * h) * (e.unsqueeze(-1) * cov * e.unsqueeze(-2))
        if self.quad:
            out = out + h * self.quad * (d.unsqueeze(-1) * d.unsqueeze(-2) + 2 * cov * cov)
        return out
