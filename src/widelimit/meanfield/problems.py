"""Built-in mean-field problems: isotropic Gaussians and a ReLU teacher–student.

A *problem* fixes the data law and the unit ``σ*(x; θ)`` of the mean-field net
``ŷ(x) = (1/N) Σ_i σ*(x; θ_i)`` (docs/meanfield.md; Mei, Montanari, Nguyen 2018, eq. (1)).
Every problem exposes the same interface, used by :mod:`.network` and :mod:`.pde`:

- ``dim``: dimension ``D`` of one particle ``θ``; ``r_sharp``: ``R# = E[y²]``;
- ``init_particles(n, batch_shape, seed=...)`` → ``(*batch, n, D)`` samples of ``ρ₀``;
- ``sample(n, batch_shape, seed=...)`` → ``x (*batch, n, d)``, ``y (*batch, n)``
  (``seed``: ``int``, ``torch.Generator`` — pass one generator to draw a stream — or
  ``None``; ``generator=`` is deprecated);
- ``unit(theta, x)`` → ``(*batch, B, N)`` values ``σ*(x_b; θ_i)``;
- ``sgd_direction(theta, x, resid)`` → ``(*batch, N, D)`` = ``mean_b resid_b ∇θσ*(x_b; θ_i)``;
- ``V(theta)`` → ``(…, M)`` and ``U(theta1, theta2)`` → ``(…, M1, M2)`` pairwise, with
  ``V(θ) = −E[y σ*(x; θ)]`` and ``U(θ, θ') = E[σ*(x; θ) σ*(x; θ')]`` (MMN 2018, eq. (3));
- ``population_risk(theta)`` → ``(*batch,)``, the exact risk of the finite net,
  ``R# + (2/N) Σ V(θ_i) + (1/N²) Σ_ij U(θ_i, θ_j)`` (MMN 2018, eq. (4)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from widelimit._validation import check_positive_int
from widelimit.deprecation import renamed_kwargs
from widelimit.layers.activations import ReLU
from widelimit.meanfield.piecewise import PiecewiseLinear
from widelimit.seeding import Seed, as_generator

__all__ = ["IsotropicGaussians", "TeacherStudent"]


def _angle_moments(d: int, n_terms: int, dtype: torch.dtype) -> Tensor:
    """``m_k = E[t^k]`` for ``t`` the cosine between two independent uniform directions in ``R^d``.

    ``t`` has density ∝ ``(1 − t²)^{(d−3)/2}`` on ``[−1, 1]``: odd moments vanish and
    ``m_{2j} = Π_{i<j} (2i + 1)/(d + 2i)`` (so ``m_2 = 1/d``).
    """
    m = [1.0]
    for k in range(1, n_terms):
        m.append(0.0 if k % 2 else m[k - 2] * (k - 1) / (d + k - 2))
    return torch.tensor(m, dtype=dtype)


@dataclass(frozen=True)
class IsotropicGaussians:
    """Isotropic Gaussians (MMN 2018, §"isotropic Gaussians"; docs/meanfield.md).

    ``y = ±1`` equally likely, ``x | y = ±1 ~ N(0, (1 ± Δ)² I_d)``, unit
    ``σ*(x; w) = σ(⟨w, x⟩)`` with ``σ`` piecewise linear, ``ρ₀ = N(0, init_std²/d · I_d)``.
    Given ``y``, ``⟨w, x⟩ ~ N(0, r²(1 ± Δ)²)`` with ``r = ‖w‖``, so ``V`` is radial and
    ``U`` depends on ``r, r'`` and the cosine ``c`` of the angle between ``w, w'``::

        V(r)        = −½ [E σ((1+Δ) r Z) − E σ((1−Δ) r Z)]
        U(r, r', c) = ½ Σ_{a = 1±Δ} Σ_k c^k α_k(a r) α_k(a r')          (Mehler)
        Ū(r, r')    = ½ Σ_{a = 1±Δ} Σ_k m_k α_k(a r) α_k(a r')          (c averaged)

    ``Ū`` averages ``U`` over the cosine between independent uniform directions
    (moments ``m_k``); it is the interaction of the radial PDE.  The Mehler sum is cut
    at ``n_terms`` with the certified tail bound ``m_K sup σ² ≤ tol``.
    """

    d: int = 40
    delta: float = 0.8
    activation: PiecewiseLinear = field(default_factory=PiecewiseLinear)
    init_std: float = 0.8
    tol: float = 1e-13

    def __post_init__(self) -> None:
        check_positive_int("d", self.d)
        if self.d < 2:
            raise ValueError(f"`d` must be >= 2 (the angle law needs d >= 2); got {self.d}")
        if not 0 <= self.delta < 1:
            raise ValueError(f"`delta` must lie in [0, 1); got {self.delta!r}")
        if not self.init_std > 0:
            raise ValueError(f"`init_std` must be > 0; got {self.init_std!r}")

    # ---------------------------------------------------------------- interface
    @property
    def dim(self) -> int:
        return self.d

    @property
    def r_sharp(self) -> float:
        return 1.0

    @property
    def scales(self) -> tuple[float, float]:
        """Class standard deviations ``(1 + Δ, 1 − Δ)`` for ``y = +1, −1``."""
        return (1.0 + self.delta, 1.0 - self.delta)

    @renamed_kwargs(generator="seed")
    def init_particles(
        self,
        n: int,
        batch_shape: tuple[int, ...] = (),
        *,
        seed: Seed = None,
        dtype=torch.float64,
        device=None,
    ) -> Tensor:
        generator = as_generator(seed, device)
        std = self.init_std / math.sqrt(self.d)
        return std * torch.randn(
            *batch_shape, n, self.d, generator=generator, dtype=dtype, device=device
        )

    @renamed_kwargs(generator="seed")
    def sample(
        self,
        n: int,
        batch_shape: tuple[int, ...] = (),
        *,
        seed: Seed = None,
        dtype=torch.float64,
        device=None,
    ) -> tuple[Tensor, Tensor]:
        generator = as_generator(seed, device)
        y = 2.0 * (torch.rand(*batch_shape, n, generator=generator, device=device) < 0.5) - 1.0
        y = y.to(dtype)
        z = torch.randn(*batch_shape, n, self.d, generator=generator, dtype=dtype, device=device)
        return (1.0 + self.delta * y).unsqueeze(-1) * z, y

    def unit(self, theta: Tensor, x: Tensor) -> Tensor:
        return self.activation(x @ theta.transpose(-1, -2))

    def sgd_direction(self, theta: Tensor, x: Tensor, resid: Tensor) -> Tensor:
        # ∇_w σ(⟨w, x⟩) = σ'(⟨w, x⟩) x
        g = resid.unsqueeze(-1) * self.activation.derivative(x @ theta.transpose(-1, -2))
        return g.transpose(-1, -2) @ x / x.shape[-2]

    def V(self, theta: Tensor) -> Tensor:
        return self.V_radial(theta.norm(dim=-1))

    def U(self, theta1: Tensor, theta2: Tensor) -> Tensor:
        r1, r2 = theta1.norm(dim=-1), theta2.norm(dim=-1)
        c = (theta1 @ theta2.transpose(-1, -2)) / (r1.unsqueeze(-1) * r2.unsqueeze(-2)).clamp_min(
            1e-300
        )
        out = 0.0
        for a in self.scales:
            s1, s2 = (a * r1).unsqueeze(-1), (a * r2).unsqueeze(-2)
            out = out + 0.5 * self.activation.pair_expectation_quadrature(s1, s2, c)
        return out

    def population_risk(self, theta: Tensor, *, c_mehler: float = 0.95) -> Tensor:
        """Exact risk of the finite net ``θ (*batch, N, d)`` → ``(*batch,)``.

        Pairs with ``|c| ≤ c_mehler`` use Mehler's series (``K`` terms with the certified
        bound ``|c|^K sup σ² ≤ tol``), the diagonal the closed form ``E σ(sZ)²`` and the
        rare remaining pairs the 1-D quadrature of :class:`PiecewiseLinear`.
        """
        n = theta.shape[-2]
        r = theta.norm(dim=-1)
        u = theta / r.unsqueeze(-1).clamp_min(1e-300)
        c = u @ u.transpose(-1, -2)
        eye = torch.eye(n, dtype=torch.bool, device=theta.device)
        c = c.masked_fill(eye, 0.0)
        cabs = c.abs()
        far = cabs > c_mehler
        c_off = c.masked_fill(far, 0.0)
        cmax = float(c_off.detach().abs().max()) if n > 1 else 0.0
        bound = self.activation.bound**2
        K = 2 if cmax == 0 else max(2, math.ceil(math.log(self.tol / bound) / math.log(cmax)))
        feats = [self.activation.hermite_coefficients(a * r, K) for a in self.scales]
        power = (~(far | eye)).to(c.dtype)  # C∘0 restricted to the Mehler pairs
        ey2 = torch.zeros(theta.shape[:-2], dtype=theta.dtype, device=theta.device)
        for k in range(K):  # Σ_k α_kᵀ (C∘k) α_k over the Mehler pairs (Horner-free powers)
            for f in feats:
                ak = f[..., k].unsqueeze(-1)
                ey2 = ey2 + 0.5 * (ak.transpose(-1, -2) @ power @ ak)[..., 0, 0]
            power = power * c_off
        for a in self.scales:  # diagonal: E σ(a r Z)²
            ey2 = ey2 + 0.5 * self.activation.gauss_second_moment(a * r).sum(-1)
        if bool(far.any()):
            idx = far.nonzero(as_tuple=True)
            extra = torch.zeros_like(c)
            for a in self.scales:
                s1 = (a * r).unsqueeze(-1).expand_as(c)[idx]
                s2 = (a * r).unsqueeze(-2).expand_as(c)[idx]
                extra[idx] += 0.5 * self.activation.pair_expectation_quadrature(s1, s2, c[idx])
            ey2 = ey2 + extra.sum(dim=(-1, -2))
        return self.r_sharp + 2 * self.V_radial(r).mean(-1) + ey2 / n**2

    # ---------------------------------------------------------------- radial reduction
    def V_radial(self, r: Tensor) -> Tensor:
        """``V(r)`` for ``r = ‖w‖`` (any shape)."""
        ap, am = self.scales
        g = self.activation.gauss_mean
        return -0.5 * (g(ap * r) - g(am * r))

    @property
    def n_terms(self) -> int:
        """Mehler terms ``K`` with ``m_K sup σ² ≤ tol`` (the certified tail of ``Ū``)."""
        m = _angle_moments(self.d, 1025, torch.float64)
        ok = (m * self.activation.bound**2 <= self.tol).nonzero()
        ok = ok[ok[:, 0] % 2 == 0]
        if ok.numel() == 0:
            raise ValueError(
                f"d={self.d} is too small for the Mehler series of Ū to reach tol={self.tol:g} "
                "within 1024 terms; use a larger `d` or a looser `tol`"
            )
        return int(ok[0, 0])

    def radial_features(
        self, r: Tensor, *, derivative: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """``√(m_k/2) α_k(a r)`` stacked over ``a = 1 ± Δ`` and ``k``: shape ``r.shape + (2K,)``.

        With these features ``Ū(r, r') = ⟨F(r), F(r')⟩`` (a finite-rank factorisation).
        ``derivative=True`` also returns ``dF/dr``.
        """
        K = self.n_terms
        m = (_angle_moments(self.d, K, r.dtype).to(r.device) / 2).sqrt()
        out = [
            self.activation.hermite_coefficients(a * r, K, derivative=derivative)
            for a in self.scales
        ]
        if not derivative:
            return torch.cat([f * m for f in out], dim=-1)
        F = torch.cat([f * m for f, _ in out], dim=-1)
        dF = torch.cat([a * df * m for a, (_, df) in zip(self.scales, out, strict=True)], dim=-1)
        return F, dF

    def V_radial_derivative(self, r: Tensor) -> Tensor:
        """``dV/dr``."""
        ap, am = self.scales
        g = self.activation.gauss_mean_derivative
        return -0.5 * (ap * g(ap * r) - am * g(am * r))

    def U_radial(self, r1: Tensor, r2: Tensor) -> Tensor:
        """Angle-averaged interaction ``Ū(r1_i, r2_j)``: shape ``r1.shape + r2.shape[-1:]``."""
        return self.radial_features(r1) @ self.radial_features(r2).transpose(-1, -2)

    def radial_risk(self, r: Tensor, weights: Tensor | None = None) -> Tensor:
        """``R(ρ)`` for the radial law ``ρ = Σ_j w_j δ_{r_j}`` (uniform weights by default)."""
        if weights is None:
            weights = torch.full_like(r, 1.0 / r.shape[-1])
        f = (weights.unsqueeze(-1) * self.radial_features(r)).sum(-2)
        return self.r_sharp + 2 * (weights * self.V_radial(r)).sum(-1) + (f * f).sum(-1)

    def initial_radial_quantiles(self, m: int, *, dtype=torch.float64) -> Tensor:
        """Midpoint quantiles ``F⁻¹((j − ½)/m)`` of ``‖w‖`` under ``ρ₀`` (``r² ~ σ₀²χ²_d/d``)."""
        from scipy.stats import chi2

        u = (torch.arange(m, dtype=torch.float64) + 0.5) / m
        q = chi2.ppf(u.numpy(), self.d)
        return torch.as_tensor(self.init_std * (q / self.d) ** 0.5, dtype=dtype)


_RELU = ReLU()


class _ReLUArcCos(torch.autograd.Function):
    """``J(c) = 2π E[relu(u) relu(v)] = √(1 − c²) + (π − arccos c) c`` at unit variances.

    Both ``J`` and its derivative come from the ReLU layer's dual (the one copy of the
    arc-cosine formulas): ``J'(c) = 2π E[relu'(u) relu'(v)] = π − arccos c`` (Price's
    theorem), finite at ``|c| = 1`` where autograd through ``arccos`` gives ``∞ − ∞``.
    """

    @staticmethod
    def forward(ctx, c: Tensor) -> Tensor:  # type: ignore[override]
        ones = torch.ones_like(c)
        j, dj = _RELU.dual(ones, ones, c, ntk=True)
        ctx.save_for_backward(dj)
        return 2 * math.pi * j

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (dj,) = ctx.saved_tensors
        return grad * (2 * math.pi * dj)


def relu_kernel(w1: Tensor, w2: Tensor) -> Tensor:
    """``κ(w, w') = E[relu(⟨w, x⟩) relu(⟨w', x⟩)]``, ``x ~ N(0, I)``: ``(…, M1, M2)``.

    Cho & Saul 2009, eq. (6) / docs/activations.md: ``‖w‖‖w'‖ (sin θ + (π − θ) cos θ)/(2π)``.
    """
    n1 = (w1 * w1).sum(-1).add(1e-300).sqrt()
    n2 = (w2 * w2).sum(-1).add(1e-300).sqrt()
    nn_ = n1.unsqueeze(-1) * n2.unsqueeze(-2)
    c = (w1 @ w2.transpose(-1, -2)) / nn_
    return nn_ * _ReLUArcCos.apply(c) / (2 * math.pi)


@dataclass(frozen=True)
class TeacherStudent:
    """ReLU teacher–student regression in low dimension (a general-``V, U`` test bed).

    ``x ~ N(0, I_d)``, ``y = (1/m) Σ_j a*_j relu(⟨w*_j, x⟩) + noise_std·ε``; student units
    ``σ*(x; θ) = a relu(⟨w, x⟩)`` with ``θ = (a, w) ∈ R^{d+1}`` (``dim = d + 1``).  With the
    ReLU kernel ``κ``: ``V(θ) = −a (1/m) Σ_j a*_j κ(w, w*_j)``, ``U(θ, θ') = a a' κ(w, w')``,
    ``R# = (1/m²) Σ_jl a*_j a*_l κ(w*_j, w*_l) + noise_std²``.
    ``ρ₀``: ``a ~ N(0, init_a²)``, ``w ~ N(0, init_w²/d · I_d)`` independent.
    Defaults: ``d = 2``, three unit-norm teacher neurons at angles 0, 2π/3, 4π/3, ``a* = 3``.
    """

    teacher_w: tuple[tuple[float, ...], ...] = (
        (1.0, 0.0),
        (-0.5, math.sqrt(3) / 2),
        (-0.5, -math.sqrt(3) / 2),
    )
    teacher_a: tuple[float, ...] = (3.0, 3.0, 3.0)
    noise_std: float = 0.0
    init_a: float = 0.5
    init_w: float = 1.0

    def __post_init__(self) -> None:
        if len(self.teacher_w) == 0 or len({len(w) for w in self.teacher_w}) != 1:
            raise ValueError("`teacher_w` must be a non-empty list of equal-length vectors")
        if len(self.teacher_a) != len(self.teacher_w):
            raise ValueError(
                f"`teacher_a` has {len(self.teacher_a)} entries but `teacher_w` has "
                f"{len(self.teacher_w)}; give one output weight per teacher neuron"
            )
        for name in ("noise_std", "init_a", "init_w"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"`{name}` must be >= 0; got {getattr(self, name)!r}")

    @property
    def d(self) -> int:
        return len(self.teacher_w[0])

    @property
    def dim(self) -> int:
        return self.d + 1

    def _teacher(self, dtype, device) -> tuple[Tensor, Tensor]:
        w = torch.tensor(self.teacher_w, dtype=dtype, device=device)
        a = torch.tensor(self.teacher_a, dtype=dtype, device=device)
        return w, a

    @property
    def r_sharp(self) -> float:
        w, a = self._teacher(torch.float64, None)
        return float(a @ relu_kernel(w, w) @ a) / len(a) ** 2 + self.noise_std**2

    @renamed_kwargs(generator="seed")
    def init_particles(
        self,
        n: int,
        batch_shape: tuple[int, ...] = (),
        *,
        seed: Seed = None,
        dtype=torch.float64,
        device=None,
    ) -> Tensor:
        generator = as_generator(seed, device)
        z = torch.randn(*batch_shape, n, self.dim, generator=generator, dtype=dtype, device=device)
        scale = torch.full((self.dim,), self.init_w / math.sqrt(self.d), dtype=dtype, device=device)
        scale[0] = self.init_a
        return z * scale

    @renamed_kwargs(generator="seed")
    def sample(
        self,
        n: int,
        batch_shape: tuple[int, ...] = (),
        *,
        seed: Seed = None,
        dtype=torch.float64,
        device=None,
    ) -> tuple[Tensor, Tensor]:
        generator = as_generator(seed, device)
        x = torch.randn(*batch_shape, n, self.d, generator=generator, dtype=dtype, device=device)
        w, a = self._teacher(dtype, device)
        y = torch.relu(x @ w.T) @ a / len(a)
        if self.noise_std > 0:
            noise = torch.randn(*batch_shape, n, generator=generator, dtype=dtype, device=device)
            y = y + self.noise_std * noise
        return x, y

    def unit(self, theta: Tensor, x: Tensor) -> Tensor:
        return theta[..., 0].unsqueeze(-2) * torch.relu(x @ theta[..., 1:].transpose(-1, -2))

    def sgd_direction(self, theta: Tensor, x: Tensor, resid: Tensor) -> Tensor:
        h = x @ theta[..., 1:].transpose(-1, -2)  # (*, B, N)
        r = resid.unsqueeze(-1)
        ga = (r * torch.relu(h)).mean(-2)  # ∂σ*/∂a = relu(h)
        gw = ((r * (h > 0).to(h.dtype)).transpose(-1, -2) @ x) / x.shape[-2]  # a 1{h>0} x
        return torch.cat([ga.unsqueeze(-1), theta[..., :1] * gw], dim=-1)

    def V(self, theta: Tensor) -> Tensor:
        w, a = self._teacher(theta.dtype, theta.device)
        return -theta[..., 0] * (relu_kernel(theta[..., 1:], w) @ a) / len(a)

    def U(self, theta1: Tensor, theta2: Tensor) -> Tensor:
        aa = theta1[..., 0].unsqueeze(-1) * theta2[..., 0].unsqueeze(-2)
        return aa * relu_kernel(theta1[..., 1:], theta2[..., 1:])

    def population_risk(self, theta: Tensor) -> Tensor:
        return self.r_sharp + 2 * self.V(theta).mean(-1) + self.U(theta, theta).mean(dim=(-1, -2))
