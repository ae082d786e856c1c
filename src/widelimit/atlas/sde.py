"""Page 7 — the neural covariance SDE (Li, Nica, Roy 2022): depth and width grow together
(T = d/n) and the covariance of shaped nets follows an SDE.

Numbers: :func:`widelimit.sde.compare_relu` (finite shaped-ReLU nets from the exact
Gaussian sampler vs the correlation SDE) and :func:`widelimit.sde.demonstrate_stability`
(the norm-stability verdict b_* of smooth shaped activations); figures from
:mod:`widelimit.sde.plots`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from widelimit.atlas.core import Figure, Headline, PageContent, Published, Table

__all__ = ["Config", "Result", "compute", "content", "figures"]

SLUG = "sde"
TITLE = "Neural covariance SDE"

# two-sample KS: P(D > c·√(1/n₁ + 1/n₂)) = 0.1 % at c = 1.949 (Kolmogorov distribution)
KS_999 = 1.9495


@dataclass(frozen=True)
class Config:
    c_plus: float = 0.0
    c_minus: float = -1.0
    rho0: float = 0.3
    widths: tuple[int, ...] = (16, 64, 256)
    times: tuple[float, ...] = (0.25, 0.5, 1.0)
    n_nets: int = 5000
    n_paths: int = 50_000
    dt: float = 1 / 512
    stability: tuple[str, ...] = ("tanh", "quadratic")
    stability_width: int = 128
    stability_nets: int = 2000
    stability_paths: int = 20_000
    seed: int = 0

    @classmethod
    def quick(cls) -> Config:
        return cls(
            widths=(16, 64),
            times=(0.5, 1.0),
            n_nets=2000,
            n_paths=20_000,
            dt=1 / 256,
            stability_width=64,
            stability_nets=1000,
            stability_paths=5000,
        )


@dataclass(frozen=True)
class Result:
    config: Config
    comparison: object  # widelimit.sde.SDEComparison
    stability: object  # widelimit.sde.StabilityDemo
    headline: Headline
    seconds: float


def compute(cfg: Config | None = None, *, progress: bool = True) -> Result:
    from widelimit.sde import compare_relu, demonstrate_stability

    cfg = cfg or Config()
    t0 = time.perf_counter()
    # one stream shared by both experiments
    gen = torch.Generator().manual_seed(cfg.seed)
    cmp = compare_relu(
        c_plus=cfg.c_plus,
        c_minus=cfg.c_minus,
        rho0=cfg.rho0,
        widths=cfg.widths,
        times=cfg.times,
        n_nets=cfg.n_nets,
        n_paths=cfg.n_paths,
        dt=cfg.dt,
        seed=gen,
        progress=progress,
    )
    stab = demonstrate_stability(
        cfg.stability,
        width=cfg.stability_width,
        times=cfg.times,
        n_nets=cfg.stability_nets,
        n_paths=cfg.stability_paths,
        seed=gen,
        progress=progress,
    )
    n = max(cfg.widths)
    rows = [r for r in cmp.rows if r.width == n]
    worst = max(rows, key=lambda r: r.ks_rho)
    tol = KS_999 * math.sqrt(1 / cfg.n_nets + 1 / cfg.n_paths)
    head = Headline(
        name=f"largest two-sample KS distance between ρ_T of finite nets (n = {n}, d = Tn) and "
        f"the SDE, over T in {list(cfg.times)}",
        value=worst.ks_rho,
        theory=0.0,
        stderr=worst.ks_noise,
        tolerance=tol,
        rule=f"99.9 % quantile of the KS null law for {cfg.n_nets} vs {cfg.n_paths} samples "
        "(1.95·√(1/n₁ + 1/n₂)); the finite-width bias O(n^-1/2) must already be below it",
        kind="max",
    )
    return Result(cfg, cmp, stab, head, time.perf_counter() - t0)


def figures(res: Result, out_dir: Path) -> list[Figure]:
    from widelimit.sde.plots import plot_comparison, plot_stability

    caps = {
        "sde_relu_compare": "Empirical CDFs of the correlation ρ_T and of the log-norm "
        "ln Φ_T of finite shaped-ReLU nets at several widths and T = d/n, against the SDE.",
        "sde_stability": "ln Φ_T of one input through smooth shaped nets and the one-input SDE: "
        "b_* < 0 (tanh) keeps norms bounded, b_* > 0 sends a growing fraction to overflow.",
    }
    paths = plot_comparison(res.comparison, out_dir) + plot_stability(res.stability, out_dir)
    return [Figure(Path(p), caps.get(Path(p).stem, Path(p).stem)) for p in paths]


def content(res: Result) -> PageContent:
    cmp, st, cfg = res.comparison, res.stability, res.config
    rows = [
        [
            r.width,
            r.T,
            r.depth,
            r.ks_rho,
            r.ks_lognorm,
            r.ks_noise,
            r.finite_rho.mean,
            r.sde_rho.mean,
        ]
        for r in cmp.rows
    ]
    srows = [
        [
            r.verdict.name,
            r.verdict.b_star,
            "stable" if r.verdict.stable else "unstable",
            r.T,
            r.frac_large_finite,
            r.frac_large_sde,
            r.se_frac,
        ]
        for r in st.rows
    ]
    return PageContent(
        title=TITLE,
        formula=(
            "With shaped activations (ReLU slopes s± = 1 + c±/√n, smooth φ_s(x) = s φ(x/s), "
            "s = a√n) and depth d = Tn, the penultimate covariance Φ of m inputs converges to "
            "the SDE dΦ = b(Φ) dt + Σ(Φ)^{1/2} dB, Σ^{αβ,γδ} = Φ^{αγ}Φ^{βδ} + Φ^{αδ}Φ^{βγ}; "
            "one input: dΦ = b_* Φ(Φ − 1) dt + √2 Φ dB, norms stable iff b_* < 0."
        ),
        paragraphs=[
            f"Shaped ReLU c₊ = {cfg.c_plus}, c₋ = {cfg.c_minus}, two inputs with ρ₀ = "
            f"{cfg.rho0}; {cfg.n_nets} finite nets per (n, T) from the exact Gaussian layer "
            f"sampler and {cfg.n_paths} SDE paths (step {cfg.dt:.3g}).",
        ],
        tables=[
            Table(
                "Finite nets vs the SDE",
                [
                    "n",
                    "T",
                    "d",
                    "KS ρ_T",
                    "KS ln Φ_T vs N(−T, 2T)",
                    "KS noise level",
                    "mean ρ_T (nets)",
                    "mean ρ_T (SDE)",
                ],
                rows,
            ),
            Table(
                f"Norm stability (width {cfg.stability_width}, threshold Φ > {st.threshold})",
                ["φ", "b_*", "verdict", "T", "P(large) nets", "P(large) SDE", "± se"],
                srows,
            ),
        ],
        published=[
            Published(
                "stability of tanh-shaped nets",
                "b_* = −2 < 0: stable",
                "Li, Nica, Roy 2022 (b_* = (¾φ''(0)² + φ'''(0))/a²)",
                f"b_* = {st.rows[0].verdict.b_star:g}" if st.rows else "—",
                "same formula; finite nets at one width only",
            ),
        ],
    )
