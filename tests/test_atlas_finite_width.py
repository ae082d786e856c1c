"""Atlas page 13 (finite width, "Beyond the limit") and the 1/n prediction on page 1.

Default suite: the headline's check (intercept of n·κ against 1/n vs the predicted lim n·κ)
fed the right and wrong theories, on the exact ReLU product law plus noise and on sampled
nets; the page's theory values against closed forms derived here (ReLU: 15 per hidden layer
at first order, 3((1 + 5/n)^L − 1) exactly). Slow: the quick page end to end, its files.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from widelimit.atlas.core import ensemble_covariances, scale_mixture_kurtosis


def _relu_exact_n_kappa(widths, depth):
    # one input through ReLU layers without bias: Ĝ' = 2 Ĝ χ²_K/n, E[(χ²_K/n · 2)²] =
    # 1 + 5/n per layer, so κ = 3((1 + 5/n)^L − 1) (derived here, not read from the module)
    n = np.asarray(widths, dtype=float)
    return n * 3 * ((1 + 5 / n) ** depth - 1)


def test_intercept_headline_rejects_wrong_prediction():
    from widelimit.atlas.finite_width import intercept_headline

    widths = (32, 64, 128, 256, 512, 1024)
    depth = 4
    y = _relu_exact_n_kappa(widths, depth)
    se = 0.01 * y  # 1 % errors, as the page's width sweep measures
    noisy = y + se * np.random.default_rng(0).standard_normal(len(y))
    right = 15.0 * depth  # lim n·κ of the product law (its 1/n coefficient × n)
    assert intercept_headline(widths, noisy, se, right).ok
    assert not intercept_headline(widths, noisy, se, 1.1 * right).ok  # 10 % too large
    assert not intercept_headline(widths, noisy, se, 0.9 * right).ok  # 10 % too small
    # the exact value at the smallest width is not the limit: a theory that ignores the
    # 1/n extrapolation (lim n·κ := n·κ(32)) fails
    assert not intercept_headline(widths, noisy, se, float(y[0])).ok
    # a κ = O(n^-½) world (n·κ ∝ √n) is not fitted by a + b/n: its intercept is far off
    sqrt_world = right * np.sqrt(np.asarray(widths) / 32)
    assert not intercept_headline(widths, sqrt_world, 0.01 * sqrt_world, right).ok


def test_intercept_fit_inflates_error_of_a_bad_fit():
    from widelimit.atlas.finite_width import intercept_fit

    widths = np.array([16, 32, 64, 128, 256])
    y = 5 + 20 / widths
    a, se, b, chi2 = intercept_fit(widths, y, np.full(5, 0.1))
    assert a == pytest.approx(5) and b == pytest.approx(20) and chi2 < 1e-20
    zig = y + 0.5 * np.array([1, -1, 1, -1, 1])  # residuals 5× the stated errors
    _, se_bad, _, chi2_bad = intercept_fit(widths, zig, np.full(5, 0.1))
    assert chi2_bad > 10 and se_bad > 3 * se


def test_predicted_n_kappa_relu_is_fifteen_per_hidden_layer():
    from widelimit.atlas.finite_width import CRITICAL, predicted_n_kappa

    p = predicted_n_kappa("relu", *CRITICAL["relu"], 5)
    np.testing.assert_allclose(p, 15.0 * np.arange(6), rtol=1e-12, atol=1e-12)


def test_exact_relu_kappa_is_product_law():
    from widelimit.atlas.finite_width import exact_relu_kappa

    n, depth = 16, 6
    np.testing.assert_allclose(
        exact_relu_kappa(n, depth), 3 * ((1 + 5 / n) ** np.arange(depth + 1) - 1), rtol=1e-12
    )


def test_erf_critical_point_has_unit_chi1():
    from widelimit.atlas.finite_width import CRITICAL

    w, _ = CRITICAL["erf"]
    assert w**2 * (2 / math.sqrt(math.pi)) ** 2 == pytest.approx(1.0, rel=1e-14)


def test_distributions_prediction_check_rejects_wrong_theory():
    """Page 1's new comparison, on sampled nets at page-1 settings (tanh σw = 1.5,
    σb = 0.3, three hidden layers): the recursion's lim n·κ passes, ±15 % fails."""
    from widelimit.atlas.distributions import prediction_check
    from widelimit.atlas.finite_width import predicted_n_kappa

    widths = (32, 64, 128, 256)
    kap, kse = [], []
    for i, n in enumerate(widths):
        s = ensemble_covariances("tanh", 2.25, 0.09, 3, n, np.ones((1, 1)), 8000, seed=40 + i)
        k, se = scale_mixture_kurtosis(s[-1, :, 0, 0])
        kap.append(k), kse.append(se)
    pred = float(predicted_n_kappa("tanh", 1.5, 0.3, 3)[-1])
    assert prediction_check(widths, kap, kse, pred).ok
    assert not prediction_check(widths, kap, kse, 1.15 * pred).ok
    assert not prediction_check(widths, kap, kse, 0.85 * pred).ok


def test_ntk_prediction_one_hidden_relu_layer_is_three_over_n():
    """One hidden ReLU layer without bias, one output: Θ = (1/n) Σ_j T_j with i.i.d.
    T = q·1[z > 0]v² + relu(z)², E T = q, E T² = 4q², so Var Θ/(E Θ)² = 3/n exactly
    (derived here); the page's NTK prediction must give it at every width."""
    from widelimit.atlas.finite_width import CRITICAL, predicted_ntk_relative_variance

    for n in (8, 32):
        v = predicted_ntk_relative_variance("relu", *CRITICAL["relu"], 1, n)
        assert v == pytest.approx(3 / n, rel=1e-10)
    # deeper: linear in 1/n at leading order (n·relvar independent of n)
    a = predicted_ntk_relative_variance("tanh", *CRITICAL["tanh"], 3, 16)
    b = predicted_ntk_relative_variance("tanh", *CRITICAL["tanh"], 3, 64)
    assert 16 * a == pytest.approx(64 * b, rel=1e-10)


def test_page_registered_after_sde():
    from widelimit.atlas import PAGES, TITLES, resolve_page
    from widelimit.atlas.finite_width import SLUG, TITLE

    assert PAGES.index("finite_width") > PAGES.index("sde")
    assert TITLES[SLUG] == TITLE
    assert resolve_page("finite_width") == "finite_width"


@pytest.mark.slow
def test_quick_page_files_and_headline(tmp_path):
    from typer.testing import CliRunner

    from widelimit.cli import app

    res = CliRunner().invoke(
        app, ["atlas", "finite_width", "--quick", "--out", str(tmp_path), "--json",
              "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    page = json.loads((tmp_path / "finite_width.json").read_text())
    html = (tmp_path / "finite_width.html").read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') == 4
    assert html.count("[QUICK sizes]") == 4
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "What would have falsified the theory" in html
    h = page["headline"]
    assert h["kind"] == "equal" and abs(h["value"] - h["theory"]) <= h["tolerance"]
    assert 0 < h["stderr"] < 0.03 * h["theory"]  # informative: a 10 % error is > 3 SE
    r = page["result"]
    # ReLU's intercept (an independent closed form: 15 per hidden layer) within 4 SE
    a, se = r["conv_fit"]["relu"][:2]
    assert abs(a - 15 * r["config"]["conv_depth"]) < 4 * se
    # at small L/n the measured κ agrees with the recursion within 4 SE, for every φ
    for act in r["config"]["activations"]:
        for n, k in r["sweep_kappa"][act].items():
            assert abs(k[0] - r["sweep_recursion"][act][n][0]) < 4 * r["sweep_kappa_se"][act][n][0]
    for pub in page["content"]["published"]:
        assert pub["error_bar"] and pub["where"] and pub["source"] and pub["ours"]
    # shaped tanh at the largest T: finite nets against the covariance SDE (their limit at
    # fixed T) within 4 combined SE
    n = max(r["config"]["shaped_widths"])
    k, kse = r["shaped_kappa"][str(n)][-1], r["shaped_kappa_se"][str(n)][-1]
    assert abs(k - r["shaped_sde"][-1]) < 4 * math.hypot(kse, r["shaped_sde_se"][-1])
