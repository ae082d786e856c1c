"""More closed-form activations: ``Polynomial``, ``Gabor``, ``ExpNormalized``.

The three Neural Tangents layers that :mod:`widelimit.layers.activations` lacked, each
with its dual ``(E[φ(u)φ(v)], E[φ'(u)φ'(v)])`` in closed form (``(u, v) ~ N(0, [[q1, s],
[s, q2]])``; notation ``ρ = √(q1 q2)``, ``c = s/ρ`` as in that module) and the
correlation form used by the tiled engine.  ``Polynomial`` and ``Gabor`` are
registered in :data:`~widelimit.layers.activations.ACTIVATIONS` (``"polynomial"``,
``"gabor"``).  ``ExpNormalized`` is not elementwise (its finite module normalises over
the channels), so it is a layer of net descriptions but not a registry activation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from widelimit._validation import broadcast_shapes
from widelimit.layers.activations import (
    ACTIVATIONS,
    Dual,
    Elementwise,
    correlation,
    real_parameter,
)

__all__ = ["ExpNormalized", "Gabor", "Polynomial"]

_MAX_DEGREE = 32  # as Monomial: coefficients up to ~(32!)² stay finite in float64


def _one_minus_c2(c: Tensor) -> Tensor:
    return ((1 - c) * (1 + c)).clamp_min(0)


# --------------------------------------------------------------------------
# Polynomial
# --------------------------------------------------------------------------


def _odd_double_factorial(i: int) -> int:
    """``(2i − 1)!! = 1·3·…·(2i − 1)`` (1 for ``i = 0``): ``E[z^{2i}]`` for ``z ~ N(0, 1)``."""
    return math.prod(range(1, 2 * i, 2))


@dataclass(frozen=True)
class Polynomial(Elementwise):
    """``φ(x) = Σ_j a_j x^j`` with ``coefficients = (a_0, a_1, …, a_n)`` (ascending powers,
    as ``numpy.polynomial.Polynomial`` and Neural Tangents' ``Polynomial(coef)``; degree ≤ 32).

    Dual (derived here).  By Price's theorem (Price 1958) ``∂^l/∂s^l E[φ(u)φ(v)] =
    E[φ^{(l)}(u) φ^{(l)}(v)]``, and at ``s = 0`` ``u`` and ``v`` are independent, so the
    dual — a polynomial in ``s`` of degree ``n`` — is its Taylor series at 0::

        E[φ(u)φ(v)]   = Σ_l  l! γ_l(q1) γ_l(q2) s^l
        E[φ'(u)φ'(v)] = Σ_l  l · l! γ_l(q1) γ_l(q2) s^{l−1}
        γ_l(q) = E[φ^{(l)}(√q z)]/l! = Σ_i a_{l+2i} C(l+2i, l) (2i−1)!! q^i

    (``E[z^{2i}] = (2i−1)!!``).  Equivalently ``√(l!) γ_l(q) q^{l/2}`` is the l-th
    normalised Hermite coefficient of ``φ(√q z)`` and this is Mehler's expansion
    ``Σ_l α_l(q1) α_l(q2) c^l`` (the form of Neural Tangents' ``Polynomial``); it is
    evaluated that way, by Horner's rule in ``c`` with vector coefficients.
    ``Polynomial((0,) * k + (1,))`` is ``Monomial(k)``.  The default ``(0, 1)`` is the
    identity.
    """

    coefficients: tuple[float, ...] = (0.0, 1.0)

    def __post_init__(self) -> None:
        coef = self.coefficients
        if isinstance(coef, Tensor):
            coef = coef.detach().cpu().tolist()
        if isinstance(coef, str) or not hasattr(coef, "__iter__"):
            raise TypeError(
                "Polynomial: `coefficients` must be a sequence of numbers (a_0, a_1, …, a_n) "
                f"in ascending powers; got {self.coefficients!r}"
            )
        values = tuple(real_parameter("Polynomial", "coefficients", a) for a in coef)
        if not values:
            raise ValueError("Polynomial: `coefficients` must not be empty; e.g. (0, 1) for x")
        if len(values) > _MAX_DEGREE + 1:
            raise ValueError(
                f"Polynomial: the degree must be <= {_MAX_DEGREE} (at most "
                f"{_MAX_DEGREE + 1} coefficients); got {len(values)} coefficients"
            )
        object.__setattr__(self, "coefficients", values)

    @property
    def degree(self) -> int:
        """``len(coefficients) − 1`` (trailing zeros included)."""
        return len(self.coefficients) - 1

    def fn(self, x: Tensor) -> Tensor:
        out = torch.full_like(x, self.coefficients[-1])
        for a in reversed(self.coefficients[:-1]):
            out = out * x + a
        return out

    def derivative(self, x: Tensor) -> Tensor:
        coef = [j * a for j, a in enumerate(self.coefficients)][1:] or [0.0]
        out = torch.full_like(x, coef[-1])
        for a in reversed(coef[:-1]):
            out = out * x + a
        return out

    def _gammas(self, q: Tensor) -> list[Tensor]:
        """``[γ_0(q), …, γ_n(q)]`` in float64 (see the class docstring)."""
        a, n = self.coefficients, self.degree
        out = []
        for lv in range(n + 1):
            g = torch.zeros_like(q)
            for i in range((n - lv) // 2, -1, -1):  # Horner in q
                g = g * q + a[lv + 2 * i] * math.comb(lv + 2 * i, lv) * _odd_double_factorial(i)
            out.append(g)
        return out

    def dual(self, q1, q2, s12, *, ntk=True):
        _, c = correlation(q1, q2, s12)
        return self.dual_correlation(c, q1, q2, ntk=ntk)

    def dual_correlation(self, c: Tensor, q1: Tensor, q2: Tensor, *, ntk: bool = True) -> Dual:
        # l! γ_l(q1) γ_l(q2) s^l = l! (γ_l(q1) q1^{l/2}) (γ_l(q2) q2^{l/2}) c^l, and the NTK
        # factor with q^{(l−1)/2} (no division at q = 0); vector coefficients in float64
        n, dtype = self.degree, c.dtype
        q1d, q2d = q1.double().clamp_min(0), q2.double().clamp_min(0)
        g1, g2 = self._gammas(q1d), self._gammas(q2d)
        r1, r2 = q1d.sqrt(), q2d.sqrt()

        def horner(coefs: list[tuple[Tensor, Tensor]]) -> Tensor:
            shape = broadcast_shapes(c.shape, q1.shape, q2.shape)
            out = torch.zeros(shape, dtype=dtype, device=c.device)
            for u, v in reversed(coefs):
                out = out.mul_(c).addcmul_(u.to(dtype), v.to(dtype))
            return out

        fact = [float(math.factorial(lv)) for lv in range(n + 1)]
        nngp = horner([(fact[lv] * g1[lv] * r1**lv, g2[lv] * r2**lv) for lv in range(n + 1)])
        if not ntk:
            return nngp, None
        if n == 0:
            return nngp, torch.zeros_like(nngp)
        dd = horner(
            [
                (lv * fact[lv] * g1[lv] * r1 ** (lv - 1), g2[lv] * r2 ** (lv - 1))
                for lv in range(1, n + 1)
            ]
        )
        return nngp, dd


# --------------------------------------------------------------------------
# Gabor
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Gabor(Elementwise):
    """Gabor function ``φ(x) = A · exp(−γ x²) · sin(ω x + p)`` (amplitude, gamma ≥ 0,
    frequency, phase); the default ``exp(−x²) sin x`` is Neural Tangents' ``Gabor()``.

    Dual (derived here).  With ``C`` the covariance of ``x = (u, v)``, the Gaussian
    integral ``E[e^{−γ|x|²} e^{i tᵀx}] = D^{−1/2} exp(−½ tᵀ M t)``, ``D = det(I + 2γC)``,
    ``M = C (I + 2γC)^{−1}``, and ``sin a sin b = (cos(a − b) − cos(a + b))/2`` give (the
    odd parts vanish)::

        Δ = q1 q2 − s² = ρ²(1 − c²),    D = 1 + 2γ(q1 + q2) + 4γ²Δ
        x∓ = ω² (q1 + q2 + 4γΔ ∓ 2s) / (2D),    e∓ = exp(−x∓),    κ = cos 2p
        E[φφ]   = A²/(2√D) (e₋ − κ e₊)

    i.e. the :class:`~widelimit.layers.activations.Sin` dual at the damped covariance
    ``M`` times ``D^{−1/2}``.  The NTK factor is its ``s``-derivative (Price's theorem;
    checked against quadrature of ``φ'`` in the tests), with ``P = 1 + 2γ(q1 + q2) +
    4γ²(q1q2 + s²)`` and ``R = 4γ s (1 + γ(q1 + q2))``::

        E[φ'φ'] = A²/(2 D^{5/2}) [ (ω²(P + R) + 4γ² s D) e₋ + κ (ω²(P − R) − 4γ² s D) e₊ ]

    which for ``A = γ = ω = 1, p = 0`` is the form in Neural Tangents' ``Gabor``.
    ``q1 + q2 + 4γΔ ∓ 2s`` is evaluated as ``(√q1 − √q2)² + 2ρ(1 ∓ c) + 4γΔ`` and the
    difference ``e₋ − κ e₊`` with ``expm1``: no cancellation at ``c = ±1`` or ``s = 0``.
    ``Gabor(gamma=0)`` is ``Sin``.
    """

    amplitude: float = 1.0
    gamma: float = 1.0
    frequency: float = 1.0
    phase: float = 0.0

    def __post_init__(self) -> None:
        for name in ("amplitude", "gamma", "frequency", "phase"):
            minimum = 0.0 if name == "gamma" else None
            value = real_parameter("Gabor", name, getattr(self, name), minimum=minimum)
            object.__setattr__(self, name, value)

    def fn(self, x: Tensor) -> Tensor:
        return (
            self.amplitude
            * torch.exp(-self.gamma * x * x)
            * torch.sin(self.frequency * x + self.phase)
        )

    def derivative(self, x: Tensor) -> Tensor:
        w, arg = self.frequency, self.frequency * x + self.phase
        damp = self.amplitude * torch.exp(-self.gamma * x * x)
        return damp * (w * torch.cos(arg) - 2 * self.gamma * x * torch.sin(arg))

    def dual(self, q1, q2, s12, *, ntk=True):
        prod, c = correlation(q1, q2, s12)
        g, w2, kappa = self.gamma, self.frequency**2, math.cos(2 * self.phase)
        s, total = prod * c, q1 + q2
        delta = prod * prod * _one_minus_c2(c)
        d = 1 + 2 * g * total + 4 * g * g * delta
        base = (q1.clamp_min(0).sqrt() - q2.clamp_min(0).sqrt()) ** 2 + 4 * g * delta
        pos = c >= 0
        # the smaller exponent x_min (x₋ for s ≥ 0) and em = e^{−|x₊ − x₋|} − 1, |x₊ − x₋| =
        # 2ω²|s|/D; each branch written without |c| so that autograd is exact at c = 0
        x_min = (
            w2 * torch.where(pos, base + 2 * prod * (1 - c), base + 2 * prod * (1 + c)) / (2 * d)
        )
        em = torch.where(
            pos, torch.expm1(-2 * w2 * s.clamp_min(0) / d), torch.expm1(2 * w2 * s.clamp_max(0) / d)
        )
        big = torch.exp(-x_min)
        # e₋ − κ e₊ = e^{−x_min} · bracket
        bracket = torch.where(pos, (1 - kappa) - kappa * em, (1 - kappa) + em)
        a2 = self.amplitude**2
        nngp = a2 / 2 * big * bracket * d.rsqrt()
        if not ntk:
            return nngp, None
        f_minus = torch.where(pos, torch.ones_like(em), em + 1)  # e₋ / e^{−x_min}
        f_plus = torch.where(pos, em + 1, torch.ones_like(em))  # e₊ / e^{−x_min}
        p = 1 + 2 * g * total + 4 * g * g * (prod * prod + s * s)
        r = 4 * g * s * (1 + g * total)
        sd = 4 * g * g * s * d
        inner = (w2 * (p + r) + sd) * f_minus + kappa * (w2 * (p - r) - sd) * f_plus
        dd = a2 / 2 * big * inner / (d * d * d.sqrt())
        return nngp, dd


# --------------------------------------------------------------------------
# ExpNormalized
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpNormalized(Elementwise):
    """Neural Tangents' ``ExpNormalized(gamma, shift)``: the "Gaussian normalised kernel"
    (Shankar et al. 2020, p. 6)::

        E[φφ]   = ρ · exp(γ (c + shift))              (ρ = √(q1 q2), c = s/ρ)
        E[φ'φ'] = γ · exp(γ (c + shift))               (= ∂/∂s of the line above)

    For ``shift = −1`` this is ``ρ · exp(−γ ‖û − v̂‖²/2)``, an RBF kernel of the
    normalised inputs scaled by their norms.  ``gamma >= 0`` (for γ < 0 the
    map is not a kernel: ``exp(γ c)`` has negative Taylor coefficients).

    No elementwise function has this dual (it is homogeneous of degree 1 in the
    variances but not piecewise linear), and Neural Tangents has no finite version.
    The finite module here normalises over the channels (axis 1) at every position:
    with ``r = (mean_channels h²)^{1/2}`` (→ ``√q`` as the width grows)::

        φ(h) = r · exp(γ (shift − 1)/2) · exp(√γ · h / r)

    whose dual at infinite width is the one above, since for unit Gaussians with
    correlation c, ``E[e^{√γ z1 − γ/2} e^{√γ z2 − γ/2}] = e^{γ c}`` (the Hermite
    generating function).  Its Jacobian's rank-one part (through ``r``) adds
    ``O(1/√width)`` to the empirical NTK, which vanishes in the limit.  Because it
    is not elementwise, ``derivative`` raises and it is not in the activation
    registry (use it as a layer: ``ExpNormalized(gamma=1.0)`` in a net description).
    Unlike Neural Tangents (``1e-30`` floors), a zero variance gives exactly 0
    (the pre-activation is 0 there, and so is ``φ``).
    """

    gamma: float = 1.0
    shift: float = -1.0

    def __post_init__(self) -> None:
        g = real_parameter("ExpNormalized", "gamma", self.gamma, minimum=0.0)
        object.__setattr__(self, "gamma", g)
        object.__setattr__(self, "shift", real_parameter("ExpNormalized", "shift", self.shift))

    def fn(self, x: Tensor) -> Tensor:
        """The channel-normalised map on ``(N, C, ...)`` (normalises over axis 1)."""
        if x.dim() < 2:
            raise ValueError(
                "ExpNormalized normalises over the channel axis 1: its input must be "
                f"(N, C) or (N, C, ...); got shape {tuple(x.shape)}"
            )
        r = x.square().mean(dim=1, keepdim=True).sqrt()
        safe = torch.where(r > 0, r, torch.ones_like(r))
        g = self.gamma
        out = r * math.exp(g * (self.shift - 1) / 2) * torch.exp(math.sqrt(g) * x / safe)
        return torch.where(r > 0, out, torch.zeros_like(out))

    def derivative(self, x: Tensor) -> Tensor:
        raise TypeError(
            "ExpNormalized is not elementwise (it normalises over the channels), so it has "
            "no elementwise derivative; its kernel rule uses the dual"
        )

    def dual(self, q1, q2, s12, *, ntk=True):
        _, c = correlation(q1, q2, s12)
        return self.dual_correlation(c, q1, q2, ntk=ntk)

    def dual_correlation(self, c: Tensor, q1: Tensor, q2: Tensor, *, ntk: bool = True) -> Dual:
        g = self.gamma
        grad_on = torch.is_grad_enabled() and any(t.requires_grad for t in (c, q1, q2))
        e = (c * g + g * self.shift).exp() if grad_on else c.mul_(g).add_(g * self.shift).exp_()
        dd = e * g if ntk else None
        root1, root2 = q1.clamp_min(0).sqrt(), q2.clamp_min(0).sqrt()
        nngp = e * root1 * root2 if grad_on else e.mul_(root1).mul_(root2)
        return nngp, dd


# Registered here (the registry lives in activations.py, which cannot import this module).
ACTIVATIONS.update({"polynomial": Polynomial, "gabor": Gabor})
