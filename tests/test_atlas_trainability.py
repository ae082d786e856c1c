"""Atlas page 9 (trainability phase diagram, Schoenholz et al. 2017): the batched training
forward pass against the library's modules, the crossing-depth reader, the headline fed
wrong depth scales (default suite), and the quick page through the CLI (slow)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from widelimit.atlas import trainability as tr


def test_batched_forward_matches_library_modules():
    x = torch.randn(7, 64, generator=torch.Generator().manual_seed(0))
    mods = [tr._net(w2, 0.05, 3).module(16, input_shape=64, seed=s, dtype=torch.float64)
            for s, w2 in enumerate((1.0, 2.0, 3.5))]  # fmt: skip
    out = tr.batched_forward(tr.stack_modules(mods), x.double())
    for m, o in zip(mods, out, strict=True):
        with torch.no_grad():
            assert torch.allclose(o, m(x.double()), rtol=1e-12, atol=1e-12)


def test_crossing_depth_reads_the_halfway_point():
    depths = np.geomspace(2, 512, 41)
    chance, top, l0 = 0.1, 0.95, 37.0
    acc = chance + (top - chance) / (1 + (depths / l0) ** 4)
    # the curve reaches the halfway level thr of acc[0] at L = l0·((top − ch)/(thr − ch) − 1)^¼
    thr = chance + 0.5 * (acc[0] - chance)
    exact = l0 * ((top - chance) / (thr - chance) - 1) ** 0.25
    assert abs(tr.crossing_depth(depths, acc, chance) / exact - 1) < 0.01
    assert math.isnan(tr.crossing_depth(depths, np.full(41, 0.9), chance))  # never falls
    assert math.isnan(tr.crossing_depth(depths, np.full(41, 0.1), chance))  # never trains


def test_headline_rejects_wrong_depth_scales():
    from widelimit import Tanh
    from widelimit.propagation import fixed_point

    cfg = tr.Config()
    sb = math.sqrt(cfg.b_var)
    fps = [fixed_point(Tanh(), math.sqrt(w), sb) for w in cfg.w_var]
    xi_c = np.array([f.xi_c for f in fps])
    xi_q = np.array([f.xi_q for f in fps])
    from widelimit.propagation import critical_w_std

    chaotic = np.asarray(cfg.w_var) > critical_w_std(Tanh(), sb)[0] ** 2
    assert chaotic.any() and (~chaotic).any()
    rng = np.random.default_rng(0)
    se = np.full(xi_c.size, 0.05)  # 5 % on L*
    # the theory, with a different constant on each side (as measured): passes
    l_star = np.where(chaotic, 3.5, 5.0) * xi_c * np.exp(se * rng.standard_normal(xi_c.size))
    assert tr.scale_headline(xi_c, l_star, se, chaotic).ok
    # the length depth scale ξ_q barely varies here: the slope test has little power
    # against it (a large SE), but the fit of L* = c·ξ_q itself fails (χ², 99.9 %)
    from scipy import stats

    chi2, dof = tr.proportional_chi2(xi_c, l_star, se, chaotic)
    assert chi2 <= stats.chi2(dof).ppf(0.999)
    chi2_q, dof_q = tr.proportional_chi2(xi_q, l_star, se, chaotic)
    assert chi2_q > stats.chi2(dof_q).ppf(0.999)
    mis = np.array([fixed_point(Tanh(), math.sqrt(1.15 * w), sb).xi_c for w in cfg.w_var])
    assert not tr.scale_headline(mis, l_star, se, chaotic).ok  # ξ_c at a mis-scaled σw²
    shuffled = l_star[rng.permutation(xi_c.size)]
    assert not tr.scale_headline(xi_c, shuffled, se, chaotic).ok
    assert not tr.scale_headline(xi_c, 6 * xi_c**0.5, se, chaotic).ok  # L* ∝ √ξ_c: too flat
    # one constant for both phases (the paper's 6ξ_c) does not fit these numbers
    chi2_1, dof_1 = tr.proportional_chi2(xi_c, l_star, se, np.zeros_like(chaotic))
    assert chi2_1 > stats.chi2(dof_1).ppf(0.999)


@pytest.mark.slow
def test_quick_page_through_cli(tmp_path):
    from typer.testing import CliRunner

    from widelimit.cli import app

    res = CliRunner().invoke(app, ["atlas", "trainability", "--quick", "--out", str(tmp_path),
                                   "--json", "--no-progress"])  # fmt: skip
    assert res.exit_code == 0, res.output
    page = json.loads((tmp_path / "trainability.json").read_text())
    h, r = page["headline"], page["result"]
    assert h["kind"] == "equal" and 0 < h["stderr"] < 1.0
    acc = np.array(r["accuracy"])
    # shallow nets train (far above chance) and the deepest ones do not
    assert acc[:, 0].mean() > 0.5 and acc[:, -1].mean() < 0.3
    html = (tmp_path / "trainability.html").read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') == 2
    assert html.count("[QUICK sizes]") == 2
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "What would have falsified the theory" in html and page["content"]["falsified_by"]
    for pub in page["content"]["published"]:
        assert pub["error_bar"] and pub["where"] and pub["source"] and pub["ours"]
