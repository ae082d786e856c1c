"""GlobalSelfAttention: exact formula, tiled engine, Monte Carlo, Neural Tangents, errors.

(a) The limiting formulas of :mod:`widelimit.layers.attention` written out again
here with loops (independent code: own input kernel, own softmax, own arc-cosine
dual) agree with the layer to 1e-12 in float64.

(b) Monte Carlo error model (as ``tests/test_conv_monte_carlo.py``): every entry
must satisfy ``|analytic − MC| ≤ Z·sem + BIAS_C·max|K|/width`` with ``Z = 4.5``
and ``sem`` the estimated standard error of the Monte Carlo mean.  The
finite-width bias of attention is larger than that of an MLP: with
``linear_scaling`` the attention weights are a softmax of the empirical
covariance of ``d_k = width`` random keys, whose fluctuations are
``O(width^{-1/2})`` and bias the weights at ``O(1/width)``.  Calibration (net of
:func:`_mc_net`, inputs of :func:`_signals`, 1000 samples, 32 readout channels):
``max|analytic − MC|·width/max|K|`` was 2.0, 3.3, 4.1, 4.2, 6.9, 2.6 at widths
8, 16, 32, 64, 128, 256 (sampling noise included) and the relative Frobenius
error fell 0.28, 0.20, 0.12, 0.062, 0.047, 0.014.  ``BIAS_C = 10`` leaves a
1.5x margin; each check also shows its power: the same criterion rejects the
kernel of uniform attention weights.

(c) Neural Tangents 0.6.5 (separate venv, driven as a subprocess; skipped when
missing) gives the same kernels to 1e-12 (its layout is NWC / NHWC).
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import widelimit as wl
from widelimit.layers import tiles
from widelimit.layers.inputs import input_kernel
from widelimit.monte_carlo import monte_carlo_kernel
from widelimit.spec_text import parse_net

NT_PYTHON = Path("/root/.cache/nt-venv/bin/python")
Z = 4.5
BIAS_C = 10.0

ATT = dict(n_heads=2, w_std_key=1.1, w_std_query=0.9, w_std_value=1.2, w_std_out=0.8)


def _signals(n: int = 3, c: int = 4, length: int = 5, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, length, generator=g, dtype=torch.float64)


def _images(n: int = 2, c: int = 3, h: int = 3, w: int = 2, seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, w, generator=g, dtype=torch.float64)


def _decay(d: torch.Tensor) -> torch.Tensor:
    return torch.exp(-d / 3.0)


# --------------------------------------------------------------------------
# (a) the limiting formula, evaluated directly
# --------------------------------------------------------------------------


def _relu_dual(q1: float, q2: float, s12: float) -> tuple[float, float]:
    """``E[relu(u) relu(v)]``, ``E[1(u>0) 1(v>0)]`` (Cho & Saul 2009, eq. (6))."""
    if q1 <= 0 or q2 <= 0:
        return 0.0, 0.25 if q1 > 0 or q2 > 0 else 0.0
    c = max(-1.0, min(1.0, s12 / math.sqrt(q1 * q2)))
    th = math.acos(c)
    return math.sqrt(q1 * q2) / (2 * math.pi) * (math.sin(th) + (math.pi - th) * c), (
        math.pi - th
    ) / (2 * math.pi)


def _reference(x: torch.Tensor, layer: wl.GlobalSelfAttention, w_std: float, b_std: float):
    """NNGP, NTK of ``Dense(·, w_std, b_std) -> layer`` on ``x`` (N, C, *S), written out.

    Returns ``(N, N, P, P)`` arrays over row-major flattened positions.
    """
    xs = x.flatten(2).numpy()  # (N, C, P)
    n, c, p = xs.shape
    s0 = np.zeros((n, n, p, p))
    for a in range(n):
        for b in range(n):
            for i in range(p):
                for j in range(p):
                    s0[a, b, i, j] = sum(xs[a, k, i] * xs[b, k, j] for k in range(c)) / c
    sig = w_std**2 * s0 + b_std**2  # Dense on raw inputs: Σ¹ = σw²Σ⁰ + σb², Θ¹ = Σ¹
    th = sig.copy()
    # positional embeddings: covariance R across positions, weights of Σ and R
    spatial = tuple(x.shape[2:])
    pos = [np.unravel_index(i, spatial) for i in range(p)]
    r = np.eye(p)
    if layer.pos_emb_decay is not None:
        for i in range(p):
            for j in range(p):
                d = sum(
                    abs(pi - pj) ** layer.pos_emb_p_norm
                    for pi, pj in zip(pos[i], pos[j], strict=True)
                )
                r[i, j] = math.exp(-d / 3.0)
    w_in, w_e = 1.0, 0.0
    if layer.pos_emb == "sum":
        w_e = layer.pos_emb_std**2
    elif layer.pos_emb == "concat":  # C_e = C (hidden width of the Dense): half and half
        w_in, w_e = 0.5, 0.5 * layer.pos_emb_std**2
    sk, tk = w_in * sig + w_e * r, w_in * th + w_e * r
    sv, tv = (sk, tk) if layer.pos_emb_values else (sig, th)
    g = layer.w_std_query * layer.w_std_key
    ov2, b2 = (layer.w_std_value * layer.w_std_out) ** 2, layer.b_std**2
    nngp, ntk = np.zeros((n, n, p, p)), np.zeros((n, n, p, p))
    if layer.linear_scaling:
        att = np.zeros((n, p, p))
        for a in range(n):
            for i in range(p):
                row = [g * sk[a, a, i, j] for j in range(p)]
                m = max(row)
                e = [math.exp(v - m) for v in row]
                att[a, i] = [v / sum(e) for v in e]
        for a in range(n):
            for b in range(n):
                for s in range(p):
                    for t in range(p):
                        acc = acc_t = 0.0
                        for i in range(p):
                            for j in range(p):
                                w = att[a, s, i] * att[b, t, j]
                                acc += w * sv[a, b, i, j]
                                acc_t += w * (tv[a, b, i, j] + 2 * sv[a, b, i, j])
                        nngp[a, b, s, t] = ov2 * acc + b2
                        ntk[a, b, s, t] = ov2 * acc_t + (b2 if layer.b_std > 0 else 0.0)
        return nngp, ntk
    assert layer.attention_mechanism == "relu"
    for a in range(n):
        for b in range(n):
            for s in range(p):
                for t in range(p):
                    acc = acc_t = 0.0
                    for i in range(p):
                        for j in range(p):
                            q1 = g * g * sk[a, a, s, s] * sk[a, a, i, i]
                            q2 = g * g * sk[b, b, t, t] * sk[b, b, j, j]
                            e_ff, e_dd = _relu_dual(q1, q2, g * g * sk[a, b, s, t] * sk[a, b, i, j])
                            logit_ntk = (
                                g
                                * g
                                * (
                                    tk[a, b, s, t] * sk[a, b, i, j]
                                    + sk[a, b, s, t] * tk[a, b, i, j]
                                    + 2 * sk[a, b, s, t] * sk[a, b, i, j]
                                )
                            )
                            acc += e_ff * sv[a, b, i, j]
                            acc_t += e_ff * (tv[a, b, i, j] + 2 * sv[a, b, i, j])
                            acc_t += e_dd * logit_ntk * sv[a, b, i, j]
                    nngp[a, b, s, t] = ov2 * acc + b2
                    ntk[a, b, s, t] = ov2 * acc_t + (b2 if layer.b_std > 0 else 0.0)
    return nngp, ntk


def _flat_pairs(t: torch.Tensor) -> np.ndarray:
    """Widelimit's ``(N, N, S1, S1', S2, S2')`` -> ``(N, N, P, P)`` (row-major positions)."""
    n_sp = (t.ndim - 2) // 2
    t = t.permute(0, 1, *[2 + 2 * a for a in range(n_sp)], *[3 + 2 * a for a in range(n_sp)])
    p = math.prod(t.shape[2 : 2 + n_sp])
    return t.reshape(t.shape[0], t.shape[1], p, p).numpy()


EXACT_CASES = {
    "softmax": dict(),
    "softmax-bias-sum": dict(b_std=0.3, pos_emb="sum", pos_emb_std=0.7),
    "softmax-concat-decay-values": dict(
        pos_emb="concat", pos_emb_std=0.7, pos_emb_decay=_decay, pos_emb_values=True, b_std=0.2
    ),
    "relu-sqrt-scaling": dict(linear_scaling=False, attention_mechanism="relu", b_std=0.1),
    "relu-sqrt-scaling-sum-values": dict(
        linear_scaling=False, attention_mechanism="relu", pos_emb="sum", pos_emb_values=True
    ),
}


@pytest.mark.parametrize("case", sorted(EXACT_CASES))
@pytest.mark.parametrize("make_x", [_signals, _images], ids=["signals", "images"])
def test_kernel_equals_direct_formula(case, make_x):
    x = make_x()[:2]
    layer = wl.GlobalSelfAttention(6, **ATT, **EXACT_CASES[case])
    net = wl.serial(wl.Dense(6, w_std=1.3, b_std=0.2), layer)
    k = net.kernel(x)
    want_nngp, want_ntk = _reference(x, layer, 1.3, 0.2)
    got_nngp, got_ntk = _flat_pairs(k.nngp), _flat_pairs(k.ntk)
    assert np.abs(got_nngp - want_nngp).max() <= 1e-12 * np.abs(want_nngp).max()
    assert np.abs(got_ntk - want_ntk).max() <= 1e-12 * np.abs(want_ntk).max()


# --------------------------------------------------------------------------
# pairwise: the tiled engine, the whole-kernel route and k(x1, x2) blocks agree
# --------------------------------------------------------------------------


@pytest.mark.parametrize("linear", [True, False], ids=["linear", "sqrt"])
def test_pairwise_tiles_agree(monkeypatch, linear):
    mech = "softmax" if linear else "relu"
    net = wl.serial(
        wl.Conv1d(5, 2, b_std=0.1),
        wl.Erf(),
        wl.GlobalSelfAttention(linear_scaling=linear, attention_mechanism=mech, b_std=0.2, **ATT),
        wl.Dense(3),
    )
    assert net.is_pairwise() and net.needs_full_spatial()
    x = _signals(n=5)
    full = net.kernel(x)
    # the whole-kernel route (no tiles)
    k0 = input_kernel(x, None, full_spatial=True, ntk=True)
    whole = net.transform_kernel(k0)
    for name in ("nngp", "ntk"):
        a, b = getattr(full, name), getattr(whole, name)
        assert (a - b).abs().max() <= 1e-12 * b.abs().max()
    # one example pair per tile: each block computed from that block alone
    monkeypatch.setattr(tiles, "TILE_ENTRIES_SPATIAL", 1)
    small = net.kernel(x)
    cross = net.kernel(x[:2], x[2:])
    for name in ("nngp", "ntk"):
        ref = getattr(full, name)
        assert (getattr(small, name) - ref).abs().max() <= 1e-12 * ref.abs().max()
        assert (getattr(cross, name) - ref[:2, 2:]).abs().max() <= 1e-12 * ref.abs().max()


# --------------------------------------------------------------------------
# the finite module
# --------------------------------------------------------------------------


def test_module_shapes_and_parameters():
    layer = wl.GlobalSelfAttention(7, n_heads=3, key_channels=5, value_channels=2, pos_emb="concat")
    m = layer.make_module((4, 3, 2), generator=torch.Generator().manual_seed(0))
    assert m(torch.randn(6, 4, 3, 2)).shape == (6, 7, 3, 2)
    assert tuple(m.key_weight.shape) == (3, 8, 5) and m.query_weight is None  # tied
    assert tuple(m.value_weight.shape) == (3, 4, 2) and tuple(m.out_weight.shape) == (7, 6)
    assert tuple(m.pos_emb.shape) == (4, 6)
    sq = wl.GlobalSelfAttention(linear_scaling=False).make_module((4, 5))
    assert tuple(sq.query_weight.shape) == (1, 4, 4)
    assert layer.out_shape((4, 3, 2)) == (7, 3, 2)
    with pytest.raises(ValueError, match=r"expects inputs of shape \(N, 4, 3, 2\)"):
        m(torch.randn(6, 4, 2, 3))


def test_module_attention_rows_sum_to_one_and_width_follows():
    net = parse_net(
        "Conv1d(16, 3) -> ReLU -> GlobalSelfAttention(n_heads=2) -> GlobalAvgPool -> Dense(1)"
    )
    mod = net.module(32, input_shape=(3, 8), seed=0, dtype=torch.float64)
    (att,) = [m for m in mod.modules() if isinstance(m, wl.GlobalSelfAttentionModule)]
    assert att.out_channels == 32 and tuple(att.key_weight.shape) == (2, 32, 32)
    logits = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    assert torch.allclose(att.attention_weights(logits).sum(-1), torch.ones(2, 2, 6).double())


# --------------------------------------------------------------------------
# the net-description parser
# --------------------------------------------------------------------------


def test_parser_builds_the_same_spec():
    text = "Conv1d(16, 3) -> ReLU -> GlobalSelfAttention(n_heads=2) -> GlobalAvgPool -> Dense(1)"
    net = parse_net(text)
    same = wl.serial(
        wl.Conv1d(16, 3), wl.ReLU(), wl.GlobalSelfAttention(n_heads=2), wl.GlobalAvgPool(),
        wl.Dense(1),
    )  # fmt: skip
    x = _signals(n=4, c=3, length=6)
    k, ref = net.kernel(x), same.kernel(x)
    assert k.nngp.shape == (4, 4)
    assert torch.equal(k.nngp, ref.nngp) and torch.equal(k.ntk, ref.ntk)
    assert "GlobalSelfAttention" in wl.spec_text.known_layers()


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (dict(n_heads=0), ValueError, "n_heads"),
        (dict(key_channels=-1), ValueError, "key_channels"),
        (dict(attention_mechanism="sigmoid"), ValueError, "attention_mechanism"),
        (dict(pos_emb="add"), ValueError, "pos_emb"),
        (dict(w_std_key=-1.0), ValueError, "w_std_key"),
        (dict(linear_scaling=1), TypeError, "linear_scaling"),
        (dict(pos_emb="sum", pos_emb_channels=4), ValueError, "pos_emb_channels"),
        (dict(pos_emb_values=True), ValueError, "pos_emb"),
        (dict(pos_emb="sum", pos_emb_decay=3.0), TypeError, "pos_emb_decay"),
        (dict(pos_emb="sum", pos_emb_covariance=[[1.0]]), TypeError, "pos_emb_covariance"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        wl.GlobalSelfAttention(**kwargs)


def test_clear_errors_at_use():
    x = _signals()
    with pytest.raises(ValueError, match="needs positions"):
        wl.serial(wl.GlobalSelfAttention(), wl.Dense(1)).kernel(torch.randn(3, 4))
    with pytest.raises(ValueError, match="needs positions"):
        wl.GlobalSelfAttention().module(input_shape=4)
    soft = wl.GlobalSelfAttention(linear_scaling=False)
    with pytest.raises(ValueError, match="no closed-form"):
        soft.kernel(x)
    assert soft.module(input_shape=(4, 5))(x.float()).shape == (3, 4, 5)  # Monte Carlo works
    k = input_kernel(x, None, full_spatial=False, ntk=True)
    with pytest.raises(ValueError, match="full spatial"):
        wl.GlobalSelfAttention().transform_kernel(k)
    wrong = wl.GlobalSelfAttention(pos_emb="sum", pos_emb_covariance=torch.eye(4))
    with pytest.raises(ValueError, match=r"must be \(5, 5\)"):
        wrong.kernel(x)
    not_psd = torch.ones(5, 5) - 2 * torch.eye(5)
    with pytest.raises(ValueError, match="positive semi-definite"):
        wl.GlobalSelfAttention(pos_emb="sum", pos_emb_covariance=not_psd).kernel(x)
    with pytest.raises(ValueError, match="same shape"):
        wl.GlobalSelfAttention(pos_emb="sum", pos_emb_decay=lambda d: 1.0).kernel(x)


def test_user_covariance_equals_decay():
    """A user-given covariance gives the kernel of the same covariance from a decay."""
    x = _signals()
    pos = torch.arange(5, dtype=torch.float64)
    d = (pos[:, None] - pos[None]).pow(2)
    a = wl.GlobalSelfAttention(pos_emb="concat", pos_emb_covariance=torch.exp(-d / 3.0))
    b = wl.GlobalSelfAttention(pos_emb="concat", pos_emb_decay=_decay)
    ka, kb = wl.serial(wl.Dense(3), a).kernel(x), wl.serial(wl.Dense(3), b).kernel(x)
    assert torch.allclose(ka.nngp, kb.nngp, rtol=1e-13, atol=0)
    assert torch.allclose(ka.ntk, kb.ntk, rtol=1e-13, atol=0)


# --------------------------------------------------------------------------
# (b) Monte Carlo
# --------------------------------------------------------------------------


def _mc_net(out: int, **attention) -> wl.Layer:
    kw = dict(n_heads=2, w_std_key=1.5, w_std_query=1.5, pos_emb="sum", pos_emb_std=0.5)
    kw.update(attention)
    return wl.serial(
        wl.Dense(8, w_std=1.3, b_std=0.2),
        wl.ReLU(),
        wl.GlobalSelfAttention(**kw),
        wl.GlobalAvgPool(),
        wl.Dense(out),
    )


def _uniform_attention(net: wl.Layer) -> wl.Layer:
    """The same net with σk = 0: every softmax weight 1/|S| (a wrong kernel for the checks)."""
    return net.map_layers(
        lambda l: (
            dataclasses.replace(l, w_std_key=0.0) if isinstance(l, wl.GlobalSelfAttention) else l
        )
    )


def _ratio(analytic: torch.Tensor, mean: torch.Tensor, sem: torch.Tensor, width: int) -> float:
    """``max |analytic − MC| / (Z·sem + BIAS_C·max|K|/width)``: ≤ 1 passes."""
    bias = BIAS_C * float(analytic.abs().max()) / width
    return float(((analytic - mean).abs() / (Z * sem + bias)).max())


def _mc_check(make, x, *, width: int, kernel: str, samples: int, seed: int = 0) -> float:
    """Assert the error model; return the relative Frobenius error of the estimate."""
    out = 32 if kernel == "nngp" else 1  # the NNGP averages 32 i.i.d. readout channels
    k = getattr(make(1).kernel(x), kernel)
    mc = monte_carlo_kernel(
        make(out), x, width=width, n_samples=samples, seed=seed, get=kernel, progress=False
    )
    mean, sem = getattr(mc, kernel), getattr(mc, kernel + "_sem")
    ratio = _ratio(k, mean, sem, width)
    assert ratio <= 1.0, f"{kernel} at width {width}: max |err|/allowed = {ratio:.3g}"
    wrong = getattr(_uniform_attention(make(1)).kernel(x), kernel)
    bad = _ratio(wrong, mean, sem, width)
    assert bad > 1.0, f"the check cannot tell uniform attention apart ({bad:.3g})"
    return float((mean - k).norm() / k.norm())


def test_monte_carlo_nngp_linear_scaling():
    _mc_check(_mc_net, _signals(), width=64, kernel="nngp", samples=300)


@pytest.mark.slow
def test_monte_carlo_ntk_linear_scaling():
    _mc_check(_mc_net, _signals(), width=64, kernel="ntk", samples=60)


@pytest.mark.slow
def test_monte_carlo_error_falls_with_width():
    """Relative error 0.20 → 0.014 (calibration) from width 16 to 256: require a 3x fall."""
    errs = [_mc_check(_mc_net, _signals(), width=w, kernel="nngp", samples=400) for w in (16, 256)]
    assert errs[1] < errs[0] / 3, errs


@pytest.mark.slow
def test_monte_carlo_sqrt_scaling_relu():
    """``1/√d_k`` scaling: Gaussian logits; more heads shrink the spread across networks."""

    def make(out):
        return _mc_net(out, linear_scaling=False, attention_mechanism="relu", n_heads=8)

    _mc_check(make, _signals(), width=128, kernel="nngp", samples=300)


# --------------------------------------------------------------------------
# (c) Neural Tangents 0.6.5
# --------------------------------------------------------------------------

_NT_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    from neural_tangents import stax

    for case in json.loads(open(sys.argv[1]).read()):
        x = np.moveaxis(np.load(case["x"]), 1, -1)  # NCL / NCHW -> NWC / NHWC
        decay = (lambda d: jnp.exp(-d / 3.0)) if case["decay"] else None
        _, _, kernel_fn = stax.serial(
            stax.Dense(6, W_std=1.3, b_std=0.2),
            stax.Relu(),
            stax.GlobalSelfAttention(
                n_chan_out=6, n_chan_key=6, n_chan_val=6, n_heads=2,
                linear_scaling=case["linear"], W_key_std=1.1, W_query_std=0.9,
                W_value_std=1.2, W_out_std=0.8, b_std=case["b_std"],
                attention_mechanism=case["mechanism"].upper(),
                pos_emb_type=case["pos_emb"].upper(), pos_emb_decay_fn=decay,
                W_pos_emb_std=0.7, val_pos_emb=case["values"],
            ),
        )
        k = kernel_fn(x, None, get=("nngp", "ntk"))
        np.save(case["out"] + "_nngp.npy", np.asarray(k.nngp))
        np.save(case["out"] + "_ntk.npy", np.asarray(k.ntk))
    """
)

NT_CASES = [
    dict(linear=True, mechanism="softmax", pos_emb="none", values=False, decay=False, b_std=None),
    dict(linear=True, mechanism="softmax", pos_emb="concat", values=True, decay=True, b_std=0.3),
    dict(linear=True, mechanism="relu", pos_emb="sum", values=False, decay=False, b_std=0.3),
    dict(linear=False, mechanism="identity", pos_emb="sum", values=True, decay=True, b_std=0.2),
]


@pytest.mark.slow
@pytest.mark.skipif(not NT_PYTHON.exists(), reason="Neural Tangents venv not installed")
def test_agrees_with_neural_tangents(tmp_path):
    cases, nets = [], []
    for shape_name, x in (("signals", _signals()), ("images", _images())):
        np.save(tmp_path / f"{shape_name}.npy", x.numpy())
        for i, case in enumerate(NT_CASES):
            out = str(tmp_path / f"{shape_name}{i}")
            cases.append({**case, "x": str(tmp_path / f"{shape_name}.npy"), "out": out})
            layer = wl.GlobalSelfAttention(
                6, key_channels=6, value_channels=6, linear_scaling=case["linear"],
                attention_mechanism=case["mechanism"], pos_emb=case["pos_emb"],
                pos_emb_values=case["values"], pos_emb_decay=_decay if case["decay"] else None,
                pos_emb_std=0.7, b_std=case["b_std"] or 0.0, **ATT,
            )  # fmt: skip
            nets.append((x, wl.serial(wl.Dense(6, w_std=1.3, b_std=0.2), wl.ReLU(), layer), out))
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    (tmp_path / "nt_attention_worker.py").write_text(_NT_SCRIPT)
    subprocess.run(
        [str(NT_PYTHON), str(tmp_path / "nt_attention_worker.py"), str(tmp_path / "cases.json")],
        check=True,
        capture_output=True,
        timeout=600,
    )
    for x, net, out in nets:
        k = net.kernel(x)
        for name in ("nngp", "ntk"):
            want = np.load(out + f"_{name}.npy")  # same separable layout (N, N, S, S', ...)
            got = getattr(k, name).numpy()
            assert got.shape == want.shape
            assert np.abs(got - want).max() <= 1e-12 * np.abs(want).max(), (out, name)


def test_from_module_refuses_multihead_attention_with_the_reason():
    mha = torch.nn.Sequential(torch.nn.Conv1d(4, 8, 1), torch.nn.MultiheadAttention(8, 2))
    with pytest.raises(
        ValueError, match=r"MultiheadAttention cannot be mapped.*GlobalSelfAttention"
    ):
        wl.from_module(mha)
    with pytest.raises(TypeError):  # why: it cannot even run inside nn.Sequential
        mha(torch.randn(2, 4, 5))
