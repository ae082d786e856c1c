"""Page 6 — mean-field dynamics of two-layer nets (Mei, Montanari, Nguyen 2018) and the
SP / NTK / MF / μP coordinate check (Yang & Hu 2021).

Numbers: :func:`widelimit.meanfield.compare_with_pde` (SGD at several N beside the radial
PDE) and :func:`widelimit.meanfield.width_study`; figures from :mod:`widelimit.meanfield.plots`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from widelimit.atlas.core import Figure, Headline, PageContent, Published, Table

__all__ = ["Config", "Result", "compute", "content", "figures"]

SLUG = "meanfield"
TITLE = "Mean-field dynamics"


@dataclass(frozen=True)
class Config:
    ns: tuple[int, ...] = (100, 200, 400, 800, 1600)
    times: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
    eps: float = 5e-4
    batch_size: int = 128
    seeds: int = 3
    particles: int = 2000
    coord_widths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048, 4096, 8192)
    coord_seeds: int = 2
    seed: int = 0

    @classmethod
    def quick(cls) -> Config:
        return cls(
            ns=(40, 80, 160, 320),
            times=(0.0, 0.1, 0.25),
            eps=1e-3,
            seeds=3,
            particles=1000,
            coord_widths=(64, 256, 1024, 4096),
        )


@dataclass(frozen=True)
class Result:
    config: Config
    comparison: object  # widelimit.meanfield.MeanFieldComparison
    gap: list[float]  # (K,) risk gap E R(ρ̂_N) − R(ρ_t) at the last time
    gap_se: list[float]  # (K,) its standard error over seeds
    gap_slope: tuple[float, float]  # (slope, se)
    coord: object  # widelimit.meanfield.WidthStudy
    headline: Headline
    seconds: float


def compute(cfg: Config | None = None, *, progress: bool = True) -> Result:
    from widelimit.atlas.core import loglog_slope
    from widelimit.meanfield import compare_with_pde, width_study

    cfg = cfg or Config()
    t0 = time.perf_counter()
    comp = compare_with_pde(
        ns=cfg.ns,
        times=cfg.times,
        eps=cfg.eps,
        batch_size=cfg.batch_size,
        n_seeds=cfg.seeds,
        n_particles=cfg.particles,
        seed=cfg.seed,
        progress=progress,
    )
    risk = np.asarray(comp.sgd_risk)[:, -1]
    gap = risk - comp.pde_risk[-1]
    se = np.asarray(comp.sgd_risk_sd)[:, -1] / np.sqrt(cfg.seeds)
    slope = loglog_slope(cfg.ns, np.abs(gap), se) if np.all(gap > 0) else (np.nan, np.nan)
    coord = width_study(
        widths=cfg.coord_widths, n_seeds=cfg.coord_seeds, seed=cfg.seed, progress=progress
    )
    head = Headline(
        name=f"log-log slope of the risk gap E R(ρ̂_N) − R(ρ_t) vs N at t = {comp.times[-1]}",
        value=float(slope[0]),
        theory=-1.0,
        stderr=float(slope[1]),
        tolerance=3 * float(slope[1]),
        rule="3 standard errors of the fitted slope (seed spread of the risk at each N)",
    )
    return Result(
        cfg, comp, gap.tolist(), se.tolist(), slope, coord, head, time.perf_counter() - t0
    )


def figures(res: Result, out_dir: Path) -> list[Figure]:
    from widelimit.meanfield.plots import plot_comparison, plot_width_study

    caps = {
        "risk": "Population risk of SGD at each N (mean over seeds) and of the PDE solution ρ_t.",
        "radii": "Snapshots of the weight distribution μ_t: quantiles of ‖w_i‖ over the N "
        "neurons (SGD) against the PDE's quantiles.",
        "gap": "W1 distance between the neurons' radii and ρ_t, and the risk gap, against N "
        "(log-log; theory N^-1/2 and N^-1).",
        "parameterizations": "Coordinate check: change of weights, features, pre-activation "
        "coordinates and outputs after a few GD steps against width, under SP, NTK, MF and μP.",
    }
    paths = plot_comparison(res.comparison, out_dir) + plot_width_study(res.coord, out_dir)
    return [Figure(Path(p), caps.get(Path(p).stem, Path(p).stem)) for p in paths]


def content(res: Result) -> PageContent:
    comp, cfg, st = res.comparison, res.config, res.coord
    rows = [
        [n, float(np.asarray(comp.sgd_risk)[i, -1]), g, s, float(comp.w1[i][-1])]
        for i, (n, g, s) in enumerate(zip(comp.ns, res.gap, res.gap_se, strict=True))
    ]
    coord_rows = [
        [p, *(float(st.slopes[p][m]) for m in ("weight_movement", "coord_check", "output_change"))]
        for p in st.params
    ]
    return PageContent(
        title=TITLE,
        formula=(
            "A two-layer net ŷ(x) = (1/N) Σ_i σ*(x; θ_i) trained by SGD with step ε moves its "
            "neurons' empirical law ρ̂_N along the distributional dynamics ∂_t ρ = 2ξ(t) "
            "∇·(ρ ∇Ψ(θ; ρ)); as N → ∞, ε → 0 the risk approaches R(ρ_t) with a gap O(1/N) "
            "and the law of the neurons within O(N^-1/2)."
        ),
        paragraphs=[
            "Problem: isotropic Gaussians of Mei, Montanari & Nguyen 2018 (two classes "
            "N(0, (1 ± Δ)² I_d)), σ* piecewise linear; the PDE is solved exactly in the "
            f"radius r = ‖w‖. SGD: ε = {cfg.eps}, batch {cfg.batch_size}, {cfg.seeds} seeds "
            f"per N. Coordinate check: one hidden ReLU layer, {st.steps} GD steps of "
            f"η = {st.lr}, widths {list(st.widths)}.",
        ],
        tables=[
            Table(
                f"SGD vs PDE at t = {comp.times[-1]} (PDE risk {comp.pde_risk[-1]:.5g})",
                ["N", "SGD risk", "gap", "± se", "W1 of radii"],
                rows,
            ),
            Table(
                "Coordinate check: log-log slopes vs width",
                ["parameterization", "weight movement", "coordinates", "outputs"],
                coord_rows,
            ),
        ],
        published=[
            Published(
                "SGD risk → PDE risk",
                "gap ≤ C (1/N + ε) (bound)",
                "Mei, Montanari, Nguyen 2018, Thm. 3",
                f"gap slope {res.gap_slope[0]:.2f} ± {res.gap_slope[1]:.2f}",
                f"our N = {list(comp.ns)}; their figures use d = 40, N up to 800 and smaller ε",
            ),
            Published(
                "coordinate check",
                "μP flat, SP growing with width",
                "Yang & Hu 2021, Fig. (coord check)",
                "slopes in the table above",
                "a two-layer ReLU MLP on 8 Gaussian inputs instead of a Transformer",
            ),
        ],
    )
