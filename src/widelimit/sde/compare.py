"""Finite shaped-ReLU networks vs the covariance SDE: correlations and log-norms.

For two unit-norm inputs with correlation ``ρ₀`` (``Φ_0 = [[1, ρ₀], [ρ₀, 1]]``), finite
nets of width ``n`` and depth ``d = round(Tn)`` are drawn with the exact sampler and
compared with the SDE at ``T``:

* ``ρ_T`` against the correlation SDE (:func:`~widelimit.sde.integrate_correlation`,
  or the 2×2 covariance SDE with ``sde="covariance"``), by the two-sample KS distance;
* ``ln Φ^{11}_T`` against its exact SDE law ``N(−T, 2T)`` (ReLU drift vanishes on the
  diagonal), by the one-sample KS distance.

``ks_noise`` is the typical KS distance of two samples from the *same* law,
``√((N₁ + N₂)/(N₁N₂))·0.87`` (mean of the Kolmogorov distribution), to read the KS
distances against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import stats

from widelimit._validation import check_positive_int
from widelimit.deprecation import renamed_kwargs
from widelimit.sde.covariance_sde import integrate_correlation, integrate_covariance
from widelimit.sde.drift import ReLUDrift
from widelimit.sde.finite import sample_gram
from widelimit.sde.shaped import ShapedReLU
from widelimit.seeding import Seed, as_generator

__all__ = ["ComparisonRow", "SDEComparison", "Summary", "compare_relu", "correlations"]

_KOLMOGOROV_MEAN = 0.8687  # E[sup|B_bridge|] = √(π/2) ln 2


@dataclass(frozen=True)
class Summary:
    """Mean, standard deviation and the 5/25/50/75/95 % quantiles of a sample."""

    mean: float
    std: float
    q05: float
    q25: float
    q50: float
    q75: float
    q95: float

    @classmethod
    def of(cls, x: np.ndarray | torch.Tensor) -> Summary:
        x = np.asarray(x, dtype=np.float64)
        q = np.quantile(x, [0.05, 0.25, 0.5, 0.75, 0.95])
        return cls(float(x.mean()), float(x.std(ddof=1)), *(float(v) for v in q))


@dataclass(frozen=True)
class ComparisonRow:
    """One ``(width, T)`` comparison; ``*_rho`` summarise ``ρ_T``."""

    width: int
    T: float
    depth: int
    n_nets: int
    n_paths: int
    ks_rho: float
    ks_lognorm: float
    ks_noise: float
    finite_rho: Summary
    sde_rho: Summary


@dataclass(frozen=True)
class SDEComparison:
    """Rows plus the raw samples (for plots): keys ``(width, T)`` / ``T``."""

    c_plus: float
    c_minus: float
    rho0: float
    rows: list[ComparisonRow]
    finite_rho: dict[tuple[int, float], np.ndarray] = field(repr=False)
    finite_lognorm: dict[tuple[int, float], np.ndarray] = field(repr=False)
    sde_rho: dict[float, np.ndarray] = field(repr=False)


@renamed_kwargs(phi="cov")
def correlations(cov: torch.Tensor) -> torch.Tensor:
    """``ρ^{12} = Φ^{12}/√(Φ^{11}Φ^{22})`` of ``(..., 2, 2)`` states ``cov``; shape ``(...)``."""
    return cov[..., 0, 1] / torch.sqrt(cov[..., 0, 0] * cov[..., 1, 1])


@renamed_kwargs(generator="seed")
def compare_relu(
    *,
    c_plus: float = 0.0,
    c_minus: float = -1.0,
    rho0: float = 0.3,
    widths: Sequence[int] = (64, 256),
    times: Sequence[float] = (0.5, 1.0),
    n_nets: int = 5000,
    n_paths: int = 100_000,
    dt: float = 1 / 1024,
    sde: str = "correlation",
    seed: Seed = None,
    progress: bool = True,
) -> SDEComparison:
    """Compare finite shaped-ReLU nets (``d = Tn``) with the SDE; see the module docstring.

    ``seed``: ``int``, ``torch.Generator`` or ``None``; one stream feeds the SDE paths and
    the finite nets (``generator=`` is deprecated).
    """
    if not -1 < float(rho0) < 1:
        raise ValueError(f"`rho0` must lie strictly between -1 and 1; got {rho0!r}")
    if sde not in ("correlation", "covariance"):
        raise ValueError(f"`sde` must be 'correlation' or 'covariance'; got {sde!r}")
    ts = tuple(float(t) for t in times)
    if not ts or any(not math.isfinite(t) or t <= 0 for t in ts):
        raise ValueError(f"`times` must be positive finite numbers; got {times!r}")
    ws = tuple(check_positive_int("widths", w) for w in widths)
    if not ws:
        raise ValueError("`widths` must contain at least one width")
    n_nets = check_positive_int("n_nets", n_nets)
    n_paths = check_positive_int("n_paths", n_paths)
    phi0 = torch.tensor([[1.0, rho0], [rho0, 1.0]], dtype=torch.float64)
    generator = as_generator(seed)
    drift = ReLUDrift(float(c_plus), float(c_minus))
    if sde == "correlation":
        paths = integrate_correlation(
            rho0, drift, times=ts, dt=dt, n_paths=n_paths, seed=generator, progress=progress
        )
    else:
        paths = correlations(
            integrate_covariance(
                phi0,
                drift,
                times=ts,
                dt=dt,
                n_paths=n_paths,
                seed=generator,
                progress=progress,
            )
        )
    sde_rho = {t: paths[i].numpy() for i, t in enumerate(ts)}
    rows, fin_rho, fin_log = [], {}, {}
    for n in ws:
        act = ShapedReLU.shaped(c_plus, c_minus, n)
        layers = [max(1, round(t * n)) for t in ts]
        grams = sample_gram(
            phi0,
            act,
            width=n,
            depth=max(layers),
            n_nets=n_nets,
            record=layers,
            seed=generator,
            progress=progress,
        )
        for i, t in enumerate(ts):
            rho = correlations(grams[i]).numpy()
            logn = grams[i, :, 0, 0].log().numpy()
            fin_rho[(n, t)], fin_log[(n, t)] = rho, logn
            t_eff = layers[i] / n
            ks_log = stats.kstest(logn, stats.norm(-t_eff, math.sqrt(2 * t_eff)).cdf).statistic
            rows.append(
                ComparisonRow(
                    width=n,
                    T=t,
                    depth=layers[i],
                    n_nets=n_nets,
                    n_paths=n_paths,
                    ks_rho=float(stats.ks_2samp(rho, sde_rho[t]).statistic),
                    ks_lognorm=float(ks_log),
                    ks_noise=_KOLMOGOROV_MEAN * math.sqrt(1 / n_nets + 1 / n_paths),
                    finite_rho=Summary.of(rho),
                    sde_rho=Summary.of(sde_rho[t]),
                )
            )
    c_p, c_m = float(c_plus), float(c_minus)
    return SDEComparison(c_p, c_m, float(rho0), rows, fin_rho, fin_log, sde_rho)
