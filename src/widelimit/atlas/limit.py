"""Page 2 — the infinite-width limit: the outputs of finite nets approach a Gaussian process
(Neal 1996; Lee et al. 2018; Matthews et al. 2018).

Numbers: :func:`widelimit.propagation.finite_width_study` (outputs whitened by the NNGP
``K = net.kernel(x).nngp``, the empirical output kernel against ``K``); the joint samples of
two inputs come from the same finite modules (:func:`widelimit.propagation.preactivations`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from widelimit.atlas.core import Figure, Headline, PageContent, Table, mpl, save

__all__ = ["Config", "Result", "compute", "content", "figures"]

SLUG = "limit"
TITLE = "The infinite-width limit"


@dataclass(frozen=True)
class Config:
    activation: str = "relu"
    w_std: float = 1.4
    b_std: float = 0.1
    depth: int = 3
    widths: tuple[int, ...] = (16, 64, 256, 1024, 4096)
    seeds: int = 16
    seed: int = 100

    @classmethod
    def quick(cls) -> Config:
        return cls(widths=(16, 64, 256, 1024), seeds=8)


@dataclass(frozen=True)
class Result:
    config: Config
    study: object  # widelimit.propagation.FiniteWidthStudy
    nngp: np.ndarray  # (P, P) analytic output kernel
    joint: dict[int, np.ndarray]  # width -> (2, n) outputs of one net at inputs 1 and 2
    headline: Headline
    seconds: float


def compute(cfg: Config | None = None, *, progress: bool = True) -> Result:
    from widelimit.layers.activations import activation_from_name
    from widelimit.propagation import (
        default_inputs,
        finite_width_study,
        preactivations,
        propagation_net,
    )

    cfg = cfg or Config()
    t0 = time.perf_counter()
    act = activation_from_name(cfg.activation)
    x = default_inputs()
    study = finite_width_study(
        act,
        cfg.w_std,
        cfg.b_std,
        cfg.depth,
        cfg.widths,
        n_seeds=cfg.seeds,
        x=x,
        seed=cfg.seed,
        progress=progress,
    )
    spec = propagation_net(act, cfg.w_std, cfg.b_std, cfg.depth)
    nngp = spec.kernel(x, get="nngp").nngp.numpy()
    joint = {}
    for n in cfg.widths:
        mod = propagation_net(act, cfg.w_std, cfg.b_std, cfg.depth, width=int(n)).module(
            None, input_shape=x.shape[1], seed=cfg.seed, dtype=x.dtype
        )
        joint[int(n)] = preactivations(mod, x)[-1][:2].numpy()  # (2, n) output units
    slope, se = study.slopes["output_cov_err"], study.slopes_se["output_cov_err"]
    head = Headline(
        name="log-log slope of ‖K̂_n − K‖/‖K‖ (one net's output kernel vs the NNGP) vs width",
        value=slope,
        theory=-0.5,
        stderr=se,
        tolerance=3 * se,
        rule="3 standard errors of the fitted slope (errors propagated from the seed spread)",
    )
    return Result(cfg, study, nngp, joint, head, time.perf_counter() - t0)


def figures(res: Result, out_dir: Path) -> list[Figure]:
    from scipy import stats

    from widelimit.propagation.plots import plot_distances

    plt = mpl()
    st = res.study
    ws = [int(n) for n in st.widths]
    # QQ plots of output units at input 1 (first seed) against N(0, K11)
    fig, axes = plt.subplots(1, len(ws), figsize=(2.6 * len(ws), 2.7), sharey=True)
    for ax, n, s in zip(np.atleast_1d(axes), ws, st.samples, strict=True):
        z = np.sort(s[-1])
        qn = stats.norm.ppf((np.arange(1, z.size + 1) - 0.5) / z.size)
        ax.plot(qn, z, ".", ms=2)
        ax.plot([-3, 3], [-3, 3], "k-", lw=0.8)
        ax.set(title=f"n={n}", xlabel="N(0,1) quantile")
    np.atleast_1d(axes)[0].set_ylabel("output / √K(x,x)")
    fig.suptitle("QQ plots of the output units against the Gaussian limit", fontsize=9)
    qq = save(fig, out_dir / "qq.png")
    # joint law of (f(x1), f(x2)) with the NNGP's 1σ/2σ ellipses
    k = res.nngp[:2, :2]
    ev, vec = np.linalg.eigh(k)
    t = np.linspace(0, 2 * np.pi, 200)
    circle = np.stack([np.cos(t), np.sin(t)])
    fig, axes = plt.subplots(1, len(ws), figsize=(2.6 * len(ws), 2.7), sharex=True, sharey=True)
    for ax, n in zip(np.atleast_1d(axes), ws, strict=True):
        h = res.joint[n]
        ax.plot(h[0], h[1], ".", ms=2, alpha=0.5)
        for r in (1, 2):
            e = vec @ (r * np.sqrt(ev)[:, None] * circle)
            ax.plot(e[0], e[1], "k-", lw=0.8)
        ax.set(title=f"n={n}", xlabel="f(x₁)")
    np.atleast_1d(axes)[0].set_ylabel("f(x₂)")
    fig.suptitle("Output units at two inputs (one net) vs the NNGP's 1σ, 2σ ellipses", fontsize=9)
    joint = save(fig, out_dir / "joint.png")
    dist = plot_distances(st, out_dir / "distances.png")
    return [
        Figure(
            qq,
            "Each panel: the n output units of one net at input x₁, sorted, against "
            "normal quantiles; on the diagonal = Gaussian.",
        ),
        Figure(
            joint,
            "Joint distribution of the outputs at two inputs (correlation 0.5 at "
            "the input) against the NNGP covariance ellipses.",
        ),
        Figure(
            dist,
            "Distances of finite nets to the Gaussian-process limit against width: "
            "the empirical output kernel ‖K̂ − K‖/‖K‖, KS of NNGP-whitened outputs, and the "
            "per-layer statistics; fitted slopes.",
        ),
    ]


def content(res: Result) -> PageContent:
    st, cfg = res.study, res.config
    rows = []
    for i, n in enumerate(st.widths):
        rows.append(
            [
                int(n),
                float(st.stats["output_cov_err"][i]),
                float(st.stats_se["output_cov_err"][i]),
                float(st.stats["output_ks"][i]),
                float(st.stats["output_chi2_ks"][i]),
            ]
        )
    slopes = [
        [k, float(st.slopes[k]), float(st.slopes_se[k]), -0.5]
        for k in ("output_cov_err", "output_ks", "output_chi2_ks")
    ]
    return PageContent(
        title=TITLE,
        formula=(
            "As the width n → ∞ the outputs f(x₁), …, f(x_P) of a random net become jointly "
            "Gaussian with covariance the NNGP kernel K(x, x'), computed layer by layer "
            "(Σ' = σw² E[φ(u)φ(v)] + σb²); a single wide net's empirical kernel "
            "(1/n) Σ_i h_i(x) h_i(x') concentrates on K at rate n^{-1/2}."
        ),
        paragraphs=[
            f"Nets: {cfg.depth} dense layers of width n (the output layer too, so its n units "
            f"are n samples of the output law), φ = {cfg.activation}, σw = {cfg.w_std}, "
            f"σb = {cfg.b_std}; three inputs with q⁰ = 1 and pairwise correlation 0.5; "
            f"{cfg.seeds} nets per width.",
        ],
        tables=[
            Table(
                "Outputs vs the GP limit",
                ["width", "‖K̂−K‖/‖K‖", "± se", "KS whitened", "KS |z|² vs χ²_P"],
                rows,
            ),
            Table("Fitted slopes vs width", ["statistic", "slope", "± se", "theory"], slopes),
            Table(
                "NNGP K (analytic)",
                ["", "x₁", "x₂", "x₃"],
                [[f"x{i + 1}", *map(float, r)] for i, r in enumerate(res.nngp)],
            ),
        ],
    )
