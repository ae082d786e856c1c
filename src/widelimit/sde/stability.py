"""Norm stability of smooth shaped networks (Li, Nica, Roy 2022, §3.2; docs/sde.md).

One input: ``dΦ = b_* Φ(Φ − 1) dt + √2 Φ dB`` with ``b_* = (¾φ''(0)² + φ'''(0))/a²``.
For ``b_* > 0`` the logistic drift blows ``Φ`` up in finite time with positive
probability (``∫^∞ dΦ/(b_*Φ²) < ∞``); for ``b_* < 0`` it pulls ``Φ`` back to 1 from
above, so norms stay bounded.  Verdict: stable iff ``b_* < 0`` (``b_* = 0`` is the
borderline, e.g. the linear net, whose log-norm is a Brownian motion with drift ``−1``).

:func:`demonstrate_stability` checks the verdict on finite shaped nets (exact sampler)
against the SDE: the fraction of nets whose squared norm exceeds ``threshold`` by ``T``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from widelimit._validation import check_positive_int
from widelimit.deprecation import renamed_kwargs
from widelimit.sde.covariance_sde import integrate_one_input
from widelimit.sde.finite import sample_gram
from widelimit.sde.shaped import SmoothShaped, derivatives_at_zero
from widelimit.seeding import Seed, as_generator

__all__ = [
    "StabilityDemo",
    "StabilityRow",
    "StabilityVerdict",
    "b_star",
    "demonstrate_stability",
    "norm_stability",
]

Fn = Callable[[Tensor], Tensor]


@renamed_kwargs(phi="activation")
def b_star(activation: str | Fn, a: float) -> float:
    """``b_* = (¾φ''(0)² + φ'''(0))/a²`` (derivatives by autograd) of ``activation``
    (a name in :data:`~widelimit.sde.shaped.SMOOTH_ACTIVATIONS` or a callable)."""
    a = float(a)
    if not math.isfinite(a) or a <= 0:
        raise ValueError(f"`a` must be a finite number > 0; got {a!r}")
    _, _, d2, d3 = derivatives_at_zero(activation)
    return (0.75 * d2**2 + d3) / a**2


@dataclass(frozen=True)
class StabilityVerdict:
    """``b_*`` of an activation at shaping ``a`` and the verdict (stable iff ``b_* < 0``)."""

    name: str
    a: float
    phi2: float
    phi3: float
    b_star: float
    stable: bool


@renamed_kwargs(phi="activation")
def norm_stability(activation: str | Fn, a: float) -> StabilityVerdict:
    """The norm-stability verdict for ``φ_s(x) = s φ(x/s)``, ``s = a√n``."""
    b = b_star(activation, a)
    _, _, d2, d3 = derivatives_at_zero(activation)
    name = activation if isinstance(activation, str) else getattr(activation, "__name__", "phi")
    return StabilityVerdict(str(name), float(a), d2, d3, b, b < 0)


@dataclass(frozen=True)
class StabilityRow:
    """Finite nets vs SDE for one activation at one time ``T``.

    ``frac_large_*``: fraction with ``Φ_T > threshold`` (exploded nets included);
    ``median_log_*``: median of ``ln Φ_T``; ``se_frac``: binomial standard error of the
    difference of the two fractions.
    """

    verdict: StabilityVerdict
    width: int
    T: float
    frac_large_finite: float
    frac_large_sde: float
    se_frac: float
    median_log_finite: float
    median_log_sde: float


@dataclass(frozen=True)
class StabilityDemo:
    """Rows of :func:`demonstrate_stability`, plus the raw ``ln Φ_T`` samples for plots.

    ``log_finite[name]``: ``(len(times), n_nets)``; ``log_sde[name]``: ``(len(times), n_paths)``.
    """

    rows: list[StabilityRow]
    threshold: float
    times: tuple[float, ...]
    log_finite: dict[str, Tensor]
    log_sde: dict[str, Tensor]


@renamed_kwargs(phis="activations", generator="seed")
def demonstrate_stability(
    activations: Sequence[str | Fn] = ("tanh", "quadratic"),
    *,
    a: float = 1.0,
    width: int = 64,
    times: Sequence[float] = (0.5, 1.0),
    n_nets: int = 2000,
    n_paths: int = 20000,
    threshold: float = 10.0,
    seed: Seed = None,
    progress: bool = True,
) -> StabilityDemo:
    """Norms of finite smooth-shaped nets (``d = Tn``, one input, ``Φ_0 = 1``) vs the SDE.

    A stable activation (``b_* < 0``) keeps ``P(Φ_T > threshold)`` at essentially 0; an
    unstable one (``b_* > 0``) sends a growing fraction of nets past it (to overflow).
    ``activations``: names or callables; ``seed``: ``int``, ``torch.Generator`` or ``None``
    (one stream for all draws).  ``phis=`` and ``generator=`` are deprecated.
    """
    n = check_positive_int("width", width)
    ts = tuple(float(t) for t in times)
    if not ts or any(not math.isfinite(t) or t <= 0 for t in ts):
        raise ValueError(f"`times` must be positive finite numbers; got {times!r}")
    if not math.isfinite(threshold) or threshold <= 1:
        raise ValueError(f"`threshold` must be a finite number > 1; got {threshold!r}")
    layers = [max(1, round(t * n)) for t in ts]
    generator = as_generator(seed)
    rows, log_f, log_s = [], {}, {}
    for phi in activations:
        verdict = norm_stability(phi, a)
        act = SmoothShaped(phi, a, n)
        fin = sample_gram(
            torch.ones(1, 1, dtype=torch.float64),
            act,
            width=n,
            depth=max(layers),
            n_nets=n_nets,
            record=layers,
            seed=generator,
            progress=progress,
        )[..., 0, 0].log()
        sde = integrate_one_input(
            1.0,
            verdict.b_star,
            times=[lay / n for lay in layers],
            dt=1 / n,
            n_paths=n_paths,
            seed=generator,
            progress=progress,
        )
        log_f[verdict.name], log_s[verdict.name] = fin, sde
        lt = math.log(threshold)
        for i, t in enumerate(ts):
            pf = float((fin[i] > lt).double().mean())
            ps = float((sde[i] > lt).double().mean())
            se = math.sqrt(pf * (1 - pf) / n_nets + ps * (1 - ps) / n_paths)
            rows.append(
                StabilityRow(
                    verdict,
                    n,
                    t,
                    pf,
                    ps,
                    se,
                    float(fin[i].nanmedian()),
                    float(sde[i].nanmedian()),
                )
            )
    return StabilityDemo(rows, float(threshold), ts, log_f, log_s)
