"""Standard, NTK, mean-field and μP parameterizations compared across width (docs/meanfield.md).

An MLP ``x (m, d) → h¹ = W¹x → φ → … → f = W^{L+1} φ(h^L)`` with hidden width ``n``.
Every layer ``l`` with fan-in ``k`` is ``multiplier · w`` with trained ``w ~ N(0, std²)``
and SGD learning rate ``lr`` (Yang & Hu 2021, "abc" parameterizations; Tables 3 & 8):

=========  ===========================  ==========================  =====================
param      input layer (k = d)          hidden layers (k = n)       output layer (k = n)
=========  ===========================  ==========================  =====================
standard   mult 1, std k^-½, lr η       mult 1, std k^-½, lr η      mult 1, std k^-½, lr η
ntk        mult k^-½, std 1, lr η       mult k^-½, std 1, lr η      mult k^-½, std 1, lr η
mf         mult k^-½, std 1, lr η n     mult k^-½, std 1, lr η n    mult 1/n, std 1, lr η n
mup        mult 1, std k^-½, lr η n     mult 1, std k^-½, lr η      mult 1, std 1/n, lr η/n
=========  ===========================  ==========================  =====================

(``mf`` is NTK with the output multiplier ``1/√n → 1/n`` and a global learning rate ×n,
the mean-field net of §5 for one hidden layer; ``mup`` is the per-layer rule of the
``mup`` package for SGD.  For two layers ``mf`` and ``mup`` agree in the output layer, but
the input layer's effective learning rate is ``η n / d`` under ``mf`` and ``η n`` under
``mup``: they give the same function dynamics only for input dimension ``d = 1``, or after
dividing μP's input learning rate by ``d``.)  After ``steps`` full-batch GD steps on
``½ mean (f − y)²`` we measure, at each width:

- ``weight_movement``: ``‖W¹_T − W¹_0‖_F / ‖W¹_0‖_F`` (input layer) — ``n^{-½}`` under
  NTK (lazy), ``Θ(1)`` under MF/μP;
- ``feature_change``: ``‖φ(h^L_T) − φ(h^L_0)‖ / ‖φ(h^L_0)‖`` on the training inputs;
- ``coord_check``: RMS coordinate of ``h^L_T − h^L_0`` (the activation update after a
  few steps; the "coordinate check" of Yang et al. 2022) — flat under μP, growing
  under SP with a width-independent learning rate;
- ``output_change``: RMS of ``f_T − f_0``.

Slopes are least-squares fits of ``log metric`` against ``log n``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from widelimit._validation import check_positive_int
from widelimit.fitting import loglog_slope
from widelimit.progress import progress_bar
from widelimit.seeding import Seed, as_generator

__all__ = ["PARAMETERIZATIONS", "WidthStudy", "layer_rules", "width_study"]

PARAMETERIZATIONS = ("standard", "ntk", "mf", "mup")
METRICS = ("weight_movement", "feature_change", "coord_check", "output_change")


def layer_rules(
    param: str, kind: str, fan_in: int, width: int, lr: float
) -> tuple[float, float, float]:
    """``(multiplier, init std, learning rate)`` of one layer (``kind``: input|hidden|output)."""
    k, n = fan_in, width
    if param == "standard":
        return 1.0, k**-0.5, lr
    if param == "ntk":
        return k**-0.5, 1.0, lr
    if param == "mf":
        return (1.0 / n if kind == "output" else k**-0.5), 1.0, lr * n
    if param == "mup":
        if kind == "input":
            return 1.0, k**-0.5, lr * n
        if kind == "hidden":
            return 1.0, k**-0.5, lr
        return 1.0, 1.0 / n, lr / n
    raise ValueError(f"`param` must be one of {PARAMETERIZATIONS}; got {param!r}")


@dataclass(frozen=True)
class WidthStudy:
    """Result of :func:`width_study`.

    Attributes:
        widths: ``(W,)`` hidden widths.
        params: parameterization names, in row order.
        metrics: ``{param: {metric: (W,) mean over seeds}}``.
        slopes: ``{param: {metric: fitted log-log slope}}``.
        depth: number of hidden layers; steps, lr: the training budget.
    """

    widths: list[int]
    params: list[str]
    metrics: dict[str, dict[str, list[float]]]
    slopes: dict[str, dict[str, float]]
    depth: int
    steps: int
    lr: float

    def rows(self) -> list[dict[str, float | int | str]]:
        """One row per (param, width) — the table the CLI prints."""
        out = []
        for p in self.params:
            for i, n in enumerate(self.widths):
                out.append({"param": p, "width": n} | {m: self.metrics[p][m][i] for m in METRICS})
        return out


def _run_one(
    param: str,
    width: int,
    depth: int,
    x: Tensor,
    y: Tensor,
    steps: int,
    lr: float,
    gen: torch.Generator,
) -> dict[str, float]:
    d = x.shape[1]
    dims = [d] + [width] * depth + [1]
    ws, mults, lrs = [], [], []
    for l in range(depth + 1):
        kind = "input" if l == 0 else ("output" if l == depth else "hidden")
        mult, std, eta = layer_rules(param, kind, dims[l], width, lr)
        w = std * torch.randn(dims[l + 1], dims[l], generator=gen, dtype=x.dtype)
        ws.append(w.requires_grad_(True))
        mults.append(mult)
        lrs.append(eta)

    def forward(ws: list[Tensor]) -> tuple[Tensor, Tensor]:
        h = x
        for l in range(depth):
            pre = mults[l] * h @ ws[l].T
            h = torch.relu(pre)
        return (mults[depth] * h @ ws[depth].T)[:, 0], pre

    w1_0 = ws[0].detach().clone()
    with torch.no_grad():
        f0, pre0 = forward(ws)
    for _ in range(steps):
        f, _ = forward(ws)
        loss = 0.5 * ((f - y) ** 2).mean()
        grads = torch.autograd.grad(loss, ws)
        with torch.no_grad():
            ws = [
                (w - eta * g).requires_grad_(True) for w, g, eta in zip(ws, grads, lrs, strict=True)
            ]
    with torch.no_grad():
        fT, preT = forward(ws)
        dw = (ws[0] - w1_0).norm() / w1_0.norm()
        a0, aT = torch.relu(pre0), torch.relu(preT)
        feat = (aT - a0).norm() / a0.norm()
        coord = (preT - pre0).pow(2).mean().sqrt()
        outc = (fT - f0).pow(2).mean().sqrt()
    vals = {
        "weight_movement": dw,
        "feature_change": feat,
        "coord_check": coord,
        "output_change": outc,
    }
    out = {k: float(v) for k, v in vals.items()}
    if not all(math.isfinite(v) for v in out.values()):
        raise ValueError(
            f"{param} training diverged at width {width} (lr={lr:g}, steps={steps}); "
            "lower `lr` or `steps`"
        )
    return out


def width_study(
    *,
    widths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048, 4096, 8192),
    params: tuple[str, ...] = PARAMETERIZATIONS,
    depth: int = 1,
    n_inputs: int = 8,
    input_dim: int = 4,
    steps: int = 3,
    lr: float = 0.02,
    n_seeds: int = 2,
    seed: Seed = 0,
    dtype: torch.dtype = torch.float64,
    progress: bool = True,
) -> WidthStudy:
    """Train the same MLP (``depth`` hidden ReLU layers) under each parameterization at each width.

    Data: ``n_inputs`` Gaussian inputs in ``R^input_dim`` (rows scaled to norm ``√input_dim``),
    targets ``sign(x_1)``; one data set for all runs, ``n_seeds`` initialisations per width.
    Returns per-width metrics (mean over seeds) and their log-log slopes against width.
    ``seed``: ``int``, ``torch.Generator`` (one stream for data and initialisations) or
    ``None`` (global RNG).
    """
    depth = check_positive_int("depth", depth)
    steps = check_positive_int("steps", steps)
    for n in widths:
        check_positive_int("widths", n)
    if len(widths) < 2:
        raise ValueError("`widths` needs at least two widths to fit a slope")
    for p in params:
        if p not in PARAMETERIZATIONS:
            raise ValueError(f"`params` entries must be in {PARAMETERIZATIONS}; got {p!r}")
    gen = as_generator(seed)
    x = torch.randn(n_inputs, input_dim, generator=gen, dtype=dtype)
    x = x / x.norm(dim=1, keepdim=True) * math.sqrt(input_dim)
    y = torch.sign(x[:, 0])
    metrics: dict[str, dict[str, list[float]]] = {p: {m: [] for m in METRICS} for p in params}
    with progress_bar(progress) as bar:
        task = bar.add_task("width study", total=len(params) * len(widths))
        for p in params:
            for n in widths:
                runs = [_run_one(p, n, depth, x, y, steps, lr, gen) for _ in range(n_seeds)]
                for m in METRICS:
                    metrics[p][m].append(float(np.mean([r[m] for r in runs])))
                bar.advance(task)
    slopes = {p: {m: loglog_slope(widths, metrics[p][m]) for m in METRICS} for p in params}
    return WidthStudy(list(widths), list(params), metrics, slopes, depth, steps, lr)
