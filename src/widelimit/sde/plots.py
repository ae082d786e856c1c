"""Figures for the covariance SDE: ECDFs of finite nets vs the SDE (files on disk)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import stats

from widelimit.sde.compare import SDEComparison
from widelimit.sde.stability import StabilityDemo

__all__ = ["plot_comparison", "plot_stability"]


def _ecdf(ax, x: np.ndarray, **kw) -> None:
    """ECDF over all samples; non-finite ones (exploded nets) keep it below 1."""
    x = np.asarray(x)
    total = x.size
    x = np.sort(x[np.isfinite(x)])
    if x.size:
        ax.step(x, np.arange(1, x.size + 1) / total, where="post", **kw)


def plot_comparison(cmp: SDEComparison, out_dir: str | Path) -> list[Path]:
    """ECDFs of ``ρ_T`` and ``ln Φ^{11}_T`` (finite nets per width vs SDE), one row per ``T``.

    Writes ``sde_relu_compare.png`` in ``out_dir`` (created); returns the written paths.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    times = sorted(cmp.sde_rho)
    widths = sorted({n for n, _ in cmp.finite_rho})
    fig, axes = plt.subplots(len(times), 2, figsize=(10, 3.6 * len(times)), squeeze=False)
    for i, t in enumerate(times):
        ax_r, ax_l = axes[i]
        _ecdf(ax_r, cmp.sde_rho[t], color="k", lw=2, label="SDE")
        for n in widths:
            row = next(r for r in cmp.rows if r.width == n and r.T == t)
            _ecdf(ax_r, cmp.finite_rho[(n, t)], label=f"n={n}, d={row.depth} (KS {row.ks_rho:.3f})")
            _ecdf(ax_l, cmp.finite_lognorm[(n, t)], label=f"n={n} (KS {row.ks_lognorm:.3f})")
        grid = np.linspace(-t - 4 * math.sqrt(2 * t), -t + 4 * math.sqrt(2 * t), 400)
        cdf = stats.norm(-t, math.sqrt(2 * t)).cdf(grid)
        ax_l.plot(grid, cdf, "k", lw=2, label="SDE N(−T, 2T)")
        ax_r.set(xlabel=f"ρ_T (T={t})", ylabel="ECDF", title=f"correlation, ρ₀={cmp.rho0}")
        ax_l.set(xlabel=f"ln Φ¹¹_T (T={t})", ylabel="ECDF", title="log squared norm")
        ax_r.legend(fontsize=8)
        ax_l.legend(fontsize=8)
    fig.suptitle(f"shaped ReLU c₊={cmp.c_plus}, c₋={cmp.c_minus}: finite nets vs covariance SDE")
    fig.tight_layout()
    path = out / "sde_relu_compare.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def plot_stability(demo: StabilityDemo, out_dir: str | Path) -> list[Path]:
    """ECDFs of ``ln Φ_T`` for each activation at the last ``T``: finite nets vs SDE.

    Writes ``sde_stability.png``; nets past ``Φ = threshold²·e²`` (exploding) are left off
    the axis, so their ECDF stops below 1.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = list(demo.log_finite)
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        row = next(r for r in demo.rows if r.verdict.name == name and r.T == demo.times[-1])
        fin = demo.log_finite[name][-1].numpy()
        sde = demo.log_sde[name][-1].numpy()
        lt = math.log(demo.threshold)
        _ecdf(ax, np.where(fin > 2 * lt + 2, np.inf, fin), label=f"finite n={row.width}")
        _ecdf(ax, np.where(sde > 2 * lt + 2, np.inf, sde), color="k", label="SDE")
        ax.axvline(lt, ls=":", color="grey", label=f"Φ = {demo.threshold:g}")
        ax.set_xlim(right=2 * lt + 2)
        verdict = "stable" if row.verdict.stable else "unstable"
        ax.set(
            xlabel=f"ln Φ_T (T={row.T})",
            ylabel="ECDF",
            title=f"{name}: b_*={row.verdict.b_star:.3g} ({verdict})",
        )
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "sde_stability.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
