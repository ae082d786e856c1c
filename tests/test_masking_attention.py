"""Masks (``mask=`` side input) through ``GlobalSelfAttention`` and ``LayerNorm(axis=...)``.

Routes, each independent of the rule under test:

* exact truncation: with per-position layers before, attention or a spatial LayerNorm, and a
  ``GlobalAvgPool`` readout, a signal (image) masked beyond ``ℓ`` gives exactly the kernel
  and the finite output of the signal cut to ``ℓ`` (attention: masked keys are excluded, a
  softmax over the valid keys; LayerNorm: mean and variance over the valid positions), with a
  power check (without the mask the kernels differ);
* the limiting attention formula written out with loops on tiny masked inputs: each
  example's weights are a softmax of its own covariance over its valid keys; masked query
  positions (inputs read as zeros) attend uniformly to the valid keys (Neural Tangents
  zeroes those outputs instead; both are meaningless, see ``widelimit.layers.masking``);
* values at masked positions change nothing (kernel and finite module);
* tiles: blocks of the tiled ``k(x)`` equal the block's examples computed alone;
* Monte Carlo through a finite network with masks of mixed lengths (error model of
  ``tests/test_attention.py``: ``|analytic − MC| ≤ Z·sem + BIAS_C·max|K|/width``), with a
  power check (the kernel of the unmasked inputs fails it);
* Neural Tangents 0.6.5 with ``mask_constant`` (slow; skipped without its venv): softmax
  with summed embeddings and ``1/√d_k`` identity attention, then ``LayerNorm("all")``,
  agree to 8e-13 relative (asserted at 1e-10).
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
import torch

import widelimit.layers.tiles as tiles
from nt_reference import NT_PYTHON, run_npz_worker
from widelimit.layers import (
    Conv1d,
    Conv2d,
    Dense,
    GlobalAvgPool,
    GlobalSelfAttention,
    LayerNorm,
    ReLU,
    serial,
)
from widelimit.monte_carlo import monte_carlo_kernel

Z = 4.5
BIAS_C = 10.0  # calibrated in tests/test_attention.py
L = 7
ATT = dict(n_heads=2, w_std_key=1.1, w_std_query=0.9, w_std_value=1.2, w_std_out=0.8)

ATTENTIONS = {
    "softmax": dict(),
    "softmax-sum-bias": dict(pos_emb="sum", pos_emb_std=0.7, b_std=0.3),
    "softmax-concat-values": dict(pos_emb="concat", pos_emb_values=True, b_std=0.2),
    "abs": dict(attention_mechanism="abs"),
    "sqrt-relu": dict(attention_mechanism="relu", linear_scaling=False),
    "sqrt-identity-sum": dict(
        attention_mechanism="identity", linear_scaling=False, pos_emb="sum", b_std=0.2
    ),
}


def _signals(n: int, seed: int, length: int = L, c: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, length, generator=g, dtype=torch.float64)


def _prefix_mask(lengths: list[int], length: int = L) -> torch.Tensor:
    return torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]


def _scramble(x: torch.Tensor, m: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    noise = 5 * torch.randn(x.shape, generator=g, dtype=x.dtype)
    return torch.where(m.unsqueeze(1), x, noise)


def _attention_net(**kw):
    return serial(
        Conv1d(8, 1, w_std=1.3, b_std=0.2),
        ReLU(),
        GlobalSelfAttention(**ATT, **kw),
        ReLU(),
        GlobalAvgPool(),
        Dense(1, w_std=1.1, b_std=0.05),
    )


def _truncated_module(net, full, spatial: tuple[int, ...], keep: tuple[int, ...]):
    """The finite net for positions ``keep`` with ``full``'s parameters (embeddings cut)."""
    mod = net.module(8, input_shape=(3, *keep), seed=1, dtype=torch.float64)
    state = {}
    for name, t in full.state_dict().items():
        if name.endswith("pos_emb"):  # (C_e, |S|) -> the positions that are kept
            t = t.reshape(t.shape[0], *spatial)[(slice(None), *(slice(0, s) for s in keep))]
            t = t.reshape(t.shape[0], -1)
        state[name] = t
    mod.load_state_dict(state)
    return mod


# ----------------------------------------------------------------------------- exact routes
@pytest.mark.parametrize("case", list(ATTENTIONS))
def test_attention_mask_equals_truncation(case):
    kw = ATTENTIONS[case]
    x1, x2 = _signals(3, seed=0), _signals(2, seed=1)
    net = _attention_net(**kw)
    ell = 4
    m1, m2 = _prefix_mask([ell] * 3), _prefix_mask([ell] * 2)
    got = net.kernel(x1, x2, mask=(m1, m2))
    want = net.kernel(x1[..., :ell], x2[..., :ell])
    sym, want_sym = net.kernel(x1, mask=m1), net.kernel(x1[..., :ell])
    for name in ("nngp", "ntk"):
        scale = float(getattr(want, name).abs().max())
        torch.testing.assert_close(
            getattr(got, name), getattr(want, name), rtol=0, atol=1e-13 * scale
        )
        torch.testing.assert_close(
            getattr(sym, name), getattr(want_sym, name), rtol=0, atol=1e-13 * scale
        )
        assert not torch.allclose(getattr(net.kernel(x1, x2), name), getattr(want, name))
    full = net.module(8, input_shape=(3, L), seed=0, dtype=torch.float64)
    cut = _truncated_module(net, full, (L,), (ell,))
    y1 = _scramble(x1, m1, seed=2)
    torch.testing.assert_close(full(y1, mask=m1), cut(x1[..., :ell]), rtol=1e-12, atol=1e-13)


def test_attention_mixed_lengths_blocks_are_truncations():
    lengths = [3, 7, 3, 5, 7]
    x, net = _signals(5, seed=3), _attention_net(b_std=0.1)
    k = net.kernel(x, mask=_prefix_mask(lengths))
    for ell in set(lengths):
        idx = [i for i, n in enumerate(lengths) if n == ell]
        want = net.kernel(x[idx][..., :ell])
        torch.testing.assert_close(k.ntk[idx][:, idx], want.ntk, rtol=1e-12, atol=1e-14)


def _direct(x: torch.Tensor, m: torch.Tensor, layer: GlobalSelfAttention):
    """NNGP, NTK of ``layer`` alone on raw inputs ``x`` (N, C, P) with mask ``m`` (N, P),
    written out: masked inputs zeroed, per example a softmax over its valid keys."""
    xs = (x * m[:, None]).numpy()
    n, c, p = xs.shape
    s0 = np.einsum("aci,bcj->abij", xs, xs) / c  # Σ of the raw inputs (Θ = 0)
    g = layer.w_std_query * layer.w_std_key
    ov2, b2 = (layer.w_std_value * layer.w_std_out) ** 2, layer.b_std**2
    weights = np.zeros((n, p, p))
    for a in range(n):
        valid = [j for j in range(p) if m[a, j]]
        for s in range(p):
            logits = [g * s0[a, a, s, j] for j in valid]
            top = max(logits)
            e = [math.exp(v - top) for v in logits]
            for j, v in zip(valid, e, strict=True):
                weights[a, s, j] = v / sum(e)
    nngp = np.zeros((n, n, p, p))
    for a in range(n):
        for b in range(n):
            nngp[a, b] = ov2 * weights[a] @ s0[a, b] @ weights[b].T + b2
    ntk = 2 * (nngp - b2) + b2  # Θ' = σv²σo² A (0 + 2Σ) A'ᵀ + σb²
    return nngp, ntk


def test_attention_kernel_equals_direct_formula_with_masks():
    x = _signals(3, seed=4, length=5, c=4)
    m = _prefix_mask([5, 3, 4], length=5)
    m[0, 1] = False  # a hole inside a signal
    layer = GlobalSelfAttention(n_heads=2, w_std_key=1.3, w_std_query=0.9, b_std=0.4)
    k = serial(layer).kernel(x, mask=m)
    nngp, ntk = _direct(x, m, layer)
    np.testing.assert_allclose(k.nngp.numpy(), nngp, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(k.ntk.numpy(), ntk, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("case", ["softmax-sum-bias", "sqrt-relu"])
def test_attention_masked_positions_contribute_nothing(case):
    x = _signals(4, seed=5, length=8)
    m = _prefix_mask([8, 5, 2, 6], length=8)
    m[0, 3] = False
    y = _scramble(x, m, seed=6)
    net = _attention_net(**ATTENTIONS[case])
    for name in ("nngp", "ntk"):
        a, b = getattr(net.kernel(x, mask=m), name), getattr(net.kernel(y, mask=m), name)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
        assert not torch.allclose(getattr(net.kernel(x), name), getattr(net.kernel(y), name))
    mod = net.module(16, input_shape=(3, 8), seed=0, dtype=torch.float64)
    torch.testing.assert_close(mod(x, mask=m), mod(y, mask=m), rtol=1e-12, atol=1e-14)
    assert not torch.allclose(mod(x), mod(y))


def test_attention_on_images_equals_cropped_images():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 2, 4, 3, generator=g, dtype=torch.float64)
    m = torch.zeros(2, 4, 3, dtype=torch.bool)
    m[:, :3, :2] = True
    net = serial(
        Conv2d(8, 1, b_std=0.1), ReLU(), GlobalSelfAttention(**ATT), GlobalAvgPool(), Dense(1)
    )
    got, want = net.kernel(x, mask=m), net.kernel(x[..., :3, :2])
    torch.testing.assert_close(got.ntk, want.ntk, rtol=1e-12, atol=1e-14)
    full = net.module(8, input_shape=(2, 4, 3), seed=0, dtype=torch.float64)
    cut = net.module(8, input_shape=(2, 3, 2), seed=0, dtype=torch.float64)
    torch.testing.assert_close(full(x, mask=m), cut(x[..., :3, :2]), rtol=1e-12, atol=1e-14)


def test_attention_empty_mask_gives_the_bias():
    x = _signals(2, seed=8)
    m = _prefix_mask([L, 0])
    layer = GlobalSelfAttention(**ATT, b_std=0.3)
    k = serial(Conv1d(8, 1), layer).kernel(x, mask=m)
    assert torch.isfinite(k.ntk).all() and torch.isfinite(k.nngp).all()
    torch.testing.assert_close(k.nngp[1, 1], torch.full_like(k.nngp[1, 1], 0.09))
    mod = serial(Conv1d(8, 1), layer).module(8, input_shape=(3, L), seed=0, dtype=torch.float64)
    x.requires_grad_()
    out = mod(x, mask=m)
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    att = mod.layers[-1]
    torch.testing.assert_close(out[1], (0.3 * att.bias)[:, None].expand(-1, L).detach())


# ----------------------------------------------------------------------------- LayerNorm
def _ln_net(axis, conv=Conv1d):
    return serial(
        conv(8, 3, padding="same", w_std=1.3, b_std=0.2),
        ReLU(),
        conv(8, 1, w_std=1.2, b_std=0.1),
        LayerNorm(axis=axis),
        ReLU(),
        GlobalAvgPool(),
        Dense(1),
    )


@pytest.mark.parametrize("axis", ["all", (1, -1)])
def test_layernorm_mask_equals_truncation(axis):
    x1, x2 = _signals(3, seed=9), _signals(2, seed=10)
    ell = 4
    m1, m2 = _prefix_mask([ell] * 3), _prefix_mask([ell] * 2)
    net = _ln_net(axis)
    got, want = net.kernel(x1, x2, mask=(m1, m2)), net.kernel(x1[..., :ell], x2[..., :ell])
    sym, want_sym = net.kernel(x1, mask=m1), net.kernel(x1[..., :ell])
    for name in ("nngp", "ntk"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=1e-12, atol=0)
        torch.testing.assert_close(getattr(sym, name), getattr(want_sym, name), rtol=1e-12, atol=0)
    # power: LayerNorm's statistics over all positions (the mask withheld from it) differ
    pre = serial(*net.layers[:3]).kernel(x1, mask=m1)
    with_mask = net.layers[3].transform_kernel(pre).nngp
    without = net.layers[3].transform_kernel(pre.replace(side1={})).nngp
    assert not torch.allclose(with_mask, without, rtol=1e-6)
    full = net.module(16, input_shape=(3, L), seed=0, dtype=torch.float64)
    cut = net.module(16, input_shape=(3, ell), seed=0, dtype=torch.float64)
    y1 = _scramble(x1, m1, seed=11)
    torch.testing.assert_close(full(y1, mask=m1), cut(x1[..., :ell]), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("axis", ["all", (1, 2), (1, 3)])
def test_layernorm_on_images_equals_cropped_images(axis):
    """``(1, 2)`` normalises each column: the padded columns have no valid position."""
    g = torch.Generator().manual_seed(12)
    x = torch.randn(3, 2, 5, 4, generator=g, dtype=torch.float64)
    m = torch.zeros(3, 5, 4, dtype=torch.bool)
    m[:, :3, :2] = True
    net = _ln_net(axis, conv=Conv2d)
    got, want = net.kernel(x, mask=m), net.kernel(x[..., :3, :2])
    torch.testing.assert_close(got.ntk, want.ntk, rtol=1e-12, atol=0)
    torch.testing.assert_close(got.nngp, want.nngp, rtol=1e-12, atol=0)
    full = net.module(8, input_shape=(2, 5, 4), seed=0, dtype=torch.float64)
    cut = net.module(8, input_shape=(2, 3, 2), seed=0, dtype=torch.float64)
    torch.testing.assert_close(full(x, mask=m), cut(x[..., :3, :2]), rtol=1e-12, atol=1e-14)


def test_layernorm_masked_module_matches_statistics_by_hand():
    g = torch.Generator().manual_seed(13)
    x = torch.randn(2, 4, 6, generator=g, dtype=torch.float64)
    m = _prefix_mask([6, 3], length=6)
    m[0, 4] = False
    out = LayerNorm(axis="all", eps=1e-3).make_module((4, 6))(x, mask=m)
    for a in range(2):
        v = x[a][:, m[a]]  # (C, valid)
        want = (x[a] - v.mean()) / torch.sqrt(v.var(unbiased=False) + 1e-3)
        torch.testing.assert_close(out[a], want, rtol=1e-12, atol=1e-14)
    # a line with no valid position outputs 0 (no NaN), per column here
    col = LayerNorm(axis=(1, 2)).make_module((4, 3, 2))
    xi, mi = torch.randn(1, 4, 3, 2, generator=g), torch.tensor([[[1, 0], [1, 0], [0, 0]]])
    y = col(xi, mask=mi)
    assert torch.isfinite(y).all() and (y[..., 1] == 0).all()


def test_layernorm_channels_ignores_the_mask():
    x = _signals(3, seed=14)
    m = _prefix_mask([7, 4, 2])
    net = _ln_net("channels")
    pointwise = net.layers[3]
    k = serial(*net.layers[:3]).kernel(x, mask=m)
    assert pointwise.transform_kernel(k).nngp.equal(
        pointwise.transform_kernel(k.replace(side1={})).nngp
    )


# ----------------------------------------------------------------------------- tiles
def test_tiles_with_masks(monkeypatch):
    x = _signals(6, seed=15)
    m = _prefix_mask([7, 2, 5, 7, 4, 6])
    net = serial(
        Conv1d(8, 3, padding="same", w_std=1.3, b_std=0.2),
        ReLU(),
        GlobalSelfAttention(**ATT, pos_emb="sum", b_std=0.2),
        LayerNorm(axis="all"),
        ReLU(),
        GlobalAvgPool(),
        Dense(1),
    )
    monkeypatch.setattr(tiles, "TILE_ENTRIES_SPATIAL", 4 * L**2)  # 2×2 examples per tile
    k = net.kernel(x, mask=m)
    block = net.kernel(x[1:4], x[3:6], mask=(m[1:4], m[3:6]))
    # example 3 is in both halves of the block: there the block route sees the ReLU
    # correlation 1 up to rounding, which arccos amplifies to ~1e-9 (tiles.py docstring)
    off = torch.ones(3, 3, dtype=torch.bool)
    off[2, 0] = False
    torch.testing.assert_close(k.nngp[1:4, 3:6][off], block.nngp[off], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(k.ntk[1:4, 3:6][off], block.ntk[off], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(k.ntk[3, 3], block.ntk[2, 0], rtol=1e-8, atol=0)
    alone = net.kernel(x[4:5], mask=m[4:5])
    torch.testing.assert_close(k.ntk[4, 4], alone.ntk[0, 0], rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------- Monte Carlo
def _mc_net(out: int):
    return serial(
        Conv1d(8, 1, w_std=1.3, b_std=0.2),
        ReLU(),
        GlobalSelfAttention(**ATT),
        LayerNorm(axis="all"),
        GlobalAvgPool(),
        Dense(out),
    )


def test_monte_carlo_mixed_lengths():
    """Calibration: allowed-error ratio 0.13 (max z 2.1, relative error 0.016); the unmasked
    kernel scores 2.0."""
    x = _signals(4, seed=16, length=6, c=4)
    m = _prefix_mask([6, 3, 5, 2], length=6)
    x = _scramble(x, m, seed=17)  # large values at the masked positions
    width = 64
    k = _mc_net(1).kernel(x, mask=m).nngp
    mc = monte_carlo_kernel(
        _mc_net(32), x, width=width, n_samples=300, seed=0, get="nngp", progress=False, mask=m
    )
    bias = BIAS_C * float(k.abs().max()) / width
    ratio = float(((k - mc.nngp).abs() / (Z * mc.nngp_sem + bias)).max())
    assert ratio <= 1.0, f"max |err|/allowed = {ratio:.3g}"
    wrong = _mc_net(1).kernel(x).nngp  # the mask ignored
    bad = float(((wrong - mc.nngp).abs() / (Z * mc.nngp_sem + bias)).max())
    assert bad > 1.0, f"the check cannot tell the unmasked kernel apart ({bad:.3g})"


# ----------------------------------------------------------------------------- Neural Tangents
_NT_SCRIPT = textwrap.dedent(
    """
    import sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from neural_tangents import stax

    d = np.load(sys.argv[1])
    att = dict(n_chan_out=6, n_chan_key=6, n_chan_val=6, n_heads=2, W_key_std=1.1,
               W_query_std=0.9, W_value_std=1.2, W_out_std=0.8)
    nets = {
        "softmax": stax.GlobalSelfAttention(**att, linear_scaling=True, b_std=0.3,
                                            pos_emb_type="SUM", W_pos_emb_std=0.7),
        "identity": stax.GlobalSelfAttention(**att, linear_scaling=False, b_std=0.2,
                                             attention_mechanism="IDENTITY"),
    }
    out = {}
    for name, layer in nets.items():
        _, _, kernel_fn = stax.serial(
            stax.Dense(6, W_std=1.3, b_std=0.2), stax.Relu(), layer,
            stax.LayerNorm(axis=(1, 2)), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1),
        )
        x1, x2 = np.moveaxis(d["x1"], 1, -1), np.moveaxis(d["x2"], 1, -1)  # NCL -> NLC
        k = kernel_fn(x1, x2, ("nngp", "ntk"), mask_constant=float(d["c"]))
        out[name + "_nngp"], out[name + "_ntk"] = np.asarray(k.nngp), np.asarray(k.ntk)
    np.savez(sys.argv[2], **out)
    """
)


@pytest.mark.slow  # importing JAX alone takes ~30-60 s on the shared machine
@pytest.mark.skipif(NT_PYTHON is None, reason="Neural Tangents environment not installed")
def test_matches_neural_tangents_mask_constant(tmp_path):
    x1, x2 = _signals(3, seed=18, length=6), _signals(2, seed=19, length=6)
    m1 = _prefix_mask([6, 4, 5], length=6)
    m1[0, 2] = False
    m2 = _prefix_mask([3, 6], length=6)
    c = -7.0  # Neural Tangents masks the entries equal to mask_constant
    y1, y2 = torch.where(m1[:, None], x1, c), torch.where(m2[:, None], x2, c)
    nt = run_npz_worker(
        _NT_SCRIPT, tmp_path, "mask_attention_worker.py", timeout=600,
        x1=y1.numpy(), x2=y2.numpy(), c=c,
    )  # fmt: skip
    layers = {
        "softmax": GlobalSelfAttention(6, **ATT, b_std=0.3, pos_emb="sum", pos_emb_std=0.7),
        "identity": GlobalSelfAttention(
            6, **ATT, b_std=0.2, linear_scaling=False, attention_mechanism="identity"
        ),
    }
    for name, layer in layers.items():
        net = serial(
            Dense(6, w_std=1.3, b_std=0.2),
            ReLU(),
            layer,
            LayerNorm(axis="all"),
            ReLU(),
            GlobalAvgPool(),
            Dense(1),
        )
        k = net.kernel(x1, x2, mask=(m1, m2))
        for q in ("nngp", "ntk"):
            want = nt[f"{name}_{q}"]
            np.testing.assert_allclose(getattr(k, q).numpy(), want, rtol=1e-10, atol=0)
