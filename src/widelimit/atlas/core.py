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
    "ensemble_covariances",
    "jacobian_gain",
    "loglog_slope",
    "mpl",
    "scale_mixture_kurtosis",
    "slope_headline",
]


@dataclass(frozen=True)
class Headline:
    """The page's headline number beside its theory value.

    ``tolerance`` is derived from the sampling error of ``value`` (e.g. ``3·stderr``, or a
    quantile of the statistic's null distribution) plus any stated finite-size bias; ``ok``
    says whether ``|value − theory| ≤ tolerance``: a two-sided comparison that a wrong theory
    fails (issue 21). Every page uses ``kind="equal"``; ``kind="max"`` (``value ≤ theory +
    tolerance``, a one-sided bound that cannot fail when the effect is smaller) is kept only
    to read JSON written by older versions.
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
    """A published number beside ours, as printed.

    ``published`` is the value as printed and ``error_bar`` its error bar as printed (or
    ``"no error bar printed"``); ``source`` the paper, ``where`` its table/figure/theorem
    (``"unverified"`` when we could not check it); ``ours`` our value ± its error on the
    conditions stated in ``conditions`` (what differs from the paper). A number that is our
    own derivation has ``source`` starting with ``"ours"``.
    """

    quantity: str
    published: str
    error_bar: str
    source: str
    where: str
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
    falsified_by: str = ""  # the result that would have falsified the theory


def loglog_slope(
    x: Sequence[float], y: Sequence[float], y_se: Sequence[float] | None = None
) -> tuple[float, float]:
    """``(slope, stderr)`` of ``log y`` on ``log x``: the library's one log-log fit
    (:func:`widelimit.propagation.fit_loglog`, standard error propagated from ``y_se``)."""
    from widelimit.propagation import fit_loglog

    fit = fit_loglog(x, y, y_se)
    return float(fit.slope), float(fit.stderr)


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


def slope_headline(
    name: str, slope: float, se: float, theory: float, *, k: float = 3.0, note: str = ""
) -> Headline:
    """A fitted log-log rate ``slope ± se`` against the rate ``theory`` predicts: agrees iff
    ``|slope − theory| ≤ k·se`` (two-sided; a wrong predicted rate fails)."""
    rule = f"{k:g} standard errors of the fitted slope" + (f"; {note}" if note else "")
    return Headline(name, float(slope), float(theory), float(se), k * float(se), rule)


def worst_of_headline(
    measured: np.ndarray,
    se: np.ndarray,
    predicted: np.ndarray,
    *,
    what: str,
    noun: str,
    versus: str,
    note: str,
) -> Headline:
    """Every ``measured`` value (± ``se``) against its ``predicted`` one (arrays of any shape,
    ``m`` values), within the Bonferroni bound ``t·se`` with ``P(max_m |N(0,1)| > t) ≤ 0.1 %``;
    the headline shows the worst point (two-sided: too high or too low fails). Named
    ``"worst of m {what} vs {versus}"``; the rule counts ``m {noun}`` and ends with ``note``."""
    from scipy import stats

    y, s, f = (np.asarray(a, dtype=float).ravel() for a in (measured, se, predicted))
    z = (y - f) / s
    i = int(np.argmax(np.abs(z)))
    t = float(stats.norm.isf(1e-3 / (2 * z.size)))
    return Headline(
        name=f"worst of {z.size} {what} vs {versus}",
        value=float(y[i]),
        theory=float(f[i]),
        stderr=float(s[i]),
        tolerance=t * float(s[i]),
        rule=f"{t:.2f} standard errors (Bonferroni over {z.size} {noun}: false alarm ≤ 0.1 %; "
        f"{note})",
    )


def _erf(h: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return erf(h)


def _erf_prime(h: np.ndarray) -> np.ndarray:
    return 2 / math.sqrt(math.pi) * np.exp(-h * h)


ACTIVATIONS = {"tanh": np.tanh, "relu": lambda h: np.maximum(h, 0.0), "erf": _erf}
DERIVATIVES = {
    "tanh": lambda h: 1.0 - np.tanh(h) ** 2,
    "relu": lambda h: (h > 0).astype(float),
    "erf": _erf_prime,
}


def scale_mixture_kurtosis(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Excess kurtosis ``3 Var Σ/(E Σ)²`` of a Gaussian scale mixture ``N(0, Σ)`` from
    samples of ``Σ`` over nets (last axis), ``(..., M) -> (...)``, and its delta-method
    standard error (the relative SE of a sample variance, ``√((m₄/m₂² − 1)/M)``; the error
    of ``E Σ`` is smaller by a factor ``√κ`` and neglected)."""
    m = s.shape[-1]
    k = 3 * s.var(-1, ddof=1) / s.mean(-1) ** 2
    c = s - s.mean(-1, keepdims=True)
    c2 = (c**2).mean(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(c2 > 0, (c**4).mean(-1) / np.where(c2 > 0, c2, 1) ** 2, 1.0)
    return k, k * np.sqrt((r - 1) / m)


def jacobian_gain(
    activation: str,
    w_var: float,
    b_var: float,
    q0: float,
    width: int,
    depth: int,
    n_nets: int,
    seed: int = 0,
) -> np.ndarray:
    """Per-layer squared gain ``‖δh^{l+1}‖²/‖δh^l‖²`` of a random tangent ``δh`` through
    ``n_nets`` finite nets of ``width`` (the finite-net measurement of χ₁).

    Pre-activations ``h^{l+1} = σw W φ(h^l)/√n + σb b`` and their tangent
    ``δh^{l+1} = σw W (φ'(h^l) ⊙ δh^l)/√n`` share ``W``; given layer ``l`` the rows of
    ``(h^{l+1}, δh^{l+1})`` are i.i.d. Gaussian with covariance ``σw² G/n + σb² e₁e₁ᵀ``,
    ``G`` the 2 × 2 Gram of ``(φ(h^l), φ'(h^l) ⊙ δh^l)`` (exact for Gaussian weights).
    Start: ``h¹ ~ N(0, q0)``, ``δh¹ ~ N(0, 1)`` independent. Returns ``(n_nets, depth)``.
    """
    phi, dphi = ACTIVATIONS[activation], DERIVATIVES[activation]
    rng = np.random.default_rng(seed)
    h = np.sqrt(q0) * rng.standard_normal((n_nets, width))
    dh = rng.standard_normal((n_nets, width))
    out = np.empty((n_nets, depth))
    for layer in range(depth):
        a, g = phi(h), dphi(h) * dh
        cols = np.stack([a, g], -1)  # (M, n, 2)
        cov = w_var * (np.swapaxes(cols, -1, -2) @ cols) / width
        cov[:, 0, 0] += b_var
        evals, evecs = np.linalg.eigh(cov)
        fac = evecs * np.sqrt(np.clip(evals, 0, None))[:, None, :]
        z = rng.standard_normal((n_nets, width, 2)) @ np.swapaxes(fac, -1, -2)
        new = (z[..., 1] ** 2).sum(-1)
        out[:, layer] = new / (dh**2).sum(-1)
        h, dh = z[..., 0], z[..., 1]
    return out


def ensemble_covariances(
    activation: str,
    w_var: float,
    b_var: float,
    depth: int,
    width: int,
    gram0: np.ndarray,
    n_nets: int,
    seed: int = 0,
) -> np.ndarray:
    """Conditional covariances of the pre-activations of ``n_nets`` independent finite nets.

    Net: ``h¹ = σw W⁰ x/√n₀ + σb b``, ``h^{l+1} = σw W^l φ(h^l)/√n + σb b`` with i.i.d.
    ``N(0, 1)`` weights and biases and ``depth`` hidden layers of ``width`` units. For ``m``
    inputs with Gram ``gram0 = x xᵀ/n₀`` ``(m, m)``, the units of layer ``l`` given layer
    ``l − 1`` are i.i.d. ``N(0, Σ_l)`` with ``Σ_l = σw² φ(H)ᵀφ(H)/n + σb²`` (exact for
    Gaussian weights), so each layer costs ``n·m`` Gaussians (the exact sampler of
    :mod:`widelimit.sde.finite`, with biases).

    Returns ``(depth + 1, n_nets, m, m)``: ``Σ_1, …, Σ_{depth+1}`` (the last one is the
    law of a readout unit, i.e. of the net's output given its last hidden layer).
    """
    phi = ACTIVATIONS[activation]
    g0 = np.asarray(gram0, dtype=np.float64)
    m = g0.shape[0]
    rng = np.random.default_rng(seed)
    out = np.empty((depth + 1, n_nets, m, m))
    sig = np.broadcast_to(w_var * g0 + b_var, (n_nets, m, m)).copy()
    out[0] = sig
    for layer in range(1, depth + 1):
        evals, evecs = np.linalg.eigh(sig)
        fac = evecs * np.sqrt(np.clip(evals, 0, None))[:, None, :]  # fac facᵀ = Σ
        z = rng.standard_normal((n_nets, width, m))
        a = phi(z @ np.swapaxes(fac, -1, -2))  # (nets, n, m): rows ~ N(0, Σ_l)
        sig = w_var * (np.swapaxes(a, -1, -2) @ a) / width + b_var
        out[layer] = sig
    return out
