"""Value types shared by the atlas pages: the headline check, figures, tables, published numbers.

Every page module (``widelimit.atlas.<page>``) has the same shape:

* ``Config`` — a frozen dataclass of sizes; ``Config.quick()`` is the small variant;
* ``compute(cfg, *, progress=True) -> Result`` — calls the library and returns a dataclass
  holding every plotted number, its :class:`Headline` and its run time;
* ``figures(result, out_dir) -> list[Figure]`` — draws (separately from computing);
* ``content(result) -> PageContent`` — the text, tables and published numbers of the page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "Figure",
    "Headline",
    "PageContent",
    "Published",
    "Table",
    "circle",
    "loglog_slope",
    "mpl",
]


@dataclass(frozen=True)
class Headline:
    """The page's headline number beside its theory value.

    ``tolerance`` is derived from the sampling error of ``value`` (e.g. ``3·stderr``, or a
    quantile of the statistic's null distribution) plus any stated finite-size bias; ``ok``
    says whether ``|value − theory| ≤ tolerance`` (for ``kind="max"``: ``value ≤ theory +
    tolerance``, a distance that should be at its noise level).
    """

    name: str
    value: float
    theory: float
    stderr: float
    tolerance: float
    rule: str
    kind: str = "equal"

    @property
    def ok(self) -> bool:
        if not (math.isfinite(self.value) and math.isfinite(self.tolerance)):
            return False
        if self.kind == "max":
            return self.value <= self.theory + self.tolerance
        return abs(self.value - self.theory) <= self.tolerance


@dataclass(frozen=True)
class Figure:
    """A saved PNG and its caption."""

    path: Path
    caption: str


@dataclass(frozen=True)
class Table:
    """A small table: ``columns`` names and ``rows`` of values (floats shown with 4 digits)."""

    title: str
    columns: list[str]
    rows: list[list[object]]


@dataclass(frozen=True)
class Published:
    """A published number beside ours, with the conditions under which they differ."""

    quantity: str
    published: str
    source: str
    ours: str
    conditions: str


@dataclass(frozen=True)
class PageContent:
    """Everything a page says besides its figures."""

    title: str
    formula: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    published: list[Published] = field(default_factory=list)


def loglog_slope(
    x: Sequence[float], y: Sequence[float], y_se: Sequence[float] | None = None
) -> tuple[float, float]:
    """``(slope, stderr)`` of ``log y`` on ``log x``: the library's one log-log fit
    (:func:`widelimit.propagation.fit_loglog`, standard error propagated from ``y_se``)."""
    from widelimit.propagation import fit_loglog

    slope, _, se = fit_loglog(x, y, y_se)
    return slope, se


def mpl():
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> Path:
    """Save ``fig`` as PNG at ``path`` (parents created) and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    mpl().close(fig)
    return path


def circle(gamma: np.ndarray, dtype=None):
    """Unit-circle inputs ``(cos γ, sin γ)``: ``(len(gamma), 2)`` tensor (float64 default)."""
    import torch

    g = np.asarray(gamma, dtype=np.float64)
    return torch.tensor(np.stack([np.cos(g), np.sin(g)], 1), dtype=dtype or torch.float64)
