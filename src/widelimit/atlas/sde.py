"""Page 7 — the neural covariance SDE (Li, Nica, Roy 2022): depth and width grow together
(T = d/n) and the covariance of shaped nets follows an SDE.

Numbers: :func:`widelimit.sde.compare_relu` (finite shaped-ReLU nets from the exact
Gaussian sampler vs the correlation SDE) and :func:`widelimit.sde.demonstrate_stability`
(the norm-stability verdict b_* of smooth shaped activations); figures from
:mod:`widelimit.sde.plots`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from widelimit.atlas.core import Figure, Headline, PageContent, Published, Table, mpl, save

__all__ = ["Config", "Result", "compute", "content", "deterministic_rho", "figures",
           "ks_headline"]  # fmt: skip

SLUG = "sde"
TITLE = "Neural covariance SDE"

# two-sample KS: P(D > c·√(1/n₁ + 1/n₂)) = 0.1 % at c = 1.949 (Kolmogorov distribution)
KS_999 = 1.9495
ALPHA = 1e-3  # two-sided level of the headline's null band
FLAG_Z = 2.5  # stability rows with |z| above this are flagged on the page


def ks_headline(finite: np.ndarray, sde: np.ndarray, *, label: str = "") -> Headline:
    """The page's check: the two-sample KS distance between ``finite`` and ``sde`` samples
    minus the median of its null law (Kolmogorov's, at the effective size
    ``n₁n₂/(n₁+n₂)``); agrees iff inside the central ``1 − ALPHA`` band (two-sided)."""
    from scipy import stats

    n1, n2 = len(finite), len(sde)
    null = stats.kstwo(max(1, round(n1 * n2 / (n1 + n2))))
    med = float(null.median())
    lo, hi = float(null.ppf(ALPHA / 2)), float(null.ppf(1 - ALPHA / 2))
    d = float(stats.ks_2samp(finite, sde).statistic) - med
    return Headline(
        name=f"two-sample KS of ρ_T, finite nets vs SDE{label}, minus the null median",
        value=d,
        theory=0.0,
        stderr=float(null.ppf(0.8413) - null.ppf(0.1587)) / 2,
        tolerance=(hi - med) if d >= 0 else (med - lo),
        rule=f"central {100 * (1 - ALPHA):g} % band of the KS null law for {n1} vs {n2} "
        f"samples: [{lo - med:.4f}, {hi - med:+.4f}]; the finite-width bias must be below it",
    )


def deterministic_rho(rho0: float, c_plus: float, c_minus: float, times) -> np.ndarray:
    """The infinite-width (noise-free) prediction: ``dρ/dT = ν(ρ)`` from ``ρ₀`` (ours: the
    drift of the covariance SDE without its noise; as n → ∞ at fixed shaping the kernel map
    iterated d = Tn times follows it). Returns ``ρ(T)`` at ``sorted(times)``."""
    from scipy.integrate import solve_ivp

    from widelimit.sde.drift import relu_nu

    def f(_t, r):
        return relu_nu(torch.tensor(r, dtype=torch.float64), c_plus, c_minus).numpy()

    ts = sorted(float(t) for t in times)
    sol = solve_ivp(f, (0.0, ts[-1]), [rho0], t_eval=ts, rtol=1e-10, atol=1e-12)
    return sol.y[0]


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
    rho_deterministic: list[float]  # infinite-width ODE prediction ρ(T) at sorted(cfg.times)
    stability_z: list[float]  # per stability row: (P nets − P SDE)/se
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
    n, t_last = max(cfg.widths), max(cfg.times)
    head = ks_headline(
        np.asarray(cmp.finite_rho[(n, t_last)]), np.asarray(cmp.sde_rho[t_last]),
        label=f" (n = {n}, d = Tn, T = {t_last})",
    )  # fmt: skip
    rho_det = deterministic_rho(cfg.rho0, cfg.c_plus, cfg.c_minus, cfg.times).tolist()
    z = [
        (r.frac_large_finite - r.frac_large_sde) / r.se_frac if r.se_frac > 0 else 0.0
        for r in stab.rows
    ]
    return Result(cfg, cmp, stab, rho_det, z, head, time.perf_counter() - t0)


def figures(res: Result, out_dir: Path) -> list[Figure]:
    from widelimit.sde.plots import plot_comparison, plot_stability

    caps = {
        "sde_relu_compare": "Empirical CDFs of the correlation ρ_T and of the log-norm "
        "ln Φ_T of finite shaped-ReLU nets at several widths and T = d/n, against the SDE.",
        "sde_stability": "ln Φ_T of one input through smooth shaped nets and the one-input SDE: "
        "b_* < 0 (tanh) keeps norms bounded, b_* > 0 sends a growing fraction to overflow.",
    }
    del plot_comparison  # the ρ figure is drawn here, with the deterministic prediction
    cmp, cfg = res.comparison, res.config
    plt = mpl()
    times = sorted(cmp.sde_rho)
    fig, axes = plt.subplots(1, len(times), figsize=(5 * len(times), 3.6), squeeze=False)
    for ax, t, rd in zip(axes[0], times, res.rho_deterministic, strict=True):
        for x, kw in [(cmp.sde_rho[t], {"color": "k", "lw": 2, "label": "SDE"})] + [
            (cmp.finite_rho[(n, t)], {"label": f"n={n}, d={round(t * n)}"})
            for n in sorted(cfg.widths)
        ]:
            x = np.sort(np.asarray(x))
            ax.step(x, np.arange(1, x.size + 1) / x.size, where="post", **kw)
        ax.axvline(rd, color="C3", ls="--", label=f"infinite width (ODE): ρ = {rd:.3f}")
        ax.set(xlabel=f"ρ_T (T = {t})", ylabel="ECDF", title=f"correlation, ρ₀ = {cmp.rho0}")
        ax.legend(fontsize=7)
    rho_fig = save(fig, out_dir / "sde_relu_compare.png")
    paths = [rho_fig, *plot_stability(res.stability, out_dir)]
    caps["sde_relu_compare"] = (
        "Empirical CDFs of the correlation ρ_T of finite shaped-ReLU nets at several widths "
        "and T = d/n, against the SDE (black) and the infinite-width deterministic "
        "prediction dρ/dT = ν(ρ) (red dashed, ours): at a fixed depth-to-width ratio the "
        "limit is random, not the deterministic kernel."
    )
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
            z,
        ]
        for r, z in zip(st.rows, res.stability_z, strict=True)
    ]
    flagged = [
        f"{r.verdict.name} at T = {r.T}: P(large) {r.frac_large_finite:.4f} (nets) vs "
        f"{r.frac_large_sde:.4f} (SDE), z = {z:+.1f}"
        for r, z in zip(st.rows, res.stability_z, strict=True)
        if abs(z) > FLAG_Z
    ]
    flag = (
        f"DISCREPANCY FLAGGED (|z| > {FLAG_Z}): " + "; ".join(flagged) + ". Measured at width "
        f"n = {cfg.stability_width}, d = Tn, {cfg.stability_nets} nets and "
        f"{cfg.stability_paths} SDE paths with step dt = 1/n = 1/{cfg.stability_width} "
        "(demonstrate_stability's choice). Investigated against n and dt (docs/atlas.md, "
        "'7 sde'): for the quadratic activation the gap at T = 1 falls with width (0.037, "
        "0.031, 0.012, 0.003 at n = 32, 64, 128, 256; SDE step bias ≤ 0.003 and of the other "
        "sign; threshold crossings counted alike on both sides), so it is a finite-width "
        "correction: at this width the row does not confirm the SDE to its SE."
        if flagged
        else f"Every stability row agrees within {FLAG_Z} SE (width {cfg.stability_width}); the "
        "full-size run has shown a ≈ 3 SE difference for one activation (issue 21)."
    )
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
            f"sampler and {cfg.n_paths} SDE paths (step {cfg.dt:.3g}). Infinite-width "
            "deterministic prediction (ours): "
            + ", ".join(
                f"ρ = {r:.4f} at T = {t}"
                for t, r in zip(sorted(cfg.times), res.rho_deterministic, strict=True)
            )
            + "; compare the mean ρ_T columns.",
            flag,
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
                ["φ", "b_*", "verdict", "T", "P(large) nets", "P(large) SDE", "± se", "z"],
                srows,
            ),
        ],
        falsified_by=(
            "a two-sample KS distance between ρ_T of the widest finite nets and the SDE outside "
            "the KS null band (e.g. ρ_T collapsing onto the deterministic infinite-width curve, "
            "or a drift with the wrong ν), or a norm-stability verdict contradicted by the "
            "finite nets."
        ),
        published=[
            # our own evaluation of Li, Nica, Roy 2022's b_* formula, not a printed number
            Published(
                "b_* of tanh-shaped nets (a = 1)",
                f"{st.rows[0].verdict.b_star:g}" if st.rows else "—",
                "— (computed, not printed)",
                "ours: b_* = (¾φ''(0)² + φ'''(0))/a² evaluated from the one-input SDE of "
                "Li, Nica, Roy 2022",
                "formula: theorem/equation number unverified",
                "stable: P(Φ_T > threshold) ≈ 0 in finite nets (table above)",
                "our derivation from their formula; finite nets at one width only",
            ),
        ],
    )
