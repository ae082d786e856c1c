"""The empirical NTK of sampled finite fully connected nets, batched over nets.

For ``serial(Dense, φ, ..., Dense)`` the NTK of output ``c`` is a sum over dense layers ℓ of
(weight term) + (bias term)::

    Θ_c(x, x') = Σ_ℓ [ s_ℓ (δ_c^(ℓ)(x)·δ_c^(ℓ)(x')) (a^(ℓ−1)(x)·a^(ℓ−1)(x'))
                      + t_ℓ δ_c^(ℓ)(x)·δ_c^(ℓ)(x') ]

with ``a^(ℓ−1)`` the layer's input (the raw ``x`` for ℓ = 1), ``δ_c^(ℓ) = ∂f_c/∂z^(ℓ)``
(backpropagated through the effective weights ``w_scale·W``), and ``(s_ℓ, t_ℓ) =
(σw²/n_{ℓ−1}, σb²)`` in the ``"ntk"`` parameterization, ``(1, 1)`` in ``"standard"``
(``t_ℓ = 0`` without bias).  The nets are drawn with explicit weights, ``chunk`` at a time on
a leading net axis; the result is checked against :func:`widelimit.empirical_ntk` of nets
built by ``net.module``.  This is the measurement side of
:mod:`widelimit.finite_width.ntk_theory`.

``method="projection"`` samples the same NTKs *exactly in distribution* without weight
matrices, at ``O(n (N + M)²)`` per layer and net instead of ``O(n²)`` (``M = N·k`` backward
vectors).  Given a layer's input ``a`` ``(N, n_in)``, the forward pass needs only ``a Wᵀ``,
whose columns are i.i.d. ``N(0, s a aᵀ)`` (``s = σw²/n_in``); every later quantity depends
on ``W`` only through it.  The backward pass needs ``Wᵀδ`` for the ``M`` vectors ``δ``:
split ``W = W Π + W (I − Π)`` with ``Π = aᵀ(a aᵀ)⁺a`` the projection on the span of the
inputs; ``Π Wᵀ δ = aᵀ(a aᵀ)⁺ (a Wᵀ) δ`` is fixed by the forward pass, and ``(I − Π) Wᵀ δ`` is
independent of everything else, Gaussian with ``Cov = s (δ·δ') (I − Π)``: it is drawn as
``(I − Π) √s Ξ Lᵀ`` with ``Ξ`` i.i.d. ``N(0, 1)`` ``(n_in, M)`` and ``L Lᵀ`` the Gram matrix
of the ``δ``.  A test checks its moments against the weight-matrix route.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from widelimit._validation import as_float_tensor, check_positive_int
from widelimit.finite_width.gaussian import sqrt_factor
from widelimit.finite_width.sampling import bootstrap_weights, monte_carlo_args
from widelimit.finite_width.spec import DenseChain, dense_chain
from widelimit.layers.base import Layer
from widelimit.seeding import Seed, as_generator

__all__ = ["MonteCarloNTK", "monte_carlo_ntk", "ntk_of_weights", "sample_ntk"]

#: Ways :func:`sample_ntk` draws nets.
METHODS = ("weights", "projection")


@dataclass(frozen=True)
class MonteCarloNTK:
    """Mean and covariance over nets of the empirical NTK (mean over output neurons).

    Attributes:
        mean, mean_se: ``(N, N)``.
        covariance: ``(N, N, N, N)`` ``Cov(Θ_αβ, Θ_γδ)`` over nets.
        relative_variance, relative_variance_se: ``(N,)`` ``Var Θ_αα / (E Θ_αα)²`` with a
            bootstrap standard error.
        n_nets: nets sampled; widths: hidden widths.
        covariance_se: ``(N, N, N, N)`` bootstrap standard error of :attr:`covariance`.
    """

    mean: Tensor
    mean_se: Tensor
    covariance: Tensor
    relative_variance: Tensor
    relative_variance_se: Tensor
    n_nets: int
    widths: tuple[int, ...]
    covariance_se: Tensor | None = None


def sample_ntk(
    net: Layer,
    x: Tensor,
    n_nets: int,
    *,
    widths: int | Sequence[int] | None = None,
    seed: Seed = 0,
    method: str = "weights",
) -> Tensor:
    """Empirical NTKs ``(n_nets, N, N)`` (mean over output neurons) of sampled nets.

    ``method``: ``"weights"`` (explicit weight matrices, :func:`ntk_of_weights`) or
    ``"projection"`` (exact in distribution without weight matrices; module docstring)."""
    x = as_float_tensor("x", x, min_ndim=2, max_ndim=2)
    n_nets = check_positive_int("n_nets", n_nets)
    method = check_method(method)
    chain = dense_chain(net, widths)
    gen = as_generator(seed, x.device)
    if method == "projection":
        return _projected_ntk(chain, x, n_nets, gen)
    sizes = (x.shape[1], *chain.widths, chain.out_features)
    kw = {"generator": gen, "dtype": x.dtype, "device": x.device}
    weights, biases = [], []
    for i, dense in enumerate(chain.dense):
        fan_in, fan_out = sizes[i], sizes[i + 1]
        weights.append(torch.randn((n_nets, fan_in, fan_out), **kw) * (dense.w_std / fan_in**0.5))
        b = dense.b_std * torch.randn((n_nets, 1, fan_out), **kw) if dense.b_std > 0 else None
        biases.append(b)
    return ntk_of_weights(net, x, weights, biases, widths=chain.widths)


def ntk_of_weights(
    net: Layer,
    x: Tensor,
    weights: Sequence[Tensor],
    biases: Sequence[Tensor | None],
    *,
    widths: int | Sequence[int] | None = None,
) -> Tensor:
    """The module docstring's NTK for given effective weights ``w_scale·Wᵀ``
    ``(S, fan_in, fan_out)`` and biases ``b_scale·b`` ``(S, 1, fan_out)`` (or ``None``) of
    each dense layer; returns ``(S, N, N)``."""
    chain = dense_chain(net, widths)
    if any(d.width_factor != (1, 1) for d in chain.dense):
        raise ValueError(
            "`net`: the batched NTK covers Dense layers without width_factor; use "
            "widelimit.empirical_ntk on net.module(...) for width-factor nets"
        )
    sizes = (x.shape[1], *chain.widths, chain.out_features)
    n_nets = weights[0].shape[0]
    inputs, pre = [], []
    a = x.expand(n_nets, -1, -1)  # (S, N, n_{ℓ−1})
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        z = a @ w if b is None else a @ w + b
        inputs.append(a)
        pre.append(z)
        if i < len(chain.activations):
            a = chain.activations[i].fn(z)
    k = chain.out_features
    # δ^(L) = e_c for each output c: (S, N, k, n_L) = identity over the last two axes
    delta = torch.eye(k, dtype=x.dtype, device=x.device).expand(n_nets, x.shape[0], k, k)
    theta = torch.zeros((n_nets, x.shape[0], x.shape[0]), dtype=x.dtype, device=x.device)
    for i in range(len(chain.dense) - 1, -1, -1):
        dense = chain.dense[i]
        dd = torch.einsum("sack,sbck->sab", delta, delta) / k  # Σ_c δ_c(x)·δ_c(x') / k
        if dense.parameterization == "ntk":
            s, t = dense.w_std**2 / sizes[i], dense.b_std**2
        else:
            s, t = 1.0, 1.0  # ∂z/∂W_ij = a_j, ∂z/∂b = 1
        theta = theta + s * dd * (inputs[i] @ inputs[i].transpose(1, 2))
        if biases[i] is not None:
            theta = theta + t * dd
        if i > 0:
            back = torch.einsum("sack,sjk->sacj", delta, weights[i])  # through w_scale·W
            delta = back * chain.activations[i - 1].derivative(pre[i - 1])[:, :, None, :]
    return theta


def monte_carlo_ntk(
    net: Layer,
    x: Tensor,
    *,
    n_nets: int,
    widths: int | Sequence[int] | None = None,
    seed: Seed = 0,
    chunk: int = 200,
    n_boot: int = 200,
    method: str = "weights",
) -> MonteCarloNTK:
    """Mean, covariance and relative variance of the empirical NTK over ``n_nets`` nets
    (``chunk`` per batched pass; Poisson-bootstrap standard errors, as
    :func:`~widelimit.finite_width.sampling.monte_carlo_four_point`; ``method`` as
    :func:`sample_ntk`: ``"projection"`` is exact in distribution and far cheaper at large
    widths)."""
    x, n_nets, chunk, n_boot = monte_carlo_args(x, n_nets, chunk, n_boot)
    method = check_method(method)
    chain = dense_chain(net, widths)
    gen = as_generator(seed, x.device)
    nx = x.shape[0]
    w_sum = torch.zeros(n_boot + 1, dtype=torch.float64)
    m1 = torch.zeros((n_boot + 1, nx, nx), dtype=torch.float64)
    m2 = torch.zeros((n_boot + 1, nx, nx, nx, nx), dtype=torch.float64)
    done = 0
    while done < n_nets:
        s = min(chunk, n_nets - done)
        th = sample_ntk(net, x, s, widths=chain.widths, seed=gen, method=method)
        wts = bootstrap_weights(n_boot, s, gen)
        w_sum += wts.sum(1)
        m1 += torch.einsum("rs,sab->rab", wts, th)
        m2 += torch.einsum("rs,sab,scd->rabcd", wts, th, th)
        done += s
    w = w_sum.clamp_min(1.0)
    mean = m1 / w[:, None, None]
    cov = m2 / w[:, None, None, None, None] - mean[:, :, :, None, None] * mean[:, None, None]
    diag = torch.diagonal(mean, dim1=1, dim2=2)
    rel = torch.einsum("raaaa->ra", cov) / diag**2
    return MonteCarloNTK(
        mean[0],
        mean[1:].std(0),
        cov[0],
        rel[0],
        rel[1:].std(0),
        n_nets,
        chain.widths,
        cov[1:].std(0),
    )


def check_method(method: str) -> str:
    """``method`` of :func:`sample_ntk`, checked."""
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}; got {method!r}")
    return method


def _projected_ntk(
    chain: DenseChain, x: Tensor, n_nets: int, gen: torch.Generator | None
) -> Tensor:
    """``method="projection"`` of :func:`sample_ntk` (module docstring)."""
    if any(d.width_factor != (1, 1) for d in chain.dense):
        raise ValueError(
            "`net`: the batched NTK covers Dense layers without width_factor; use "
            "widelimit.empirical_ntk on net.module(...) for width-factor nets"
        )
    kw = {"generator": gen, "dtype": x.dtype, "device": x.device}
    nx, k = x.shape[0], chain.out_features
    sizes = (x.shape[1], *chain.widths, k)
    a = x.expand(n_nets, -1, -1)
    inputs, linear, pre = [], [], []
    for i, dense in enumerate(chain.dense):
        s = dense.w_std**2 / sizes[i]
        lin = sqrt_factor(s * (a @ a.transpose(1, 2))) @ torch.randn(
            (n_nets, nx, sizes[i + 1]), **kw
        )  # a Wᵀ: columns i.i.d. N(0, s a aᵀ)
        z = (
            lin + dense.b_std * torch.randn((n_nets, 1, sizes[i + 1]), **kw)
            if dense.b_std > 0
            else lin
        )
        inputs.append(a)
        linear.append(lin)
        pre.append(z)
        if i < len(chain.activations):
            a = chain.activations[i].fn(z)
    # δ for every (output c, input α): (S, M = k·N, n_L), δ^(L)_{c,α} = e_c
    delta = torch.eye(k, dtype=x.dtype, device=x.device).repeat_interleave(nx, 0)
    delta = delta.expand(n_nets, -1, -1)
    theta = torch.zeros((n_nets, nx, nx), dtype=x.dtype, device=x.device)
    for i in range(len(chain.dense) - 1, -1, -1):
        dense = chain.dense[i]
        dv = delta.reshape(n_nets, k, nx, -1)
        dd = torch.einsum("scan,scbn->sab", dv, dv) / k
        if dense.parameterization == "ntk":
            s_l, t_l = dense.w_std**2 / sizes[i], dense.b_std**2
        else:
            s_l, t_l = 1.0, 1.0
        theta = theta + s_l * dd * (inputs[i] @ inputs[i].transpose(1, 2))
        if dense.b_std > 0:
            theta = theta + t_l * dd
        if i == 0:
            break
        a_in = inputs[i]  # (S, N, n_in)
        pinv = torch.linalg.pinv(a_in @ a_in.transpose(1, 2), hermitian=True)
        coef = pinv @ (linear[i] @ delta.transpose(1, 2))  # (S, N, M)
        s = dense.w_std**2 / sizes[i]
        fresh = torch.randn((n_nets, sizes[i], delta.shape[1]), **kw)
        fresh = s**0.5 * fresh @ sqrt_factor(delta @ delta.transpose(1, 2)).transpose(1, 2)
        fresh = fresh - a_in.transpose(1, 2) @ (pinv @ (a_in @ fresh))  # (I − Π)
        back = (a_in.transpose(1, 2) @ coef + fresh).transpose(1, 2)  # Wᵀδ: (S, M, n_in)
        slope = chain.activations[i - 1].derivative(pre[i - 1])  # (S, N, n_in)
        delta = back * slope.repeat(1, k, 1)
    return theta
