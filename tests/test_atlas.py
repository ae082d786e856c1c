"""The atlas at quick sizes, run once per session through the CLI: each page's headline
number against its theory value with a tolerance derived from its sampling error (the
theory values and tolerances are written here, not read from the code under test), the
files are standalone, and the JSON holds the plotted numbers.

The browser check: headless Chromium (Debian's ``chromium``) opens the atlas index, every
page and the demo report over the DevTools pipe (``tests/cdp_pipe.py``); every ``<img>``
must decode (``naturalWidth > 0``) and the console must show no errors.  Skipped, with the
reason, when Chromium is not installed.

Pages 5 (NTK) and 6 (mean field) cost most of the quick atlas' time: they run in a second
session fixture used by ``slow`` tests only.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from cdp_pipe import Browser, find_chromium
from widelimit.cli import app

runner = CliRunner()
DEFAULT_PAGES = ("distributions", "limit", "nngp", "propagation", "sde")
SLOW_PAGES = ("ntk", "meanfield")
N_FIGURES = {"distributions": 2, "limit": 3, "nngp": 2, "propagation": 2, "ntk": 2,
             "meanfield": 4, "sde": 2}  # fmt: skip


def _run(out, pages):
    res = runner.invoke(app, ["atlas", *pages, "--quick", "--out", str(out), "--json",
                              "--no-progress"])  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    pages_json = {p: json.loads((out / f"{p}.json").read_text()) for p in pages}
    return out, summary, pages_json


@pytest.fixture(scope="session")
def quick_atlas(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("atlas"), DEFAULT_PAGES)


@pytest.fixture(scope="session")
def quick_atlas_slow(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("atlas_slow"), SLOW_PAGES)


def _headline(pages_json, name):
    return pages_json[name]["headline"]


# ------------------------------------------------------------------------- headlines
def test_distributions_kurtosis_across_nets_falls_like_one_over_n(quick_atlas):
    page = quick_atlas[2]["distributions"]
    h = page["headline"]
    assert 0 < h["stderr"] < 0.05  # the fit is informative
    assert abs(h["value"] - (-1.0)) <= 3 * h["stderr"]
    # κ grows with depth: n·κ of the readout exceeds that of layer 2 by many SE
    k = np.array(page["result"]["kappa"])
    se = np.array(page["result"]["kappa_se"])
    assert np.all(k[:, -1] - k[:, 1] > 5 * np.hypot(se[:, -1], se[:, 1]))


def test_limit_outputs_across_nets_gaussian_at_width_not_at_small_width(quick_atlas):
    from scipy import stats

    page = quick_atlas[2]["limit"]
    h, res = page["headline"], page["result"]
    null = stats.kstwo(res["config"]["n_nets"])
    assert abs(h["value"]) <= h["tolerance"] and h["tolerance"] < 0.03
    # power: at the smallest width the KS is far outside the null law (κ = O(1/n))
    assert res["ks"][0] > null.ppf(1 - 1e-6)


def test_nngp_monte_carlo_agrees_with_analytic_kernel(quick_atlas):
    res = quick_atlas[2]["nngp"]["result"]
    mc, sem, k = (np.array(res[key]) for key in ("mc_nngp", "mc_sem", "nngp"))
    iu = np.triu_indices(len(k))
    z = ((mc - k) / sem)[iu]
    # Bonferroni: false alarm ≤ 0.1 % for m standard normal z's
    assert np.abs(z).max() <= stats.norm.isf(1e-3 / (2 * z.size))
    h = quick_atlas[2]["nngp"]["headline"]
    assert h["kind"] == "equal" and abs(h["value"] - h["theory"]) <= h["tolerance"]
    # and the check has power: on the diagonal var(f²) = 2K², so sem/K = √(2/n_samples)
    n_samples = res["config"]["mc_samples"]
    assert float((np.diag(sem) / np.diag(k)).max()) < 1.3 * math.sqrt(2 / n_samples)
    acc = res["accuracy"]
    assert acc["nngp_accuracy"] > 0.8 and acc["ntk_accuracy"] > 0.8  # 10 classes: chance 0.1
    assert res["dataset"] in ("mnist5k", "digits")


def test_propagation_finite_nets_critical_at_predicted_point(quick_atlas):
    from widelimit import Tanh
    from widelimit.propagation import critical_w_std

    page = quick_atlas[2]["propagation"]
    h, res = page["headline"], page["result"]
    cfg = res["config"]
    crit = critical_w_std(Tanh(), cfg["headline_b_var"] ** 0.5)[0] ** 2  # χ₁ = 1 by root finding
    assert abs(res["critical_w2"] - crit) < 1e-9
    assert 0 < h["stderr"] < 0.005 and abs(h["value"] - 1.0) <= 3 * h["stderr"]
    # away from criticality the measured gains follow the theory's χ₁ (Bonferroni, 5 points)
    z = (np.array(res["sweep_chi1"]) - res["sweep_theory"]) / np.array(res["sweep_chi1_se"])
    assert np.abs(z).max() <= stats.norm.isf(1e-3 / (2 * z.size))


def test_sde_ks_at_noise_level(quick_atlas):
    page = quick_atlas[2]["sde"]
    cfg = page["result"]["config"]
    n = max(cfg["widths"])
    tol = 1.9495 * math.sqrt(1 / cfg["n_nets"] + 1 / cfg["n_paths"])  # KS null, 99.9 %
    rows = [r for r in page["result"]["comparison"]["rows"] if r["width"] == n]
    assert len(rows) == len(cfg["times"])
    assert max(r["ks_rho"] for r in rows) <= tol
    h = page["headline"]
    assert h["kind"] == "equal" and abs(h["value"]) <= h["tolerance"] < 0.05
    verdicts = {r["verdict"]["name"]: r["verdict"]["stable"] for r in
                page["result"]["stability"]["rows"]}  # fmt: skip
    assert verdicts == {"tanh": True, "quadratic": False}  # b_* = −2 and +3/4


@pytest.mark.slow
def test_ntk_init_fluctuation_rate_movement_bound_and_own_learning_rates(quick_atlas_slow):
    page = quick_atlas_slow[2]["ntk"]
    h, res = page["headline"], page["result"]
    assert 0 < h["stderr"] < 0.3
    assert abs(h["value"] - (-0.5)) <= 3 * h["stderr"]  # ‖Θ̂₀ − Θ‖: CLT rate
    slope, se = res["slope_change"]
    assert slope <= -0.5 + 3 * se  # the movement during training obeys the O(n^-1/2) bound
    err = {int(k): v for k, v in res["ntk_init_err"].items()}
    a, b = sorted(err)
    assert err[b] < err[a]  # the wider net's NTK is closer to the limit (Jacot Fig. 1)
    lrs = [v for vs in res["lr_per_net"].values() for v in vs]
    assert len(set(lrs)) == len(lrs)  # each net's η from its own NTK


@pytest.mark.slow
def test_meanfield_risk_gap_slope_is_minus_one(quick_atlas_slow):
    h = _headline(quick_atlas_slow[2], "meanfield")
    assert 0 < h["stderr"] < 0.2
    assert abs(h["value"] - (-1.0)) <= 3 * h["stderr"]


# ------------------------------------------------------------------------- files
def _check_files(out, pages_json, summary):
    index = (out / "index.html").read_text(encoding="utf-8")
    for name, page in pages_json.items():
        html = (out / f"{name}.html").read_text(encoding="utf-8")
        assert html.count('src="data:image/png;base64,') == N_FIGURES[name]
        assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing external
        assert "run time" in html and f"{name}.json" in html
        assert f'href="{name}.html"' in index
        assert page["quick"] is True and page["seconds"] > 0
        assert page["content"]["formula"]
        # issue 21: two-sided headline, a stated falsifier, published numbers as printed,
        # quick markers on every figure and on the index row
        assert page["headline"]["kind"] == "equal"
        assert page["content"]["falsified_by"]
        assert "What would have falsified the theory" in html
        for pub in page["content"]["published"]:
            assert pub["error_bar"] and pub["where"] and pub["source"] and pub["ours"]
        assert html.count("[QUICK sizes]") == N_FIGURES[name]
    assert index.count("<td>QUICK</td>") == len(list(out.glob("*.json"))) - 1  # not atlas.json
    assert {p["page"] for p in summary["pages"]} == set(pages_json)
    assert {p["sizes"] for p in summary["pages"]} == {"quick"}  # the CLI table says so too


def test_atlas_files_are_standalone_with_json(quick_atlas):
    out, summary, pages_json = quick_atlas
    _check_files(out, pages_json, summary)
    assert all(p["ok"] for p in summary["pages"])


@pytest.mark.slow
def test_atlas_slow_pages_files(quick_atlas_slow):
    out, summary, pages_json = quick_atlas_slow
    _check_files(out, pages_json, summary)


def test_pages_in_worker_processes_equal_pages_in_this_process(quick_atlas, tmp_path):
    """The CLI computes pages in worker processes (one torch thread each); ``jobs=1``
    computes in this process and keeps the result: same seeds, same headline."""
    from widelimit.atlas import write_atlas

    res = write_atlas(tmp_path, pages=["sde"], quick=True, progress=False, jobs=1)
    (page,) = res.pages
    assert page.result is not None and page.result.headline == page.headline
    theirs = quick_atlas[2]["sde"]["headline"]
    assert page.headline.value == pytest.approx(theirs["value"], rel=1e-9, abs=1e-12)
    assert page.headline.ok == quick_atlas[2]["sde"]["headline_ok"]
    with pytest.raises(ValueError, match="jobs"):
        write_atlas(tmp_path, pages=["sde"], quick=True, progress=False, jobs=0)


def test_cli_help_lists_every_page_in_order():
    from widelimit.atlas import PAGES

    res = runner.invoke(app, ["atlas", "--help"], env={"COLUMNS": "300"})
    text = " ".join(res.output.split()).replace("│", "").replace(" ,", ",")
    assert f"1-{len(PAGES)}: {', '.join(PAGES)}." in " ".join(text.split())


def test_cli_rejects_unknown_page(tmp_path):
    res = runner.invoke(app, ["atlas", "nope", "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert "page" in res.output.lower()


# ------------------------------------------------------------------------- browser
CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium not installed (Debian: apt-get install -y chromium)",
)


def _assert_clean(check, n_images=None):
    assert check.errors == [], (check.url, check.errors)
    assert check.images, f"{check.url}: no images"
    bad = [(alt, ok, w) for alt, ok, w in check.images if not ok or w <= 0]
    assert bad == [], (check.url, bad)
    if n_images is not None:
        assert len(check.images) == n_images


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    from widelimit.demo import DemoConfig, run_demo, write_report

    cfg = DemoConfig.quick(n_train=40, n_test=40, widths=(32, 64, 128), seeds=1, steps=5,
                           n_ntk=6, n_heatmap=12, n_gp_draws=10)  # fmt: skip
    return write_report(run_demo(cfg, progress=False), tmp_path_factory.mktemp("demo"))


@needs_chromium
def test_atlas_and_demo_report_in_chromium(quick_atlas, demo_report):
    out, _, pages_json = quick_atlas
    with Browser(CHROMIUM) as browser:
        index = browser.check(out / "index.html")
        assert index.errors == [] and "atlas" in index.title
        for name in pages_json:
            _assert_clean(browser.check(out / f"{name}.html"))
        _assert_clean(browser.check(demo_report), n_images=5)


@needs_chromium
def test_browser_check_catches_broken_image_and_console_error(tmp_path):
    """The check can fail: a truncated PNG and a console.error are both reported."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!doctype html><title>x</title><img alt="broken" '
                   'src="data:image/png;base64,iVBORw0KGgo="><script>console.error("boom")'
                   "</script>")  # fmt: skip
    with Browser(CHROMIUM) as browser:
        check = browser.check(bad)
    assert check.images == [("broken", True, 0)]
    assert any("boom" in e for e in check.errors)
