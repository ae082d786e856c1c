"""Locally connected layers (``ConvLocal1d/2d``): finite module and kernel rule.

Routes, each independent of the code under test:

* the finite module against an explicit per-position ``Dense``: patches cut out here by
  index loops (zero or wrap-around padding), one matrix product per output position with
  that position's own weights and bias (exact up to rounding);
* the kernel rule against a per-position ``Dense`` kernel: for every output position the
  patch's input covariance (the mean of the input kernel over the window's ``p = p'``
  entries, padded positions contributing 0, fan-in ``C·|window|``) goes through the
  ``Dense`` layer's own rule; every cross-position entry must be exactly 0;
* Monte Carlo through finite nets (error model of ``test_conv_monte_carlo.py``), including
  the sample covariance between different output positions (0 in the limit);
* Neural Tangents 0.6.5 (``stax.ConvLocal``, ``stax.SumPool``, ``stax.GlobalSumPool``) when
  its virtual environment exists (optional, slow).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from test_conv_monte_carlo import NNGP_SAMPLES, WIDTH, Z, _images, _signals, check_against_mc
from widelimit.kernel import Kernel
from widelimit.layers import (
    Conv1d,
    Conv2d,
    ConvLocal1d,
    ConvLocal2d,
    Dense,
    Erf,
    Flatten,
    GlobalAvgPool,
    GlobalSumPool,
    ReLU,
    SumPool2d,
    Tanh,
    serial,
)
from widelimit.layers.inputs import input_kernel
from widelimit.spec_text import parse_net

RTOL = 1e-12


def _axis_sources(size: int, k: int, s: int, padding: str) -> list[list[int | None]]:
    """Per output position, the input index read by each window offset (``None``: a padded
    zero), computed from the TensorFlow-SAME rule written out here."""
    if padding == "valid":
        out, before = (size - k) // s + 1, 0
    else:
        out = -(-size // s)
        before = max((out - 1) * s + k - size, 0) // 2
    rows = []
    for i in range(out):
        row = []
        for a in range(k):
            j = s * i + a - before
            row.append(j % size if padding == "circular" else (j if 0 <= j < size else None))
        rows.append(row)
    return rows


def _geometry(layer, spatial):
    """Per output multi-index ``p``, the list of input multi-indices (or ``None``) of its
    patch in the order ``(a_1, a_2, ...)``."""
    per_axis = [
        _axis_sources(n, k, s, layer.padding)
        for n, k, s in zip(spatial, layer.kernel_size, layer.stride, strict=True)
    ]
    out = {}
    for p in itertools.product(*(range(len(rows)) for rows in per_axis)):
        srcs = []
        for offs in itertools.product(*(range(k) for k in layer.kernel_size)):
            idx = tuple(per_axis[ax][p[ax]][a] for ax, a in enumerate(offs))
            srcs.append(None if any(i is None for i in idx) else idx)
        out[p] = srcs
    return out


CASES = [
    (ConvLocal1d, dict(kernel_size=3, padding="same", w_std=1.3, b_std=0.2)),
    (ConvLocal1d, dict(kernel_size=2, stride=2, padding="circular", w_std=1.1)),
    (ConvLocal2d, dict(kernel_size=3, padding="same", w_std=1.4, b_std=0.3)),
    (ConvLocal2d, dict(kernel_size=(2, 3), stride=(2, 1), padding="circular", b_std=0.5)),
    (ConvLocal2d, dict(kernel_size=2, padding="valid", w_std=1.2, b_std=0.1)),
]


def _x(cls, n=3, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (n, 2, 7) if cls is ConvLocal1d else (n, 2, 5, 4)
    return torch.randn(shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
@pytest.mark.parametrize(("cls", "kw"), CASES)
def test_module_is_per_position_dense(cls, kw, parameterization) -> None:
    layer = cls(5, parameterization=parameterization, **kw)
    x = _x(cls)
    shape = tuple(x.shape[1:])
    mod = layer.make_module(shape, generator=torch.Generator().manual_seed(3), dtype=x.dtype)
    out = mod(x)
    assert tuple(out.shape[1:]) == layer.out_shape(shape)
    out_sp = tuple(out.shape[2:])
    assert tuple(mod.weight.shape) == (5, 2, *layer.kernel_size, *out_sp)
    assert (mod.bias is None) == (layer.b_std == 0)
    if mod.bias is not None:
        assert tuple(mod.bias.shape) == (5, *out_sp)
    fan_in = 2 * math.prod(layer.kernel_size)
    w_scale = layer.w_std / math.sqrt(fan_in) if parameterization == "ntk" else 1.0
    b_scale = layer.b_std if parameterization == "ntk" else 1.0
    for p, srcs in _geometry(layer, shape[1:]).items():
        # the patch (N, C, |window|) with zeros for padded positions, flattened channel-major
        patch = torch.stack(
            [x[(..., *q)] if q is not None else x.new_zeros(x.shape[:2]) for q in srcs], -1
        ).flatten(1)
        w = mod.weight[(..., *p)].reshape(5, -1)  # (out, C·|window|) of position p only
        want = w_scale * patch @ w.T
        if mod.bias is not None:
            want = want + b_scale * mod.bias[(slice(None), *p)]
        torch.testing.assert_close(out[(..., *p)], want, rtol=RTOL, atol=1e-13)


def _per_position_dense(layer, k: Kernel) -> Kernel:
    """The output kernel built position by position from ``Dense``'s rule (module doc)."""
    n = len(k.spatial)

    def diag(t, n_lead):  # the p = p' entries of a full layout, by explicit indexing
        if not k.full_spatial:
            return lambda q: t[(..., *q)]
        return lambda q: t[(..., *(i for i in q for _ in range(2)))]

    dense = Dense(layer.out_channels, layer.w_std, layer.b_std, layer.parameterization)
    geo = _geometry(layer, k.spatial)
    out_sp = tuple(max(p[ax] for p in geo) + 1 for ax in range(n))
    pairs = tuple(s for s in out_sp for _ in range(2))  # full layout (S1, S1', S2, S2')
    res = {}
    for name, t, n_lead in (
        ("nngp", k.nngp, 2), ("ntk", k.ntk, 2), ("cov1", k.cov1, 1), ("cov2", k.cov2, 1),
    ):  # fmt: skip
        res[name] = None if t is None else t.new_zeros((*t.shape[:n_lead], *pairs))
    for p, srcs in geo.items():

        def patch_mean(t, n_lead, srcs=srcs):
            if t is None:
                return None
            g = diag(t, n_lead)
            vals = [g(q) if q is not None else t.new_zeros(t.shape[:n_lead]) for q in srcs]
            return torch.stack(vals).sum(0) / len(srcs)  # mean over (c, a); padded: 0

        kp = Kernel(
            nngp=patch_mean(k.nngp, 2),
            ntk=patch_mean(k.ntk, 2),
            cov1=patch_mean(k.cov1, 1),
            cov2=patch_mean(k.cov2, 1),
            channels=k.channels * len(srcs),  # fan-in C·|window|
        )
        kd = dense.transform_kernel(kp)
        pp = tuple(i for i in p for _ in range(2))
        for name in res:
            if res[name] is not None:
                res[name][(..., *pp)] = getattr(kd, name)
    return Kernel(**res, spatial=out_sp, full_spatial=True, channels=layer.out_channels)


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
@pytest.mark.parametrize("deep", [False, True])
@pytest.mark.parametrize(("cls", "kw"), CASES)
def test_kernel_is_per_position_dense(cls, kw, deep, parameterization) -> None:
    """Full layout: ``p = p'`` entries from Dense's rule per patch, all others exactly 0;
    the diagonal layout holds the same ``p = p'`` entries."""
    layer = cls(6, parameterization=parameterization, **kw)
    x1, x2 = _x(cls, 3, 0), _x(cls, 2, 1)
    conv = (Conv1d if cls is ConvLocal1d else Conv2d)(7, 2, padding="same", w_std=1.3, b_std=0.2)
    front = serial(conv, Tanh(), SumPool2d(2, 1, padding="same")) if cls is ConvLocal2d else None
    front = front or serial(conv, Tanh())
    for b in (None, x2):
        kin = input_kernel(x1, b, full_spatial=True, ntk=True)
        if deep:  # a kernel with nonzero Θ and cross-position entries
            kin = front.transform_kernel(kin)
        got = layer.transform_kernel(kin)
        want = _per_position_dense(layer, kin)
        assert got.full_spatial and got.spatial == want.spatial
        assert got.channels == 6 and got.is_gaussian
        for name in ("nngp", "ntk", "cov1", "cov2"):
            g, w = getattr(got, name), getattr(want, name)
            if w is None:
                assert g is None
                continue
            torch.testing.assert_close(g, w, rtol=RTOL, atol=1e-13)
        # the diagonal layout of the same input: the same p = p' entries
        n = len(kin.spatial)

        def pdiag(t, n_lead, n=n):
            if t is None:
                return None
            for _ in range(n):
                t = t.diagonal(dim1=n_lead, dim2=n_lead + 1)
            return t

        kdiag = kin.replace(
            nngp=pdiag(kin.nngp, 2), ntk=pdiag(kin.ntk, 2), cov1=pdiag(kin.cov1, 1),
            cov2=pdiag(kin.cov2, 1), full_spatial=False,
        )  # fmt: skip
        gd = layer.transform_kernel(kdiag)
        assert not gd.full_spatial and gd.spatial == got.spatial
        for name, n_lead in (("nngp", 2), ("ntk", 2), ("cov1", 1), ("cov2", 1)):
            if getattr(got, name) is not None:
                d = pdiag(getattr(got, name), n_lead)
                torch.testing.assert_close(getattr(gd, name), d, rtol=RTOL, atol=1e-13)


def test_flatten_readout_equals_cnn_pooling_does_not() -> None:
    """Without pooling an LCN and a CNN have the same kernel (diagonal layout only); with
    global pooling they differ (the CNN's cross-position covariances contribute)."""
    x = _x(ConvLocal2d)
    args = dict(kernel_size=3, padding="same", w_std=1.4, b_std=0.1)
    lcn = serial(ConvLocal2d(8, **args), ReLU(), ConvLocal2d(8, 2), ReLU(), Flatten(), Dense(1))
    cnn = serial(Conv2d(8, **args), ReLU(), Conv2d(8, 2), ReLU(), Flatten(), Dense(1))
    kl, kc = lcn.kernel(x), cnn.kernel(x)
    torch.testing.assert_close(kl.nngp, kc.nngp, rtol=RTOL, atol=0)
    torch.testing.assert_close(kl.ntk, kc.ntk, rtol=RTOL, atol=0)
    kl = serial(ConvLocal2d(8, **args), ReLU(), GlobalAvgPool(), Dense(1)).kernel(x)
    kc = serial(Conv2d(8, **args), ReLU(), GlobalAvgPool(), Dense(1)).kernel(x)
    assert float((kl.nngp - kc.nngp).abs().max()) > 0.05 * float(kc.nngp.abs().max())


@pytest.mark.parametrize("pool", [Flatten(), GlobalSumPool()])
def test_blocks_of_two_batches_agree_with_one(pool) -> None:
    net = serial(
        ConvLocal2d(4, 3, padding="same", w_std=1.4, b_std=0.1), ReLU(),
        ConvLocal2d(4, 2, stride=2, padding="circular", w_std=1.2), Erf(), pool, Dense(1),
    )  # fmt: skip
    assert net.is_pairwise()
    x = _x(ConvLocal2d, 4)
    full = net.kernel(x)
    cross = net.kernel(x[:1], x[1:])
    torch.testing.assert_close(cross.nngp, full.nngp[:1, 1:], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(cross.ntk, full.ntk[:1, 1:], rtol=1e-12, atol=1e-14)
    # the whole-kernel route (no tiles) agrees with the tiled one
    direct = net.transform_kernel(input_kernel(x, None, full_spatial=net.needs_full_spatial(),
                                               ntk=True))  # fmt: skip
    torch.testing.assert_close(full.nngp, direct.nngp, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(full.ntk, direct.ntk, rtol=1e-12, atol=1e-14)


def test_parser_names_and_width() -> None:
    net = parse_net("ConvLocal2d(8, 3, padding='same', b_std=0.1) -> ReLU -> Flatten -> Dense(1)")
    assert net.layers[0] == ConvLocal2d(8, 3, padding="same", b_std=0.1)
    assert net.layers[0] != Conv2d(8, 3, padding="same", b_std=0.1)
    net = parse_net("ConvLocal1d(4, (3,), stride=2) -> ReLU -> GlobalSumPool -> Dense(1)")
    assert net.layers[0].kernel_size == (3,) and net.layers[0].stride == (2,)
    assert net.with_width(16).layers[0].out_channels == 16
    mod = net.module(16, input_shape=(2, 9), seed=0)
    assert mod(torch.randn(3, 2, 9)).shape == (3, 1)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: ConvLocal2d(0), "`out_channels`"),
        (lambda: ConvLocal2d(4, kernel_size=0), "`kernel_size`"),
        (lambda: ConvLocal2d(4, kernel_size=(2, 2, 2)), "`kernel_size`"),
        (lambda: ConvLocal1d(4, stride=0), "`stride`"),
        (lambda: ConvLocal2d(4, padding="reflect"), "`padding`"),
        (lambda: ConvLocal2d(4, w_std=-1.0), "`w_std`"),
        (lambda: ConvLocal2d(4, b_std=float("nan")), "`b_std`"),
        (lambda: ConvLocal2d(4, parameterization="mup"), "`parameterization`"),
        (lambda: ConvLocal2d(4, 6).out_shape((2, 5, 5)), "ConvLocal2d: window 6"),
        (lambda: ConvLocal1d(4).out_shape((2, 5, 5)), r"ConvLocal1d expects .*\(C, L\)"),
        (lambda: ConvLocal2d(4).make_module((2, 5, 5))(torch.randn(1, 3, 5, 5)), r"\(N, 2, H, W\)"),
        (lambda: ConvLocal2d(4).make_module((2, 5, 5))(torch.randn(1, 2, 6, 5)), "input size"),
    ],
)
def test_bad_arguments(make, match) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        make()


# ------------------------------------------------------------------ Monte Carlo


def test_monte_carlo_lcn_global_pool() -> None:
    """One hidden nonlinearity before a global pool: the cross-position zeros of the LCN
    kernel decide the pooled kernel (the CNN's differs by > 5 %; test above)."""

    def make(out):
        return serial(
            ConvLocal2d(8, 3, padding="same", w_std=1.4, b_std=0.2), ReLU(),
            GlobalAvgPool(), Dense(out, w_std=1.1, b_std=0.1),
        )  # fmt: skip

    check_against_mc(make, _images(), hidden=1, seed=31)


def test_monte_carlo_lcn_standard_1d() -> None:
    """Standard parameterization (NTK grows with the fan-in C·k), stride 2, circular."""
    x = _signals()  # (N, C, 8)

    def make(out):
        return serial(
            ConvLocal1d(8, 3, stride=2, padding="circular", w_std=1.4, b_std=0.3,
                        parameterization="standard"),
            ReLU(), ConvLocal1d(out, 2, padding="same", b_std=0.2, parameterization="standard"),
        )  # fmt: skip

    check_against_mc(make, x, hidden=1, seed=32)


@pytest.mark.slow
def test_monte_carlo_lcn_deeper() -> None:
    """Two hidden nonlinearities (1/width bias allowed), sum pooling in between; the LCN
    follows a shared conv with a non-square filter and stride (where Neural Tangents 0.6.5
    swaps the axes: its NNGP is ~17 % off here, many standard errors)."""

    def make(out):
        return serial(
            Conv2d(8, 3, padding="same", w_std=1.4, b_std=0.1), ReLU(),
            SumPool2d(2, 1, padding="same"),
            ConvLocal2d(8, (3, 2), stride=(2, 1), padding="same", w_std=1.3, b_std=0.2), ReLU(),
            GlobalSumPool(), Dense(out, w_std=0.3),
        )  # fmt: skip

    check_against_mc(make, _images(h=5, w=6), hidden=2, seed=33)


def test_monte_carlo_cross_position_covariances_vanish() -> None:
    """Every entry of the full layout, including the zeros at ``p ≠ p'``, against the sample
    covariance between positions of finite nets (forward passes only)."""
    x = _images(h=4, w=3)
    net = serial(
        Conv2d(8, 2, padding="same", w_std=1.4, b_std=0.2), Tanh(),
        ConvLocal2d(32, (2, 3), padding="circular", w_std=1.3, b_std=0.4),
    )  # fmt: skip
    spec = net.with_width(WIDTH)
    k = spec.transform_kernel(input_kernel(x, None, full_spatial=True, ntk=False))
    gen = torch.Generator().manual_seed(34)
    samples = []
    with torch.no_grad():
        for _ in range(NNGP_SAMPLES):
            f = spec.make_module(tuple(x.shape[1:]), generator=gen, dtype=x.dtype)(x)
            samples.append(torch.einsum("nchw,mcgv->nmhgwv", f, f) / f.shape[1])
    s = torch.stack(samples)
    mc, sem = s.mean(0), s.std(0) / NNGP_SAMPLES**0.5
    assert k.nngp.shape == mc.shape
    off = k.nngp == 0
    assert int(off.sum()) > k.nngp.numel() // 2  # the zeros are really tested
    ratio = float(((k.nngp - mc).abs() / (Z * sem)).max())  # one hidden nonlinearity: no bias
    assert ratio <= 1.0, f"max |err|/allowed = {ratio:.3g}"


# ------------------------------------------------------------- Neural Tangents

NT_PYTHON = Path("/root/.cache/nt-venv/bin/python")

_NT_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from neural_tangents import stax
    cfg = json.loads(sys.argv[1])
    x = np.moveaxis(np.load(cfg["x"]), 1, -1)  # NCHW -> NHWC
    out = []
    for kind, *a in cfg["layers"]:
        if kind in ("conv", "convlocal"):
            ch, ks, st, pad, w, b, par = a
            layer = stax.Conv if kind == "conv" else stax.ConvLocal
            out.append(layer(ch, tuple(ks), tuple(st), pad.upper(), W_std=w, b_std=b or None,
                             parameterization=par))
        elif kind == "relu":
            out.append(stax.Relu())
        elif kind == "erf":
            out.append(stax.Erf())
        elif kind == "sumpool":
            out.append(stax.SumPool(tuple(a[0]), tuple(a[1]), a[2].upper()))
        elif kind == "gsp":
            out.append(stax.GlobalSumPool())
        elif kind == "flatten":
            out.append(stax.Flatten())
        elif kind == "dense":
            out.append(stax.Dense(a[0], W_std=a[1], b_std=a[2] or None, parameterization=a[3]))
    k = stax.serial(*out)[2](x, None, ("nngp", "ntk"))
    np.save(cfg["out"] + "_nngp.npy", np.asarray(k.nngp))
    np.save(cfg["out"] + "_ntk.npy", np.asarray(k.ntk))
    """
)

NT_CASES = {
    "lcn_sumpool_gsp": (
        [["convlocal", 4, [3, 3], [1, 1], "same", 1.3, 0.2, "ntk"], ["relu"],
         ["sumpool", [2, 2], [1, 1], "same"],
         ["convlocal", 4, [2, 2], [2, 1], "valid", 1.1, 0.1, "ntk"], ["relu"], ["gsp"],
         ["dense", 1, 1.0, 0.1, "ntk"]],
        serial(ConvLocal2d(4, 3, 1, "same", 1.3, 0.2), ReLU(), SumPool2d(2, 1, "same"),
               ConvLocal2d(4, 2, (2, 1), "valid", 1.1, 0.1), ReLU(), GlobalSumPool(),
               Dense(1, 1.0, 0.1)),
    ),
    "lcn_standard_circular": (
        [["convlocal", 4, [2, 3], [2, 1], "circular", 1.3, 0.2, "standard"], ["erf"],
         ["sumpool", [3, 2], [2, 2], "circular"], ["flatten"],
         ["dense", 4, 1.0, 0.1, "standard"]],
        serial(ConvLocal2d(4, (2, 3), (2, 1), "circular", 1.3, 0.2, "standard"), Erf(),
               SumPool2d((3, 2), (2, 2), "circular"), Flatten(), Dense(4, 1.0, 0.1, "standard")),
    ),
    # after a shared Conv only square filters and strides: with others Neural Tangents 0.6.5
    # applies the unshared filter to swapped axes (docs/kernels.md; test_monte_carlo_lcn_deeper)
    "cnn_then_lcn_pool": (
        [["conv", 4, [3, 3], [1, 1], "circular", 1.3, 0.2, "ntk"], ["relu"],
         ["convlocal", 4, [3, 3], [1, 1], "same", 1.3, 0.2, "standard"], ["relu"],
         ["sumpool", [2, 3], [1, 2], "valid"], ["gsp"], ["dense", 1, 1.0, 0.1, "ntk"]],
        serial(Conv2d(4, 3, 1, "circular", 1.3, 0.2), ReLU(),
               ConvLocal2d(4, 3, 1, "same", 1.3, 0.2, "standard"), ReLU(),
               SumPool2d((2, 3), (1, 2), "valid"), GlobalSumPool(), Dense(1, 1.0, 0.1)),
    ),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.skipif(not NT_PYTHON.exists(), reason="Neural Tangents venv not installed")
@pytest.mark.parametrize("case", sorted(NT_CASES))
def test_against_neural_tangents(case: str, tmp_path: Path) -> None:
    """ConvLocal, SumPool, GlobalSumPool against Neural Tangents 0.6.5 at float64."""
    layers, net = NT_CASES[case]
    x = _images(h=5, w=6)
    np.save(tmp_path / "x.npy", x.numpy())
    cfg = {"x": str(tmp_path / "x.npy"), "layers": layers, "out": str(tmp_path / "nt")}
    subprocess.run(
        [str(NT_PYTHON), "-c", _NT_SCRIPT, json.dumps(cfg)],
        check=True, capture_output=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip
    k = net.kernel(x)
    for name in ("nngp", "ntk"):
        ref = torch.from_numpy(np.load(tmp_path / f"nt_{name}.npy"))
        # NT's ReLU at correlation 1 loses ~1e-9 (arccos near 1); ours is exact there
        torch.testing.assert_close(getattr(k, name), ref, rtol=1e-8, atol=0)
