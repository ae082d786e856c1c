"""Figures for signal propagation (matplotlib, Agg backend); each returns the saved path.

The diagnostics are computed elsewhere (:mod:`~widelimit.propagation.maps`,
:mod:`~widelimit.propagation.phase`, :mod:`~widelimit.propagation.finite`);
these functions only draw them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from widelimit.propagation.finite import FiniteWidthStudy
from widelimit.propagation.maps import Trajectory
from widelimit.propagation.phase import PhaseDiagram

__all__ = ["plot_distances", "plot_histograms", "plot_phase_diagram", "plot_trajectories"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _plt().close(fig)
    return path


def plot_trajectories(traj: Trajectory, path: str | Path) -> Path:
    """``q^l`` of every input and ``c^l`` of every pair against the layer ``l``."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    p = traj.q.shape[1]
    for i in range(p):
        a.plot(traj.layers, traj.q[:, i], marker="o", ms=3, label=f"input {i + 1}")
    a.set(xlabel="layer l", ylabel="q^l", title=f"length map: {traj.activation}")
    for i in range(p):
        for j in range(i + 1, p):
            b.plot(traj.layers, traj.c[:, i, j], marker="o", ms=3, label=f"c(x{i + 1}, x{j + 1})")
    b.set(xlabel="layer l", ylabel="c^l", title=f"σw={traj.w_std:.3g}, σb={traj.b_std:.3g}")
    for ax in (a, b):
        if ax.lines:
            ax.legend(fontsize=7)
    return _save(fig, path)


def plot_phase_diagram(pd: PhaseDiagram, path: str | Path) -> Path:
    """``log χ₁`` over ``(σw², σb²)`` with the root-found critical line (χ₁ = 1).

    The axes are the variances σw² = ``w_std²`` and σb² = ``b_std²`` (labelled so).
    """
    plt = _plt()
    w2, b2 = pd.w_std**2, pd.b_std**2
    line_w2, line_b2 = pd.line.w_std**2, pd.line.b_std**2
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    lg = np.log(np.clip(pd.chi1, 1e-12, None))
    lim = min(float(np.max(np.abs(lg))), 0.5) or 0.5  # colour range focused near χ₁ = 1
    mesh = ax.pcolormesh(w2, b2, lg, cmap="RdBu_r", vmin=-lim, vmax=lim, shading="auto")
    fig.colorbar(mesh, ax=ax, label="ln χ₁  (<0 ordered, >0 chaotic)", extend="both")
    if pd.chi1.min() < 1 < pd.chi1.max():
        ax.contour(
            w2,
            b2,
            pd.chi1,
            levels=[1.0],
            colors="0.4",
            linewidths=0.8,
            linestyles="dashed",
        )
    fin = pd.line.finite_q
    ax.plot(line_w2[fin], line_b2[fin], "k-o", ms=3, label="critical line (root finding)")
    if (~fin).any():
        ax.plot(line_w2[~fin], line_b2[~fin], "kx", label="χ₁ = 1 with q* = ∞")
    ax.set(
        xlabel="σw² (weight variance, w_std²)",
        ylabel="σb² (bias variance, b_std²)",
        title=f"order/chaos: {pd.activation}",
        xlim=(w2.min(), w2.max()),
        ylim=(b2.min(), b2.max()),
    )
    ax.text(0.05, 0.9, "ordered", transform=ax.transAxes, color="w")
    ax.text(0.75, 0.1, "chaotic", transform=ax.transAxes)
    ax.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1, 0.18))
    return _save(fig, path)


def plot_histograms(study: FiniteWidthStudy, path: str | Path, *, layer: int | None = None) -> Path:
    """Histograms of ``h^l/√q^l`` over the units of one net at each width vs ``N(0, 1)``.

    ``layer``: 1-based layer index (default: the last hidden layer, or the output).
    """
    plt = _plt()
    depth = study.depth
    li = (depth - 1 if depth > 1 else 1) if layer is None else int(layer)
    if not 1 <= li <= depth:
        raise ValueError(f"`layer` must be in 1..{depth}; got {layer!r}")
    w = len(study.widths)
    fig, axes = plt.subplots(1, w, figsize=(2.8 * w, 2.8), sharey=True)
    axes = np.atleast_1d(axes)
    t = np.linspace(-4, 4, 200)
    pdf = np.exp(-0.5 * t * t) / np.sqrt(2 * np.pi)
    for ax, n, s in zip(axes, study.widths, study.samples, strict=True):
        ax.hist(s[li - 1], bins=max(10, int(np.sqrt(s.shape[1]))), density=True, alpha=0.6)
        ax.plot(t, pdf, "k-", lw=1)
        ks = study.stats["ks"][list(study.widths).index(n), li - 1]
        ax.set(title=f"n={n}  (mean KS {ks:.3f})", xlabel=f"h^{li}/√q^{li}")
    axes[0].set_ylabel("density")
    fig.suptitle(f"{study.activation}, layer {li}: pre-activations vs N(0, q^l)", fontsize=9)
    return _save(fig, path)


_LABELS = {
    "q_spread": "std over seeds of q̂/q",
    "corr_spread": "RMS of ĉ − c",
    "ks": "KS(h/√q, N(0,1))",
    "w1": "W1(h/√q, N(0,1))",
    "output_ks": "outputs: KS of whitened",
    "output_chi2_ks": "outputs: KS of |z|² vs χ²_P",
    "output_cov_err": "outputs: ‖K̂ − K‖/‖K‖",
}


def plot_distances(study: FiniteWidthStudy, path: str | Path) -> Path:
    """Each statistic (layer-averaged) against width, log-log, with its fitted slope."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    n = study.widths.astype(float)
    for k, slope in study.slopes.items():
        y = study.stats[k]
        e = study.stats_se[k]
        if y.ndim == 2:
            y, e = y.mean(1), e.mean(1)
        line = ax.errorbar(n, y, yerr=e, marker="o", ms=3, capsize=2, ls="none")
        a = np.mean(np.log(y) - slope * np.log(n))
        ax.plot(
            n,
            np.exp(a + slope * np.log(n)),
            color=line[0].get_color(),
            label=f"{_LABELS.get(k, k)}: slope {slope:.2f}",
        )
    ax.plot(n, 0.5 * (n / n[0]) ** -0.5, "k:", label="reference n^-1/2")
    ax.set(xscale="log", yscale="log", xlabel="width n", title="finite width vs Gaussian limit")
    ax.legend(fontsize=6)
    return _save(fig, path)
