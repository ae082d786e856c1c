"""Atlas page 8 (``ensembles``): the headline check fed a wrong theory fails and the right one
passes (synthetic numbers), the batched ensemble trainer against per-module gradient descent,
the discrete-GD ensemble against gradient flow, the exact NNGP covariance of one-hidden-layer
nets at init (what makes the control variates unbiased), and the quick page run (slow)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from widelimit.atlas import ensembles as E
from widelimit.atlas.core import circle

WIDTHS = (16, 32, 64, 128, 256)


def _ratios(bias=14.0, seed=0):
    """Synthetic test-loss ratios 1 + bias/n with SEs like the full page's (≈ 0.05·√(16/n))."""
    rng = np.random.default_rng(seed)
    n = np.asarray(WIDTHS, dtype=float)
    se = 0.05 * np.sqrt(16 / n)
    return 1 + bias / n + se * rng.standard_normal(len(n)), se


def test_risk_headline_rejects_wrong_theory():
    r, se = _ratios()
    assert E.risk_headline(WIDTHS, r, se).ok  # ratio to the right prediction
    assert not E.risk_headline(WIDTHS, r, se, theory=1.15).ok  # a 15 % wrong prediction
    assert not E.risk_headline(WIDTHS, r, se, theory=0.85).ok
    assert not E.risk_headline(WIDTHS, r / 0.82, se).ok  # to the NNGP prediction (0.82×)
    # the finite-width bias read as the limit: the narrowest net's ratio is far from 1
    assert abs(r[0] - 1) > 10 * se[0]
    # shuffled over widths: the 1/n trend is destroyed and the extrapolation misses 1
    perm = np.array([4, 3, 2, 1, 0])
    assert not E.risk_headline(WIDTHS, r[perm], se[perm]).ok


def test_risk_headline_false_alarm_rate_is_small():
    """Over many synthetic ensembles with the right theory the 3-SE check agrees ~99.7 %."""
    fails = sum(not E.risk_headline(WIDTHS, *_ratios(seed=s)).ok for s in range(400))
    assert fails <= 6  # expected ≈ 1.1; P(> 6) < 1e-3 (Poisson)


def _modules(width, n_nets, seed=0):
    net = E._net(E.Config())
    return [
        net.module(width, input_shape=2, seed=seed + s, dtype=torch.float64) for s in range(n_nets)
    ]


def test_train_ensemble_equals_gradient_descent_of_each_module():
    """The batched trainer against the ntk page's per-module GD (module forward + autograd)."""
    from widelimit.atlas.ntk import train_gd

    g = np.linspace(-np.pi, np.pi, 5, endpoint=False)
    x, x_eval = circle(g + 0.1), circle(np.linspace(0, 3, 7))
    y = torch.tensor(np.sin(2 * g), dtype=torch.float64)
    mods = _modules(24, 3)
    got = E.train_ensemble(mods, x, y, 0.3, 30, x_eval, [0, 7, 30])
    for i, m in enumerate(mods):  # train_ensemble leaves the modules untouched
        want = train_gd(m, x, y[:, None], 0.3, 30, x_eval, {0, 7, 30})
        for c, k in enumerate((0, 7, 30)):
            np.testing.assert_allclose(got[c, i], want[k][:, 0].numpy(), rtol=1e-10, atol=1e-12)


def test_train_ensemble_refuses_other_architectures():
    from widelimit import Dense, Erf, serial

    deep = serial(Dense(8), Erf(), Dense(8), Erf(), Dense(1)).module(8, input_shape=2, seed=0)
    x = circle(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="one-hidden-layer"):
        E.train_ensemble([deep], x, torch.zeros(2), 0.1, 1, x, [1])


def test_discrete_ensemble_tends_to_gradient_flow():
    """k steps of size η/s with s → ∞ (time kη/s·s fixed) approach the flow of
    gradient_descent_mse_ensemble at t = k with learning_rate η, the gap falling like 1/s;
    at t = ∞ they agree."""
    from widelimit import gradient_descent_mse_ensemble

    net = E._net(E.Config())
    x = circle(np.concatenate([np.linspace(-3, 3, 5), [0.4, 1.7]]))
    kk = net.kernel(x, get=("nngp", "ntk"))
    nngp, ntk = kk.nngp.numpy(), kk.ntk.numpy()
    y = np.array([0.3, -0.2, 0.8, 0.1, -0.5])
    lr = 5 / np.linalg.eigvalsh(ntk[:5, :5])[-1]
    ens = gradient_descent_mse_ensemble(net, x[:5], torch.tensor(y), learning_rate=lr, diag_reg=0)
    flow = ens(x[5:], 6.0)
    gaps = []
    for s in (2, 8, 32):
        mean, cov, _ = E.discrete_ensemble(nngp, ntk, 5, y, lr / s, [6 * s])
        gaps.append(
            max(
                np.abs(mean[0, 5:] - flow.mean.numpy()).max(),
                np.abs(cov[0, 5:, 5:] - flow.cov.numpy()).max(),
            )
        )
    assert gaps[0] > 1e-3  # the discretisation term is visible at s = 2
    assert 3.0 < gaps[0] / gaps[1] < 5.0 and 3.0 < gaps[1] / gaps[2] < 5.0  # O(η)
    mean, cov, _ = E.discrete_ensemble(nngp, ntk, 5, y, lr, [3000])
    inf = ens(x[5:], None)
    np.testing.assert_allclose(mean[0, 5:], inf.mean.numpy(), atol=1e-8)
    np.testing.assert_allclose(cov[0, 5:, 5:], inf.cov.numpy(), atol=1e-8)


def test_one_hidden_layer_init_covariance_is_the_nngp_at_small_width():
    """The control variates need Cov f₀ = K exactly at every width (one hidden layer):
    Monte Carlo over 3000 width-4 nets within 4 SE of each entry."""
    net = E._net(E.Config())
    x = circle(np.array([0.0, 1.0, 2.5]))
    k = net.kernel(x, get="nngp").nngp.numpy()
    mods = _modules(4, 3000, seed=7)
    f = np.stack([m(x)[:, 0].detach().numpy() for m in mods])  # (M, 3)
    prod = f[:, :, None] * f[:, None, :]
    se = prod.std(0, ddof=1) / np.sqrt(len(f))
    assert np.all(np.abs(prod.mean(0) - k) <= 4 * se)
    assert np.all(np.abs(f.mean(0)) <= 4 * f.std(0) / np.sqrt(len(f)))


@pytest.mark.slow
def test_quick_page_headline_files_and_markers(tmp_path):
    from widelimit.atlas import run_page, write_page

    pr = run_page("ensembles", quick=True, progress=False)
    assert pr.headline.ok and pr.headline.kind == "equal"
    res = pr.result
    assert res.residual < 1e-3  # the last step is the t = ∞ limit to 1e-3
    # the flow-vs-discrete gap at the first checkpoint is as large as the finite-width effects
    assert np.abs(res.mean_flow[1] - res.mean_gd[1]).max() > 1e-3
    html = write_page(pr, tmp_path).read_text(encoding="utf-8")
    page = json.loads((tmp_path / "ensembles.json").read_text())
    assert html.count('src="data:image/png;base64,') == 2 == html.count("[QUICK sizes]")
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "What would have falsified the theory" in html and page["headline_ok"]
    assert page["content"]["falsified_by"] and page["quick"] is True
    for pub in page["content"]["published"]:
        assert pub["error_bar"] and pub["where"] and pub["source"] and pub["ours"]
