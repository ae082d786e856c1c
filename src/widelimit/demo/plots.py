"""Plots of a :class:`~widelimit.demo.compute.DemoResult` (matplotlib, Agg backend).

Each function returns a ``matplotlib.figure.Figure``; :func:`all_figures` maps
file stems to figures for the report.
"""

from __future__ import annotations

import numpy as np

from widelimit.demo.compute import DemoResult

__all__ = [
    "all_figures",
    "plot_accuracy_vs_width",
    "plot_distance_vs_width",
    "plot_heatmaps",
    "plot_ntk_change",
    "plot_time_sweep",
]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _per_width(res: DemoResult, field: str):
    ws = np.array([s.width for s in res.widths])
    mean = np.array([getattr(s, f"{field}_mean") for s in res.widths])
    sd = np.array([getattr(s, f"{field}_sd") for s in res.widths])
    return ws, mean, sd


def plot_accuracy_vs_width(res: DemoResult):
    """Test accuracy and MSE of finite nets vs width, with the infinite-width lines."""
    plt = _plt()
    inf = res.infinite
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    acc_lines = [
        (inf.ntk_accuracy_t_end, "NTK ensemble mean, t = K·η", "C2"),
        (inf.ntk_accuracy_inf, "NTK ensemble mean, t = ∞", "C4"),
        (inf.nngp_accuracy_inf, "NNGP posterior mean", "C3"),
    ]
    mse_lines = [
        (inf.ntk_mse_t_end, "NTK ensemble mean, t = K·η", "C2"),
        (inf.ntk_mse[-1], "NTK ensemble mean, t = ∞", "C4"),
        (inf.nngp_mse[-1], "NNGP posterior mean", "C3"),
    ]
    if not res.config.center:  # uncentered nets keep a GP-distributed initial function
        label = "∞-width single net (GP f₀), t = K·η"
        acc_lines.append((inf.single_net_accuracy_t_end, label, "C1"))
        mse_lines.append((inf.single_net_mse_t_end, label, "C1"))
    for ax, field, lines in ((axes[0], "accuracy", acc_lines), (axes[1], "mse", mse_lines)):
        ws, mean, sd = _per_width(res, field)
        ax.errorbar(ws, mean, yerr=sd, marker="o", capsize=3, color="C0", label="finite nets (GD)")
        for value, label, color in lines:
            ax.axhline(value, ls="--", color=color, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("width")
        ax.set_ylabel(f"test {field}")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("Finite nets approach the infinite-width prediction")
    fig.tight_layout()
    return fig


def plot_distance_vs_width(res: DemoResult):
    """RMS distance of trained nets to their NTK linearisation, log-log with the fit."""
    plt = _plt()
    ws, mean, sd = _per_width(res, "dist")
    fit = res.dist_slope
    fig, ax = plt.subplots(figsize=(5, 3.8))
    ax.errorbar(ws, mean, yerr=sd, marker="o", capsize=3, ls="none", label="finite nets")
    grid = np.geomspace(ws.min(), ws.max(), 50)
    ax.plot(grid, np.exp(fit.intercept) * grid**fit.slope, label=f"fit: slope {fit.slope:.3f}")
    ref = mean[0] * (grid / ws[0]) ** -0.5
    ax.plot(grid, ref, ls=":", color="gray", label="slope −½ (theory)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("width")
    ax.set_ylabel("RMS ‖f_width − f_NTK‖ (test)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_ntk_change(res: DemoResult):
    """Empirical NTK at init vs analytic, and its relative change during training."""
    plt = _plt()
    ws = np.array([s.width for s in res.widths])
    fig, ax = plt.subplots(figsize=(5, 3.8))
    ax.plot(ws, [s.ntk_init_error_mean for s in res.widths], "o-", label="‖Θ₀ − Θ‖/‖Θ‖ (init)")
    ax.plot(
        ws,
        [s.ntk_change_mean for s in res.widths],
        "s-",
        label=f"‖Θ_T − Θ₀‖/‖Θ₀‖ (slope {res.ntk_change_slope.slope:.2f})",
    )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("width")
    ax.set_ylabel("relative Frobenius distance")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_time_sweep(res: DemoResult):
    """Test accuracy of NNGP/NTK ensembles vs gradient-flow time (∞ drawn at the right)."""
    plt = _plt()
    inf = res.infinite
    t = np.array(inf.times[:-1])
    fig, ax = plt.subplots(figsize=(5, 3.8))
    ax.plot(t, inf.nngp_accuracy[:-1], "o-", label=f"NNGP (∞: {inf.nngp_accuracy_inf:.3f})")
    ax.plot(t, inf.ntk_accuracy[:-1], "s-", label=f"NTK (∞: {inf.ntk_accuracy_inf:.3f})")
    ax.axvline(inf.t_end, color="gray", ls=":", label="t = K·η (finite nets)")
    ax.set_xscale("log")
    ax.set_xlabel("gradient-flow time t")
    ax.set_ylabel("test accuracy (ensemble mean)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_heatmaps(res: DemoResult):
    """Analytic NNGP/NTK on test points and empirical NTKs at init on train points."""
    plt = _plt()
    h = res.heatmaps
    if h is None:
        raise ValueError("this DemoResult has no heatmaps (loaded from JSON?)")
    emp = sorted(h.ntk_empirical)
    n_test, n_train = len(h.labels), len(h.ntk_labels)
    panels = [
        ("analytic NNGP K(x, x′)", h.nngp, f"test input (of {n_test}, sorted by label)"),
        ("analytic NTK Θ(x, x′)", h.ntk, f"test input (of {n_test}, sorted by label)"),
        ("analytic NTK Θ(x, x′)", h.ntk_analytic, f"training input (of {n_train}, by label)"),
    ]
    for w in (emp[0], emp[-1]) if len(emp) > 1 else emp:
        panels.append(
            (f"empirical NTK at init, width {w}", h.ntk_empirical[w],
             f"training input (of {n_train}, by label)")
        )  # fmt: skip
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.9))
    axes = np.atleast_1d(axes)
    lim = float(np.abs(h.ntk_analytic).max())
    for i, (ax, (title, mat, axis_label)) in enumerate(zip(axes, panels, strict=True)):
        vmax = lim if i >= 2 else None  # same colour scale for the NTK comparison
        im = ax.imshow(mat, cmap="viridis", vmin=0 if vmax else None, vmax=vmax)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel(axis_label, fontsize=7)
        ax.set_ylabel(axis_label, fontsize=7)
        ax.tick_params(labelsize=6)
        cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        cbar.set_label("kernel value", fontsize=7)
        cbar.ax.tick_params(labelsize=6)
    fig.suptitle(
        "Kernels between inputs (blocks on the diagonal: same digit); the last panels share "
        "one colour scale",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def all_figures(res: DemoResult) -> dict:
    """``{stem: Figure}`` for the report."""
    figs = {
        "accuracy_vs_width": plot_accuracy_vs_width(res),
        "distance_vs_width": plot_distance_vs_width(res),
        "ntk_change": plot_ntk_change(res),
        "time_sweep": plot_time_sweep(res),
    }
    if res.heatmaps is not None:
        figs["kernels"] = plot_heatmaps(res)
    return figs
