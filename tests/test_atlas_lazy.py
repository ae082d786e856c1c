"""Atlas page 12 (``lazy``): the headline check fed a wrong theory fails and the right one
passes (synthetic numbers), the scaled training converges to the linearised model trained by
an independent route (``widelimit.linearize`` + plain GD) like 1/α, and the quick page run
(slow)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from widelimit.atlas import lazy as Z

ALPHAS = np.logspace(-1.5, 3, 10)


def _movement(exponent=-1.0, seeds=6, seed=0):
    """Synthetic movement c_s α^exponent (1 + d_s/α), d_s of either sign (next order)."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(0.5, 2.0, (seeds, 1))
    d = 0.05 * rng.standard_normal((seeds, 1))
    return c * ALPHAS**exponent * (1 + d / ALPHAS)


def test_movement_headline_rejects_wrong_theory():
    move = _movement()
    assert Z.movement_headline(ALPHAS, move, 10.0).ok
    assert not Z.movement_headline(ALPHAS, move, 10.0, theory=-0.5).ok  # 1/√α
    assert not Z.movement_headline(ALPHAS, move, 10.0, theory=-0.99).ok  # 1 % off
    assert not Z.movement_headline(ALPHAS, move, 10.0, theory=0.0).ok  # never lazy
    # weights moving like 1/√α (not lazy) fail against the right theory
    assert not Z.movement_headline(ALPHAS, _movement(-0.5), 10.0).ok
    # α shuffled: no power law
    perm = np.random.default_rng(1).permutation(len(ALPHAS))
    assert not Z.movement_headline(ALPHAS, move[:, perm], 10.0).ok


def test_per_seed_slopes_needs_two_lazy_points():
    with pytest.raises(ValueError, match="lazy_from"):
        Z.per_seed_slopes(ALPHAS, _movement(), 500.0)


def test_scaled_training_tends_to_the_linearised_net_like_one_over_alpha():
    """α(f_T − f₀) against ``widelimit.linearize`` trained by the ntk page's plain GD on the
    targets y + f₀ (the linearisation's output is f₀ + J(w − w₀)): the gap falls ∝ 1/α."""
    from widelimit import linearize
    from widelimit.atlas.core import circle
    from widelimit.atlas.ntk import train_gd

    cfg = Z.Config()
    net = Z._net(cfg)
    g = np.linspace(-np.pi, np.pi, 6, endpoint=False)
    x, xt = circle(g + 0.1), circle(np.linspace(0, 3, 9))
    y = torch.tensor(np.sin(2 * g), dtype=torch.float64)
    m0 = net.module(32, input_shape=2, seed=3, dtype=torch.float64)
    with torch.no_grad():
        f0, f0t = m0(x)[:, 0], m0(xt)[:, 0]
    lin = linearize(net.module(32, input_shape=2, seed=3, dtype=torch.float64))
    want = train_gd(lin, x, (y + f0)[:, None], 0.2, 60, xt, {60})[60][:, 0] - f0t
    gaps = []
    for a in (10.0, 100.0, 1000.0):
        m = Z.train_scaled(net.module(32, input_shape=2, seed=3, dtype=torch.float64),
                           a, x, y, 0.2, 60)  # fmt: skip
        with torch.no_grad():
            gaps.append(float((a * (m(xt)[:, 0] - f0t) - want).abs().max()))
    assert gaps[0] > 1e-4
    assert 8 < gaps[0] / gaps[1] < 12 and 8 < gaps[1] / gaps[2] < 12


@pytest.mark.slow
def test_quick_page_headline_files_and_markers(tmp_path):
    from widelimit.atlas import run_page, write_page

    pr = run_page("lazy", quick=True, progress=False)
    assert pr.headline.ok and pr.headline.kind == "equal"
    res = pr.result
    assert res.move[:, 0].mean() > 0.3  # small α: the weights move by O(1)
    assert res.ntk_change[:, 0].mean() > 0.3  # and the NTK too
    assert all(abs(s - -1.0) <= 3 * se for s, se in res.slopes.values())
    s, se = res.width_slopes["move"]  # the contrast: relative movement ∝ n^-1/2 at α = 1
    assert abs(s + 0.5) <= 3 * se + 0.05
    html = write_page(pr, tmp_path).read_text(encoding="utf-8")
    page = json.loads((tmp_path / "lazy.json").read_text())
    assert html.count('src="data:image/png;base64,') == 2 == html.count("[QUICK sizes]")
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "What would have falsified the theory" in html and page["headline_ok"]
    assert page["content"]["falsified_by"] and page["quick"] is True
    for pub in page["content"]["published"]:
        assert pub["error_bar"] and pub["where"] and pub["source"] and pub["ours"]
