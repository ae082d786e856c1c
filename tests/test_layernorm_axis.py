"""``LayerNorm(axis=...)``: normalising over channels and some or all spatial axes.

Routes, each independent of the rule under test:

* by hand: the kernel of the affine prefix (trusted, tested elsewhere) normalised with
  explicit per-position loops, in both the diagonal and the full spatial layout;
* the finite module against ``torch.nn.functional.layer_norm`` on permuted axes;
* Monte Carlo through finite networks (error model of ``test_conv_monte_carlo.py``: one
  LayerNorm gives an ``O(1/width)`` bias, so ``hidden=2``), with a power check: the
  per-position (``"channels"``) kernel fails the same check;
* the tiled engine: ``net.kernel(x)`` equals the untiled route, and ``net.kernel(x1, x2)``
  its blocks;
* Neural Tangents 0.6.5 in float64 (optional subprocess, ``tests/nt_reference.py``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nt_reference import NT_PYTHON, nt_kernels, widelimit_net
from test_conv_monte_carlo import BIAS_C, Z, _spatial_diagonal
from widelimit import (
    Conv1d,
    Conv2d,
    Dense,
    Erf,
    Flatten,
    GlobalAvgPool,
    LayerNorm,
    ReLU,
    monte_carlo_kernel,
    parse_net,
    serial,
)
from widelimit.layers import tiles
from widelimit.layers.inputs import input_kernel
from widelimit.layers.normalization import LayerNormModule

F64 = torch.float64
AXES_2D = ["channels", "all", (1, 2), (1, 3), (-1, 1)]


def _images(n=3, c=2, h=5, w=4, seed=1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=F64)
    x[1] = 0.8 * x[0] + 0.2 * x[1]
    x[-1, :, 0] *= 3.0  # positions with very different variances: the axes matter
    x[-1, :, :, -1] *= 2.5
    return x


def _spatial_set(axis, n_spatial: int) -> list[int]:
    """Spatial axes normalised over, decoded here independently of the layer."""
    if axis == "channels":
        return []
    if axis == "all":
        return list(range(n_spatial))
    return sorted({a % (2 + n_spatial) - 2 for a in axis} - {-1})


# ------------------------------------------------------------------- by hand
@pytest.mark.parametrize("full", [False, True], ids=["diagonal", "full"])
@pytest.mark.parametrize("axis", AXES_2D)
def test_rule_by_hand(axis, full: bool) -> None:
    """Σ' = Σ / √((q̄ + eps)(q̄' + eps)), q̄ = variance averaged over the normalised axes."""
    x1, x2 = _images(), _images(n=2, seed=2)
    eps = 0.05
    conv = Conv2d(8, 3, padding="same", w_std=1.5, b_std=0.3)
    k0 = input_kernel(x1, x2, full_spatial=full, ntk=True)
    k = conv.transform_kernel(k0)
    kn = LayerNorm(eps=eps, axis=axis).transform_kernel(k)
    h, w = k.spatial
    ax = _spatial_set(axis, 2)

    def qbar(cov: torch.Tensor) -> torch.Tensor:  # (N, H, W)
        q = torch.empty(cov.shape[0], h, w, dtype=F64)
        for i in range(h):
            for j in range(w):
                q[:, i, j] = cov[:, i, i, j, j] if full else cov[:, i, j]
        for a in ax:
            q = q.mean(dim=1 + a, keepdim=True).expand(-1, h, w)
        return q + eps

    m1, m2 = qbar(k.cov1), qbar(k.cov2)
    want_nngp, want_ntk = torch.empty_like(k.nngp), torch.empty_like(k.ntk)
    want_cov1 = torch.empty_like(k.cov1)
    for i in range(h):
        for j in range(w):
            if not full:
                d = torch.sqrt(m1[:, None, i, j] * m2[None, :, i, j])
                want_nngp[..., i, j] = k.nngp[..., i, j] / d
                want_ntk[..., i, j] = k.ntk[..., i, j] / d
                want_cov1[:, i, j] = k.cov1[:, i, j] / m1[:, i, j]
                continue
            for i2 in range(h):
                for j2 in range(w):
                    d = torch.sqrt(m1[:, None, i, j] * m2[None, :, i2, j2])
                    want_nngp[:, :, i, i2, j, j2] = k.nngp[:, :, i, i2, j, j2] / d
                    want_ntk[:, :, i, i2, j, j2] = k.ntk[:, :, i, i2, j, j2] / d
                    d1 = torch.sqrt(m1[:, i, j] * m1[:, i2, j2])
                    want_cov1[:, i, i2, j, j2] = k.cov1[:, i, i2, j, j2] / d1
    torch.testing.assert_close(kn.nngp, want_nngp, rtol=1e-14, atol=0)
    torch.testing.assert_close(kn.ntk, want_ntk, rtol=1e-14, atol=0)
    torch.testing.assert_close(kn.cov1, want_cov1, rtol=1e-14, atol=0)
    if axis == "all":  # one normaliser per example: the mean variance becomes 1 (eps aside)
        v = _spatial_diagonal(kn.cov1.unsqueeze(1), full).squeeze(1)
        q = _spatial_diagonal(k.cov1.unsqueeze(1), full).squeeze(1)
        want = q.mean(dim=(1, 2)) / (q.mean(dim=(1, 2)) + eps)
        torch.testing.assert_close(v.mean(dim=(1, 2)), want, rtol=1e-14, atol=0)


def test_all_equals_channels_on_dense_features_and_signals_all_equals_1_2() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, generator=g, dtype=F64)
    for ax in ("all", 1, (1,), (-1,)):
        a = serial(Dense(8, 1.3, 0.2), LayerNorm(axis=ax), ReLU(), Dense(1)).kernel(x)
        b = serial(Dense(8, 1.3, 0.2), LayerNorm(), ReLU(), Dense(1)).kernel(x)
        assert torch.equal(a.nngp, b.nngp) and torch.equal(a.ntk, b.ntk)
    s = _images()[:, :, :, 0].contiguous()  # (N, C, L)
    ka, kb = (
        serial(Conv1d(8, 3, padding="same"), LayerNorm(axis=ax), ReLU(), Flatten(), Dense(1))
        for ax in ("all", (1, 2))
    )
    assert torch.equal(ka.kernel(s).ntk, kb.kernel(s).ntk)


# ------------------------------------------------------------- finite module
@pytest.mark.parametrize("axis", AXES_2D)
def test_module_equals_torch_layer_norm(axis) -> None:
    x = _images(n=4, c=6)
    mod = LayerNorm(eps=1e-3, axis=axis).make_module(tuple(x.shape[1:]), dtype=F64)
    assert isinstance(mod, LayerNormModule)
    dims = [1] + [2 + a for a in _spatial_set(axis, 2)]
    rest = [d for d in range(4) if d not in dims]
    perm = rest + dims  # normalised axes last, as F.layer_norm wants them
    xp = x.permute(perm)
    want = F.layer_norm(xp, xp.shape[len(rest) :], eps=1e-3).permute(np.argsort(perm).tolist())
    torch.testing.assert_close(mod(x), want, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------- Monte Carlo
def _mc_ratio(kernel, mc, name: str, width: int) -> float:
    a = _spatial_diagonal(getattr(kernel, name), kernel.full_spatial)
    m, sem = getattr(mc, name), getattr(mc, name + "_sem")
    bias = BIAS_C * float(a.abs().max()) / width
    return float(((a - m).abs() / (Z * sem + bias)).max())


@pytest.mark.slow
@pytest.mark.parametrize(
    "axis,head", [("all", "flatten"), ("all", "gap"), ((1, 2), "flatten"), ((1, 3), "gap")], ids=str
)
def test_monte_carlo(axis, head: str) -> None:
    """Analytic vs the mean of finite nets; the per-position rule is rejected by the data."""
    x, width = _images(), 128

    def make(out, ax):
        return serial(
            Conv2d(8, 3, padding="same", w_std=1.5, b_std=0.2), LayerNorm(axis=ax),
            # the activation with the larger gap between the axes' kernels for each head
            Erf() if head == "flatten" else ReLU(),
            Flatten() if head == "flatten" else GlobalAvgPool(), Dense(out, w_std=1.2, b_std=0.1),
        )  # fmt: skip

    for name, out, samples in (("nngp", 32, 300), ("ntk", 1, 60)):
        net = make(out, axis)
        mc = monte_carlo_kernel(
            net, x, width=width, n_samples=samples, seed=5, get=name, progress=False
        )
        k = net.with_width(width).kernel(x)
        assert _mc_ratio(k, mc, name, width) <= 1.0
        wrong = make(out, "channels").with_width(width).kernel(x)
        assert _mc_ratio(wrong, mc, name, width) > 1.0  # the test can tell the axes apart


# -------------------------------------------------------------- tiled engine
@pytest.mark.parametrize("head", ["flatten", "gap"])
@pytest.mark.parametrize("axis", ["all", (1, 3)], ids=str)
def test_tiled_engine_blocks(monkeypatch, axis, head: str) -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(7, 2, 5, 4, generator=g, dtype=F64)
    x[4] = x[1]
    per_pair = 20**2 if head == "gap" else 20
    monkeypatch.setattr(tiles, "TILE_ENTRIES_SPATIAL", 4 * per_pair)  # 2×2 example pairs
    net = serial(
        Conv2d(4, 3, padding="same", w_std=1.4, b_std=0.1), LayerNorm(axis=axis), ReLU(),
        Conv2d(4, 2, w_std=1.2), LayerNorm(eps=0.1, axis=axis), Erf(),
        GlobalAvgPool() if head == "gap" else Flatten(), Dense(1),
    )  # fmt: skip
    assert net.is_pairwise()
    k = net.kernel(x)
    ref = net.transform_kernel(input_kernel(x, None, full_spatial=head == "gap", ntk=True))
    torch.testing.assert_close(k.nngp, ref.nngp, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(k.ntk, ref.ntk, rtol=1e-12, atol=1e-14)
    disjoint = net.kernel(x[:3], x[3:])
    torch.testing.assert_close(disjoint.nngp, k.nngp[:3, 3:], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(disjoint.ntk, k.ntk[:3, 3:], rtol=1e-12, atol=1e-14)
    # overlapping blocks: (x[2], x[2]) is arccos-limited in a cross kernel (see test_kernel_engine)
    kx = net.kernel(x[:3], x[2:])
    torch.testing.assert_close(kx.nngp, k.nngp[:3, 2:], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(kx.ntk, k.ntk[:3, 2:], rtol=1e-7, atol=1e-14)


# -------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "axis,err,match",
    [
        ("spatial", ValueError, "instance normalisation"),
        ("rows", ValueError, "`axis` must be one of"),
        ((0, 1), ValueError, "batch axis"),
        ((), ValueError, "at least the channel axis"),
        (1.0, TypeError, "`axis`"),
        ((1, True), TypeError, "`axis`"),
    ],
)
def test_bad_axis_at_construction(axis, err, match: str) -> None:
    with pytest.raises(err, match=match):
        LayerNorm(axis=axis)


def test_bad_axis_against_the_input() -> None:
    x = _images()
    with pytest.raises(ValueError, match="channel axis 1"):
        serial(Conv2d(4, 3), LayerNorm(axis=(2, 3)), Flatten(), Dense(1)).kernel(x)
    with pytest.raises(ValueError, match="do not have"):
        serial(Conv2d(4, 3), LayerNorm(axis=(1, 4)), Flatten(), Dense(1)).kernel(x)
    with pytest.raises(ValueError, match="batch axis"):
        serial(Conv2d(4, 3), LayerNorm(axis=(1, -4)), Flatten(), Dense(1)).kernel(x)
    with pytest.raises(ValueError, match="do not have"):
        serial(Dense(4), LayerNorm(axis=(1, 2)), Dense(1)).module(8, input_shape=3)


def test_parser_accepts_axis() -> None:
    net = parse_net("Conv2d(8, 3) -> LayerNorm(axis='all') -> ReLU -> LayerNorm(1e-5, (1, 2))")
    assert net.layers[1] == LayerNorm(axis="all")
    assert net.layers[3] == LayerNorm(eps=1e-5, axis=(1, 2))
    assert parse_net("LayerNorm(axis=[1, 3])") == LayerNorm(axis=(1, 3))


# ---------------------------------------------------------- Neural Tangents
def _conv(n, k, pad="same", w=1.5, b=0.2, dims=2):
    return ["conv", n, [k] * dims, [1] * dims, pad, w, b, "ntk", [1, 1]]


@pytest.mark.slow
@pytest.mark.skipif(NT_PYTHON is None, reason="Neural Tangents environment not installed")
def test_agrees_with_neural_tangents() -> None:
    """float64, each axis choice, diagonal (Flatten) and full (GAP) layouts, 1-D and 2-D.

    NT evaluates arccos at c = 1 − O(ε) on an image with itself, where arccos' infinite
    slope turns rounding into ~√ε ≈ 1e-8 relative (widelimit uses c = 1 exactly there), so
    the NTK diagonal of the Flatten nets (ReLU on the per-position diagonal) is compared at
    1e-8 and everything else at 1e-12.
    """
    x2d, x1d = _images().numpy(), _images()[:, :, :, 0].contiguous().numpy()
    readout = ["dense", 1, 1.1, 0.3, "ntk", [1, 1]]
    cases = []
    for ax in ["channels", "all", [1, 2], [1, -1]]:
        for head in ["flatten", "gap"]:
            layers = [
                _conv(8, 3), ["layernorm", ax, 1e-3], ["relu"], _conv(8, 3, "valid", 1.2, 0.1),
                ["layernorm", ax, 0.0], ["erf"], [head], readout,
            ]  # fmt: skip
            cases.append((layers, x2d))
    for ax in ["channels", "all"]:
        layers = [_conv(8, 3, "circular", dims=1), ["layernorm", ax, 1e-3], ["relu"], ["gap"]]
        cases.append(([*layers, readout], x1d))
    for (layers, x), (nngp, ntk) in zip(cases, nt_kernels(cases), strict=True):
        k = widelimit_net(layers).kernel(torch.from_numpy(x))
        np.testing.assert_allclose(k.nngp.numpy(), nngp, rtol=1e-12, atol=1e-14)
        off = ~np.eye(len(x), dtype=bool)
        np.testing.assert_allclose(k.ntk.numpy()[off], ntk[off], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(np.diag(k.ntk.numpy()), np.diag(ntk), rtol=1e-8, atol=0)
