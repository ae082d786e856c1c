"""Page 4 — signal propagation: order and chaos (Poole et al. 2016; Schoenholz et al. 2017).

The headline tests the theory against finite nets: at the critical σw² that the mean-field
theory predicts (the root of χ₁ = 1, where ξ_c diverges), the squared Jacobian gain of finite
random nets, ``‖δh^{l+1}‖²/‖δh^l‖²``, measured at several widths and extrapolated to
``1/n → 0``, must be 1 within 3 SE. (The argmax of ξ_c on a grid is fixed by the
definition of ξ_c and is not a test; χ₁ = 1 is a definition, not a published number.)
Finite nets: :func:`widelimit.atlas.core.jacobian_gain` (exact layer sampler).

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

__all__ = ["Config", "Result", "chi1_headline", "compute", "content", "figures"]

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
    gain_widths: tuple[int, ...] = (64, 256, 1024, 4096)  # finite nets for the headline
    gain_nets: int = 2000
    gain_depth: int = 20  # layers per net; the first `gain_burn` are discarded
    gain_burn: int = 5
    sweep_w_var: tuple[float, ...] = (1.0, 1.4, 2.0, 2.5, 3.0)  # measured χ₁ off criticality
    sweep_width: int = 256
    sweep_nets: int = 300
    seed: int = 0

    @classmethod
    def quick(cls) -> Config:
        return cls(
            w_var=tuple(np.round(np.linspace(1.0, 3.0, 11), 6)),
            b_var=(0.01, 0.05, 0.15),
            line_b_var=(0.01, 0.05, 0.15),
            gain_widths=(64, 256, 1024),
            gain_nets=500,
            gain_depth=15,
            sweep_nets=100,
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
    gain: list[float]  # per gain width: measured χ₁ of finite nets at the critical σw²
    gain_se: list[float]
    sweep_chi1: list[float]  # measured χ₁ at sweep_w_var (width sweep_width)
    sweep_chi1_se: list[float]
    sweep_theory: list[float]  # theory χ₁ at sweep_w_var
    headline: Headline
    seconds: float


def chi1_headline(
    widths: list[int], chi1: list[float], se: list[float], *, theory: float = 1.0, label: str = ""
) -> Headline:
    """The page's check: the weighted linear fit of the measured gain against ``1/n``,
    extrapolated to ``1/n = 0``, ± its SE, against ``theory`` (1 at the predicted critical
    point); agrees iff within 3 SE (two-sided)."""
    x = 1.0 / np.asarray(widths, dtype=float)
    y, s = np.asarray(chi1, dtype=float), np.asarray(se, dtype=float)
    if len(x) >= 3:
        coef, cov = np.polyfit(x, y, 1, w=1 / s, cov="unscaled")
        value, err = float(coef[1]), float(np.sqrt(cov[1, 1]))
        how = "weighted linear fit in 1/n extrapolated to 1/n = 0 (O(1/n) finite-width bias)"
    else:  # two widths or one: the widest net's value, its SE
        value, err = float(y[-1]), float(s[-1])
        how = "widest net"
    return Headline(
        name=f"measured squared Jacobian gain (χ₁) of finite nets at the predicted critical "
        f"σw²{label}, n → ∞",
        value=value,
        theory=float(theory),
        stderr=err,
        tolerance=3 * err,
        rule=f"3 standard errors ({how}; SE from the spread over nets)",
    )


def _measure(act: str, w2: float, b2: float, q: float, n: int, cfg: Config, nets: int, seed: int):
    from widelimit.atlas.core import jacobian_gain

    r = jacobian_gain(act, w2, b2, q, n, cfg.gain_depth, nets, seed=seed)[:, cfg.gain_burn :]
    per_net = r.mean(1)
    return float(per_net.mean()), float(per_net.std(ddof=1) / math.sqrt(nets))


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
    # finite nets at the predicted critical point, started at q* (the layers reach the
    # finite-width law of q within the `gain_burn` discarded layers)
    qc = float(q_star(act, math.sqrt(crit), math.sqrt(cfg.headline_b_var)))
    gain, gain_se = [], []
    for i, n in enumerate(cfg.gain_widths):
        m, e = _measure(cfg.activation, crit, cfg.headline_b_var, qc, int(n), cfg,
                        cfg.gain_nets, cfg.seed + i)  # fmt: skip
        gain.append(m), gain_se.append(e)
    sweep, sweep_se, sweep_th = [], [], []
    for j, w in enumerate(cfg.sweep_w_var):
        fp = fixed_point(act, math.sqrt(w), math.sqrt(cfg.headline_b_var))
        m, e = _measure(cfg.activation, w, cfg.headline_b_var, float(fp.q_star),
                        cfg.sweep_width, cfg, cfg.sweep_nets, cfg.seed + 100 + j)  # fmt: skip
        sweep.append(m), sweep_se.append(e), sweep_th.append(float(fp.chi1))
    head = chi1_headline(
        list(cfg.gain_widths), gain, gain_se,
        label=f" {crit:.4f} (σb² = {cfg.headline_b_var}, {cfg.activation})",
    )  # fmt: skip
    c_in = np.linspace(-1, 1, 81)
    c_out, c_layers = {}, {}
    for sw in cfg.cmap_w_std:
        qs = q_star(act, sw, cfg.cmap_b_std)
        c_out[sw] = c_map(act, c_in, qs, sw, cfg.cmap_b_std).numpy()
        traj = trajectory(act, sw, cfg.cmap_b_std, cfg.depth, q0=qs, c0=0.5)
        c_layers[sw] = traj.c[:, 0, 1]
    return Result(
        cfg, xi, chi, line, crit, peak, c_in, c_out, c_layers, gain, gain_se, sweep, sweep_se,
        sweep_th, head, time.perf_counter() - t0,
    )  # fmt: skip


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
    b.legend(fontsize=7, loc="upper left")
    c = b.twinx()
    chi_row = res.chi1[list(b2).index(cfg.headline_b_var)]
    c.plot(w2, chi_row, "C3-", lw=0.8, label="χ₁ theory")
    c.errorbar(cfg.sweep_w_var, res.sweep_chi1, yerr=res.sweep_chi1_se, fmt="s", color="C3",
               ms=3, capsize=2, label=f"χ₁ finite nets (n = {cfg.sweep_width})")  # fmt: skip
    c.axhline(1, color="C3", ls=":", lw=0.6)
    c.set_ylabel("χ₁", color="C3")
    c.legend(fontsize=7, loc="lower right")
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
            "line. Right: ξ_c along one row (it diverges at the critical σw²), the dotted "
            "6ξ_c line of Schoenholz et al. (drawn, not tested: no net is trained here), and "
            "χ₁ of the theory (red line) beside the squared Jacobian gain measured in finite "
            "random nets (red squares ± SE).",
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
        falsified_by=(
            "finite random nets at the predicted critical σw² whose Jacobian gain, extrapolated "
            "to infinite width, differs from 1 by more than 3 SE (a critical point mis-predicted "
            "by 1 % in σw² shifts the gain by ≈ 1 %, many SE at these sizes), or measured gains "
            "off the χ₁ curve away from criticality."
        ),
        tables=[
            Table("Critical line χ₁ = 1", ["σb²", "σw²", "q*"], line_rows),
            Table(
                f"Finite nets at the predicted critical σw² = {res.critical_w2:.5f}: squared "
                "Jacobian gain per layer",
                ["width", "gain", "± se"],
                [
                    [int(n), g, e]
                    for n, g, e in zip(cfg.gain_widths, res.gain, res.gain_se, strict=True)
                ],
            ),
            Table(
                f"Off criticality (width {cfg.sweep_width}): measured gain vs theory χ₁",
                ["σw²", "measured", "± se", "theory χ₁"],
                [
                    [w, g, e, t]
                    for w, g, e, t in zip(
                        cfg.sweep_w_var,
                        res.sweep_chi1,
                        res.sweep_chi1_se,
                        res.sweep_theory,
                        strict=True,
                    )
                ],
            ),
        ],
        published=[
            # Schoenholz et al. 2017 (ICLR), Fig. 5 (unverified figure number): training
            # accuracy over (σw², L) with the curve 6ξ_c overlaid
            Published(
                "maximum trainable depth",
                "≈ 6 ξ_c (a curve on the accuracy heat map)",
                "no error bar printed",
                "Schoenholz, Gilmer, Ganguli, Sohl-Dickstein 2017",
                "Fig. 5 (unverified figure number)",
                "not measured: no net is trained on this page (6ξ_c drawn only)",
                "MNIST/CIFAR10, tanh, SGD; the trainability page of issue 21 item 4 will test it",
            ),
            # our own root finding, not a published number (χ₁ = 1 defines the point)
            Published(
                f"critical σw² at σb² = {cfg.headline_b_var} (tanh)",
                f"{res.critical_w2:.5f}",
                "root of χ₁ = 1 to float64 precision",
                "ours (widelimit.propagation.critical_w_std)",
                "— (a derivation, not a published number)",
                f"finite nets there: gain {res.headline.value:.4f} ± {res.headline.stderr:.4f}",
                "χ₁ = 1 is the definition of the critical point (Poole et al. 2016)",
            ),
        ],
    )
