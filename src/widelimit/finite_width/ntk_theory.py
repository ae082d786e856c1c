"""The NTK at initialisation at order 1/n: its covariance over nets and its mean correction.

Notation as :mod:`widelimit.finite_width.vertex` (docs/finite_width.md derives everything).
Neurons ``i, j`` of dense layer ℓ have the NTK ``Θ^(ℓ)_{ij;αβ}`` (``Σ_μ ∂z_{i;α}/∂θ_μ
∂z_{j;β}/∂θ_μ`` over the parameters of layers ``1..ℓ``).  Given everything up to layer ℓ,
with ``w_i`` the rows of ``W^(ℓ+1)`` (i.i.d. ``N(0, σw²/n_ℓ)``)::

    Θ^(ℓ+1)_{ij;αβ} = δ_ij Ĥ_αβ + w_iᵀ M^{αβ} w_j,
    Ĥ_αβ = λ_b + λ_W (1/n_ℓ) Σ_k φ_{k;α} φ_{k;β},   M^{αβ}_{km} = φ'_{k;α} φ'_{m;β} Θ^(ℓ)_{km;αβ},

with the learning-rate factors ``(λ_W, λ_b) = (σw², σb²)`` under ``"ntk"`` and
``(n_ℓ, 1[σb > 0])`` under ``"standard"`` (:mod:`widelimit.layers.dense`).  Tracked per layer,
all at leading order (each is ``O(Σ 1/n)``; ``Ω̂ = E[Θ_ii | layers below]``):

* ``A^(ℓ)_(αβ)(γδ) = Cov(Ω̂_αβ, Ω̂_γδ) = Cov(Θ_{ii;αβ}, Θ_{jj;γδ})`` (``i ≠ j``);
* ``B^(ℓ)_(αβ)(γδ) = E[Θ_{ij;αβ} Θ_{ij;γδ}]`` (``i ≠ j``); one neuron's NTK has
  ``Cov(Θ_{ii;αβ}, Θ_{ii;γδ}) = A + B_(αβ)(γδ) + B_(αβ)(δγ)``;
* ``D^(ℓ)_(εη)(αβ) = Cov(Ĝ_εη, Ω̂_αβ)`` (the NTK–metric cross covariance);
* ``X^(ℓ)_(εη)(αβ) = E[z_{i;ε} z_{j;η} Θ_{ij;αβ}]`` (``i ≠ j``; the NTK–preactivation
  correlation, which feeds the mean correction);
* ``δΘ^(ℓ) = E[Θ_ii] − Θ^(ℓ)`` (and the vertex ``V``, ``δK`` of the metric).

The recursions (``P`` the linearisation of ``Y = λ_W F(G) + σw² C(G)⊙Θ`` in ``G``;
``E4, P4, Q4`` the Gaussian four-point expectations of ``φφφφ, φφφ'φ', φ'φ'φ'φ'`` under
``K``; ``Γ[ε, α, ε'] = E[∂_{ε'}(φ_ε φ'_α)]``)::

    A' = Cov_K(Y_1)/n + P V Pᵀ + σw² [(P D)⊙C_γδ + transpose] + σw⁴ C_αβ C_γδ A
    D' = σw² [Cov_K(φ_ε φ_η, Y_1)/n + J V Pᵀ + σw² (J D)⊙C_αβ]
    B' = σw⁴ [Q4 Θ_αβ Θ_γδ /n + C_αγ C_βδ B]
    X' = σw⁴ [P4_(εη)(αβ) Θ_αβ /n + Σ Γ[ε,α,ε'] Γ[η,β,η'] X_(ε'η')(αβ)]
    δΘ' = λ_W δF + σw² [C δΘ + (J_C δK) Θ + J_C:D + ½ (H_C:V) Θ + 2 J_C:sym(X)]

where ``Y_1 = λ_W φ_α φ_β + σw² Θ_αβ φ'_α φ'_β`` for one neuron, ``J, J_C`` the
linearisations of ``F = E[φφ]`` and ``C = E[φ'φ']``, ``H_C`` the Hessian of ``C`` and ``:``
contracts the pair ``(αβ)`` of the map with the tensor's own ``(αβ)`` entry.  All start at
zero at layer 1.  At one hidden layer they are exact (the hidden neurons are i.i.d.).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from widelimit._validation import as_float_tensor, check_positive_int
from widelimit.finite_width.gaussian import (
    linearisation,
    ntk_dual_derivatives,
    ntk_four_point_expectations,
)
from widelimit.finite_width.spec import dense_chain
from widelimit.finite_width.vertex import (
    hessian_contraction,
    linear_map,
    propagate_vertex,
    symmetrise,
)
from widelimit.layers.base import Layer

__all__ = ["NTKFluctuations", "apply_left", "ntk_fluctuations"]


def apply_left(t: Tensor, a: Tensor, c: Tensor) -> Tensor:
    """``J`` applied to the first pair of ``t (N, N, N, N)``: ``Σ_x J_(αβ),x t_x,(γδ)`` with
    ``J`` given by ``(a, c)`` as in :func:`~widelimit.finite_width.vertex.linear_map`."""
    eye = torch.eye(a.shape[0], dtype=torch.bool, device=a.device)
    b = a.T.masked_fill(eye, 0.0)
    c = c.masked_fill(eye, 0.0)
    d = torch.einsum("aacd->acd", t)  # t[α, α, γ, δ]
    return (
        a[:, :, None, None] * d[:, None]
        + b[:, :, None, None] * d[None, :]
        + c[:, :, None, None] * t
    )


def _apply_right(t: Tensor, a: Tensor, c: Tensor) -> Tensor:
    return apply_left(t.permute(2, 3, 0, 1), a, c).permute(2, 3, 0, 1)


def _contract_own(t: Tensor, a: Tensor, c: Tensor) -> Tensor:
    """``Σ_x J_(αβ),x t_x,(αβ)``: ``(N, N)``."""
    return torch.einsum("abab->ab", apply_left(t, a, c))


def _outer(u: Tensor, v: Tensor) -> Tensor:
    return u[:, :, None, None] * v[None, None, :, :]


@dataclass(frozen=True)
class NTKFluctuations:
    """The NTK of every dense layer at initialisation, at order 1/n (module docstring).

    Attributes (one entry per dense layer ℓ = 1..L; ``[-1]`` is the readout):
        kernels: ``(N, N)`` infinite-width metric ``K^(ℓ)`` (NNGP).
        ntks: ``(N, N)`` infinite-width NTK ``Θ^(ℓ)`` (the ``parameterization`` of each
            layer is used: under ``"standard"`` it grows with the widths).
        ntk_corrections: ``(N, N)`` ``δΘ^(ℓ)``: ``E[Θ̂_ii] = Θ + δΘ + O(1/n²)``.
        neuron_mean_covariances: ``(N, N, N, N)`` ``A^(ℓ)``: ``Cov(Θ̂_{ii;αβ}, Θ̂_{jj;γδ})``,
            ``i ≠ j``.  Symmetric under ``α↔β``, ``γ↔δ`` and ``(αβ)↔(γδ)``.
        cross_neuron_moments: ``(N, N, N, N)`` ``B^(ℓ)``: ``E[Θ̂_{ij;αβ} Θ̂_{ij;γδ}]``,
            ``i ≠ j``.
        metric_ntk_covariances: ``(N, N, N, N)`` ``D^(ℓ)_(εη)(αβ) = Cov(Ĝ_εη, Ω̂_αβ)``.
        preactivation_ntk: ``(N, N, N, N)`` ``X^(ℓ)_(εη)(αβ) = E[z_{i;ε} z_{j;η}
            Θ̂_{ij;αβ}]``, ``i ≠ j``.
        vertices, kernel_corrections: ``V^(ℓ)`` and ``δK^(ℓ)`` of
            :func:`~widelimit.finite_width.vertex.four_point_function` (same values).
        widths: hidden widths ``n_1..n_{L−1}``; out_features: readout width ``k``.
    """

    kernels: tuple[Tensor, ...]
    ntks: tuple[Tensor, ...]
    ntk_corrections: tuple[Tensor, ...]
    neuron_mean_covariances: tuple[Tensor, ...]
    cross_neuron_moments: tuple[Tensor, ...]
    metric_ntk_covariances: tuple[Tensor, ...]
    preactivation_ntk: tuple[Tensor, ...]
    vertices: tuple[Tensor, ...]
    kernel_corrections: tuple[Tensor, ...]
    widths: tuple[int, ...]
    out_features: int

    def _outputs(self, layer: int, outputs: int | None) -> int:
        if outputs is not None:
            return check_positive_int("outputs", outputs)
        last = len(self.ntks) - 1
        return self.out_features if layer in (-1, last) else 1

    def mean(self, layer: int = -1) -> Tensor:
        """``E[Θ̂^(ℓ)] ≈ Θ^(ℓ) + δΘ^(ℓ)``, ``(N, N)``."""
        return self.ntks[layer] + self.ntk_corrections[layer]

    def covariance(self, layer: int = -1, outputs: int | None = None) -> Tensor:
        """``Cov(Θ̄_αβ, Θ̄_γδ)`` ``(N, N, N, N)`` over nets of ``Θ̄ = (1/k) Σ_{i≤k} Θ̂_ii``, the
        NTK averaged over ``k = outputs`` neurons of layer ``layer``:
        ``A + (B_(αβ)(γδ) + B_(αβ)(δγ))/k``.  Default ``k``: the readout's ``out_features``
        for the readout (what :func:`~widelimit.finite_width.ntk.monte_carlo_ntk` measures),
        1 (one neuron) for a hidden layer."""
        k = self._outputs(layer, outputs)
        b = self.cross_neuron_moments[layer]
        return self.neuron_mean_covariances[layer] + (b + b.permute(0, 1, 3, 2)) / k

    def relative_variance(self, layer: int = -1, outputs: int | None = None) -> Tensor:
        """``Var Θ̄_αα / Θ_αα²`` per input ``(N,)`` (outputs as :meth:`covariance`), the
        leading order in 1/n (the infinite-width NTK in the denominator)."""
        var = torch.einsum("aaaa->a", self.covariance(layer, outputs))
        return var / torch.diagonal(self.ntks[layer]) ** 2


def _learning_rates(dense: object, fan_in: int) -> tuple[float, float]:
    """``(λ_W, λ_b)`` of a dense layer (module docstring)."""
    if dense.parameterization == "ntk":  # type: ignore[attr-defined]
        return dense.w_std**2, dense.b_std**2  # type: ignore[attr-defined]
    return float(fan_in), 1.0 if dense.b_std > 0 else 0.0  # type: ignore[attr-defined]


def ntk_fluctuations(
    net: Layer,
    x: Tensor,
    *,
    widths: int | Sequence[int] | None = None,
) -> NTKFluctuations:
    """Mean, 1/n mean correction and covariance over nets of the NTK at initialisation.

    Args:
        net: ``serial(Dense, φ, Dense, ..., Dense)`` (as
            :func:`~widelimit.finite_width.vertex.four_point_function`): any activation but
            jumps, biases, either parameterization (per layer), no ``width_factor``.
        x: ``(N, d)`` inputs (computed in float64; results cast back to ``x.dtype``).
        widths: hidden widths (one int, one per hidden layer, or ``None`` for the spec's).
    Returns:
        :class:`NTKFluctuations` with every layer's tensors.
    """
    x = as_float_tensor("x", x, min_ndim=2, max_ndim=2)
    chain = dense_chain(net, widths)
    if any(d.width_factor != (1, 1) for d in chain.dense):
        raise ValueError(
            "`net`: ntk_fluctuations covers Dense layers without width_factor (the NTK of a "
            "width-factor layer counts its base width); drop width_factor"
        )
    x64 = x.double()
    nx, d_in = x64.shape
    d0 = chain.dense[0]
    gram = (x64 @ x64.T) / d_in
    k = d0.w_std**2 * gram + d0.b_std**2
    lw, lb = _learning_rates(d0, d_in)
    th = lw * gram + lb
    zeros4 = torch.zeros((nx,) * 4, dtype=torch.float64, device=x.device)
    v, a_cov, b_mom, d_cov, x_cor = (zeros4,) * 5
    dk = torch.zeros_like(k)
    dth = torch.zeros_like(k)
    out: dict[str, list[Tensor]] = {
        key: [t]
        for key, t in (
            ("k", k), ("th", th), ("dth", dth), ("a", a_cov), ("b", b_mom),
            ("d", d_cov), ("x", x_cor), ("v", v), ("dk", dk),
        )
    }  # fmt: skip
    eye = torch.eye(nx, dtype=torch.bool, device=x.device)
    for act, dense, n in zip(chain.activations, chain.dense[1:], chain.widths, strict=True):
        w2, b2 = dense.w_std**2, dense.b_std**2
        lw, lb = _learning_rates(dense, n)
        f, a, c, dd = linearisation(act, k)
        hess_f, (ac, cc, _, hc) = ntk_dual_derivatives(act, k)
        e4, p4, q4 = ntk_four_point_expectations(act, k)
        # P = λ_W J + σw² Θ⊙J_C: the linearisation of one neuron's Y in G
        ap, cp = lw * a + w2 * th * ac, lw * c + w2 * th * cc
        th_l, th_r = th[:, :, None, None], th[None, None, :, :]
        c_l, c_r = c[:, :, None, None], c[None, None, :, :]
        ff = _outer(f, f)
        fresh_y = (
            lw * lw * (e4 - ff)
            + lw
            * w2
            * (th_r * (p4 - _outer(f, c)) + th_l * (p4.permute(2, 3, 0, 1) - _outer(c, f)))
            + w2 * w2 * th_l * th_r * (q4 - _outer(c, c))
        )
        fresh_gy = lw * (e4 - ff) + w2 * th_r * (p4 - _outer(f, c))
        # Γ[ε, α, ε'] = E[∂_ε'(φ_ε φ'_α)]
        gam = torch.zeros((nx,) * 3, dtype=torch.float64, device=x.device)
        idx = torch.arange(nx, device=x.device)
        gam[idx[:, None], idx[None, :], idx[:, None]] = c
        gam[idx[:, None], idx[None, :], idx[None, :]] = 2 * a.T.masked_fill(eye, 0.0)
        gam[idx, idx, idx] = dd
        # mean corrections (use the layer-ℓ tensors, before they are updated)
        if v.any():
            d_f = linear_map(dk, a, c) + 0.5 * hessian_contraction(hess_f, v)
        else:
            d_f = torch.zeros_like(k)
        x_sym = (x_cor + x_cor.permute(1, 0, 2, 3)) / 2
        dth = lw * d_f + w2 * (
            c * dth
            + linear_map(dk, ac, cc) * th
            + _contract_own(d_cov, ac, cc)
            + 0.5 * hessian_contraction(hc, v) * th
            + 2 * _contract_own(x_sym, ac, cc)
        )
        dk = w2 * d_f
        # covariances
        pv = apply_left(v, ap, cp)
        pd = apply_left(d_cov, ap, cp) * c_r
        a_new = fresh_y / n + _apply_right(pv, ap, cp) + w2 * (pd + pd.permute(2, 3, 0, 1))
        a_new = a_new + w2 * w2 * c_l * c_r * a_cov
        d_new = w2 * (
            fresh_gy / n
            + _apply_right(apply_left(v, a, c), ap, cp)
            + w2 * apply_left(d_cov, a, c) * c_r
        )
        b_new = w2 * w2 * (q4 * th_l * th_r / n + torch.einsum("ac,bd->abcd", c, c) * b_mom)
        x_new = w2 * w2 * (p4 * th_r / n + torch.einsum("eaE,hbH,EHab->ehab", gam, gam, x_cor))
        v = symmetrise((w2 * w2) * ((e4 - ff) / n + propagate_vertex(v, a, c)))
        a_cov = symmetrise(a_new)
        b_mom = (b_new + b_new.permute(2, 3, 0, 1)) / 2
        b_mom = (b_mom + b_mom.permute(1, 0, 3, 2)) / 2
        d_cov, x_cor = d_new, x_new
        th = lb + lw * f + w2 * c * th
        k = w2 * f + b2
        for key, t in (
            ("k", k), ("th", th), ("dth", dth), ("a", a_cov), ("b", b_mom),
            ("d", d_cov), ("x", x_cor), ("v", v), ("dk", dk),
        ):  # fmt: skip
            out[key].append(t)

    def cast(key: str) -> tuple[Tensor, ...]:
        return tuple(t.to(x.dtype) for t in out[key])

    return NTKFluctuations(
        kernels=cast("k"),
        ntks=cast("th"),
        ntk_corrections=cast("dth"),
        neuron_mean_covariances=cast("a"),
        cross_neuron_moments=cast("b"),
        metric_ntk_covariances=cast("d"),
        preactivation_ntk=cast("x"),
        vertices=cast("v"),
        kernel_corrections=cast("dk"),
        widths=chain.widths,
        out_features=chain.out_features,
    )
