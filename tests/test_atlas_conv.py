"""Atlas page 10 (``conv``): convolutional kernels on scikit-learn's digits.

Default suite (cheap, no page run):

* the headline's check fed a wrong limit fails and the right one passes: finite CNN-GAP nets
  on a few digits against the analytic CNN-GAP kernel (slope −½), against the Flatten kernel
  and against mis-scaled kernels (an error floor: the slope is flatter), and against wrong
  predicted rates;
* the finite-net kernels (readout-conditional NNGP, GAP and Flatten sharing one trunk) are
  checked against the analytic kernels by Monte Carlo over many nets (an independent route:
  finite modules vs the kernel recursion), with the error model of
  ``tests/test_conv_monte_carlo.py`` (z ≤ 4.5 per entry plus a finite-width bias allowance
  ``3·max|K|/n`` for two hidden layers);
* the GAP and Flatten modules of one seed have the same convolutions (what
  :func:`widelimit.atlas.conv.finite_kernels` relies on), bad sizes are refused.

Slow: the quick page through the CLI (~20–30 s on a loaded 2-core machine, ~6 s of CPU), its
files and numbers, and the page opened in headless Chromium when it is installed.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from widelimit.atlas import conv
from widelimit.cli import app

WIDTHS = (32, 64, 128, 256, 512)  # margins at seed 3: right z = −1.3, wrong z ≥ 4.9


def _digits(m: int) -> torch.Tensor:
    from widelimit.datasets import load_digits

    return load_digits(m, 1, seed=3).x_train.reshape(m, 1, 8, 8)


@pytest.fixture(scope="module")
def gap_errors():
    """Relative errors of finite GAP nets' NNGP (12 digits, 12 nets per width) against the
    analytic GAP kernel, the Flatten kernel and mis-scaled GAP kernels."""
    cfg = conv.Config()
    x = _digits(12)
    k_gap = conv.architecture("gap", cfg).kernel(x, get="nngp").nngp.numpy()
    k_flat = conv.architecture("flatten", cfg).kernel(x, get="nngp").nngp.numpy()
    limits = {"gap": k_gap, "flatten": k_flat, "x1.2": 1.2 * k_gap, "x0.8": 0.8 * k_gap}
    err: dict[str, dict[int, list[float]]] = {k: {} for k in limits}
    for n in WIDTHS:
        for k in limits:
            err[k][n] = []
        for s in range(12):
            kh = conv.finite_kernels(cfg, n, 100 * n + s, x)["gap"]
            for k, lim in limits.items():
                err[k][n].append(conv.relative_error(kh, lim))
    return err


def test_conv_rate_headline_rejects_wrong_limits_and_rates(gap_errors):
    right = conv.kernel_rate_headline(gap_errors["gap"])
    assert right.ok and right.kind == "equal"
    assert 0 < right.stderr < 0.12  # informative
    # a wrong limit leaves an error floor: the fitted slope is far flatter than −½
    for wrong in ("flatten", "x1.2", "x0.8"):
        h = conv.kernel_rate_headline(gap_errors[wrong])
        assert not h.ok, (wrong, h.value, h.stderr)
    # wrong predicted rates: no fluctuation (−1) or no convergence (0)
    assert not conv.kernel_rate_headline(gap_errors["gap"], theory=-1.0).ok
    assert not conv.kernel_rate_headline(gap_errors["gap"], theory=0.0).ok
    # shuffling the errors over widths destroys the rate
    ws = sorted(gap_errors["gap"])
    perm = [ws[i] for i in np.random.default_rng(0).permutation(len(ws))]
    shuffled = {n: gap_errors["gap"][p] for n, p in zip(ws, perm, strict=True)}
    assert not conv.kernel_rate_headline(shuffled).ok


def test_finite_kernels_average_to_the_analytic_kernels():
    """Mean over 300 nets of the readout-conditional NNGP vs ``net.kernel`` (4 digits), for
    each architecture (GAP and Flatten from one shared trunk per net)."""
    cfg = conv.Config()
    x = _digits(4)
    n, nets = 128, 300
    samples = [conv.finite_kernels(cfg, n, 10_000 + i, x) for i in range(nets)]
    iu = np.triu_indices(len(x))
    for arch in conv.ARCHS:
        k = conv.architecture(arch, cfg).kernel(x, get="nngp").nngp.numpy()
        s = np.stack([d[arch] for d in samples])
        mean, sem = s.mean(0), s.std(0, ddof=1) / np.sqrt(nets)
        allowance = 4.5 * sem + 3.0 * np.abs(k).max() / n  # sampling + O(1/n) bias (2 layers)
        assert np.all(np.abs(mean - k)[iu] <= allowance[iu]), arch
        # the check has power: a kernel mis-scaled by 10 % is outside the band
        assert np.any(np.abs(mean - 1.1 * k)[iu] > allowance[iu]), arch


def test_gap_and_flatten_modules_share_their_convolutions():
    cfg = conv.Config()
    kw = {"input_shape": (1, 8, 8), "seed": 5, "dtype": torch.float32}
    gap = conv.architecture("gap", cfg).module(48, **kw)
    flat = conv.architecture("flatten", cfg).module(48, **kw)
    for i in range(4):  # conv, ReLU, conv, ReLU
        for p, q in zip(gap.layers[i].parameters(), flat.layers[i].parameters(), strict=True):
            assert torch.equal(p, q)


def test_bad_sizes_refused():
    with pytest.raises(ValueError, match="n_train"):
        conv.compute(conv.Config(n_pool=50, n_train=50), progress=False)
    with pytest.raises(ValueError, match="n_pool"):
        conv.compute(conv.Config(n_pool=1797), progress=False)
    with pytest.raises(ValueError, match="name"):
        conv.architecture("resnet", conv.Config())


def test_corrected_se_and_ordering_resolved_only_beyond_two_se():
    from types import SimpleNamespace

    d = np.array([0.01, 0.03, 0.02, 0.04])
    # Nadeau & Bengio 2003: sd·√(1/S + n_test/n_train), here √(1/4 + 1/3)
    sd = float(np.std(d, ddof=1))
    assert conv.corrected_se(d, 300, 100) == pytest.approx(sd * np.sqrt(1 / 4 + 1 / 3))
    a = {"nngp": np.array([0.9, 0.92, 0.91]), "ntk": np.array([0.9, 0.92, 0.91])}
    b = {"nngp": np.array([0.8, 0.83, 0.81]), "ntk": np.array([0.89, 0.93, 0.90])}
    res = SimpleNamespace(accuracy={"gap": a, "flatten": b, "fc": b},
                          config=conv.Config(n_pool=200, n_train=100))  # fmt: skip
    rows = {(r[0], r[1]): r for r in conv.differences(res)}
    gap_flat = "CNN + GAP − CNN + Flatten"
    assert rows["NNGP", gap_flat][-1] == "yes"  # +0.097, SE 0.006·√(4/3)
    assert rows["NTK", gap_flat][-1] == "no"  # +0.003, SE 0.006·√(4/3)


# ------------------------------------------------------------------------- the page
@pytest.mark.slow
def test_quick_page_through_cli(tmp_path):
    res = CliRunner().invoke(app, ["atlas", "conv", "--quick", "--out", str(tmp_path),
                                   "--json", "--no-progress"])  # fmt: skip
    assert res.exit_code == 0, res.output
    page = json.loads((tmp_path / "conv.json").read_text())
    html = (tmp_path / "conv.html").read_text(encoding="utf-8")
    h, r = page["headline"], page["result"]
    # the headline: two-sided, informative, and agreeing with −½ within 3 SE
    assert h["kind"] == "equal" and page["headline_ok"]
    assert 0 < h["stderr"] < 0.2 and abs(h["value"] + 0.5) <= 3 * h["stderr"]
    # the wrong limit shown on the page levels off
    slope, se = r["wrong_slope"]
    assert abs(slope + 0.5) > 3 * se
    # Novak et al. 2019: without pooling, CNN and LCN kernels agree (exactly, here)
    assert r["lcn_vs_flatten"] < 1e-12
    # kernel regression on digits: far above chance (0.1) for every architecture and kernel
    for arch in conv.ARCHS:
        for kernel in ("nngp", "ntk"):
            assert np.mean(r["accuracy"][arch][kernel]) > 0.6
    # files: 3 figures embedded, quick markers, falsifier, published numbers as printed
    assert html.count('src="data:image/png;base64,') == 3
    assert html.count("[QUICK sizes]") == 3
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "What would have falsified the theory" in html
    assert page["content"]["falsified_by"]
    for pub in page["content"]["published"]:
        assert pub["error_bar"] and pub["where"] and pub["source"] and pub["ours"]
    assert "<td>QUICK</td>" in (tmp_path / "index.html").read_text(encoding="utf-8")
    # the page opens in headless Chromium (when installed): images decode, no console error
    from cdp_pipe import Browser, find_chromium

    chromium = find_chromium()
    if chromium is not None:
        with Browser(chromium) as browser:
            check = browser.check(tmp_path / "conv.html")
        assert check.errors == [], check.errors
        assert len(check.images) == 3 and all(ok and w > 0 for _, ok, w in check.images)
