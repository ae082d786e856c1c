"""``widelimit demo --quick`` end to end (run once), and ``widelimit predict``.

The demo's finite nets are an independent route to the infinite-width
predictions; the checks below are the qualitative claims of the report with
margins far outside seed-to-seed noise (quick mode: 2 seeds, widths 64/256/1024).
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from widelimit.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    res = runner.invoke(app, ["demo", "--quick", "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    # docs/cli.md: the result (table, report path) on stdout, nothing of it on stderr
    assert "widelimit demo" in res.stdout and "report: " in res.stdout
    assert "┃" not in res.stderr and "report: " not in res.stderr
    return out, res.output


def test_report_files_are_self_contained(quick_report):
    out, text = quick_report
    html = (out / "index.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 5
    for stem in ("accuracy_vs_width", "distance_vs_width", "ntk_change", "time_sweep", "kernels"):
        assert (out / f"{stem}.png").stat().st_size > 1000
    assert "slope" in text and "NNGP test accuracy" in text


def test_quick_results_show_convergence_to_infinite_width(quick_report):
    out, _ = quick_report
    r = json.loads((out / "results.json").read_text())
    inf = r["infinite"]
    # kernels beat chance (0.1) by far on digits
    assert inf["nngp_accuracy_inf"] > 0.8 and inf["ntk_accuracy_inf"] > 0.8
    ws = r["widths"]
    dist = [w["dist_mean"] for w in ws]
    change = [w["ntk_change_mean"] for w in ws]
    assert all(a > b for a, b in itertools.pairwise(dist))  # 16x width: ~4x closer
    assert all(a > b for a, b in itertools.pairwise(change))
    # theory -1/2; with 3 widths and 2 seeds the fit is within ±0.15 (seed-to-seed sd ≈ 0.02)
    assert -0.65 < r["dist_slope"]["slope"] < -0.35
    # the widest nets are close to the NTK prediction at the same training time
    assert abs(ws[-1]["accuracy_mean"] - inf["ntk_accuracy_t_end"]) < 0.05
    # time convention: gradient descent reached t = steps·lr
    assert r["t_end"] == pytest.approx(r["steps"] * r["learning_rate"])


def test_predict_cli(tmp_path):
    g = np.random.default_rng(0)
    x = g.normal(size=(12, 3))
    y = np.sin(x[:, 0])
    np.save(tmp_path / "x.npy", x[:8])
    np.save(tmp_path / "y.npy", y[:8])
    np.save(tmp_path / "xt.npy", x[8:])
    args = ["predict", "--train", str(tmp_path / "x.npy"), "--targets", str(tmp_path / "y.npy")]
    args += ["--test", str(tmp_path / "xt.npy"), "--json", "--get", "nngp", "--diag-reg", "1e-3"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert len(data["mean"]) == 4 and len(data["std"]) == 4
    # independent route: the GP posterior mean written with numpy
    from widelimit._cli.inference import DEFAULT_PREDICT_NET
    from widelimit.spec_text import load_net

    k = load_net(DEFAULT_PREDICT_NET).kernel(torch.tensor(x), get=("nngp",)).nngp.numpy()
    kxx = k[:8, :8] + 1e-3 * np.mean(np.diag(k[:8, :8])) * np.eye(8)
    ref = k[8:, :8] @ np.linalg.solve(kxx, y[:8])
    np.testing.assert_allclose(data["mean"], ref, rtol=1e-8)
    bad = runner.invoke(app, [*args[:-4], "--get", "gp"])
    assert bad.exit_code != 0 and "nngp or ntk" in bad.output


# ------------------------------------------------------------- the report explains itself
def _report_text(html: str) -> str:
    """The report's visible text: embedded PNGs and tags removed."""
    import re

    html = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    return re.sub(r"<[^>]+>", " ", html)


def test_report_opens_with_plain_language_explanation(quick_report):
    out, _ = quick_report
    text = _report_text((out / "index.html").read_text(encoding="utf-8"))
    opening = text[: text.index("Rates: fitted against theory")]
    for phrase in ("Neural Network Gaussian Process", "Neural Tangent Kernel", "gradient flow",
                   "linearisation", "What this run shows"):  # fmt: skip
        assert phrase in opening, phrase
    # every fitted rate is stated with its standard error and its theory value
    assert text.count("(standard error), theory -0.5") == 3


def test_heatmaps_have_colorbars_and_labels():
    from types import SimpleNamespace

    from widelimit.demo.compute import Heatmaps
    from widelimit.demo.plots import plot_heatmaps

    g = np.random.default_rng(0)

    def psd(n):
        a = g.normal(size=(n, n))
        return a @ a.T / n

    h = Heatmaps(labels=[0, 0, 1, 1, 2], nngp=psd(5), ntk=psd(5), ntk_labels=[0, 1, 1],
                 ntk_analytic=psd(3), ntk_empirical={64: psd(3), 1024: psd(3)})  # fmt: skip
    fig = plot_heatmaps(SimpleNamespace(heatmaps=h))
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 5  # NNGP, NTK (test), NTK (train), two empirical NTKs
    for im in images:
        assert im.colorbar is not None and im.colorbar.ax.get_ylabel() == "kernel value"
        assert im.axes.get_title() and im.axes.get_xlabel() and im.axes.get_ylabel()
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_one_seed_report_has_no_nan(tmp_path):
    args = ["demo", "--quick", "--seeds", "1", "--widths", "64,256", "--steps", "10"]
    args += ["--n-train", "40", "--n-test", "60", "--out", str(tmp_path), "--no-progress"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    import re

    text = _report_text((tmp_path / "index.html").read_text(encoding="utf-8"))
    for shown in (text, res.stdout):
        assert not re.search(r"\bnan\b", shown, re.IGNORECASE), shown
        assert "only two widths, so no standard error" in shown
    assert "- (1 seed)" in res.stdout


def test_rate_far_from_theory_gets_an_explanation():
    from widelimit.demo.compute import SlopeFit
    from widelimit.demo.report import rate_text

    far = rate_text("dist_slope", SlopeFit(slope=-0.8, stderr=0.05, intercept=0.0))
    # (−0.8 − (−0.5)) / 0.05 = −6: six standard errors, steeper than theory
    assert "-0.800 ± 0.050" in far and "theory -0.5" in far
    assert "The fitted slope is 6.0 SE steeper than theory:" in far
    near = rate_text("ntk_change_slope", SlopeFit(slope=-0.55, stderr=0.05, intercept=0.0))
    assert "agrees with theory (1.0 SE away)" in near and "SE steeper" not in near
    shallow = rate_text("ntk_init_slope", SlopeFit(slope=-0.1, stderr=0.1, intercept=0.0))
    assert "4.0 SE shallower than theory:" in shallow
    two = rate_text("dist_slope", SlopeFit(slope=-0.5, stderr=float("nan"), intercept=0.0))
    assert "nan" not in two and "no standard error" in two


# ------------------------------------------------------------------------ honest progress
def test_progress_weights_are_proportional_to_steps_times_parameters():
    from widelimit.demo.compute import DEFAULT_NET, param_count, run_weights
    from widelimit.spec_text import load_net

    net = load_net(DEFAULT_NET)
    # independent route: the parameters of the module actually built (digits: 64 inputs)
    built = sum(p.numel() for p in net.module(37, input_shape=(64,)).parameters())
    assert param_count(net, 37, (64,)) == built
    # two hidden layers of width w: 64·w + w + w·w + w + 10·w + 10
    assert param_count(net, 4096, (64,)) == 64 * 4096 + 4096**2 + 10 * 4096 + 2 * 4096 + 10
    params = {64: param_count(net, 64, (64,)), 4096: param_count(net, 4096, (64,))}
    w = run_weights(params, steps=100, seeds=3, overhead=0.0)
    assert 3 * sum(w.values()) == pytest.approx(1.0)
    assert w[4096] / w[64] == pytest.approx(params[4096] / params[64])  # ≈ 1900, not 64
    # with the fixed cost of a step: ∝ params + overhead
    wo = run_weights(params, steps=100, seeds=3, overhead=1e5)
    assert wo[4096] / wo[64] == pytest.approx((params[4096] + 1e5) / (params[64] + 1e5))
    assert wo[4096] / wo[64] > 100
    # steps scale every run alike, so the shares do not change
    assert run_weights(params, steps=7, seeds=3) == pytest.approx(run_weights(params, 100, 3))
    with pytest.raises(ValueError, match="steps"):
        run_weights(params, steps=0, seeds=1)
