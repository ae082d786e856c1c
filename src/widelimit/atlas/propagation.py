"""Page 4 — signal propagation: order and chaos (Poole et al. 2016; Schoenholz et al. 2017).

Numbers: :func:`widelimit.propagation.fixed_point` (``ξ_c`` on a grid),
:func:`~widelimit.propagation.critical_line`, :func:`~widelimit.propagation.critical_w_std`,
:func:`~widelimit.propagation.c_map` and :func:`~widelimit.propagation.trajectory`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from widelimit.atlas.core import Figure, Headline, PageContent, Published, Table, mpl, save
from widelimit.progress import progress_bar

__all__ = ["Config", "Result", "compute", "content", "figures"]

SLUG = "propagation"
TITLE = "Signal propagation"


@dataclass(frozen=True)
class Config:
    """The ξ_c grid is given in variances (``w_var = σw²``, ``b_var = σb²``), the axes of
    Schoenholz et al. 2017; the c-map curves in standard deviations (``cmap_w_std``)."""

    activation: str = "tanh"
    w_var: tuple[float, ...] = tuple(np.round(np.linspace(0.5, 4.0, 36), 6))
    b_var: tuple[float, ...] = (0.0, 0.01, 0.03, 0.05, 0.1, 0.15, 0.2, 0.3)
    headline_b_var: float = 0.05
    line_b_var: tuple[float, ...] = (0.0, 0.01, 0.03, 0.05, 0.1, 0.15, 0.2, 0.3)
    cmap_w_std: tuple[float, ...] = (0.8, 1.3, 2.0, 3.0)  # Poole et al. 2016 Fig. 2
    cmap_b_std: float = 0.3
    depth: int = 30

    @classmethod
    def quick(cls) -> Config:
        return cls(
            w_var=tuple(np.round(np.linspace(1.0, 3.0, 11), 6)),
            b_var=(0.01, 0.05, 0.15),
            line_b_var=(0.01, 0.05, 0.15),
        )


@dataclass(frozen=True)
class Result:
    config: Config
    xi_c: np.ndarray  # (B, W) correlation depth scale on b_var × w_var
    chi1: np.ndarray  # (B, W)
    line: object  # CriticalLine
    critical_w2: float  # at headline_b_var (root finding on χ₁ = 1)
    peak_w2: float  # argmax of ξ_c along the headline row
    c_in: np.ndarray  # (C,) c-map inputs
    c_out: dict[float, np.ndarray]  # σw -> (C,) c-map outputs at q*
    c_layers: dict[float, np.ndarray]  # σw -> (depth,) c^l from c⁰ = 0.5 (trajectory)
    headline: Headline
    seconds: float


def compute(cfg: Config | None = None, *, progress: bool = True) -> Result:
    from widelimit.layers.activations import activation_from_name
    from widelimit.propagation import (
        c_map,
        critical_line,
        critical_w_std,
        fixed_point,
        q_star,
        trajectory,
    )

    cfg = cfg or Config()
    if cfg.headline_b_var not in cfg.b_var:
        raise ValueError("`headline_b_var` must be one of `b_var`")
    t0 = time.perf_counter()
    act = activation_from_name(cfg.activation)
    w2, b2 = np.asarray(cfg.w_var), np.asarray(cfg.b_var)
    xi = np.empty((b2.size, w2.size))
    chi = np.empty_like(xi)
    # fixed_point takes standard deviations: the square roots of the grid
    with progress_bar(progress) as bar:
        task = bar.add_task("ξ_c grid (fixed points)", total=xi.size)
        for i, b in enumerate(b2):
            for j, w in enumerate(w2):
                fp = fixed_point(act, math.sqrt(w), math.sqrt(b))
                xi[i, j], chi[i, j] = fp.xi_c, fp.chi1
                bar.advance(task)
    # the page works in variances (Schoenholz et al. 2017); the API takes standard deviations
    line = critical_line(act, np.sqrt(cfg.line_b_var), progress=progress)
    crit = critical_w_std(act, math.sqrt(cfg.headline_b_var))[0] ** 2
    row = xi[list(b2).index(cfg.headline_b_var)]
    peak = float(w2[int(np.argmax(np.where(np.isfinite(row), row, np.inf)))])
    step = float(np.max(np.diff(w2)))
    head = Headline(
        name=f"σw² where ξ_c (c-map slope at c*) peaks, σb² = {cfg.headline_b_var}, "
        f"{cfg.activation}",
        value=peak,
        theory=crit,
        stderr=float("nan"),
        tolerance=step / 2 + 1e-9,
        rule="half the σw² grid step (the theory is the root of χ₁ = 1 from "
        "widelimit.propagation.critical_w_std, squared)",
    )
    c_in = np.linspace(-1, 1, 81)
    c_out, c_layers = {}, {}
    for sw in cfg.cmap_w_std:
        qs = q_star(act, sw, cfg.cmap_b_std)
        c_out[sw] = c_map(act, c_in, qs, sw, cfg.cmap_b_std).numpy()
        traj = trajectory(act, sw, cfg.cmap_b_std, cfg.depth, q0=qs, c0=0.5)
        c_layers[sw] = traj.c[:, 0, 1]
    return Result(
        cfg, xi, chi, line, crit, peak, c_in, c_out, c_layers, head, time.perf_counter() - t0
    )


def figures(res: Result, out_dir: Path) -> list[Figure]:
    plt = mpl()
    cfg = res.config
    w2, b2 = np.asarray(cfg.w_var), np.asarray(cfg.b_var)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    lx = np.log10(np.clip(np.where(np.isfinite(res.xi_c), res.xi_c, 1e4), 1e-2, 1e4))
    mesh = a.pcolormesh(w2, b2, lx, shading="nearest", cmap="viridis")
    fig.colorbar(mesh, ax=a, label="log10 ξ_c")
    ln = res.line
    a.plot(ln.w_std**2, ln.b_std**2, "w-o", ms=3, label="critical line χ₁ = 1")
    a.set(xlabel="σw²", ylabel="σb²", title=f"correlation depth scale ξ_c ({cfg.activation})")
    a.legend(fontsize=7, loc="upper left")
    row = res.xi_c[list(b2).index(cfg.headline_b_var)]
    b.semilogy(w2, row, "o-", ms=3, label="ξ_c")
    b.semilogy(w2, 6 * row, ":", label="6 ξ_c (Schoenholz: max trainable depth)")
    b.axvline(res.critical_w2, color="k", lw=0.8, label=f"critical σw² = {res.critical_w2:.4f}")
    b.set(xlabel="σw²", ylabel="depth", title=f"σb² = {cfg.headline_b_var}")
    b.legend(fontsize=7)
    phase = save(fig, out_dir / "phase_diagram.png")
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for sw, out in res.c_out.items():
        a.plot(res.c_in, out, label=f"σw = {sw}")
        b.plot(np.arange(1, cfg.depth + 1), res.c_layers[sw], "o-", ms=2, label=f"σw = {sw}")
    a.plot([-1, 1], [-1, 1], "k:", lw=0.8)
    a.set(xlabel="c^l", ylabel="c^{l+1}", title=f"c-map at q* (σb = {cfg.cmap_b_std})")
    b.set(xlabel="layer l", ylabel="c^l", title="iterates from c⁰ = 0.5")
    a.legend(fontsize=7)
    b.legend(fontsize=7)
    cm = save(fig, out_dir / "c_map.png")
    return [
        Figure(
            phase,
            "Left: ξ_c = −1/ln χ_c over (σw², σb²) with the root-found critical "
            "line. Right: ξ_c along one row; it diverges at the critical σw².",
        ),
        Figure(
            cm,
            "The c-map and its iterates: ordered nets (small σw) send every pair to "
            "c* = 1, chaotic ones to c* < 1 (Poole et al. 2016, Fig. 2).",
        ),
    ]


def content(res: Result) -> PageContent:
    cfg, ln = res.config, res.line
    line_rows = [
        [float(b), float(w), float(q)]
        for b, w, q in zip(ln.b_std**2, ln.w_std**2, ln.q_star, strict=True)
    ]
    return PageContent(
        title=TITLE,
        formula=(
            "The correlation c^l of two inputs follows the c-map c^{l+1} = (σw² E[φ(u)φ(v)] + "
            "σb²)/q*; near its fixed point c* deviations decay as exp(−l/ξ_c), "
            "ξ_c = −1/ln χ_c, χ_c = σw² E[φ'(u)φ'(v)]. The order/chaos transition is "
            "χ₁ = σw² E[φ'(√q* z)²] = 1, where ξ_c diverges."
        ),
        paragraphs=[
            f"Activation {cfg.activation}; ξ_c on a {len(cfg.b_var)} × {len(cfg.w_var)} "
            "grid from the fixed points of the q- and c-maps; the critical line from root "
            "finding on χ₁ = 1. The trainability experiment of Schoenholz et al. (training "
            "nets of many depths) is not run here; the dotted 6ξ_c line is their prediction.",
        ],
        tables=[Table("Critical line χ₁ = 1", ["σb²", "σw²", "q*"], line_rows)],
        published=[
            Published(
                "maximum trainable depth",
                "≈ 6 ξ_c",
                "Schoenholz et al. 2017, Fig. 5 (MNIST/CIFAR10, tanh, SGD)",
                "6 ξ_c shown; not trained here",
                "we draw the prediction only",
            ),
            Published(
                "critical point at σb² = 0.05 (tanh)",
                "χ₁ = 1",
                "Poole et al. 2016; Schoenholz et al. 2017",
                f"σw² = {res.critical_w2:.5f}",
                "root of χ₁ = 1 in float64 (Gauss quadrature of the tanh dual)",
            ),
        ],
    )
