"""Atlas page 11 (learning curves from the kernel spectrum, Bordelon, Canatar, Pehlevan 2020):
the spectrum on the sphere against closed forms, the self-consistent equation solved two
ways and against an exact case, the headline fed wrong theories (default suite), and the
quick page through the CLI (slow)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from scipy import stats

from widelimit.atlas import learning_curves as lc


@pytest.mark.parametrize("dim", [3, 10])
def test_spectrum_addition_theorem_and_gegenbauer_norm(dim):
    # K(t) = exp(t): Σ_k N_k λ_k = K(1) = e (addition theorem), the tail vanishes
    spec = lc.sphere_spectrum(np.exp, math.e, dim, k_max=30, n_quad=200)
    assert spec.tail < 1e-10
    assert abs(float(np.sum(spec.mult * spec.evals)) - math.e) < 1e-10
    # K(t) = t²: only degrees 0 and 2; λ_0 = E[t²] = 1/d (closed form)
    sq = lc.sphere_spectrum(np.square, 1.0, dim, k_max=6, n_quad=50)
    assert abs(sq.evals[0] - 1 / dim) < 1e-14 and np.all(sq.evals[[1, 3, 4, 5, 6]] < 1e-14)
    # E[P_k(t)²] = 1/N_k, by Monte Carlo over uniform points on the sphere (4 SE)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((20000, dim))
    t = z[:, 0] / np.linalg.norm(z, axis=1)
    for k in (1, 2, 3):
        v = lc.gegenbauer(k, dim, t) ** 2
        assert abs(v.mean() - 1 / lc.multiplicity(dim, k)) < 4 * v.std() / math.sqrt(v.size)
    assert [lc.multiplicity(3, k) for k in range(4)] == [1, 3, 5, 7]  # 2k + 1 on S²
    assert [lc.multiplicity(10, k) for k in range(3)] == [1, 10, 54]


def _toy():
    ev = np.array([1.0, 0.3, 0.05, 0.01, 1e-3])
    mult = np.array([1.0, 4.0, 10.0, 20.0, 50.0])
    return ev, mult


@pytest.mark.parametrize("ridge", [0.0, 0.1, 2.0])
@pytest.mark.parametrize("p", [1.0, 7.0, 40.0])
def test_kappa_two_routes_and_one_over_one_minus_gamma_is_dkappa_dridge(ridge, p):
    ev, m = _toy()
    a = lc.solve_kappa(ev, m, p, ridge, tail=0.01, method="brentq")
    b = lc.solve_kappa(ev, m, p, ridge, tail=0.01, method="iterate")
    assert abs(a - b) <= 1e-12 * a
    # differentiating the equation: dκ/dλ = 1/(1 − γ)
    h = 1e-6
    d = (lc.solve_kappa(ev, m, p, ridge + h, tail=0.01)
         - lc.solve_kappa(ev, m, p, ridge + 2 * h, tail=0.01)) / -h  # fmt: skip
    g = float(np.sum(m * p * ev**2 / (p * ev + a) ** 2))
    assert abs(d - 1 / (1 - g)) < 1e-4 / (1 - g)


def _spec(ev, mult, tail=0.0):
    return lc.SphereSpectrum(3, np.asarray(ev, float), np.asarray(mult, float),
                             float(np.sum(np.asarray(mult) * ev) + tail), tail)  # fmt: skip


def test_isotropic_case_is_exact_min_norm_least_squares():
    """N equal eigenvalues, λ = 0: the equation gives (1 − p/N)‖y‖², the exact expected
    error of min-norm interpolation with isotropic Gaussian features (projection of the
    target on the complement of a random p-dimensional subspace); checked by Monte Carlo."""
    n = 40
    spec = _spec([0.5], [n])
    cur = lc.theory_curve(spec, np.array([1.0]), [5, 10, 30], 0.0)
    assert np.allclose(cur.error, 1 - np.array([5, 10, 30]) / n, rtol=1e-10)
    assert np.allclose(cur.modes.sum(1), cur.error, rtol=1e-12)
    rng = np.random.default_rng(1)
    w = rng.standard_normal(n)
    w /= np.linalg.norm(w)
    errs = []
    for _ in range(400):
        phi = rng.standard_normal((10, n))  # p = 10 feature rows
        what = np.linalg.pinv(phi) @ (phi @ w)
        errs.append(float(np.sum((what - w) ** 2)))
    errs = np.array(errs)
    assert abs(errs.mean() - cur.error[1]) < 4 * errs.std() / math.sqrt(errs.size)


def test_limits_small_p_and_large_ridge_give_the_target_power():
    ev, m = _toy()
    v = np.array([0.2, 0.3, 0.1, 0.0, 0.4])
    spec = _spec(ev, m, tail=0.02)
    small = lc.theory_curve(spec, v, [1e-9], 0.0)
    assert abs(small.error[0] - v.sum()) < 1e-6
    big = lc.theory_curve(spec, v, [50.0], 1e9)
    assert abs(big.error[0] - v.sum()) < 1e-6
    # more data never hurts a noiseless target here (monotone curve)
    cur = lc.theory_curve(spec, v, np.geomspace(1, 1e4, 30), 0.1)
    assert np.all(np.diff(cur.error) < 0)


def test_solve_kappa_rejects_bad_arguments():
    ev, m = _toy()
    with pytest.raises(ValueError, match="p > 0"):
        lc.solve_kappa(ev, m, 0.0, 0.1)
    with pytest.raises(ValueError, match="method"):
        lc.solve_kappa(ev, m, 3.0, 0.1, method="newton")


SMALL = lc.Config(p_values=(16, 64, 256), draws=20, n_test=300, k_max=40, n_quad=600)


@pytest.fixture(scope="module")
def small_result():
    return lc.compute(SMALL, progress=False)


def test_headline_rejects_misscaled_and_wrong_kernel_spectrum(small_result):
    res = small_result
    rs = list(SMALL.ridges)

    def head(curves):
        cat = np.concatenate
        return lc.curve_headline(cat([res.measured[r] for r in rs]),
                                 cat([res.measured_se[r] for r in rs]),
                                 cat([curves[r].error for r in rs]))  # fmt: skip

    assert head(res.theory).ok and res.headline.ok
    assert not head(res.wrong_scaled).ok  # the spectrum × 3 (the ridge weighs differently)
    assert not head(res.wrong_nngp).ok  # another kernel's spectrum
    # two-sided: a prediction 10 % too high or too low fails
    for f in (0.9, 1.1):
        scaled = {r: lc.TheoryCurve(c.p, r, c.kappa, c.gamma, f * c.error, c.modes)
                  for r, c in res.theory.items()}  # fmt: skip
        assert not head(scaled).ok


# ------------------------------------------------------------------------- quick page
@pytest.mark.slow
def test_quick_page_through_cli(tmp_path):
    from typer.testing import CliRunner

    from widelimit.cli import app

    res = CliRunner().invoke(app, ["atlas", "learning_curves", "--quick", "--out",
                                   str(tmp_path), "--json", "--no-progress"])  # fmt: skip
    assert res.exit_code == 0, res.output
    page = json.loads((tmp_path / "learning_curves.json").read_text())
    h, r = page["headline"], page["result"]
    assert h["kind"] == "equal" and abs(h["value"] - h["theory"]) <= h["tolerance"]
    assert 0 < h["stderr"] < 0.05 * h["value"]  # the SE is informative (a few %)
    # the per-degree errors (spectral bias) agree with the theory's split (Bonferroni)
    r0 = str(r["config"]["ridges"][0])
    meas = np.array(r["measured_modes"][r0])
    se = np.array(r["measured_modes_se"][r0])
    th = np.array(r["theory"][r0]["modes"])[:, r["mode_degrees"]]
    z = (meas - th) / se
    assert np.abs(z).max() <= stats.norm.isf(1e-3 / (2 * z.size))
    # the wrong theories fail on the page's own measurements
    assert min(r["z_wrong"].values()) > h["tolerance"] / h["stderr"]
    # files: standalone, two figures stamped QUICK, a falsifier, published numbers as printed
    html = (tmp_path / "learning_curves.html").read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') == 2
    assert html.count("[QUICK sizes]") == 2
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "What would have falsified the theory" in html and page["content"]["falsified_by"]
    for pub in page["content"]["published"]:
        assert pub["error_bar"] and pub["where"] and pub["source"] and pub["ours"]
    assert "<td>QUICK</td>" in (tmp_path / "index.html").read_text(encoding="utf-8")
