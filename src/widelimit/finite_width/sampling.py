"""Monte Carlo two- and four-point functions over sampled finite nets, batched over nets.

A fully connected net's outputs on ``N`` inputs are sampled layer by layer *exactly in
distribution* without drawing weight matrices: given layer ℓ's activations
``a = φ(z^(ℓ))`` ``(N, n_ℓ)``, the neurons of layer ``ℓ + 1`` are i.i.d.
``N(0, Ĝ)`` with ``Ĝ = σw² a aᵀ/n_ℓ + σb²`` (a row of ``W`` times ``a`` is Gaussian with
that covariance), so ``z^(ℓ+1) = L ξ`` with ``L Lᵀ = Ĝ``, ``ξ ~ N(0, I)`` ``(N, n_{ℓ+1})``.
This costs ``O(N n)`` per layer and net instead of ``O(n²)``, and runs on a leading net
axis (``chunk`` nets per batched operation, no Python loop over nets).  The test suite
checks it against nets built by ``net.module(width)``.

Standard errors: an online Poisson bootstrap (each net gets a weight ``~ Poisson(1)`` in
each of ``n_boot`` replicates; Hanley & MacGibbon 2006), applied to the whole estimator
(means *and* the products of means in the cumulant).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from widelimit._validation import as_float_tensor, check_positive_int
from widelimit.finite_width.gaussian import sqrt_factor
from widelimit.finite_width.spec import dense_chain
from widelimit.layers.base import Layer
from widelimit.progress import progress_bar
from widelimit.seeding import Seed, as_generator

__all__ = [
    "MonteCarloFourPoint",
    "monte_carlo_four_point",
    "sample_outputs",
    "sample_outputs_and_metric",
]


@dataclass(frozen=True)
class MonteCarloFourPoint:
    """Measured two- and four-point functions of a net's outputs, with bootstrap errors.

    Attributes:
        kernel, kernel_se: ``(N, N)`` ``E[z_{i;α} z_{i;β}]`` (mean over nets and neurons).
        cumulant, cumulant_se: ``(N, N, N, N)`` fourth cumulant of one neuron.
        cross_cumulant, cross_cumulant_se: ``(N, N, N, N)``
            ``E[z_{i;α} z_{i;β} z_{j;γ} z_{j;δ}] − E[z_α z_β] E[z_γ z_δ]``, ``i ≠ j``
            (``None`` with one output neuron).
        vertex, vertex_se: ``(N, N, N, N)`` ``Cov(Ĝ^(L)_αβ, Ĝ^(L)_γδ)`` over nets, the
            readout's empirical metric: the Rao–Blackwellised estimate of the same vertex
            (``E[cumulant | Ĝ]`` is its pair sum), with far less noise than the outputs'
            fourth moments.
        metric, metric_se: ``(N, N)`` ``E[Ĝ^(L)]``, the Rao–Blackwellised estimate of
            :attr:`kernel` (the two-point function), with less noise.
        n_nets: nets sampled; widths: hidden widths.
    """

    kernel: Tensor
    kernel_se: Tensor
    cumulant: Tensor
    cumulant_se: Tensor
    cross_cumulant: Tensor | None
    cross_cumulant_se: Tensor | None
    vertex: Tensor
    vertex_se: Tensor
    metric: Tensor
    metric_se: Tensor
    n_nets: int
    widths: tuple[int, ...]

    def excess_kurtosis(self) -> Tensor:
        """``κ4/K²`` per input ``(N,)`` (no error bar: use :attr:`cumulant_se`/K²)."""
        q = torch.diagonal(self.kernel)
        return torch.einsum("aaaa->a", self.cumulant) / q**2


#: Most inputs :func:`monte_carlo_four_point` accepts (its bootstrap holds ``n_boot × N⁴`` sums).
MAX_INPUTS = 8


def sample_outputs(
    net: Layer,
    x: Tensor,
    n_nets: int,
    *,
    widths: int | Sequence[int] | None = None,
    seed: Seed = 0,
) -> Tensor:
    """Outputs of ``n_nets`` independent finite nets, ``(n_nets, N, k)`` (module docstring).

    ``x: (N, d)``; computed in ``x``'s dtype (use float64 for cumulants).
    """
    return sample_outputs_and_metric(net, x, n_nets, widths=widths, seed=seed)[0]


def sample_outputs_and_metric(
    net: Layer,
    x: Tensor,
    n_nets: int,
    *,
    widths: int | Sequence[int] | None = None,
    seed: Seed = 0,
) -> tuple[Tensor, Tensor]:
    """:func:`sample_outputs` and the readout's empirical metric ``Ĝ^(L)`` ``(n_nets, N, N)``
    that each net's outputs are drawn from (given it, the ``k`` outputs are i.i.d.
    ``N(0, Ĝ^(L))``)."""
    x = as_float_tensor("x", x, min_ndim=2, max_ndim=2)
    n_nets = check_positive_int("n_nets", n_nets)
    chain = dense_chain(net, widths)
    gen = as_generator(seed, x.device)
    dense = chain.dense[0]
    k0 = dense.w_std**2 * (x @ x.T) / x.shape[1] + dense.b_std**2
    sizes = (*chain.widths, chain.out_features)
    g = k0.expand(n_nets, -1, -1)
    z = sqrt_factor(k0) @ _randn((n_nets, x.shape[0], sizes[0]), gen, x)
    for act, dense, n_in, n_out in zip(
        chain.activations, chain.dense[1:], sizes[:-1], sizes[1:], strict=True
    ):
        a = act.fn(z)
        g = (dense.w_std**2 / n_in) * (a @ a.transpose(1, 2)) + dense.b_std**2
        z = sqrt_factor(g) @ _randn((n_nets, x.shape[0], n_out), gen, x)
    return z, g


def _randn(shape: tuple[int, ...], gen: torch.Generator | None, like: Tensor) -> Tensor:
    return torch.randn(shape, generator=gen, dtype=like.dtype, device=like.device)


def monte_carlo_args(
    x: Tensor, n_nets: int, chunk: int, n_boot: int
) -> tuple[Tensor, int, int, int]:
    """The arguments every Monte Carlo estimator of this package shares, checked: ``x`` as
    float64 ``(N, d)``, ``n_nets`` ≥ 2 (to estimate a standard error), ``chunk`` (nets per
    batched pass) and ``n_boot`` (bootstrap replicates) positive."""
    x = as_float_tensor("x", x, min_ndim=2, max_ndim=2).double()
    n_nets = check_positive_int("n_nets", n_nets)
    if n_nets < 2:
        raise ValueError("`n_nets` must be >= 2 to estimate a standard error")
    return x, n_nets, check_positive_int("chunk", chunk), check_positive_int("n_boot", n_boot)


def bootstrap_weights(n_boot: int, s: int, gen: torch.Generator | None) -> Tensor:
    """``(n_boot + 1, s)`` weights of ``s`` nets: replicate 0 is the point estimate (all
    ones), replicates ``1..n_boot`` are Poisson(1) (the Poisson bootstrap)."""
    wts = torch.poisson(torch.ones((n_boot, s), dtype=torch.float64), generator=gen)
    return torch.cat([torch.ones((1, s), dtype=torch.float64), wts])


def monte_carlo_four_point(
    net: Layer,
    x: Tensor,
    *,
    n_nets: int,
    widths: int | Sequence[int] | None = None,
    seed: Seed = 0,
    chunk: int = 1000,
    n_boot: int = 200,
    progress: bool = True,
) -> MonteCarloFourPoint:
    """Estimate the outputs' two- and four-point functions over ``n_nets`` sampled nets.

    Args:
        net, widths: as in :func:`~widelimit.finite_width.vertex.four_point_function`.
        x: ``(N, d)``; keep ``N`` small (the bootstrap holds ``n_boot × N⁴`` sums).
        n_nets: nets sampled (≥ 2).
        seed: ``int``, ``torch.Generator`` or ``None``.
        chunk: nets per batched pass.
        n_boot: Poisson-bootstrap replicates for the standard errors.
        progress: progress bar on stderr (default on, as every long computation).
    Returns:
        :class:`MonteCarloFourPoint` (float64 estimates).
    """
    x, n_nets, chunk, n_boot = monte_carlo_args(x, n_nets, chunk, n_boot)
    if x.shape[0] > MAX_INPUTS:
        raise ValueError(
            f"`x`: monte_carlo_four_point keeps n_boot × N⁴ bootstrap sums; N = {x.shape[0]} "
            f"inputs is more than {MAX_INPUTS}: pass a few inputs (or loop over subsets)"
        )
    chain = dense_chain(net, widths)
    gen = as_generator(seed, x.device)
    nx, k = x.shape[0], chain.out_features
    # replicate 0 has weight 1 for every net (the point estimate); 1..n_boot Poisson(1)
    shape = (n_boot + 1,)
    acc = {
        "w": torch.zeros(shape, dtype=torch.float64),
        "m2": torch.zeros((*shape, nx, nx), dtype=torch.float64),
        "m4": torch.zeros((*shape, nx, nx, nx, nx), dtype=torch.float64),
        "x4": torch.zeros((*shape, nx, nx, nx, nx), dtype=torch.float64),
        "g": torch.zeros((*shape, nx, nx), dtype=torch.float64),
        "gg": torch.zeros((*shape, nx, nx, nx, nx), dtype=torch.float64),
    }
    with progress_bar(progress) as bar:
        task = bar.add_task("sampling nets", total=n_nets)
        done = 0
        while done < n_nets:
            s = min(chunk, n_nets - done)
            f, g = sample_outputs_and_metric(net, x, s, widths=chain.widths, seed=gen)
            m2 = torch.einsum("sak,sbk->sab", f, f) / k
            m4 = torch.einsum("sak,sbk,sck,sdk->sabcd", f, f, f, f) / k
            # pairs of distinct neurons: (Σ_i f_iα f_iβ)(Σ_j f_jγ f_jδ) − Σ_i f_iα f_iβ f_iγ f_iδ
            x4 = (k * k * m2[:, :, :, None, None] * m2[:, None, None, :, :] - k * m4) / max(
                k * (k - 1), 1
            )
            wts = bootstrap_weights(n_boot, s, gen)
            acc["w"] += wts.sum(1)
            acc["m2"] += torch.einsum("rs,sab->rab", wts, m2)
            acc["m4"] += torch.einsum("rs,sabcd->rabcd", wts, m4)
            acc["x4"] += torch.einsum("rs,sabcd->rabcd", wts, x4)
            acc["g"] += torch.einsum("rs,sab->rab", wts, g)
            acc["gg"] += torch.einsum("rs,sab,scd->rabcd", wts, g, g)
            done += s
            bar.advance(task, s)
    w = acc["w"].clamp_min(1.0)
    m2 = acc["m2"] / w[:, None, None]
    m4 = acc["m4"] / w[:, None, None, None, None]
    x4 = acc["x4"] / w[:, None, None, None, None]
    outer = m2[:, :, :, None, None] * m2[:, None, None, :, :]
    cum = m4 - _pair_sum_b(outer)
    cross = x4 - outer
    gm = acc["g"] / w[:, None, None]
    vert = acc["gg"] / w[:, None, None, None, None] - gm[:, :, :, None, None] * gm[:, None, None]

    def est(t: Tensor) -> tuple[Tensor, Tensor]:
        return t[0], t[1:].std(0)

    kern, kern_se = est(m2)
    c, c_se = est(cum)
    xc, xc_se = est(cross) if k > 1 else (None, None)
    v, v_se = est(vert)
    g_mean, g_se = est(gm)
    return MonteCarloFourPoint(
        kern, kern_se, c, c_se, xc, xc_se, v, v_se, g_mean, g_se, n_nets, chain.widths
    )


def _pair_sum_b(t: Tensor) -> Tensor:
    """:func:`pair_sum` on a batch ``(R, N, N, N, N)``."""
    return t + t.permute(0, 1, 3, 2, 4) + t.permute(0, 1, 4, 3, 2)
