"""Plots of finite-width diagnostics (data in, file out; the computations live elsewhere)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["plot_kurtosis", "plot_ntk_variance"]


def plot_kurtosis(records: Sequence[dict], path: str | Path) -> Path:
    """``n·(excess kurtosis)`` against the width ``n``: measured with ±2 SE bars, predicted
    at order 1/n as a line, one colour per input.  ``records`` are rows with the keys
    ``width``, ``input``, ``n_kurtosis_predicted``, ``n_kurtosis_measured``,
    ``n_kurtosis_se`` (as ``widelimit finite-width --json`` prints)."""
    return _plot_scaled(records, path, "n_kurtosis", "n · excess kurtosis")


def plot_ntk_variance(records: Sequence[dict], path: str | Path) -> Path:
    """``n·Var Θ/Θ²`` (the NTK's relative variance) against ``n``, as :func:`plot_kurtosis`
    (keys ``n_relvar_predicted``, ``n_relvar_measured``, ``n_relvar_se``)."""
    return _plot_scaled(records, path, "n_relvar", "n · NTK relative variance")


def _plot_scaled(records: Sequence[dict], path: str | Path, key: str, ylabel: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for a in sorted({r["input"] for r in records}):
        rs = sorted((r for r in records if r["input"] == a), key=lambda r: r["width"])
        ns = [r["width"] for r in rs]
        bars = ax.errorbar(
            ns,
            [r[f"{key}_measured"] for r in rs],
            yerr=[2 * r[f"{key}_se"] for r in rs],
            fmt="o",
            capsize=3,
            label=f"input {a}: Monte Carlo ±2 SE",
        )
        ax.plot(
            ns,
            [r[f"{key}_predicted"] for r in rs],
            "-",
            color=bars[0].get_color(),
            label=f"input {a}: order 1/n",
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("hidden width n")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
