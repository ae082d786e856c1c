"""Monte Carlo estimates of the NNGP and NTK from sampled finite networks.

For ``n_samples`` independent initialisations of ``net.module(width)``:

* NNGP: ``(1/k) Σ_c f_c(x1) f_c(x2)`` averaged over samples (the ``k`` output
  channels are i.i.d. at infinite width, so they are averaged too);
* NTK: the empirical NTK (:func:`widelimit.empirical.empirical_ntk`) averaged
  over samples.

Standard errors of the mean are returned per entry, so tests can derive their
tolerance from the sampling error.  Under the ``"ntk"`` parameterization the
estimates converge to the analytic kernels as ``width → ∞`` with a bias and a
per-sample spread of order ``width^{-1/2}``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from widelimit._validation import (
    as_float_tensor,
    check_positive_int,
    check_same_dtype_device,
)
from widelimit.empirical import empirical_ntk
from widelimit.layers.base import Layer, check_get
from widelimit.progress import progress_bar
from widelimit.seeding import Seed, as_generator


@dataclass(frozen=True)
class MonteCarloKernel:
    """Monte Carlo kernel estimate.

    Attributes:
        nngp: ``(N1, N2, *spatial)`` mean over samples of the output covariance.
        ntk: same shape, mean empirical NTK, or ``None`` if not requested.
        nngp_sem, ntk_sem: standard errors of those means (per entry).
        n_samples: number of sampled networks.
        width: hidden width of the sampled networks.
    """

    nngp: Tensor
    ntk: Tensor | None
    nngp_sem: Tensor
    ntk_sem: Tensor | None
    n_samples: int
    width: int | None


def monte_carlo_kernel(
    net: Layer,
    x1: Tensor,
    x2: Tensor | None = None,
    *,
    width: int | None,
    n_samples: int,
    seed: Seed = 0,
    get: str | Sequence[str] = ("nngp", "ntk"),
    progress: bool = True,
    **side: Tensor | tuple[Tensor, Tensor],
) -> MonteCarloKernel:
    """Estimate NNGP/NTK by sampling ``n_samples`` networks ``net.module(width)``.

    Args:
        net: the network spec.
        x1: ``(N1, *in_shape)``; x2: ``(N2, *in_shape)`` or ``None``.
        width: hidden width (``None``: widths as in the spec).
        n_samples: number of independent initialisations (≥ 2 for a standard error).
        seed: ``int`` (reproducible draws), ``torch.Generator`` (one stream shared with the
            caller) or ``None`` (torch's global RNG).
        get: ``"nngp"``, ``"ntk"`` or both.
        progress: show a progress bar on stderr (default on; ``False`` for none).
        **side: side inputs as in :meth:`~widelimit.layers.base.Layer.kernel`, e.g.
            ``pattern=(a1, a2)``; the networks are called as ``module(x, **side)``.
    Returns:
        :class:`MonteCarloKernel` with means and standard errors. The networks are
        built in the dtype/device of ``x1``.
    """
    gets = check_get(get)
    n_samples = check_positive_int("n_samples", n_samples)
    if n_samples < 2:
        raise ValueError("`n_samples` must be >= 2 to estimate a standard error")
    x1 = as_float_tensor("x1", x1, min_ndim=2, max_ndim=4)
    if x2 is not None:
        x2 = as_float_tensor("x2", x2, min_ndim=2, max_ndim=4)
        check_same_dtype_device("x1", x1, "x2", x2)
    spec = net if width is None else net.with_width(width)
    in_shape = tuple(x1.shape[1:])
    spec.out_shape(in_shape)
    side1, side2 = spec.check_side_inputs(side, x1, x2)
    gen = as_generator(seed)
    n1 = x1.shape[0]
    xs = x1 if x2 is None else torch.cat([x1, x2])
    side_all = side1 if side2 is None else {k: torch.cat([v, side2[k]]) for k, v in side1.items()}

    sums: dict[str, Tensor] = {}
    sq: dict[str, Tensor] = {}
    with progress_bar(progress) as bar:
        task = bar.add_task("sampling networks", total=n_samples)
        for _ in range(n_samples):
            mod = spec.make_module(in_shape, generator=gen, dtype=x1.dtype, device=x1.device)
            est: dict[str, Tensor] = {}
            with torch.no_grad():
                f = mod(xs, **side_all) if side_all else mod(xs)
            if isinstance(f, tuple):
                raise ValueError("the network ends with parallel branches; add FanInSum()")
            f1, f2 = f[:n1], (f[:n1] if x2 is None else f[n1:])
            est["nngp"] = torch.einsum("nc...,mc...->nm...", f1, f2) / f.shape[1]
            if "ntk" in gets and side_all:
                # one packed input per example, so that the per-example Jacobians see the side
                bound = SideBoundModule(mod, in_shape, side1)
                z2 = None if x2 is None or side2 is None else bound.pack(x2, side2)
                est["ntk"] = empirical_ntk(bound, bound.pack(x1, side1), z2)
            elif "ntk" in gets:
                est["ntk"] = empirical_ntk(mod, x1, x2)
            for key, v in est.items():
                sums[key] = sums.get(key, 0) + v
                sq[key] = sq.get(key, 0) + v * v
            bar.advance(task)

    def mean_sem(key: str) -> tuple[Tensor, Tensor]:
        m = sums[key] / n_samples
        var = (sq[key] / n_samples - m * m).clamp_min(0) * n_samples / (n_samples - 1)
        return m, (var / n_samples).sqrt()

    nngp, nngp_sem = mean_sem("nngp")
    ntk, ntk_sem = mean_sem("ntk") if "ntk" in gets else (None, None)
    return MonteCarloKernel(nngp, ntk, nngp_sem, ntk_sem, n_samples, width)


class SideBoundModule(nn.Module):
    """``module(x, **side)`` as a module of one packed input ``z: (N, D)`` per example.

    ``z`` is the flattened features followed by each flattened side input
    (:meth:`pack`), so per-example tools (the empirical NTK) pass the side
    inputs along with the features; they are cast back to their dtype on the way in.
    """

    def __init__(self, module: nn.Module, in_shape: tuple[int, ...], side: dict[str, Tensor]):
        super().__init__()
        self.module = module
        self.in_shape = tuple(in_shape)
        self.side_specs = [(name, tuple(t.shape[1:]), t.dtype) for name, t in side.items()]

    def pack(self, x: Tensor, side: dict[str, Tensor]) -> Tensor:
        """``(N, D)``: ``x`` and the side inputs (same keys as at construction), flattened."""
        parts = [x.flatten(1)] + [side[n].flatten(1).to(x.dtype) for n, _, _ in self.side_specs]
        return torch.cat(parts, dim=1)

    def forward(self, z: Tensor) -> Tensor:
        n, size = z.shape[0], math.prod(self.in_shape)
        x, off = z[:, :size].reshape(n, *self.in_shape), size
        side = {}
        for name, shape, dtype in self.side_specs:
            k = math.prod(shape)
            side[name] = z[:, off : off + k].reshape(n, *shape).to(dtype)
            off += k
        return self.module(x, **side)


__all__ = ["MonteCarloKernel", "SideBoundModule", "monte_carlo_kernel"]
