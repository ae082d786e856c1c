"""Page 1 — distributional representation: the law of one pre-activation unit *across
networks* (many independently sampled nets, the same input) against the Gaussian limit
``N(0, q^l)`` (Poole et al. 2016; Lee et al. 2018), and its finite-width correction: the
excess kurtosis is O(1/n) and grows with depth.

Why across networks: given layer ``l − 1`` the ``n`` units of one net are exactly i.i.d.
Gaussian at every width, so a distance measured over the units of one net shrinks like
``n^-1/2`` for any theory (it is the sampling error of ``n`` draws). What the limit predicts,
and finite width violates, is the law of one unit over the random weights: a scale mixture
``N(0, Σ_l)`` with a random conditional variance ``Σ_l``, whose excess kurtosis is
``κ_l = 3 Var Σ_l / (E Σ_l)²``.

Numbers: :func:`widelimit.atlas.core.ensemble_covariances` (the exact layer sampler).
The 1/n prediction of ``lim n·κ_l`` (:func:`widelimit.atlas.finite_width.predicted_n_kappa`,
the four-point recursion of :mod:`widelimit.finite_width`) stands beside the measured
``n·κ_l``; :func:`prediction_check` compares the measured ``n·κ`` extrapolated to
``n → ∞`` with it (page 13 does the same at criticality). The headline measures the rate.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from widelimit.atlas.core import (
    Figure,
    Headline,
    PageContent,
    Table,
    ensemble_covariances,
    loglog_slope,
    mpl,
    save,
    scale_mixture_kurtosis,
    slope_headline,
)

__all__ = [
    "Config",
    "Result",
    "compute",
    "content",
    "figures",
    "kurtosis_headline",
    "prediction_check",
]

SLUG = "distributions"
TITLE = "Distributional representation"  # = atlas.TITLES[SLUG]
THEORY_RATE = -1.0  # κ = O(1/n): the fourth cumulant of a unit is O(1/n) (e.g. Yaida 2020)
# FINITE_WIDTH_HOOK: the predicted n·κ_l of widelimit.finite_width stands beside the measured
# n·κ_l (Result.n_kappa_predicted; prediction_check and the "n·κ_l vs the 1/n theory" table).


@dataclass(frozen=True)
class Config:
    """Nets with ``depth`` hidden layers, φ = ``activation``; ``n_nets`` nets per width."""

    activation: str = "tanh"
    w_std: float = 1.5
    b_std: float = 0.3
    depth: int = 4
    widths: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048, 4096)
    n_nets: int = 16000
    seed: int = 0

    @classmethod
    def quick(cls) -> Config:
        return cls(widths=(32, 64, 128, 256, 512, 1024), n_nets=4000)


@dataclass(frozen=True)
class Result:
    config: Config
    kappa: np.ndarray  # (W, L+1) excess kurtosis of one unit across nets, layers 1..L+1
    kappa_se: np.ndarray  # (W, L+1)
    kappa_direct: np.ndarray  # (W, L+1) the same from one sampled unit per net (noisier)
    kappa_direct_se: np.ndarray  # (W, L+1)
    mean_var: np.ndarray  # (W, L+1) E Σ_l (the limit's q^l plus O(1/n))
    slopes: list[tuple[float, float]]  # per layer 2..L+1: (slope, se) of κ vs n
    n_kappa_predicted: list[float]  # (L+1,) lim n·κ_l of the 1/n recursion, layers 1..L+1
    n_kappa_fit: list[list[float]]  # per layer 2..L+1: [a, se_a, b, χ²/dof] of n·κ = a + b/n
    prediction: Headline  # the readout's extrapolated n·κ vs the prediction
    samples: dict[int, np.ndarray]  # width -> (n_nets,) one output unit per net / √E Σ
    headline: Headline
    seconds: float


def kurtosis_headline(
    widths: Sequence[int],
    kappa: Sequence[float],
    kappa_se: Sequence[float],
    *,
    theory: float = THEORY_RATE,
    layer: str = "the readout",
) -> Headline:
    """The page's check: the fitted log-log slope of ``κ`` against width, ± its standard
    error, against the predicted rate ``theory`` (−1); agrees iff within 3 SE."""
    slope, se = loglog_slope(widths, kappa, kappa_se)
    return slope_headline(
        f"log-log slope of the excess kurtosis of one unit of {layer} layer across nets vs width",
        slope,
        se,
        theory,
        note="errors of κ propagated from the spread over nets; the 1/n² correction is "
        "below one SE from n = 32 on at these sizes",
    )


_kappa = scale_mixture_kurtosis  # the name older tests import


def prediction_check(
    widths: Sequence[int],
    kappa: Sequence[float],
    kappa_se: Sequence[float],
    predicted_n_kappa: float,
    *,
    layer: str = "the readout",
) -> Headline:
    """The 1/n prediction's check: ``n·κ`` fitted as ``a + b/n`` over ``widths``, intercept
    ``a`` ± its SE against the predicted ``lim n·κ``; agrees iff within 3 SE (two-sided)."""
    from widelimit.atlas.finite_width import intercept_headline

    n = np.asarray(widths, dtype=float)
    return intercept_headline(
        widths, n * np.asarray(kappa), n * np.asarray(kappa_se), predicted_n_kappa,
        label=f" ({layer} layer)",
    )  # fmt: skip


def compute(cfg: Config | None = None, *, progress: bool = True) -> Result:
    """Sample ``n_nets`` nets per width (one input, q⁰ = 1) and fit κ against width."""
    from widelimit.progress import progress_bar

    cfg = cfg or Config()
    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed + 1)
    kap, kse, kd, kdse, mv, samples = [], [], [], [], [], {}
    with progress_bar(progress) as bar:
        # the sampler costs O(width) per net: the bar (and its ETA) advances by width
        task = bar.add_task("distributions: nets per width", total=sum(int(n) for n in cfg.widths))
        for i, n in enumerate(cfg.widths):
            sig = ensemble_covariances(
                cfg.activation, cfg.w_std**2, cfg.b_std**2, cfg.depth, int(n),
                np.ones((1, 1)), cfg.n_nets, seed=cfg.seed + 7919 * i,
            )[:, :, 0, 0]  # fmt: skip
            k, se = _kappa(sig)
            # the direct route: one unit per net drawn from its conditional law
            h = np.sqrt(sig) * rng.standard_normal(sig.shape)
            m2, m4 = (h**2).mean(-1), (h**4).mean(-1)
            kd.append(m4 / m2**2 - 3)
            kdse.append(np.full(len(m2), np.sqrt(24 / cfg.n_nets)))
            kap.append(k), kse.append(se), mv.append(sig.mean(-1))
            samples[int(n)] = h[-1] / np.sqrt(sig[-1].mean())
            bar.advance(task, int(n))
    kap, kse = np.array(kap), np.array(kse)
    slopes = [loglog_slope(cfg.widths, kap[:, j], kse[:, j]) for j in range(1, cfg.depth + 1)]
    head = kurtosis_headline(cfg.widths, kap[:, -1], kse[:, -1])
    from widelimit.atlas.finite_width import intercept_fit, predicted_n_kappa

    pred = predicted_n_kappa(cfg.activation, cfg.w_std, cfg.b_std, cfg.depth)
    ws = np.asarray(cfg.widths, dtype=float)
    fits = [
        list(intercept_fit(cfg.widths, ws * kap[:, j], ws * kse[:, j]))
        for j in range(1, cfg.depth + 1)
    ]
    check = prediction_check(cfg.widths, kap[:, -1], kse[:, -1], float(pred[-1]))
    return Result(
        cfg, kap, kse, np.array(kd), np.array(kdse), np.array(mv), slopes, pred.tolist(),
        fits, check, samples, head, time.perf_counter() - t0,
    )  # fmt: skip


def figures(res: Result, out_dir: Path) -> list[Figure]:
    plt = mpl()
    cfg = res.config
    ws = np.asarray(cfg.widths)
    layers = np.arange(1, cfg.depth + 2)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for j in range(1, cfg.depth + 1):
        sl, se = res.slopes[j - 1]
        a.errorbar(ws, res.kappa[:, j], yerr=res.kappa_se[:, j], marker="o", ms=3, capsize=2,
                   label=f"layer {j + 1}: slope {sl:.3f} ± {se:.3f}")  # fmt: skip
    a.plot(ws, res.kappa[0, -1] * ws[0] / ws, "k:", label="∝ 1/n (theory rate)")
    a.set(xscale="log", yscale="log", xlabel="width n", ylabel="excess kurtosis κ_l",
          title="one unit across nets: κ_l vs width")  # fmt: skip
    a.legend(fontsize=7)
    for i, n in enumerate(ws):
        b.errorbar(layers, n * res.kappa[i], yerr=n * res.kappa_se[i], marker="o", ms=3,
                   capsize=2, label=f"n = {n}")  # fmt: skip
    b.plot(layers, res.n_kappa_predicted, "k--", lw=1.2, label="1/n theory: lim n·κ_l")
    b.set(xlabel="layer l (l = 1: first pre-activation; last: readout)", ylabel="n · κ_l",
          title="n·κ_l: one curve for all widths, growing with depth")  # fmt: skip
    b.legend(fontsize=7)
    kap = save(fig, out_dir / "kurtosis.png")
    from scipy import stats

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    t = np.linspace(-6, 6, 241)
    for n in (int(ws[0]), int(ws[-1])):
        z = res.samples[n]
        axes[0].hist(z, bins=np.linspace(-6, 6, 61), density=True, histtype="step",
                     label=f"n = {n}")  # fmt: skip
        zs = np.sort(z)
        qn = stats.norm.ppf((np.arange(1, zs.size + 1) - 0.5) / zs.size)
        axes[1].plot(qn, zs, ".", ms=2, label=f"n = {n}")
    axes[0].plot(t, stats.norm.pdf(t), "k-", lw=0.8, label="N(0, 1) (the limit)")
    axes[0].set(yscale="log", ylim=(1e-5, 1), xlabel="readout unit / √E Σ",
                title=f"one unit across {cfg.n_nets} nets")  # fmt: skip
    axes[1].plot([-5, 5], [-5, 5], "k-", lw=0.8)
    axes[1].set(xlabel="N(0,1) quantile", ylabel="sample quantile", title="QQ across nets")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    hist = save(fig, out_dir / "histograms.png")
    return [
        Figure(
            kap,
            "Left: excess kurtosis of one unit across independently sampled nets (same "
            "input) against width, per layer, with fitted log-log slopes (± SE) and the 1/n "
            "rate. Right: n·κ_l against depth; the widths collapse onto one curve that grows "
            "with depth, approaching the 1/n theory's lim n·κ_l (dashed, the four-point "
            "recursion of widelimit.finite_width) as n grows.",
        ),
        Figure(
            hist,
            "The readout unit across nets at the smallest and largest width (log density and "
            "QQ) against N(0, 1): the heavier tails at small width are the O(1/n) kurtosis.",
        ),
    ]


def content(res: Result) -> PageContent:
    cfg = res.config
    rows = []
    for i, n in enumerate(cfg.widths):
        rows.append([int(n), float(res.kappa[i, -1]), float(res.kappa_se[i, -1]),
                     float(res.kappa_direct[i, -1]), float(res.kappa_direct_se[i, -1]),
                     *(float(n * k) for k in res.kappa[i, 1:])])  # fmt: skip
    slopes = [[f"layer {j + 2}", s, e, THEORY_RATE] for j, (s, e) in enumerate(res.slopes)]
    pk = res.n_kappa_predicted
    pred_rows = [
        [f"layer {j + 2}", pk[j + 1], a, se, (a - pk[j + 1]) / se, b, chi2]
        for j, (a, se, b, chi2) in enumerate(res.n_kappa_fit)
    ]
    pc = res.prediction
    return PageContent(
        title=TITLE,
        formula=(
            "Over random weights, one pre-activation h^l_i(x) converges to N(0, q^l(x)) as "
            "n → ∞, q^{l+1} = σw² E[φ(√q^l z)²] + σb². At finite width it is a Gaussian scale "
            "mixture N(0, Σ_l) with Σ_l = σw² (1/n) Σ_j φ(h^{l−1}_j)² + σb² random, so its "
            "excess kurtosis κ_l = 3 Var Σ_l/(E Σ_l)² is positive, O(1/n), and grows with "
            "depth (κ_1 = 0: the first layer is exactly Gaussian)."
        ),
        paragraphs=[
            f"Nets: {cfg.depth} hidden dense layers and a readout unit, φ = {cfg.activation}, "
            f"σw = {cfg.w_std}, σb = {cfg.b_std}, one input with q⁰ = 1; {cfg.n_nets} "
            "independent nets per width drawn with the exact layer sampler (given layer l−1 "
            "the units of layer l are i.i.d. N(0, Σ_l)). κ is measured from E Σ² and E Σ "
            "over nets (the conditional moments of h; its SE from the spread over nets); the "
            "direct route (one unit per net, m₄/m₂² − 3) agrees within its larger error.",
            f"The 1/n theory (widelimit.finite_width's four-point recursion) predicts "
            f"lim n·κ = {pc.theory:.4g} for the readout; the measured n·κ fitted as a + b/n "
            f"over the widths extrapolates to {pc.value:.4g} ± {pc.stderr:.2g}: "
            + ("agrees" if pc.ok else "DISAGREES")
            + f" within 3 SE (|z| = {abs(pc.value - pc.theory) / pc.stderr:.1f}). Every layer "
            "is in the table 'n·κ_l vs the 1/n theory'.",
            "A distance measured over the n units of one net (the previous version of this "
            "page) is not a test: given the previous layer those units are exactly Gaussian, "
            "so it shrinks like n^-1/2 for any theory.",
        ],
        falsified_by=(
            "a fitted slope of κ against width away from −1 by more than 3 SE (e.g. −½, the "
            "rate of n Gaussian draws, or 0, a non-Gaussian limit), n·κ_l not collapsing "
            "across widths, or the extrapolated n·κ of the readout away from the 1/n "
            "theory's lim n·κ by more than 3 SE."
        ),
        tables=[
            Table(
                "Readout unit across nets, and n·κ_l per layer",
                [
                    "width",
                    "κ (readout)",
                    "± se",
                    "κ direct",
                    "± se",
                    *(f"n·κ layer {j}" for j in range(2, cfg.depth + 2)),
                ],
                rows,
            ),
            Table("Fitted slopes of κ_l vs width", ["layer", "slope", "± se", "theory"], slopes),
            Table(
                "n·κ_l vs the 1/n theory: weighted fit n·κ_l = a + b/n over the widths",
                ["layer", "predicted lim n·κ_l", "fitted a", "± se", "z", "b", "χ²/dof"],
                pred_rows,
            ),
        ],
        published=[],
    )
