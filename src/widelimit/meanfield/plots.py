"""Plots for the mean-field results (matplotlib, Agg backend); data come from the API."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from widelimit.meanfield.experiment import MeanFieldComparison
from widelimit.meanfield.parameterizations import METRICS, WidthStudy

__all__ = ["plot_comparison", "plot_width_study"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_comparison(comp: MeanFieldComparison, out_dir: str | Path) -> list[Path]:
    """Write ``risk.png`` (risk vs time, SGD at each N and the PDE), ``radii.png``
    (quantiles of ``‖w‖`` over time) and ``gap.png`` (W1 and risk gap vs N, log-log)."""
    plt = _plt()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    t = np.asarray(comp.times)
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(comp.ns)))

    fig, ax = plt.subplots(figsize=(6, 4))
    for n, r, c in zip(comp.ns, comp.sgd_risk, colors, strict=False):
        ax.plot(t, r, "o-", color=c, ms=3, label=f"SGD N={n}")
    ax.plot(t, comp.pde_risk, "k--", lw=2, label="PDE")
    ax.set(xlabel="t = kε", ylabel="population risk", title="risk vs time")
    ax.legend(fontsize=7)
    paths.append(out / "risk.png")
    fig.savefig(paths[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    pq = np.asarray(comp.pde_quantiles)
    sq = np.asarray(comp.sgd_quantiles[-1])
    for j in range(len(comp.levels)):
        ax.plot(t, pq[:, j], "k-", lw=1.5, label="PDE quantiles" if j == 0 else None)
        ax.plot(
            t,
            sq[:, j],
            "o",
            color="tab:red",
            ms=3,
            label=f"SGD N={comp.ns[-1]}" if j == 0 else None,
        )
    ax.set(xlabel="t", ylabel="‖w‖", title=f"quantiles {comp.levels} of ‖w‖")
    ax.legend(fontsize=7)
    paths.append(out / "radii.png")
    fig.savefig(paths[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ns = np.asarray(comp.ns)
    w1 = np.asarray(comp.w1)
    for k, tt in enumerate(comp.times):
        if tt > 0:
            axes[0].loglog(ns, w1[:, k], "o-", ms=3, label=f"t={tt:g}")
    axes[0].loglog(ns, w1[0, -1] * (ns / ns[0]) ** -0.5, "k:", label="N^-1/2")
    axes[0].set(xlabel="N", ylabel="W1(‖w‖ law)", title="W1 to the PDE")
    axes[0].legend(fontsize=7)
    if comp.sgd_risk:
        gap = np.abs(np.asarray(comp.sgd_risk) - np.asarray(comp.pde_risk)[None, :])
        for k, tt in enumerate(comp.times):
            if tt > 0:
                axes[1].loglog(ns, gap[:, k], "o-", ms=3, label=f"t={tt:g}")
        axes[1].loglog(ns, gap[0, -1] * (ns / ns[0]) ** -1.0, "k:", label="N^-1")
        axes[1].set(xlabel="N", ylabel="|E R_N − R_PDE|", title="risk gap")
        axes[1].legend(fontsize=7)
    paths.append(out / "gap.png")
    fig.savefig(paths[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)
    return paths


def plot_width_study(study: WidthStudy, out_dir: str | Path) -> list[Path]:
    """Write ``parameterizations.png``: each metric vs width, one line per parameterization."""
    plt = _plt()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.5))
    for ax, m in zip(axes, METRICS, strict=True):
        for p in study.params:
            ax.loglog(
                study.widths,
                study.metrics[p][m],
                "o-",
                ms=3,
                label=f"{p} ({study.slopes[p][m]:+.2f})",
            )
        ax.set(xlabel="width", title=m)
        ax.legend(fontsize=7)
    path = out / "parameterizations.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return [path]
