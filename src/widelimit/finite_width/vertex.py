"""The four-point vertex of a finite-width fully connected net at leading order in 1/n.

Notation (docs/finite_width.md derives it): inputs ``α = 1..N``, pre-activations
``z^(ℓ)_{i;α}`` of dense layer ``ℓ = 1..L`` (``L`` = readout), hidden widths ``n_ℓ``.
Given the previous layer, the neurons of layer ``ℓ + 1`` are i.i.d. Gaussian with the
*empirical* covariance::

    Ĝ^(ℓ+1)_αβ = σb² + (σw²/n_ℓ) Σ_j φ(z^(ℓ)_{j;α}) φ(z^(ℓ)_{j;β}).

So ``E[z_{i;α} z_{i;β}] = E[Ĝ_αβ]`` and every connected four-point function is a
covariance of ``Ĝ``: with ``V_(αβ)(γδ) = Cov(Ĝ_αβ, Ĝ_γδ)``,

* same neuron: ``κ4(z_α, z_β, z_γ, z_δ) = V_(αβ)(γδ) + V_(αγ)(βδ) + V_(αδ)(βγ)``;
* two neurons ``i ≠ j``: ``E[z_{i;α} z_{i;β} z_{j;γ} z_{j;δ}] − K_αβ K_γδ = V_(αβ)(γδ)``.

At leading order (``K`` the infinite-width metric, ``F(G)_αβ = E_G[φ_α φ_β]``, ``E4`` the
Gaussian four-point expectation under ``K^(ℓ)``)::

    K^(1) = σw² x·x'/d + σb²,        V^(1) = 0,
    K^(ℓ+1) = σw² F(K^(ℓ)) + σb²,
    V^(ℓ+1) = σw⁴ [ (E4 − F⊗F)/n_ℓ  +  J V^(ℓ) Jᵀ ],

where ``J = ∂F/∂G`` at ``K^(ℓ)`` (:func:`~widelimit.finite_width.gaussian.linearisation`).
The first term is the variance of an average of ``n_ℓ`` i.i.d. neurons; the second carries
the fluctuation of the layer below through the map ``F``.  Corrections are ``O(1/n²)``.
For one hidden layer (``L = 2``) ``V^(1) = 0`` and the neurons of layer 1 are exactly
i.i.d., so ``V^(2)`` is exact at every width.  ``V`` is the Roberts–Yaida–Hanin four-point
vertex divided by ``n_{ℓ−1}`` (their ``V`` is ``O(1)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from widelimit._validation import as_float_tensor
from widelimit.finite_width.gaussian import dual_hessian, four_point_expectations, linearisation
from widelimit.finite_width.spec import dense_chain
from widelimit.layers.base import Layer

__all__ = [
    "FourPointFunction",
    "edgeworth_density",
    "four_point_function",
    "hessian_contraction",
    "linear_map",
    "pair_sum",
    "propagate_vertex",
    "symmetrise",
]


def pair_sum(v: Tensor) -> Tensor:
    """Same-neuron fourth cumulant from the vertex: ``V_(αβ)(γδ) + V_(αγ)(βδ) + V_(αδ)(βγ)``."""
    return v + v.permute(0, 2, 1, 3) + v.permute(0, 3, 2, 1)


def symmetrise(v: Tensor) -> Tensor:
    """Average over ``α↔β``, ``γ↔δ`` and ``(αβ)↔(γδ)`` in three pairwise steps, so that
    those symmetries hold bit for bit (float addition is commutative)."""
    v = (v + v.permute(1, 0, 2, 3)) / 2
    v = (v + v.permute(0, 1, 3, 2)) / 2
    return (v + v.permute(2, 3, 0, 1)) / 2


def propagate_vertex(v: Tensor, a: Tensor, c: Tensor) -> Tensor:
    """``J V Jᵀ`` for ``δF_αβ = A_αβ δG_αα + A_βα δG_ββ + C_αβ δG_αβ`` (``α ≠ β``),
    ``δF_αα = A_αα δG_αα``; ``v (N, N, N, N)``, ``a, c (N, N)``."""
    eye = torch.eye(a.shape[0], dtype=torch.bool, device=a.device)
    b = a.T.masked_fill(eye, 0.0)  # coefficient of δG_ββ
    c = c.masked_fill(eye, 0.0)
    dd = torch.einsum("aacc->ac", v)  # V_(αα)(γγ)
    d_ = torch.einsum("aacd->acd", v)  # V_(αα)(γδ)
    _d = torch.einsum("abcc->abc", v)  # V_(αβ)(γγ)
    e = torch.einsum
    return (
        e("ab,cd,ac->abcd", a, a, dd)
        + e("ab,cd,ad->abcd", a, b, dd)
        + e("ab,cd,acd->abcd", a, c, d_)
        + e("ab,cd,bc->abcd", b, a, dd)
        + e("ab,cd,bd->abcd", b, b, dd)
        + e("ab,cd,bcd->abcd", b, c, d_)
        + e("ab,cd,abc->abcd", c, a, _d)
        + e("ab,cd,abd->abcd", c, b, _d)
        + e("ab,cd,abcd->abcd", c, c, v)
    )


@dataclass(frozen=True)
class FourPointFunction:
    """Two- and four-point functions of every dense layer's pre-activations at order 1/n.

    Attributes:
        kernels: ``L`` tensors ``(N, N)``: the infinite-width metric ``K^(ℓ)`` (the NNGP of
            layer ℓ; ``kernels[-1]`` is the output NNGP).
        vertices: ``L`` tensors ``(N, N, N, N)``: ``V^(ℓ) = Cov(Ĝ_αβ, Ĝ_γδ)`` at leading
            order (module docstring), ``O(Σ 1/n)``; ``vertices[0] = 0``.  Symmetric under
            ``α↔β``, ``γ↔δ`` and ``(αβ)↔(γδ)``.
        widths: hidden widths ``n_1..n_{L−1}``.
        kernel_corrections: ``L`` tensors ``(N, N)``: the ``O(1/n)`` correction ``δK^(ℓ)`` to
            the two-point function, ``E[Ĝ^(ℓ)] = K^(ℓ) + δK^(ℓ) + O(1/n²)``, from
            ``δK^(ℓ+1) = σw² (J δK^(ℓ) + ½ H:V^(ℓ))`` (``H`` the Hessian of the dual); zero
            up to the first hidden layer's readout and for linear or (one input) piecewise-
            linear nets, where ``F`` is linear in ``G``.  ``None`` when not computed.
    """

    kernels: tuple[Tensor, ...]
    vertices: tuple[Tensor, ...]
    widths: tuple[int, ...]
    kernel_corrections: tuple[Tensor, ...] | None = None

    def corrected_kernel(self, layer: int = -1) -> Tensor:
        """``E[Ĝ^(ℓ)] ≈ K^(ℓ) + δK^(ℓ)``: the two-point function to order 1/n, ``(N, N)``."""
        if self.kernel_corrections is None:
            return self.kernels[layer]
        return self.kernels[layer] + self.kernel_corrections[layer]

    def cumulant(self, layer: int = -1) -> Tensor:
        """Fourth cumulant of one neuron over four inputs, ``(N, N, N, N)``, fully symmetric."""
        return pair_sum(self.vertices[layer])

    def cross_cumulant(self, layer: int = -1) -> Tensor:
        """``E[z_{i;α} z_{i;β} z_{j;γ} z_{j;δ}] − K_αβ K_γδ`` for two neurons ``i ≠ j``:
        the vertex itself, ``(N, N, N, N)``."""
        return self.vertices[layer]

    def excess_kurtosis(self, layer: int = -1) -> Tensor:
        """``κ4/K² = 3 V_(αα)(αα)/K_αα²`` of each output (one neuron, one input), ``(N,)``."""
        q = torch.diagonal(self.kernels[layer])
        return 3 * torch.einsum("aaaa->a", self.vertices[layer]) / q**2

    def output_density(self, z: Tensor, input: int = 0, layer: int = -1) -> Tensor:
        """First-order corrected density of one neuron at input ``input``: the Edgeworth
        series :func:`edgeworth_density` with the corrected variance
        (:meth:`corrected_kernel`) and the fourth cumulant ``3 V_(αα)(αα)``; ``z`` any shape."""
        var = self.corrected_kernel(layer)[input, input]
        return edgeworth_density(z, var, 3 * self.vertices[layer][input, input, input, input])

    def cross_kurtosis(self, layer: int = -1) -> Tensor:
        """``E[z_i(x_α)² z_j(x_β)²]/(K_αα K_ββ) − 1`` for two neurons ``i ≠ j``, ``(N, N)``
        (the input ``α = β`` on the diagonal)."""
        q = torch.diagonal(self.kernels[layer])
        return torch.einsum("aabb->ab", self.vertices[layer]) / (q[:, None] * q[None, :])


def four_point_function(
    net: Layer,
    x: Tensor,
    *,
    widths: int | Sequence[int] | None = None,
    orders: tuple[int, int, int, int] | None = None,
) -> FourPointFunction:
    """The leading-order 1/n four-point vertex of every layer of a fully connected net.

    Args:
        net: ``serial(Dense, φ, Dense, ..., Dense)`` (:func:`~widelimit.finite_width.spec.
            dense_chain`); any activation but jumps (``Sign``); biases and both
            parameterizations (the forward distribution does not depend on it).
        x: ``(N, d)`` inputs (computed in float64; the results are cast back to ``x.dtype``).
        widths: hidden widths (one int, one per hidden layer, or ``None`` for the spec's).
        orders: quadrature orders of :func:`~widelimit.finite_width.gaussian.
            four_point_expectations`.
    Returns:
        :class:`FourPointFunction`.
    """
    x = as_float_tensor("x", x, min_ndim=2, max_ndim=2)
    chain = dense_chain(net, widths)
    x64 = x.double()
    d0 = chain.dense[0]
    k = d0.w_std**2 * (x64 @ x64.T) / x64.shape[1] + d0.b_std**2
    v = torch.zeros((x.shape[0],) * 4, dtype=torch.float64, device=x.device)
    dk = torch.zeros_like(k)
    kernels, vertices, corrections = [k], [v], [dk]
    for act, dense, n in zip(chain.activations, chain.dense[1:], chain.widths, strict=True):
        w2, b2 = dense.w_std**2, dense.b_std**2
        f, a, c, _ = linearisation(act, k)
        if v.any():  # E[F(Ĝ)] = F(K) + J·δK + ½ H:V + O(1/n²)
            dk = w2 * (linear_map(dk, a, c) + 0.5 * hessian_contraction(dual_hessian(act, k), v))
        e4 = four_point_expectations(act, k, orders=orders)
        fresh = e4 - f[:, :, None, None] * f[None, None, :, :]
        v = symmetrise((w2 * w2) * (fresh / n + propagate_vertex(v, a, c)))
        k = w2 * f + b2
        kernels.append(k)
        vertices.append(v)
        corrections.append(dk)
    return FourPointFunction(
        tuple(t.to(x.dtype) for t in kernels),
        tuple(t.to(x.dtype) for t in vertices),
        chain.widths,
        tuple(t.to(x.dtype) for t in corrections),
    )


def edgeworth_density(z: Tensor, variance: Tensor | float, cumulant4: Tensor | float) -> Tensor:
    """``N(z; 0, σ²)·[1 + κ4/(24σ⁴)·He4(z/σ)]``, ``He4(t) = t⁴ − 6t² + 3``: the density of a
    symmetric variable with variance ``σ²`` and fourth cumulant ``κ4`` to first order in
    ``κ4`` (odd cumulants vanish by symmetry; the sixth is ``O(1/n²)``).  It integrates to 1
    and has the right variance and kurtosis, but is negative near ``|z| = √3 σ`` when the
    excess kurtosis exceeds 4 (there the 1/n expansion has failed); it is clamped at 0."""
    var = torch.as_tensor(variance, dtype=z.dtype, device=z.device)
    t2 = z * z / var
    gauss = torch.exp(-t2 / 2) / torch.sqrt(2 * math.pi * var)
    return (gauss * (1 + cumulant4 / (24 * var * var) * (t2 * t2 - 6 * t2 + 3))).clamp_min(0.0)


def linear_map(dg: Tensor, a: Tensor, c: Tensor) -> Tensor:
    """``J·δG``: ``A_αβ δG_αα + A_βα δG_ββ + C_αβ δG_αβ`` (``α ≠ β``), ``A_αα δG_αα``."""
    eye = torch.eye(a.shape[0], dtype=torch.bool, device=a.device)
    d = torch.diagonal(dg)
    return a * d[:, None] + a.T.masked_fill(eye, 0.0) * d[None, :] + c.masked_fill(eye, 0.0) * dg


def hessian_contraction(h: Tensor, v: Tensor) -> Tensor:
    """``Σ_{x,y} H_αβ[x, y] V_{x,y}`` over ``x, y ∈ {(αα), (ββ), (αβ)}``; ``h (N, N, 3, 3)``
    from :func:`~widelimit.finite_width.gaussian.dual_hessian`, ``v (N, N, N, N)``."""
    vd = torch.einsum("aaaa->a", v)
    return (
        h[..., 0, 0] * vd[:, None]
        + h[..., 1, 1] * vd[None, :]
        + h[..., 2, 2] * torch.einsum("abab->ab", v)
        + 2 * h[..., 0, 1] * torch.einsum("aabb->ab", v)
        + 2 * h[..., 0, 2] * torch.einsum("aaab->ab", v)
        + 2 * h[..., 1, 2] * torch.einsum("bbab->ab", v)
    )
