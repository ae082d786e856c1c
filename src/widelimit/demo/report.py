"""Write the demo report: ``index.html`` (self-contained, PNGs base64-embedded),
the PNG files themselves and ``results.json``."""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
from pathlib import Path

from widelimit.demo.compute import DemoResult
from widelimit.serialization import jsonable

__all__ = ["result_dict", "summary_rows", "write_report"]

SUMMARY_COLUMNS = ["width", "seeds", "acc", "± sd", "MSE", "‖f−f_lin‖", "Θ₀ err", "ΔΘ"]


def result_dict(res: DemoResult) -> dict:
    """JSON-ready dictionary of the result (kernel heatmaps left out)."""
    d = {f.name: getattr(res, f.name) for f in dataclasses.fields(res) if f.name != "heatmaps"}
    return jsonable(d)


def summary_rows(res: DemoResult) -> tuple[list[str], list[list[object]]]:
    """The summary table: one row per width plus the infinite-width rows."""
    rows: list[list[object]] = []
    for s in res.widths:
        rows.append([s.width, s.n_seeds, s.accuracy_mean, s.accuracy_sd, s.mse_mean, s.dist_mean,
                     s.ntk_init_error_mean, s.ntk_change_mean])  # fmt: skip
    inf = res.infinite
    rows.append(["∞ uncentered", "GP f₀", inf.single_net_accuracy_t_end,
                 inf.single_net_accuracy_sd, inf.single_net_mse_t_end, 0.0, 0.0, 0.0])  # fmt: skip
    rows.append(["∞ NTK t=Kη", "-", inf.ntk_accuracy_t_end, 0.0, inf.ntk_mse_t_end,
                 "-", "-", "-"])  # fmt: skip
    rows.append(["∞ NTK t=∞", "-", inf.ntk_accuracy_inf, 0.0, inf.ntk_mse[-1], "-", "-", "-"])
    rows.append(["∞ NNGP", "-", inf.nngp_accuracy_inf, 0.0, inf.nngp_mse[-1], "-", "-", "-"])
    return SUMMARY_COLUMNS, rows


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
    "kernels": "Kernel heatmaps (points sorted by label); NTK panels share one colour scale.",
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
    inf, fit = res.infinite, res.dist_slope
    cfg = res.config
    facts = [
        ("data", res.protocol),
        ("net", cfg.net),
        ("finite training", f"full-batch GD on ½·mean (f−y)², {res.steps} steps of "
         f"η = {res.learning_rate:.4g} (t = K·η = {res.t_end:.4g}); NTK parameterization; "
         f"widths {list(cfg.widths)}; {cfg.seeds} seeds"),
        ("NNGP test accuracy (t = ∞)", f"{inf.nngp_accuracy_inf:.4f}"),
        ("NTK test accuracy (t = ∞ / t = K·η)",
         f"{inf.ntk_accuracy_inf:.4f} / {inf.ntk_accuracy_t_end:.4f}"),
        ("slope of ‖f_width − f_NTK‖ vs width",
         f"{fit.slope:.3f} ± {fit.stderr:.3f} (theory −0.5)"),
        ("condition numbers (NNGP, NTK)", f"{inf.cond_nngp:.3g}, {inf.cond_ntk:.3g}"),
        ("run time", f"{res.seconds:.1f} s"),
    ]  # fmt: skip
    facts_html = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>widelimit demo report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;
text-align:left}}img{{max-width:100%}}figure{{margin:1.5em 0}}figcaption{{color:#444}}</style>
</head><body>
<h1>widelimit demo: finite networks vs the infinite-width limit</h1>
<table>{facts_html}</table>
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
