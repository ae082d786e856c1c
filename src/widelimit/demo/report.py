"""Write the demo report: ``index.html`` (self-contained, PNGs base64-embedded),
the PNG files themselves and ``results.json``."""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
from pathlib import Path

from widelimit.demo.compute import DemoResult, SlopeFit
from widelimit.serialization import jsonable

__all__ = [
    "DISAGREE_SE",
    "opening_paragraphs",
    "rate_lines",
    "rate_text",
    "result_dict",
    "summary_rows",
    "write_report",
]

DISAGREE_SE = 3.0
"""A fitted rate more than this many standard errors from theory gets an explanation."""

SUMMARY_COLUMNS = ["width", "seeds", "acc", "± sd", "MSE", "‖f−f_lin‖", "Θ₀ err", "ΔΘ"]


def result_dict(res: DemoResult) -> dict:
    """JSON-ready dictionary of the result (kernel heatmaps left out)."""
    d = {f.name: getattr(res, f.name) for f in dataclasses.fields(res) if f.name != "heatmaps"}
    return jsonable(d)


def summary_rows(res: DemoResult) -> tuple[list[str], list[list[object]]]:
    """The summary table: one row per width plus the infinite-width rows."""
    rows: list[list[object]] = []
    for s in res.widths:
        sd = s.accuracy_sd if s.n_seeds > 1 else "- (1 seed)"  # one seed: no spread to show
        rows.append([s.width, s.n_seeds, s.accuracy_mean, sd, s.mse_mean, s.dist_mean,
                     s.ntk_init_error_mean, s.ntk_change_mean])  # fmt: skip
    inf = res.infinite
    rows.append(["∞ uncentered", "GP f₀", inf.single_net_accuracy_t_end,
                 inf.single_net_accuracy_sd, inf.single_net_mse_t_end, 0.0, 0.0, 0.0])  # fmt: skip
    rows.append(["∞ NTK t=Kη", "-", inf.ntk_accuracy_t_end, 0.0, inf.ntk_mse_t_end,
                 "-", "-", "-"])  # fmt: skip
    rows.append(["∞ NTK t=∞", "-", inf.ntk_accuracy_inf, 0.0, inf.ntk_mse[-1], "-", "-", "-"])
    rows.append(["∞ NNGP", "-", inf.nngp_accuracy_inf, 0.0, inf.nngp_mse[-1], "-", "-", "-"])
    return SUMMARY_COLUMNS, rows


# ------------------------------------------------------------------ plain-language text
# (name, what is fitted, where the theory value comes from, likely reasons for a disagreement)
_RATES = {
    "dist_slope": (
        "distance of the trained nets to their linearisation, ‖f_width − f_lin‖",
        "Lee et al. 2019: a wide net trains like its linearisation up to O(width^−½)",
        "with a few widths the straight line also absorbs the larger-than-asymptotic "
        "corrections at the smallest widths (and float32 round-off at the largest), and the "
        "standard error, taken from the scatter of the points about the line, does not see "
        "a systematic curve; more widths and seeds (run without --quick) test the rate better",
    ),
    "ntk_init_slope": (
        "error of the empirical NTK at initialisation, ‖Θ₀ − Θ‖/‖Θ‖",
        "the empirical NTK is an average over width neurons, so its fluctuations are "
        "O(width^−½) (central limit theorem)",
        "it is measured on one seed's net and a few inputs per width, so each point is noisy, "
        "and at small widths terms beyond the leading one matter; more seeds (--seeds) and "
        "widths make the fit reliable",
    ),
    "ntk_change_slope": (
        "change of the empirical NTK during training, ‖Θ_T − Θ₀‖/‖Θ₀‖",
        "the bound of Jacot et al. 2018 and Lee et al. 2019 is O(width^−½)",
        "−½ is an upper bound on the rate: perturbative analyses (Dyer & Gur-Ari 2020; "
        "Roberts, Yaida & Hanin 2022) find that the kernel moves by O(1/width) during "
        "training, so a "
        "slope between −½ and −1 is expected and is not a failure of the limit",
    ),
}


def _fits(res: DemoResult) -> list[tuple[str, SlopeFit]]:
    names = ("dist_slope", "ntk_init_slope", "ntk_change_slope")
    return [(n, getattr(res, n)) for n in names if getattr(res, n, None) is not None]


def rate_text(name: str, fit: SlopeFit) -> str:
    """One sentence: the fitted rate with its standard error, the theory value and a verdict.

    ``name`` is a field of :class:`DemoResult` (``dist_slope``, ``ntk_init_slope`` or
    ``ntk_change_slope``).  More than :data:`DISAGREE_SE` standard errors from theory adds
    "the fitted slope is N SE steeper/shallower than theory: <likely reason>"; with no
    standard error (two widths) it says so instead of printing ``± nan``.
    """
    what, source, reason = _RATES[name]
    head = f"{what}: fitted slope {fit.slope:.3f}"
    if not math.isfinite(fit.stderr):
        return (
            f"{head} (theory {fit.theory:g}; {source}) — only two widths, so no standard "
            "error: add widths to test the rate"
        )
    head += f" ± {fit.stderr:.3f} (standard error), theory {fit.theory:g} ({source})"
    z = fit.z
    if not math.isfinite(z):  # stderr 0: points exactly on a line
        return f"{head}; the points lie exactly on a line, so no standard error to compare"
    if abs(z) <= DISAGREE_SE:
        return f"{head}; agrees with theory ({abs(z):.1f} SE away)"
    side = "steeper" if fit.slope < fit.theory else "shallower"
    return f"{head}. The fitted slope is {abs(z):.1f} SE {side} than theory: {reason}"


def rate_lines(res: DemoResult) -> list[str]:
    """:func:`rate_text` for every fitted rate of ``res``."""
    return [rate_text(name, fit) for name, fit in _fits(res)]


def opening_paragraphs(res: DemoResult) -> list[str]:
    """The report's plain-language opening: what was computed and what this run shows."""
    cfg, inf = res.config, res.infinite
    first, last = res.widths[0], res.widths[-1]
    what = [
        "A neural network whose hidden layers are infinitely wide is no longer random in the "
        "way a finite one is: averaged over its random initial weights it becomes a Gaussian "
        "process, whose covariance is the NNGP kernel (Neural Network Gaussian Process). "
        "Predicting with that kernel is exact Bayesian inference in the infinitely wide net.",
        "Training a net by gradient descent with a very small step is gradient flow. For an "
        "infinitely wide net, gradient flow never leaves the first-order Taylor expansion of "
        "the net around its initial weights (its linearisation), and the expansion is governed "
        "by one fixed kernel, the NTK (Neural Tangent Kernel). So the trained net's prediction "
        "at every training time t has a closed form.",
        f"This run checks both statements on real data ({res.protocol.split(';')[0]}): "
        f"it computes the NNGP and NTK predictions, then trains finite nets of widths "
        f"{', '.join(str(w) for w in cfg.widths)} ({cfg.seeds} seed"
        f"{'s' if cfg.seeds > 1 else ''} each) by gradient descent for {res.steps} steps and "
        "measures how far they are from the infinite-width prediction as the width grows.",
    ]
    dist_ratio = first.dist_mean / last.dist_mean
    # centered nets approach the NTK ensemble mean; uncentered ones a single infinite net
    if cfg.center:
        target, target_name = inf.ntk_accuracy_t_end, "the NTK prediction"
    else:
        target, target_name = inf.single_net_accuracy_t_end, "an infinite-width single net"
    gap_first = abs(first.accuracy_mean - target)
    gap_last = abs(last.accuracy_mean - target)
    conclude = (
        f"What this run shows: the infinite-width predictions reach test accuracy "
        f"{inf.nngp_accuracy_inf:.3f} (NNGP) and {inf.ntk_accuracy_inf:.3f} (NTK, trained to "
        f"the end); ten classes, so guessing gives 0.1. "
        f"Going from width {first.width} to {last.width}, the trained nets' outputs come "
        f"{dist_ratio:.1f}× closer to their linearisation (theory: "
        f"{math.sqrt(last.width / first.width):.1f}× for a rate of width^−½), and their test "
        f"accuracy moves from {gap_first:.3f} to {gap_last:.3f} away from {target_name} "
        f"at the same training time ({target:.3f}). "
    )
    if dist_ratio > 1 and gap_last <= gap_first + 0.02:
        conclude += "Wider finite nets behave more and more like the infinite-width kernels."
    else:
        conclude += (
            "This run does not show finite nets approaching the infinite-width prediction "
            "clearly; check the rates below (more widths, seeds or steps may be needed)."
        )
    return [*what, conclude]


def _table_html(columns: list[str], rows: list[list[object]]) -> str:
    def cell(v: object) -> str:
        return f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CAPTIONS = {
    "accuracy_vs_width": "Test accuracy and MSE of finite nets (mean ± sd over seeds) against "
    "the infinite-width predictions at the same training time.",
    "distance_vs_width": "RMS distance between each trained net and its linearisation with the "
    "analytic NTK from the same initial outputs; theory: slope −½ on log-log axes.",
    "ntk_change": "Empirical NTK (output 0) at initialisation vs the analytic NTK, and its "
    "relative change during training: both shrink as the width grows.",
    "time_sweep": "Infinite-width ensembles along gradient flow; the dotted line marks the "
    "training time of the finite nets.",
    "kernels": "Kernel heatmaps: entry (i, j) is the kernel between inputs i and j, sorted by "
    "label, so same-digit pairs form the diagonal blocks. The analytic NTK on training inputs "
    "and the empirical NTKs of finite nets (output 0, at initialisation) share one colour "
    "scale: the wider net's kernel is closer to the analytic one.",
}


def _legend_html(res: DemoResult) -> str:
    """Caption of the summary table: what every row and column means."""
    cfg = res.config
    centering = (
        "centered: each net is trained and evaluated as f(x; θ) − f(x; θ₀), so it approaches "
        "the row “∞ NTK t=Kη” as the width grows"
        if cfg.center
        else "uncentered: each net keeps its random initial function, so it approaches the row "
        "“∞ uncentered GP f₀” as the width grows"
    )
    rows = [
        ("rows labelled by a width",
         f"finite nets of that hidden width in the NTK parameterization, trained by full-batch "
         f"gradient descent for K = {res.steps} steps of η = {res.learning_rate:.4g} "
         f"(gradient-flow time t = K·η = {res.t_end:.4g}); mean over the seeds "
         f"(column “seeds”). The nets are {centering}."),
        ("∞ uncentered GP f₀",
         f"a single infinite-width net that is not centered: its initial function f₀ is drawn "
         f"from the NNGP, f₀ ~ GP(0, K), jointly on training and test inputs, and evolved by "
         f"linearised gradient flow with the analytic NTK to t = K·η. Accuracy and MSE are "
         f"means over {cfg.n_gp_draws} draws of f₀ and “± sd” is their spread (the random f₀ "
         f"adds variance that the ensemble mean averages out); its distance and NTK columns "
         f"are 0 by construction."),
        ("∞ NTK t=Kη",
         "mean prediction of an infinite ensemble of infinite-width nets trained by gradient "
         "flow on the NTK, at the training time of the finite nets, t = K·η."),
        ("∞ NTK t=∞", "the same ensemble mean at the end of training (t = ∞)."),
        ("∞ NNGP",
         "NNGP posterior mean: Bayesian inference in the infinite-width net, equivalently "
         "training only the readout layer to t = ∞."),
    ]  # fmt: skip
    cols = [
        ("acc", "test accuracy (argmax of the outputs)"),
        ("± sd", "standard deviation of the accuracy over seeds (width rows) or draws of f₀"),
        ("MSE", "test mean squared error over all outputs, on one-hot targets minus 1/classes"),
        ("‖f−f_lin‖",
         "RMS distance on test outputs between the trained net and its linearisation with the "
         "analytic NTK from the same initial outputs (theory: ∝ width^−½)"),
        ("Θ₀ err",
         "relative Frobenius distance between the net's empirical NTK at initialisation "
         "(output 0) and the analytic NTK"),
        ("ΔΘ", "relative change of the net's empirical NTK during training"),
    ]  # fmt: skip
    items = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in rows + cols)
    return (
        '<div class="legend"><p>Rows and columns of the summary table '
        "(derivations: docs/inference.md):</p>"
        f"<ul>{items}</ul><p>“-” marks a quantity that does not apply to that row.</p></div>"
    )


def _literature_html(res: DemoResult) -> str:
    lit = res.literature
    if lit is None:
        return ""
    rows = [["NNGP (ReLU), this run", lit.nngp_accuracy], ["NTK (ReLU, t=∞), this run",
            lit.ntk_accuracy]] + [[k, v] for k, v in lit.published.items()]  # fmt: skip
    return (
        "<h2>MNIST-5k beside the literature</h2>"
        + _table_html(["model", "test accuracy"], rows)
        + f"<p>Protocol: {html.escape(lit.protocol)}; diag_reg = {lit.diag_reg:g}.</p>"
    )


def write_report(res: DemoResult, out: str | Path = "widelimit-report") -> Path:
    """Write ``index.html``, ``<plot>.png``, ``results.json`` into ``out``; return the HTML path."""
    from widelimit.demo.plots import all_figures

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = result_dict(res)
    (out / "results.json").write_text(json.dumps(data, indent=2))
    sections = []
    import matplotlib.pyplot as plt

    for stem, fig in all_figures(res).items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        png = buf.getvalue()
        (out / f"{stem}.png").write_bytes(png)
        b64 = base64.b64encode(png).decode()
        sections.append(
            f'<figure><img alt="{stem}" src="data:image/png;base64,{b64}">'
            f"<figcaption>{html.escape(_CAPTIONS.get(stem, stem))}</figcaption></figure>"
        )
    cols, rows = summary_rows(res)
    inf, cfg = res.infinite, res.config
    facts = [
        ("data", res.protocol),
        ("net", cfg.net),
        ("finite training", f"full-batch GD on ½·mean (f−y)², {res.steps} steps of "
         f"η = {res.learning_rate:.4g} (t = K·η = {res.t_end:.4g}); NTK parameterization; "
         f"widths {list(cfg.widths)}; {cfg.seeds} seed{'s' if cfg.seeds > 1 else ''}"),
        ("NNGP test accuracy (t = ∞)", f"{inf.nngp_accuracy_inf:.4f}"),
        ("NTK test accuracy (t = ∞ / t = K·η)",
         f"{inf.ntk_accuracy_inf:.4f} / {inf.ntk_accuracy_t_end:.4f}"),
        ("condition numbers (NNGP, NTK)", f"{inf.cond_nngp:.3g}, {inf.cond_ntk:.3g}"),
        ("run time", f"{res.seconds:.1f} s"),
    ]  # fmt: skip
    facts_html = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts
    )
    opening = "".join(f"<p>{html.escape(p)}</p>" for p in opening_paragraphs(res))
    rates = "".join(f"<li>{html.escape(line)}</li>" for line in rate_lines(res))
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>widelimit demo report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;
text-align:left}}img{{max-width:100%}}figure{{margin:1.5em 0}}figcaption{{color:#444}}</style>
</head><body>
<h1>widelimit demo: finite networks vs the infinite-width limit</h1>
<div class="opening">{opening}</div>
<table>{facts_html}</table>
<h2>Rates: fitted against theory</h2>
<p>Each rate is the slope of a straight-line fit on log-log axes against the width, with
its standard error from the scatter of the points about the line.</p>
<ul>{rates}</ul>
<h2>Summary</h2>
{_table_html(cols, rows)}
{_legend_html(res)}
{_literature_html(res)}
<h2>Plots</h2>
{"".join(sections)}
<p>Raw numbers: <code>results.json</code>.</p>
</body></html>
"""
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
