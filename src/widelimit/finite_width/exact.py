"""Exact finite-width two- and four-point functions where they close (second routes).

Both cases use the same fact as the recursion (:mod:`widelimit.finite_width.vertex`):
given layer ℓ, the neurons of layer ℓ + 1 are i.i.d. ``N(0, Ĝ)``, so the outputs' four-point
functions are ``Cov(Ĝ^(L))`` (one neuron: its pair sum).  The moments of ``Ĝ`` close
layer by layer without approximation in two cases:

* **linear activations** (``φ(x) = s·x``: a piecewise-linear layer with equal slopes), any
  inputs.  With ``z_j ~ N(0, G)`` i.i.d. (Isserlis)::

      E[Ĝ'_αβ | G] = σb² + σw² s² G_αβ
      E[Ĝ'_αβ Ĝ'_γδ | G] = E[Ĝ'_αβ|G] E[Ĝ'_γδ|G] + (σw² s²)² (G_αγ G_βδ + G_αδ G_βγ)/n

  which is linear in ``G`` and ``G ⊗ G``, so ``E[G]`` and ``E[G ⊗ G]`` propagate exactly.

* **piecewise-linear activations, one input at a time** (``ReLU``, ``LeakyReLU``,
  ``ABReLU``, ``Abs``; any biases).  Homogeneity gives ``φ(z_j)² = G·φ(ξ_j)²`` with
  ``ξ_j ~ N(0, 1)`` i.i.d., so ``Ĝ' = σb² + σw² G X/n``, ``X = Σ_j φ(ξ_j)²`` independent of
  ``G``, with ``E[X/n] = μ = (a² + b²)/2`` and ``E[(X/n)²] = μ² (1 + r/n)``,
  ``r = 6(a⁴ + b⁴)/(a² + b²)² − 1`` (``r = 5`` for ReLU, ``2`` for linear).  Without biases
  ``E[G_L²]/E[G_L]² = Π_ℓ (1 + r/n_ℓ)``: the fourth cumulant of one output is
  ``3 K² (Π_ℓ (1 + r/n_ℓ) − 1)``, whose 1/n expansion ``3 K² r Σ_ℓ 1/n_ℓ`` is what the
  recursion gives.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from widelimit._validation import as_float_tensor
from widelimit.finite_width.gaussian import is_piecewise_linear
from widelimit.finite_width.spec import dense_chain
from widelimit.finite_width.vertex import FourPointFunction
from widelimit.layers.base import Layer

__all__ = ["exact_four_point"]


def exact_four_point(
    net: Layer, x: Tensor, *, widths: int | Sequence[int] | None = None
) -> FourPointFunction:
    """Exact ``E[Ĝ^(ℓ)]`` and ``Cov(Ĝ^(ℓ))`` at finite widths (module docstring).

    Args:
        net: ``serial(Dense, φ, ..., Dense)`` with every φ linear (any ``N``) or every φ
            piecewise linear (``N = 1``).
        x: ``(N, d)``.
        widths: hidden widths as in :func:`~widelimit.finite_width.vertex.four_point_function`.
    Returns:
        :class:`~widelimit.finite_width.vertex.FourPointFunction` whose ``kernels`` are the
        exact mean metrics and ``vertices`` the exact covariances (all orders in 1/n).
    Raises:
        ValueError: for other activations, or several inputs with a nonlinear φ.
    """
    x = as_float_tensor("x", x, min_ndim=2, max_ndim=2)
    chain = dense_chain(net, widths)
    if not all(is_piecewise_linear(a) for a in chain.activations):
        raise ValueError(
            "`net`: exact finite-width moments need piecewise-linear activations (ReLU, "
            "LeakyReLU, ABReLU, Abs or linear ones); use four_point_function for the 1/n "
            "expansion of other activations"
        )
    linear = all(a.slopes[0] == a.slopes[1] for a in chain.activations)  # type: ignore[attr-defined]
    if not linear and x.shape[0] != 1:
        raise ValueError(
            "`x`: exact moments of nonlinear piecewise-linear nets close for one input at a "
            f"time; got {x.shape[0]} inputs (pass x[i:i+1])"
        )
    x64 = x.double()
    d0 = chain.dense[0]
    mean = d0.w_std**2 * (x64 @ x64.T) / x64.shape[1] + d0.b_std**2
    second = mean[:, :, None, None] * mean[None, None, :, :]  # E[G ⊗ G]; G is fixed at layer 1
    kernels, vertices = [mean], [torch.zeros_like(second)]
    for act, dense, n in zip(chain.activations, chain.dense[1:], chain.widths, strict=True):
        a, b = act.slopes  # type: ignore[attr-defined]
        w2, b2 = dense.w_std**2, dense.b_std**2
        if linear:
            g = w2 * a * a  # Ĝ' = σb² + g·(z zᵀ/n) with z ~ N(0, G)
            pairs = second.permute(0, 2, 1, 3) + second.permute(0, 3, 2, 1)
            new_second = (
                b2 * b2
                + b2 * g * (mean[:, :, None, None] + mean[None, None, :, :])
                + g * g * (second + pairs / n)
            )
            mean = b2 + g * mean
        else:
            mu = (a * a + b * b) / 2
            r = 6 * (a**4 + b**4) / (a * a + b * b) ** 2 - 1
            new_second = b2 * b2 + 2 * b2 * w2 * mu * mean + (w2 * mu) ** 2 * (1 + r / n) * second
            new_second = new_second.reshape(1, 1, 1, 1)
            mean = b2 + w2 * mu * mean
        second = new_second
        kernels.append(mean)
        vertices.append(second - mean[:, :, None, None] * mean[None, None, :, :])
    return FourPointFunction(
        tuple(t.to(x.dtype) for t in kernels),
        tuple(t.to(x.dtype) for t in vertices),
        chain.widths,
    )
