"""Page 5 — the NTK and lazy training (Jacot et al. 2018; Lee et al. 2019).

Numbers: analytic NTKs (``net.kernel(..., get="ntk")``), empirical NTKs of finite modules
(:func:`widelimit.empirical_ntk`), linearised nets (:func:`widelimit.linearize`) and the
closed-form gradient flow (:func:`widelimit.gradient_descent_mse`).

Training: full-batch gradient descent on ``½·mean (f − y)²`` with step ``η`` for ``K`` steps,
which compares with gradient flow at ``t = K·η`` (the library's time convention).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from widelimit.atlas.core import (
    Figure,
    Headline,
    PageContent,
    Published,
    Table,
    circle,
    mpl,
    save,
)
from widelimit.progress import progress_bar

__all__ = ["Config", "Result", "compute", "content", "figures", "train_gd"]

SLUG = "ntk"
TITLE = "NTK and lazy training"


@dataclass(frozen=True)
class Config:
    w_std: float = 1.4
    b_std: float = 0.1  # Jacot et al. 2018 Fig. 1: β = 0.1
    hidden_layers: int = 3  # Jacot et al. 2018 Fig. 1: L = 4 (three hidden layers)
    n_sweep: int = 64
    n_train: int = 8
    jacot_widths: tuple[int, ...] = (500, 2000)  # paper: 500 and 10,000
    jacot_seeds: int = 3
    lee_hidden_layers: int = 2
    lee_widths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
    lee_seeds: int = 3
    steps: int = 200
    lr_factor: float = 0.5  # η = lr_factor · N / λ_max(Θ)
    n_checkpoints: int = 9
    seed: int = 0

    @classmethod
    def quick(cls) -> Config:
        return cls(
            n_sweep=32,
            jacot_widths=(100, 500),
            jacot_seeds=2,
            lee_widths=(32, 128, 512),
            lee_seeds=3,
            steps=60,
        )


@dataclass(frozen=True)
class Result:
    config: Config
    gamma: np.ndarray  # (S,) sweep angles; inputs (cos γ, sin γ)
    gamma_train: np.ndarray  # (N,) training angles
    ntk_limit: np.ndarray  # (S,) analytic Θ(x₀, x(γ)), x₀ = (1, 0)
    ntk_init: dict[int, np.ndarray]  # width -> (seeds, S) empirical Θ at init
    ntk_trained: dict[int, np.ndarray]  # width -> (seeds, S) after training
    learning_rate: float
    times: np.ndarray  # (C,) checkpoint times t = k·η
    f_net: dict[int, np.ndarray]  # width -> (seeds, C, S) finite net on the sweep
    f_lin: dict[int, np.ndarray]  # same, the linearised net
    f_ntk: dict[int, np.ndarray]  # same, analytic-NTK gradient flow from the net's f₀
    dist_lin: dict[int, list[float]]  # width -> per seed sup_t RMS_x |f − f_lin|
    dist_ntk: dict[int, list[float]]  # width -> per seed sup_t RMS_x |f − f_ntk|
    slope_lin: tuple[float, float]  # (slope, se) of mean dist_lin vs width
    slope_ntk: tuple[float, float]
    ntk_init_err: dict[int, float]  # width -> mean relative error of Θ_init vs limit
    headline: Headline
    seconds: float


def _net(cfg: Config, hidden_layers: int):
    from widelimit import Dense, ReLU, serial

    layers = []
    for _ in range(hidden_layers):
        layers += [Dense(512, w_std=cfg.w_std, b_std=cfg.b_std), ReLU()]
    return serial(*layers, Dense(1, w_std=cfg.w_std, b_std=cfg.b_std))


def train_gd(
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    lr: float,
    steps: int,
    x_eval: torch.Tensor,
    record: set[int],
) -> dict[int, torch.Tensor]:
    """Full-batch GD on ``½·mean (f − y)²``; ``{step: module(x_eval)}`` at the ``record`` steps."""
    params = [p for p in module.parameters() if p.requires_grad]
    out = {}
    for k in range(steps + 1):
        if k in record:
            with torch.no_grad():
                out[k] = module(x_eval).detach().clone()
        if k == steps:
            break
        loss = 0.5 * ((module(x) - y) ** 2).mean()
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                p.sub_(lr * g)
    return out


def compute(cfg: Config | None = None, *, progress: bool = True) -> Result:
    from widelimit import empirical_ntk, gradient_descent_mse, linearize
    from widelimit.atlas.core import loglog_slope

    cfg = cfg or Config()
    t0 = time.perf_counter()
    net, lee_net = _net(cfg, cfg.hidden_layers), _net(cfg, cfg.lee_hidden_layers)
    gamma = np.linspace(-np.pi, np.pi, cfg.n_sweep, endpoint=False)
    rng = np.random.default_rng(cfg.seed)
    g_tr = np.sort(rng.uniform(-np.pi, np.pi, cfg.n_train))
    x, x_tr = circle(gamma), circle(g_tr)
    y_tr = torch.tensor(np.sin(2 * g_tr) + 0.5 * np.cos(g_tr), dtype=torch.float64)[:, None]
    x0 = circle(np.array([0.0]))
    limit = net.kernel(x0, x, get="ntk").ntk[0].numpy()
    theta_tr = lee_net.kernel(x_tr, get="ntk").ntk
    k_sweep_tr = lee_net.kernel(x, x_tr, get="ntk").ntk
    lam = float(torch.linalg.eigvalsh(theta_tr)[-1])
    lr = cfg.lr_factor * y_tr.numel() / lam
    flow = gradient_descent_mse(theta_tr, y_tr)
    ck = sorted({round(v) for v in np.linspace(0, cfg.steps, cfg.n_checkpoints)})
    times = np.array(ck) * lr
    f32 = torch.float32
    ntk_init, ntk_trained = {}, {}
    f_net, f_lin, f_ntk, d_lin, d_ntk = {}, {}, {}, {}, {}
    jobs = len(cfg.jacot_widths) * cfg.jacot_seeds + len(cfg.lee_widths) * cfg.lee_seeds
    with progress_bar(progress) as bar:
        task = bar.add_task("NTK page: finite nets", total=jobs)
        # Jacot et al. 2018, Fig. 1: Θ(x₀, x(γ)) at init and after training, two widths
        for n in cfg.jacot_widths:
            a, b = [], []
            for s in range(cfg.jacot_seeds):
                m = net.module(n, input_shape=2, seed=cfg.seed + s, dtype=f32)
                a.append(empirical_ntk(m, x0.to(f32), x.to(f32))[0].double().numpy())
                train_gd(m, x_tr.to(f32), y_tr.to(f32), lr, cfg.steps, x0.to(f32), set())
                b.append(empirical_ntk(m, x0.to(f32), x.to(f32))[0].double().numpy())
                bar.advance(task)
            ntk_init[n], ntk_trained[n] = np.stack(a), np.stack(b)
        # Lee et al. 2019: net vs its linearisation vs the analytic-NTK flow
        for n in cfg.lee_widths:
            fn, fl, fk, dl, dk = [], [], [], [], []
            for s in range(cfg.lee_seeds):
                # float32 (as the demo): round-off ~1e-6 ≪ the differences measured here
                m = lee_net.module(n, input_shape=2, seed=1000 + cfg.seed + s, dtype=f32)
                lin = linearize(m)
                with torch.no_grad():
                    f0_tr, f0 = m(x_tr.to(f32)).double(), m(x.to(f32)).double()
                rec = set(ck)
                a = train_gd(m, x_tr.to(f32), y_tr.to(f32), lr, cfg.steps, x.to(f32), rec)
                b = train_gd(lin, x_tr.to(f32), y_tr.to(f32), lr, cfg.steps, x.to(f32), rec)
                an = torch.stack([a[k][:, 0] for k in ck]).double().numpy()
                bn = torch.stack([b[k][:, 0] for k in ck]).double().numpy()
                pred = flow(torch.tensor(times), f0_tr, f0, k_sweep_tr).test[..., 0].numpy()
                fn.append(an), fl.append(bn), fk.append(pred)
                dl.append(float(np.sqrt(((an - bn) ** 2).mean(-1)).max()))
                dk.append(float(np.sqrt(((an - pred) ** 2).mean(-1)).max()))
                bar.advance(task)
            f_net[n], f_lin[n], f_ntk[n] = np.stack(fn), np.stack(fl), np.stack(fk)
            d_lin[n], d_ntk[n] = dl, dk
    ws = list(cfg.lee_widths)

    def fit(d: dict[int, list[float]]) -> tuple[float, float]:
        mean = [float(np.mean(d[n])) for n in ws]
        se = [float(np.std(d[n], ddof=1) / np.sqrt(len(d[n]))) for n in ws]
        return loglog_slope(ws, mean, se)

    s_lin, s_ntk = fit(d_lin), fit(d_ntk)
    init_err = {
        n: float(np.mean(np.linalg.norm(v - limit, axis=1) / np.linalg.norm(limit)))
        for n, v in ntk_init.items()
    }
    head = Headline(
        name="log-log slope of sup_t RMS |f_net − f_lin| (trained net vs its linearisation) "
        "vs width",
        value=s_lin[0],
        theory=-0.5,
        stderr=s_lin[1],
        tolerance=3 * s_lin[1],
        rule="a bound: Lee et al. 2019 Thm 2.1 gives sup_t |f − f_lin| = O(n^-1/2), so the "
        "slope must be ≤ −½ up to 3 standard errors of the fit (seed spread)",
        kind="max",
    )
    return Result(
        cfg,
        gamma,
        g_tr,
        limit,
        ntk_init,
        ntk_trained,
        lr,
        times,
        f_net,
        f_lin,
        f_ntk,
        d_lin,
        d_ntk,
        s_lin,
        s_ntk,
        init_err,
        head,
        time.perf_counter() - t0,
    )


def figures(res: Result, out_dir: Path) -> list[Figure]:
    plt = mpl()
    ws = sorted(res.ntk_init)
    fig, axes = plt.subplots(1, len(ws), figsize=(5 * len(ws), 3.6), sharey=True)
    for ax, n in zip(np.atleast_1d(axes), ws, strict=True):
        for i, (a, b) in enumerate(zip(res.ntk_init[n], res.ntk_trained[n], strict=True)):
            ax.plot(res.gamma, a, "C0-", lw=0.8, label="init" if i == 0 else None)
            ax.plot(res.gamma, b, "C1--", lw=0.8, label="after training" if i == 0 else None)
        ax.plot(res.gamma, res.ntk_limit, "k-", lw=1.5, label="limit n → ∞")
        ax.set(title=f"n = {n}", xlabel="γ   (x = (cos γ, sin γ), x₀ = (1, 0))")
        ax.legend(fontsize=7)
    np.atleast_1d(axes)[0].set_ylabel("Θ(x₀, x)")
    fig.suptitle(
        "Jacot et al. 2018, Fig. 1: the NTK at two widths, at init and after training", fontsize=9
    )
    jacot = save(fig, out_dir / "jacot_fig1.png")
    ws = sorted(res.f_net)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    n = ws[-1]
    for k, t in enumerate(res.times):
        if k in (1, len(res.times) // 2, len(res.times) - 1):
            a.plot(res.gamma, res.f_net[n][0, k], "-", lw=1, label=f"net, t={t:.3g}")
            a.plot(res.gamma, res.f_lin[n][0, k], "k:", lw=1)
            a.plot(res.gamma, res.f_ntk[n][0, k], "--", lw=0.8, color="0.5")
    a.plot(
        res.gamma_train,
        np.sin(2 * res.gamma_train) + 0.5 * np.cos(res.gamma_train),
        "ko",
        ms=4,
        label="training points",
    )
    a.set(
        xlabel="γ",
        ylabel="f",
        title=f"n = {n}: net (solid), linearised (dotted), NTK flow (dashed)",
    )
    a.legend(fontsize=7)
    for d, lab, (sl, se) in (
        (res.dist_lin, "|f − f_lin|", res.slope_lin),
        (res.dist_ntk, "|f − f_NTK flow|", res.slope_ntk),
    ):
        m = [np.mean(d[w]) for w in ws]
        e = [np.std(d[w], ddof=1) / np.sqrt(len(d[w])) for w in ws]
        b.errorbar(ws, m, yerr=e, marker="o", capsize=2, label=f"{lab}: slope {sl:.2f} ± {se:.2f}")
    b.plot(
        ws, np.mean(res.dist_lin[ws[0]]) * (np.asarray(ws) / ws[0]) ** -0.5, "k:", label="n^-1/2"
    )
    b.set_xscale("log")
    b.set_xticks(ws, [str(w) for w in ws], minor=False)
    b.minorticks_off()
    b.set(
        yscale="log",
        xlabel="width n",
        ylabel="sup_t RMS over the circle",
        title="Lee et al. 2019: distance to the linear model",
    )
    b.legend(fontsize=7)
    lee = save(fig, out_dir / "lee_linearisation.png")
    return [
        Figure(
            jacot,
            "Empirical NTK Θ(x₀, x(γ)) of ReLU nets with 3 hidden layers on unit-circle "
            "inputs, several initialisations, at initialisation and after gradient descent, "
            "against the analytic limit: the wider net's kernel is closer to the limit and "
            "moves less.",
        ),
        Figure(
            lee,
            "Left: a trained net, its linearisation (widelimit.linearize, same init, "
            "same GD) and the analytic-NTK gradient flow from the same initial outputs. Right: "
            "their distances against width (mean ± se over seeds).",
        ),
    ]


def content(res: Result) -> PageContent:
    cfg = res.config
    ws = sorted(res.f_net)
    rows = [[n, float(np.mean(res.dist_lin[n])), float(np.mean(res.dist_ntk[n]))] for n in ws]
    init_rows = [[n, e] for n, e in sorted(res.ntk_init_err.items())]
    return PageContent(
        title=TITLE,
        formula=(
            "Under gradient flow f evolves as ∂_t f = −Θ_t (f − y)/n_targets with the neural "
            "tangent kernel Θ_t(x, x') = ∇_θ f(x)·∇_θ f(x'); as the width n → ∞, Θ_t stays at "
            "its deterministic limit Θ (Jacot et al. 2018), and the net follows its "
            "linearisation f_lin(x; θ) = f(x; θ₀) + J(x; θ₀)(θ − θ₀) (Lee et al. 2019)."
        ),
        paragraphs=[
            f"Jacot part: Dense → ReLU × {cfg.hidden_layers} → Dense(1), σw = {cfg.w_std}, "
            f"σb = {cfg.b_std}, NTK parameterization, {cfg.jacot_seeds} initialisations per "
            f"width. Lee part: {cfg.lee_hidden_layers} hidden ReLU layers; {cfg.n_train} "
            f"training points on the circle, targets sin 2γ + ½ cos γ; full-batch GD, "
            f"{cfg.steps} steps of η = {res.learning_rate:.3g} (t = K·η); {cfg.lee_seeds} "
            "seeds per width; float32 nets. The NTK-flow distance also contains the O(η) "
            "difference between discrete GD and gradient flow, which does not shrink with n.",
        ],
        tables=[
            Table(
                "Distances during training (sup over checkpoints of RMS over the circle)",
                ["width", "|f − f_lin|", "|f − f_NTK flow|"],
                rows,
            ),
            Table(
                "Empirical NTK at init vs the limit", ["width", "‖Θ_n − Θ‖/‖Θ‖ (mean)"], init_rows
            ),
        ],
        published=[
            Published(
                "NTK at init and after training",
                "n = 500 and n = 10,000 (4 layers, ReLU, β = 0.1)",
                "Jacot et al. 2018, Fig. 1",
                f"n = {list(cfg.jacot_widths)}",
                "smaller widths on 2 CPU cores; our training set and step count differ",
            ),
            Published(
                "|f − f_lin| vs width",
                "O(n^-1/2) (Thm 2.1)",
                "Lee et al. 2019",
                f"slope {res.slope_lin[0]:.2f} ± {res.slope_lin[1]:.2f}",
                "widths and task differ; the theorem is a bound",
            ),
        ],
    )
