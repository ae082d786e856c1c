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
