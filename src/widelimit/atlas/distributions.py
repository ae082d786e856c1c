"""Page 1 — distributional representation: pre-activations of finite nets against the
Gaussian limit ``N(0, q^l)`` (Poole et al. 2016; Lee et al. 2018), KS/W1 vs width.

All numbers come from :func:`widelimit.propagation.finite_width_study`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from widelimit.atlas.core import Figure, Headline, PageContent, Table

__all__ = ["Config", "Result", "compute", "content", "figures"]

SLUG = "distributions"
TITLE = "Distributional representation"  # = atlas.TITLES[SLUG]


@dataclass(frozen=True)
class Config:
    """Finite nets ``depth`` dense layers deep with φ = ``activation``; ``seeds`` nets per width."""

    activation: str = "tanh"
    w_std: float = 1.5
    b_std: float = 0.3
    depth: int = 3
    widths: tuple[int, ...] = (4, 16, 64, 256, 1024, 4096)
    seeds: int = 16
    seed: int = 0

    @classmethod
    def quick(cls) -> Config:
        return cls(widths=(4, 16, 64, 256, 1024), seeds=8)


@dataclass(frozen=True)
class Result:
    config: Config
    study: object  # widelimit.propagation.FiniteWidthStudy
    headline: Headline
    seconds: float


def compute(cfg: Config | None = None, *, progress: bool = True) -> Result:
    """Sample the nets and fit KS vs width (theory slope −½)."""
    from widelimit.layers.activations import activation_from_name
    from widelimit.propagation import finite_width_study

    cfg = cfg or Config()
    t0 = time.perf_counter()
    study = finite_width_study(
        activation_from_name(cfg.activation),
        cfg.w_std,
        cfg.b_std,
        cfg.depth,
        cfg.widths,
        n_seeds=cfg.seeds,
        seed=cfg.seed,
        progress=progress,
    )
    slope, se = study.slopes["ks"], study.slopes_se["ks"]
    head = Headline(
        name="log-log slope of the mean KS distance (layers 1..L) vs width",
        value=slope,
        theory=-0.5,
        stderr=se,
        tolerance=3 * se,
        rule="3 standard errors of the fitted slope (errors propagated from the seed spread)",
    )
    return Result(cfg, study, head, time.perf_counter() - t0)


def figures(res: Result, out_dir: Path) -> list[Figure]:
    from widelimit.propagation.plots import plot_distances, plot_histograms

    st = res.study
    return [
        Figure(
            plot_histograms(st, out_dir / "histograms.png", layer=st.depth - 1),
            "Histogram of h^l(x)/√q^l(x) over the n units of one net, at each width, against "
            "the standard normal density (the infinite-width law).",
        ),
        Figure(
            plot_distances(st, out_dir / "distances.png"),
            "Distances to the Gaussian limit (mean over seeds ± standard error, averaged over "
            "layers) against width, with fitted log-log slopes; dotted: n^-1/2.",
        ),
    ]


def content(res: Result) -> PageContent:
    st, cfg = res.study, res.config
    rows = []
    for i, n in enumerate(st.widths):
        rows.append(
            [
                int(n),
                float(st.stats["ks"][i].mean()),
                float(st.stats_se["ks"][i].mean()),
                float(st.stats["w1"][i].mean()),
                float(st.stats["q_spread"][i].mean()),
            ]
        )
    slopes = [[k, float(st.slopes[k]), float(st.slopes_se[k]), -0.5] for k in st.slopes]
    return PageContent(
        title=TITLE,
        formula=(
            "In a random net of width n, the pre-activations h^l_i(x) of layer l are i.i.d. "
            "over units given layer l−1 and converge to N(0, q^l(x)) as n → ∞, with "
            "q^{l+1} = σw² E[φ(√q^l z)²] + σb²; distances to the limit (KS, W1) shrink like "
            "n^{-1/2}."
        ),
        paragraphs=[
            f"Nets: {cfg.depth} dense layers, φ = {cfg.activation}, σw = {cfg.w_std}, "
            f"σb = {cfg.b_std}, inputs with q⁰ = 1 and correlation 0.5; {cfg.seeds} nets per "
            f"width. The KS statistic of n draws from the limit itself is ≈ 0.87/√n, so the "
            "slope −½ combines the sampling error of n units and the fluctuation of q̂^l.",
        ],
        tables=[
            Table("Per width (layer-averaged)", ["width", "KS", "± se", "W1", "sd of q̂/q"], rows),
            Table("Fitted slopes vs width", ["statistic", "slope", "± se", "theory"], slopes),
        ],
        published=[],
    )
