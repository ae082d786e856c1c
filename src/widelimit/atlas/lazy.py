"""Page 12 — lazy vs feature learning: the output-scale α sweep (Chizat, Oyallon, Bach 2019).

One finite net ``f(w; x)`` (``spec.module(width)``, NTK parameterization) at a fixed width is
trained as the model ``h_α(w; x) = α·(f(w; x) − f(w₀; x))`` (centred, so ``h_α(w₀) = 0``) on
the loss ``F_α(w) = ½·mean (h_α − y)²/α²`` by full-batch gradient descent with a step ``η``
that does not depend on α (the paper's scaling; the same as step ``η/α²`` on the unscaled
loss). Then ``d h_α/dt = −η Θ̂(w) (h_α − y)/N`` with the empirical NTK ``Θ̂`` of ``f``: the
function-space dynamics at initialisation are the same for every α, while the weights must
move only ``O(1/α)`` to change ``h_α`` by ``O(1)``.

Measured per α (several initialisations): the relative weight movement ``‖w_T − w₀‖/‖w₀‖``,
the relative change of the empirical NTK of ``f`` on the training inputs
``‖Θ̂_T − Θ̂₀‖_F/‖Θ̂₀‖_F`` (:func:`widelimit.empirical_ntk`), the training and test loss, and
the RMS distance on the test inputs between ``h_α`` and the linearised model trained the same
way (the ntk page's :func:`kernel_gd` with ``Θ̂₀``; independent of α).

Theory (large α, the lazy regime): movement, NTK change and distance to the linearised model
all ``∝ 1/α`` (Chizat et al. 2019, §2: bounds of order 1/α; theorem numbers unverified);
small α: the weights and the NTK move ``O(1)`` (non-lazy, feature learning).

Headline: the log-log slope of the weight movement against α over the lazy range
(``α ≥ lazy_from``), fitted per initialisation, mean ± SE over initialisations, against −1
(two-sided, 3 SE).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from widelimit.atlas.core import Figure, Headline, PageContent, Published, Table, mpl, save
from widelimit.progress import progress_bar

__all__ = [
    "Config",
    "Result",
    "compute",
    "content",
    "figures",
    "movement_headline",
    "per_seed_slopes",
    "train_scaled",
]

SLUG = "lazy"
TITLE = "Lazy vs feature learning: the output scale α"


@dataclass(frozen=True)
class Config:
    width: int = 256
    w_std: float = 1.5
    b_std: float = 0.1
    dim: int = 5
    n_train: int = 32
    n_test: int = 128
    alphas: tuple[float, ...] = tuple(float(a) for a in np.logspace(-1.5, 3, 10))
    lazy_from: float = 10.0  # the headline's fit uses α ≥ lazy_from
    seeds: int = 6
    steps: int = 300
    lr_factor: float = 0.5  # η = lr_factor · N / λ_max(Θ̂₀) of each net
    width_sweep: tuple[int, ...] = (64, 256, 1024)  # the contrast: width at α = 1
    seed: int = 0

    @classmethod
    def quick(cls) -> Config:
        return cls(alphas=tuple(float(a) for a in np.logspace(-1.5, 3, 7)), seeds=3, steps=150)


@dataclass(frozen=True)
class Result:
    config: Config
    alphas: np.ndarray  # (A,)
    learning_rate: np.ndarray  # (S,) each net's η
    move: np.ndarray  # (S, A) ‖w_T − w₀‖/‖w₀‖
    move_layer: np.ndarray  # (S, A, L) per layer (weights and bias of one Dense)
    ntk_change: np.ndarray  # (S, A) ‖Θ̂_T − Θ̂₀‖/‖Θ̂₀‖ (training inputs)
    train_loss: np.ndarray  # (S, A) ½·mean (h_α − y)² at step T
    test_loss: np.ndarray  # (S, A)
    lin_train_loss: np.ndarray  # (S,) the linearised model (independent of α)
    lin_test_loss: np.ndarray  # (S,)
    dist_lin: np.ndarray  # (S, A) RMS over test inputs of h_α − h_lin
    slopes: dict[str, tuple[float, float]]  # quantity -> (mean per-seed slope, se), lazy range
    width_move: np.ndarray  # (S, W) ‖w_T − w₀‖/‖w₀‖ at α = 1 against width_sweep
    width_ntk_change: np.ndarray  # (S, W)
    width_slopes: dict[str, tuple[float, float]]  # per-seed log-log slopes vs width, mean ± se
    headline: Headline
    seconds: float


def _net(cfg: Config):
    from widelimit import Dense, Tanh, serial

    return serial(
        Dense(512, w_std=cfg.w_std, b_std=cfg.b_std),
        Tanh(),
        Dense(1, w_std=cfg.w_std, b_std=cfg.b_std),
    )


def train_scaled(
    module: nn.Module,
    alpha: float,
    x: torch.Tensor,
    y: torch.Tensor,
    lr: float,
    steps: int,
) -> nn.Module:
    """Gradient descent with step ``lr`` on ``F_α(w) = ½·mean (α(f(w; x) − f(w₀; x)) − y)²/α²``
    (Chizat et al. 2019's scaled model and loss), in place; ``x (N, d)``, ``y (N,)``.
    Returns ``module``."""
    params = [p for p in module.parameters() if p.requires_grad]
    with torch.no_grad():
        f0 = module(x)[:, 0].clone()
    for _ in range(steps):
        loss = 0.5 * ((alpha * (module(x)[:, 0] - f0) - y) ** 2).mean() / alpha**2
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                p.sub_(lr * g)
    return module


def per_seed_slopes(alphas, values: np.ndarray, lazy_from: float) -> np.ndarray:
    """Least-squares log-log slope of ``values (S, A)`` against ``alphas (A,)`` for each row,
    over the α ≥ ``lazy_from``. Returns ``(S,)``."""
    a = np.asarray(alphas, dtype=float)
    keep = a >= lazy_from
    if keep.sum() < 2:
        raise ValueError(f"need at least two α ≥ lazy_from = {lazy_from}; got {a.tolist()}")
    lx = np.log(a[keep])
    return np.array([np.polyfit(lx, np.log(v[keep]), 1)[0] for v in np.asarray(values)])


def movement_headline(
    alphas, move: np.ndarray, lazy_from: float, *, theory: float = -1.0
) -> Headline:
    """The page's check: the log-log slope of the relative weight movement against α over the
    lazy range, fitted per initialisation (rows of ``move (S, A)``), mean ± SE over
    initialisations, against ``theory`` (−1: movement ∝ 1/α); agrees iff within 3 SE."""
    s = per_seed_slopes(alphas, move, lazy_from)
    se = float(s.std(ddof=1) / np.sqrt(len(s)))
    return Headline(
        name=f"log-log slope of the relative weight movement ‖w_T − w₀‖/‖w₀‖ vs α (α ≥ "
        f"{lazy_from:g})",
        value=float(s.mean()),
        theory=float(theory),
        stderr=se,
        tolerance=3 * se,
        rule="3 standard errors (slope fitted per initialisation; SE from their spread)",
    )


def _flat(module: nn.Module) -> list[torch.Tensor]:
    """Parameters grouped per layer (weight and bias of one Dense), flattened."""
    groups: dict[str, list[torch.Tensor]] = {}
    for name, p in module.named_parameters():
        groups.setdefault(name.rsplit(".", 1)[0], []).append(p.detach().reshape(-1))
    return [torch.cat(v) for v in groups.values()]


def compute(cfg: Config | None = None, *, progress: bool = True) -> Result:
    from widelimit import empirical_ntk
    from widelimit.atlas.ntk import kernel_gd

    cfg = cfg or Config()
    t0 = time.perf_counter()
    net = _net(cfg)
    rng = np.random.default_rng(cfg.seed)

    def inputs(k: int) -> torch.Tensor:  # on the sphere of radius √d: entries O(1)
        z = rng.standard_normal((k, cfg.dim))
        return torch.tensor(z / np.linalg.norm(z, axis=1, keepdims=True) * np.sqrt(cfg.dim))

    x, xt = inputs(cfg.n_train), inputs(cfg.n_test)
    teacher = lambda z: torch.tanh(2 * z[:, 0]) + 0.5 * z[:, 1] * z[:, 2]  # noqa: E731
    y, yt = teacher(x), teacher(xt).numpy()
    a_all = np.asarray(cfg.alphas, dtype=float)
    shape = (cfg.seeds, len(a_all))
    move, change, tr, te, dl = (np.empty(shape) for _ in range(5))
    move_l = np.empty((*shape, 2))
    lrs, lin_tr, lin_te = (np.empty(cfg.seeds) for _ in range(3))
    w_move, w_change = (np.empty((cfg.seeds, len(cfg.width_sweep))) for _ in range(2))
    with progress_bar(progress) as bar:
        runs = cfg.seeds * (len(a_all) + len(cfg.width_sweep))
        task = bar.add_task("lazy page: α sweep", total=runs)
        for s in range(cfg.seeds):
            seed = cfg.seed + 1000 + s
            m0 = net.module(cfg.width, input_shape=cfg.dim, seed=seed, dtype=torch.float64)
            th0 = empirical_ntk(m0, x).double().numpy()
            th0_x = empirical_ntk(m0, xt, x).double().numpy()
            lr = cfg.lr_factor * cfg.n_train / float(np.linalg.eigvalsh(th0)[-1])
            lrs[s] = lr
            w0 = _flat(m0)
            w0_all = torch.cat(w0)
            with torch.no_grad():
                f0, f0t = m0(x)[:, 0].clone(), m0(xt)[:, 0].clone()
            # the linearised model h_lin = J₀ (w − w₀) under the same GD: α-independent
            n_tr, n_te = cfg.n_train, cfg.n_test
            h_lin = kernel_gd(
                th0,
                np.vstack([th0, th0_x]),
                np.zeros(n_tr),
                np.zeros(n_tr + n_te),
                y.numpy(),
                lr,
                [cfg.steps],
            )[0]
            lin_tr[s] = 0.5 * np.mean((h_lin[:n_tr] - y.numpy()) ** 2)
            lin_te[s] = 0.5 * np.mean((h_lin[n_tr:] - yt) ** 2)
            for j, a in enumerate(a_all):
                m = net.module(cfg.width, input_shape=cfg.dim, seed=seed, dtype=torch.float64)
                train_scaled(m, a, x, y, lr, cfg.steps)
                w = _flat(m)
                move[s, j] = float(torch.cat(w).sub(w0_all).norm() / w0_all.norm())
                move_l[s, j] = [(u - v).norm() / v.norm() for u, v in zip(w, w0, strict=True)]
                th = empirical_ntk(m, x).double().numpy()
                change[s, j] = float(np.linalg.norm(th - th0) / np.linalg.norm(th0))
                with torch.no_grad():
                    h_tr = (a * (m(x)[:, 0] - f0)).numpy()
                    h_te = (a * (m(xt)[:, 0] - f0t)).numpy()
                tr[s, j] = 0.5 * np.mean((h_tr - y.numpy()) ** 2)
                te[s, j] = 0.5 * np.mean((h_te - yt) ** 2)
                dl[s, j] = float(np.sqrt(np.mean((h_te - h_lin[n_tr:]) ** 2)))
                bar.advance(task, 1)
            # the contrast: at α = 1, width makes training lazy (NTK parameterization)
            for j, n in enumerate(cfg.width_sweep):
                m = net.module(n, input_shape=cfg.dim, seed=seed, dtype=torch.float64)
                w0n = torch.cat(_flat(m))
                th0n = empirical_ntk(m, x).double().numpy()
                lr_n = cfg.lr_factor * cfg.n_train / float(np.linalg.eigvalsh(th0n)[-1])
                train_scaled(m, 1.0, x, y, lr_n, cfg.steps)
                w_move[s, j] = float((torch.cat(_flat(m)) - w0n).norm() / w0n.norm())
                th = empirical_ntk(m, x).double().numpy()
                w_change[s, j] = float(np.linalg.norm(th - th0n) / np.linalg.norm(th0n))
                bar.advance(task, 1)
    slopes = {}
    for key, v in (("move", move), ("ntk_change", change), ("dist_lin", dl)):
        sl = per_seed_slopes(a_all, v, cfg.lazy_from)
        slopes[key] = (float(sl.mean()), float(sl.std(ddof=1) / np.sqrt(len(sl))))
    head = movement_headline(a_all, move, cfg.lazy_from)
    w_slopes = {}
    for key, v in (("move", w_move), ("ntk_change", w_change)):
        sl = per_seed_slopes(cfg.width_sweep, v, 0.0)
        w_slopes[key] = (float(sl.mean()), float(sl.std(ddof=1) / np.sqrt(len(sl))))
    return Result(
        cfg,
        a_all,
        lrs,
        move,
        move_l,
        change,
        tr,
        te,
        lin_tr,
        lin_te,
        dl,
        slopes,
        w_move,
        w_change,
        w_slopes,
        head,
        time.perf_counter() - t0,
    )


def _mean_se(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return v.mean(0), v.std(0, ddof=1) / np.sqrt(len(v))


def figures(res: Result, out_dir: Path) -> list[Figure]:
    plt = mpl()
    cfg, a = res.config, res.alphas
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 3.9))
    for i, (key, lab) in enumerate(
        (
            ("move", "‖w_T − w₀‖/‖w₀‖ (headline)"),
            ("ntk_change", "‖Θ̂_T − Θ̂₀‖/‖Θ̂₀‖"),
            ("dist_lin", "RMS |h_α − h_lin| (test)"),
        )
    ):
        m, e = _mean_se(getattr(res, key))
        s, se = res.slopes[key]
        ax.errorbar(
            a,
            m,
            yerr=e,
            marker="o",
            ms=3,
            capsize=2,
            color=f"C{i}",
            label=f"{lab}: slope {s:.5f} ± {se:.1e}",
        )
        ref = a >= cfg.lazy_from
        ax.plot(a, m[ref][-1] * a[ref][-1] / a, ":", color=f"C{i}", lw=0.8)
    ax.axvspan(cfg.lazy_from, a.max() * 1.5, color="0.93", label="fitted (lazy) range")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="output scale α",
        ylabel="relative change / distance",
        title=f"width {cfg.width}: dotted lines ∝ 1/α",
    )
    ax.legend(fontsize=6)
    for i, (key, lin, lab) in enumerate(
        (
            ("train_loss", res.lin_train_loss, "training loss"),
            ("test_loss", res.lin_test_loss, "test loss"),
        )
    ):
        m, e = _mean_se(getattr(res, key))
        bx.errorbar(a, m, yerr=e, marker="o", ms=3, capsize=2, color=f"C{i}", label=f"net: {lab}")
        bx.axhline(
            float(lin.mean()), color=f"C{i}", ls="--", lw=1, label=f"linearised model: {lab}"
        )
    bx.set(
        xscale="log",
        yscale="log",
        xlabel="output scale α",
        ylabel="½·mean (h − y)² after training",
        title=f"after {cfg.steps} GD steps (mean ± se over {cfg.seeds} nets)",
    )
    bx.legend(fontsize=6)
    sweep = save(fig, out_dir / "lazy_alpha_sweep.png")
    fig, (cx, dx) = plt.subplots(1, 2, figsize=(11, 3.6))
    for layer in range(res.move_layer.shape[-1]):
        m, e = _mean_se(res.move_layer[..., layer])
        cx.errorbar(a, m, yerr=e, marker="o", ms=3, capsize=2, label=f"layer {layer + 1}")
    cx.axhline(1.0, color="k", lw=0.8, ls=":", label="movement = ‖w₀‖ (O(1))")
    cx.set(xscale="log", yscale="log", xlabel="output scale α",
           ylabel="‖w_T − w₀‖/‖w₀‖ per layer", title="which weights move")  # fmt: skip
    cx.legend(fontsize=7)
    ns = np.asarray(cfg.width_sweep)
    for i, (v, lab, key) in enumerate(
        (
            (res.width_move, "‖w_T − w₀‖/‖w₀‖", "move"),
            (res.width_ntk_change, "‖Θ̂_T − Θ̂₀‖/‖Θ̂₀‖", "ntk_change"),
        )
    ):
        m, e = _mean_se(v)
        s, se = res.width_slopes[key]
        dx.errorbar(ns, m, yerr=e, marker="o", ms=3, capsize=2, color=f"C{i}",
                    label=f"{lab}: slope {s:.3f} ± {se:.3f}")  # fmt: skip
        dx.plot(ns, m[0] * (ns / ns[0]) ** -0.5, ":", color=f"C{i}", lw=0.8)
    dx.set(xscale="log", yscale="log", xlabel="width n (α = 1)", ylabel="relative change",
           title="contrast: width at α = 1 (dotted ∝ n^-½)")  # fmt: skip
    dx.set_xticks(ns, [str(n) for n in ns], minor=False)
    dx.minorticks_off()
    dx.legend(fontsize=7)
    layers = save(fig, out_dir / "lazy_layers.png")
    return [
        Figure(
            sweep,
            "Left: relative weight movement, relative change of the empirical NTK (training "
            "inputs) and distance of the trained model from its linearisation, against the "
            "output scale α (mean ± se over initialisations; slopes fitted per initialisation "
            "over the shaded range). Right: training and test loss of the net and of its "
            "linearisation trained the same way (which does not depend on α).",
        ),
        Figure(
            layers,
            "Left: relative movement of each layer's weights and biases against α: at small α "
            "they move by O(1) of their initial size (features are learned), at large α by "
            "O(1/α). Right: the contrast — at α = 1, widening the net (NTK parameterization) "
            "makes training lazy too: the weights and the NTK move like n^-½ (so width n acts "
            "like α ≈ √n).",
        ),
    ]


def content(res: Result) -> PageContent:
    cfg, a = res.config, res.alphas
    rows = []
    for j, al in enumerate(a):
        rows.append(
            [
                float(al),
                float(res.move[:, j].mean()),
                float(res.ntk_change[:, j].mean()),
                float(res.dist_lin[:, j].mean()),
                float(res.train_loss[:, j].mean()),
                float(res.test_loss[:, j].mean()),
            ]
        )
    slope_rows = [
        ["‖w_T − w₀‖/‖w₀‖ (headline)", *res.slopes["move"], -1.0],
        ["‖Θ̂_T − Θ̂₀‖/‖Θ̂₀‖", *res.slopes["ntk_change"], -1.0],
        ["RMS |h_α − h_lin| on test inputs", *res.slopes["dist_lin"], -1.0],
    ]
    slope_rows = [[*r, "yes" if abs(r[1] - r[3]) <= 3 * r[2] else "no"] for r in slope_rows]
    h = res.headline
    j0 = 0  # the smallest α
    return PageContent(
        title=TITLE,
        formula=(
            "Model h_α(w) = α (f(w) − f(w₀)), loss F_α(w) = ½·mean (h_α − y)²/α², gradient "
            "descent w ← w − η ∇F_α(w): dh_α/dt = −η Θ̂(w)(h_α − y)/N with the empirical NTK "
            "Θ̂ of f, so the function-space dynamics at init do not depend on α, while "
            "‖w_T − w₀‖ = O(1/α): as α → ∞ the net trains as its linearisation and its NTK "
            "stays at Θ̂₀ (lazy training, Chizat, Oyallon, Bach 2019); at small α the weights "
            "and the NTK move by O(1)."
        ),
        paragraphs=[
            f"Net: Dense → Tanh → Dense(1), width {cfg.width}, σw = {cfg.w_std}, σb = "
            f"{cfg.b_std}, NTK parameterization (spec.module(width), float64), "
            f"{cfg.seeds} initialisations; the same initialisation is trained at every α. "
            f"Data: {cfg.n_train} training and {cfg.n_test} test inputs uniform on the sphere "
            f"of radius √{cfg.dim} in d = {cfg.dim}, teacher y = tanh(2x₁) + ½x₂x₃. GD for "
            f"{cfg.steps} steps with each net's own η = {cfg.lr_factor}·N/λ_max(Θ̂₀) (mean "
            f"{float(res.learning_rate.mean()):.3g}), the same at every α (the scaled loss "
            "carries the 1/α²; equivalently step η/α² on the unscaled loss).",
            "Why −1 (ours, the argument of Chizat et al. §2): the linearised model reaches "
            "h_lin with w − w₀ = Δw₁/α exactly; the net's movement is Δw₁/α + O(1/α²), so "
            "log ‖w_T − w₀‖ has slope −1 up to O(1/α) corrections whose sign varies between "
            "initialisations; the NTK change is linear in the movement (O(1/α)) and the "
            "distance to the linearisation is α times a second-order term, α·O(1/α²) = O(1/α).",
            f"Small α (non-lazy): at α = {a[j0]:.3g} the weights moved by "
            f"{float(res.move[:, j0].mean()):.3g} of their initial norm and the NTK by "
            f"{float(res.ntk_change[:, j0].mean()):.3g} of its own (O(1): features are learned); "
            f"the training loss after {cfg.steps} steps is "
            f"{float(res.train_loss[:, j0].mean()):.3g} against "
            f"{float(res.lin_train_loss.mean()):.3g} for the linearisation, and the test loss "
            f"{float(res.test_loss[:, j0].mean()):.3g} against "
            f"{float(res.lin_test_loss.mean()):.3g}. Whether feature learning helps the test "
            "loss depends on the task; on this one the table shows by how much.",
            f"Contrast with width (widths {list(cfg.width_sweep)}, α = 1): in the NTK "
            "parameterization ‖w₀‖ grows like √n while the movement needed to fit the data stays "
            "O(1), so the relative movement falls like n^-½ (ours): slope "
            f"{res.width_slopes['move'][0]:.3f} ± {res.width_slopes['move'][1]:.3f}; the NTK "
            f"change {res.width_slopes['ntk_change'][0]:.3f} ± "
            f"{res.width_slopes['ntk_change'][1]:.3f} (the ntk page finds local slopes below "
            "−½ at these widths: an n^-1 term). Width n thus plays the part of α ≈ √n; the "
            "mean-field parameterization, which keeps features moving as n grows, is on the "
            "meanfield page.",
            f"Headline: slope {h.value:.6f} ± {h.stderr:.1e} (theory −1). The SE is tiny "
            "because the lazy regime is so well described by the linearisation: a 3-SE "
            "tolerance of this size also rejects a slope off by 0.1 %.",
        ],
        falsified_by=(
            "a fitted slope of the weight movement over the large-α range away from −1 by more "
            "than 3 SE (e.g. −½ if the weights moved like 1/√α, or 0 if training did not become "
            "lazy); also an NTK change or a distance to the linearisation not falling like 1/α."
        ),
        tables=[
            Table(
                "Per α (mean over initialisations)",
                ["α", "‖Δw‖/‖w₀‖", "‖ΔΘ̂‖/‖Θ̂₀‖", "RMS |h − h_lin|", "train loss", "test loss"],
                rows,
            ),
            Table(
                f"Fitted slopes vs α over α ≥ {cfg.lazy_from:g} (per initialisation, mean ± se)",
                ["quantity", "slope", "± se", "theory", "within 3 SE"],
                slope_rows,
            ),
            Table(
                "Contrast: width at α = 1 (per-initialisation log-log slopes, mean ± se)",
                ["quantity", "slope vs width", "± se", "expected"],
                [
                    ["‖w_T − w₀‖/‖w₀‖", *res.width_slopes["move"], -0.5],
                    ["‖Θ̂_T − Θ̂₀‖/‖Θ̂₀‖", *res.width_slopes["ntk_change"], "≤ −½ (bound)"],
                ],
            ),
            Table(
                "Linearised model (independent of α), mean over initialisations",
                ["train loss", "test loss"],
                [[float(res.lin_train_loss.mean()), float(res.lin_test_loss.mean())]],
            ),
        ],
        published=[
            # Chizat, Oyallon, Bach 2019 (NeurIPS), Section 2: bounds of order 1/α on the
            # distance to the linearised model (theorem numbers unverified)
            Published(
                "distance of the scaled model from its linearisation and weight movement as α → ∞",
                "O(1/α) (bounds)",
                "no error bar printed (theorems)",
                "Chizat, Oyallon, Bach 2019, 'On lazy training in differentiable programming'",
                "Thm 2.2–2.4 (numbers unverified)",
                f"slopes {res.slopes['move'][0]:.4f} ± {res.slopes['move'][1]:.1e} "
                f"(movement), {res.slopes['dist_lin'][0]:.4f} ± "
                f"{res.slopes['dist_lin'][1]:.1e} (distance)",
                f"a bound; ours: one tanh hidden layer of width {cfg.width}, α ≥ "
                f"{cfg.lazy_from:g}, {cfg.steps} GD steps, our teacher",
            ),
            Published(
                "test loss of two-layer nets against the scale α",
                "curves: test loss worse in the lazy regime (large α) than at small α",
                "no error bar printed (curves)",
                "Chizat, Oyallon, Bach 2019",
                "Fig. 2 (figure number and setting unverified)",
                f"test loss {float(res.test_loss[:, 0].mean()):.3g} (α = {a[0]:.3g}) vs "
                f"{float(res.test_loss[:, -1].mean()):.3g} (α = {a[-1]:.3g})",
                "paper: ReLU teacher–student nets in higher dimension (as we recall; "
                "unverified); ours: tanh, d = 5, a smooth teacher, small N",
            ),
        ],
    )
