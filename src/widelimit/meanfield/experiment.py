"""Finite-N training beside the PDE: risk curves, W1 distances and fitted gap slopes.

For the isotropic-Gaussians problem the PDE is solved in the radius ``r = ‖w‖``
(:func:`.pde.solve_radial`) and each finite net's particle cloud is compared with it
through the law of ``‖w_i‖``: ``W1`` between the empirical radii and the PDE quantiles
(expected ``~ N^{-1/2}``, the fluctuation of an empirical measure; MMN 2018, Thm. 3),
and the risk gap ``E R(ρ̂_N) − R(ρ_t)`` (expected ``O(1/N)`` plus an SGD-noise bias
``O(ε/B)``).  Online SGD adds a diffusion of size ``~ ε |x|² / B`` per unit time
(``|x|² ≈ d``), so ``ε/B`` must be small against ``1/N`` for the slopes to show.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from widelimit.fitting import loglog_slope
from widelimit.meanfield.network import train
from widelimit.meanfield.pde import solve_radial, wasserstein1_1d
from widelimit.meanfield.problems import IsotropicGaussians
from widelimit.progress import progress_bar
from widelimit.seeding import Seed

__all__ = ["MeanFieldComparison", "compare_with_pde"]


@dataclass(frozen=True)
class MeanFieldComparison:
    """SGD at several ``N`` beside the radial PDE (all arrays are lists for ``--json``).

    Attributes:
        times: ``(T,)``; ns: ``(K,)`` widths.
        pde_risk: ``(T,)`` ``R(ρ_t)``.
        pde_quantiles: ``(T, Q)`` quantiles of ``‖w‖`` under ``ρ_t`` at levels ``levels``.
        sgd_risk: ``(K, T)`` mean over seeds of the population risk; ``sgd_risk_sd`` its
            across-seed standard deviation.
        sgd_quantiles: ``(K, T, Q)`` radius quantiles of the particle clouds (seeds pooled).
        w1: ``(K, T)`` mean over seeds of ``W1(law of ‖w_i‖, ρ_t)``.
        w1_slope, risk_gap_slope: ``{time: slope}`` of log gap vs log N (t > 0).
        pde_seconds, sgd_seconds: ``(K,)`` wall-clock times (training loop only).
    """

    times: list[float]
    ns: list[int]
    levels: list[float]
    pde_risk: list[float]
    pde_quantiles: list[list[float]]
    sgd_risk: list[list[float]]
    sgd_risk_sd: list[list[float]]
    sgd_quantiles: list[list[list[float]]]
    w1: list[list[float]]
    w1_slope: dict[float, float]
    risk_gap_slope: dict[float, float]
    pde_seconds: float
    sgd_seconds: list[float]
    eps: float
    batch_size: int
    n_seeds: int


def compare_with_pde(
    problem: IsotropicGaussians | None = None,
    *,
    ns: tuple[int, ...] = (100, 200, 400, 800, 1600),
    times: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0),
    eps: float = 5e-4,
    batch_size: int = 128,
    n_seeds: int = 2,
    n_particles: int = 2000,
    compute_risk: bool = True,
    seed: Seed = 0,
    progress: bool = True,
) -> MeanFieldComparison:
    """Solve the radial PDE once and train ``n_seeds`` nets at each ``N`` in ``ns``.

    ``seed``: an ``int`` seeds width ``ns[i]`` with ``seed + i``; a ``torch.Generator`` is
    one stream for all widths; ``None`` uses the global RNG.
    """
    problem = IsotropicGaussians() if problem is None else problem
    if len(ns) < 2:
        raise ValueError("`ns` needs at least two widths to fit a gap slope")
    sol = solve_radial(problem, times=times, n_particles=n_particles, progress=progress)
    levels = [0.1, 0.25, 0.5, 0.75, 0.9]
    lv = torch.tensor(levels, dtype=torch.float64)
    pde_r = sol.particles[..., 0]
    risks, sds, quants, w1s, secs = [], [], [], [], []
    with progress_bar(progress) as bar:
        task = bar.add_task("SGD over N", total=len(ns))
        for i, n in enumerate(ns):
            t0 = time.perf_counter()
            res = train(
                problem,
                n,
                times=sol.times.tolist(),
                eps=eps,
                batch_size=batch_size,
                n_seeds=n_seeds,
                seed=seed + i if isinstance(seed, int | np.integer) else seed,
                compute_risk=compute_risk,
                progress=progress,
            )
            secs.append(res.seconds if compute_risk else time.perf_counter() - t0)
            radii = res.particles.norm(dim=-1)  # (T, S, N)
            w1s.append(
                [float(wasserstein1_1d(radii[k], pde_r[k]).mean()) for k in range(len(sol.times))]
            )
            quants.append(torch.quantile(radii.flatten(1), lv, dim=1).T.tolist())
            if res.risk is not None:
                risks.append(res.risk.mean(0).tolist())
                sds.append(res.risk.std(0).tolist() if n_seeds > 1 else [0.0] * len(sol.times))
            bar.advance(task)
    t_list = sol.times.tolist()
    w1 = np.asarray(w1s)
    w1_slope = {t: loglog_slope(ns, np.abs(w1[:, k])) for k, t in enumerate(t_list) if t > 0}
    gap_slope: dict[float, float] = {}
    if risks:
        gap = np.asarray(risks) - sol.risk.numpy()[None, :]
        gap_slope = {t: loglog_slope(ns, np.abs(gap[:, k])) for k, t in enumerate(t_list) if t > 0}
    return MeanFieldComparison(
        times=t_list,
        ns=list(ns),
        levels=levels,
        pde_risk=sol.risk.tolist(),
        pde_quantiles=torch.quantile(pde_r, lv, dim=1).T.tolist(),
        sgd_risk=risks,
        sgd_risk_sd=sds,
        sgd_quantiles=quants,
        w1=w1s,
        w1_slope=w1_slope,
        risk_gap_slope=gap_slope,
        pde_seconds=sol.solve_seconds,
        sgd_seconds=secs,
        eps=eps,
        batch_size=batch_size,
        n_seeds=n_seeds,
    )
