"""ConvTranspose1d/2d: finite module, kernel rule and three independent routes.

* the finite module against the index definition of its docstring (explicit loops:
  output ``p`` reads input ``(p + q − a)/s`` through tap ``a``);
* exact second route: the kernel equals the NNGP/NTK of the *unrolled* layer — the
  linear map's matrices ``B_a`` (one per tap, read off the finite module on unit
  inputs) give ``h = Σ_{c,a} W[c,a] B_a x_c``, whose covariance is written by hand
  (float64, 1e-12);
* the empirical NTK of one finite layer, which does not depend on the weights;
* Monte Carlo through finite nets (the error model of ``test_conv_monte_carlo.py``);
* optional: Neural Tangents 0.6.5 ``stax.ConvTranspose`` through its own Python
  (skipped when that environment is missing; slow).
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import widelimit as wl
from test_conv_monte_carlo import _images, check_against_mc
from widelimit.empirical import empirical_ntk
from widelimit.from_torch import from_module
from widelimit.layers import (
    ConvTranspose1d,
    ConvTranspose2d,
    Dense,
    Flatten,
    GlobalAvgPool,
    ReLU,
    Tanh,
    serial,
)
from widelimit.layers.inputs import input_kernel
from widelimit.spec_text import parse_net

F64 = torch.float64
PADDINGS = ("valid", "same", "circular")
# (stride, kernel): k > s with k − s odd and even, k = s, k < s; (1, 9) on 4 inputs wraps
# around twice with "circular"
GEOMETRIES = ((1, 3), (2, 3), (2, 4), (2, 2), (3, 2), (1, 9))


def _x(*shape, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=F64)
    x[1] = 0.8 * x[0] + 0.2 * x[1]
    return x


# --------------------------------------------------------------------------- finite module
def _by_definition(x: torch.Tensor, w: torch.Tensor, s: int, padding: str) -> torch.Tensor:
    """1-D transposed conv by its index definition; ``x: (N, C, L)``, ``w: (C, O, k)``."""
    n, _, size = x.shape
    k = w.shape[2]
    q = 0 if padding == "valid" else max(k - s, 0) // 2
    out = size * s + (max(k - s, 0) if padding == "valid" else 0)
    y = torch.zeros(n, w.shape[1], out, dtype=x.dtype)
    for p, a in itertools.product(range(out), range(k)):
        r = p + q - a
        if r % s:
            continue
        i = r // s
        if padding == "circular":
            i %= size
        elif not 0 <= i < size:
            continue
        y[:, :, p] += x[:, :, i] @ w[:, :, a]
    return y


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize(("s", "k"), GEOMETRIES)
def test_module_is_the_index_definition(padding, s, k):
    layer = ConvTranspose1d(4, k, stride=s, padding=padding, b_std=0.0, parameterization="standard")
    mod = layer.module(input_shape=(3, 5), seed=1, dtype=F64)
    assert mod.weight.shape == (3, 4, k)  # torch's ConvTranspose layout (in, out, k)
    x = _x(2, 3, 5)
    with torch.no_grad():
        torch.testing.assert_close(mod(x), _by_definition(x, mod.weight, s, padding))
    assert mod(x).shape[1:] == layer.output_shape((3, 5))


def test_module_2d_is_separable_definition():
    """2-D = the 1-D definition along each axis (weights factorised to check it)."""
    layer = ConvTranspose2d(
        1, (3, 2), stride=(2, 3), padding="circular", parameterization="standard"
    )
    mod = layer.module(input_shape=(1, 3, 4), seed=0, dtype=F64)
    u, v = torch.randn(3, dtype=F64), torch.randn(2, dtype=F64)
    with torch.no_grad():
        mod.weight.copy_((u[:, None] * v[None, :]).reshape(1, 1, 3, 2))
    x = _x(2, 1, 3, 4)
    want = _by_definition(x.transpose(2, 3).reshape(-1, 1, 3), u.reshape(1, 1, 3), 2, "circular")
    want = want.reshape(2, 4, 6).transpose(1, 2).reshape(-1, 1, 4)
    want = _by_definition(want, v.reshape(1, 1, 2), 3, "circular").reshape(2, 1, 6, 12)
    with torch.no_grad():
        torch.testing.assert_close(mod(x), want)


# --------------------------------------------------------------------------- unrolled route
def _tap_matrices(layer, in_spatial) -> list[torch.Tensor]:
    """``B_a: (P_out, P_in)`` per tap ``a``, read off the finite module on unit inputs."""
    one = type(layer)(1, layer.kernel_size, layer.stride, layer.padding, 1.0, 0.0, "standard")
    mod = one.module(input_shape=(1, *in_spatial), dtype=F64)
    p_in = math.prod(in_spatial)
    basis = torch.eye(p_in, dtype=F64).reshape(p_in, 1, *in_spatial)
    mats = []
    for a in range(math.prod(layer.kernel_size)):
        w = torch.zeros(math.prod(layer.kernel_size), dtype=F64)
        w[a] = 1.0
        with torch.no_grad():
            mod.weight.copy_(w.reshape(mod.weight.shape))
            mats.append(mod(basis).reshape(p_in, -1).T)
    return mats


def _flat_full(t: torch.Tensor, nd: int) -> torch.Tensor:
    """Full layout ``(N1, N2, S1, S1', S2, S2')`` -> ``(N1, N2, P, P')`` (row-major positions)."""
    n1, n2 = t.shape[:2]
    perm = [0, 1, *range(2, 2 + 2 * nd, 2), *range(3, 3 + 2 * nd, 2)]
    return t.permute(perm).reshape(n1, n2, *(2 * [math.prod(t.shape[2::2])]))


def _by_hand(layers, x):
    """NNGP/NTK ``(N, N, P, P)`` of a stack of transposed convs from the tap matrices."""
    n, c = x.shape[:2]
    spatial = tuple(x.shape[2:])
    xf = x.reshape(n, c, -1)
    # input: channel-mean covariance, Θ⁰ = 0
    sig = torch.einsum("ncp,mcq->nmpq", xf, xf) / c
    ntk = torch.zeros_like(sig)
    for layer in layers:
        mats = _tap_matrices(layer, spatial)
        size = len(mats)
        w2, b2 = layer.w_std**2, layer.b_std**2
        # Σ_a B_a K B_aᵀ: the covariance of Σ_{c,a} W[c,a] B_a h_c with i.i.d. channels h_c
        t_sig = sum(torch.einsum("ip,nmpq,jq->nmij", b, sig, b) for b in mats)
        t_ntk = sum(torch.einsum("ip,nmpq,jq->nmij", b, ntk, b) for b in mats)
        new_sig = w2 / size * t_sig + b2
        if layer.parameterization == "ntk":
            ntk = new_sig + w2 / size * t_ntk
        else:
            ntk = c * t_sig + (1.0 if layer.b_std > 0 else 0.0) + w2 / size * t_ntk
        sig, c = new_sig, layer.out_channels
        spatial = layer.output_shape((1, *spatial))[1:]
    return sig, ntk


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize(("s", "k"), GEOMETRIES)
@pytest.mark.parametrize("param", ["ntk", "standard"])
def test_kernel_equals_unrolled_dense_matrix_1d(padding, s, k, param):
    layers = [
        ConvTranspose1d(3, k, s, padding, 1.3, 0.2, param),
        ConvTranspose1d(2, 2, 1 + (s == 1), padding, 0.9, 0.0, param),
    ]
    x = _x(3, 2, 4)
    k0 = input_kernel(x, None, full_spatial=True, ntk=True)
    got = serial(*layers).transform_kernel(k0)
    sig, ntk = _by_hand(layers, x)
    torch.testing.assert_close(_flat_full(got.nngp, 1), sig, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(_flat_full(got.ntk, 1), ntk, rtol=1e-12, atol=1e-12)
    # the diagonal layout (Flatten): the same per-position entries
    kd = serial(*layers).transform_kernel(input_kernel(x, None, full_spatial=False, ntk=True))
    torch.testing.assert_close(kd.nngp, sig.diagonal(dim1=2, dim2=3), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(kd.ntk, ntk.diagonal(dim1=2, dim2=3), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padding", PADDINGS)
def test_kernel_equals_unrolled_dense_matrix_2d(padding):
    layers = [
        ConvTranspose2d(3, (3, 2), (2, 1), padding, 1.3, 0.2, "ntk"),
        ConvTranspose2d(2, 2, (1, 2), padding, 0.9, 0.1, "standard"),
    ]
    x = _x(2, 2, 3, 2)
    got = serial(*layers).transform_kernel(input_kernel(x, None, full_spatial=True, ntk=True))
    sig, ntk = _by_hand(layers, x)
    torch.testing.assert_close(_flat_full(got.nngp, 2), sig, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(_flat_full(got.ntk, 2), ntk, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("param", ["ntk", "standard"])
@pytest.mark.parametrize("padding", PADDINGS)
def test_one_layer_ntk_is_the_empirical_ntk(param, padding):
    """One affine layer: its empirical NTK does not depend on the weights, so it is exact."""
    layer = ConvTranspose2d(3, (2, 3), (2, 2), padding, 1.2, 0.3, param)
    x = _x(3, 2, 3, 2)
    mod = layer.module(input_shape=(2, 3, 2), seed=0, dtype=F64)
    k = layer.kernel(x)
    torch.testing.assert_close(k.ntk, empirical_ntk(mod, x), rtol=1e-12, atol=1e-12)


def test_net_kernel_blocks_and_routes_agree():
    """``kernel(x1, x2)`` blocks equal ``kernel(x)`` (tiled engine) and the whole-kernel route."""
    x = _x(5, 2, 3, 3)
    nets = [
        parse_net("ConvTranspose2d(8, 3, stride=2) -> ReLU -> Flatten -> Dense(1)"),
        serial(
            ConvTranspose2d(4, 3, 2, "same", 1.4, 0.1),
            ReLU(),
            ConvTranspose2d(4, 2, 1, "circular", 1.2),
            Tanh(),
            GlobalAvgPool(),
            Dense(1, b_std=0.1),
        ),
    ]
    for net in nets:
        k = net.kernel(x)
        k12 = net.kernel(x[:2], x[2:])
        torch.testing.assert_close(k12.nngp, k.nngp[:2, 2:], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(k12.ntk, k.ntk[:2, 2:], rtol=1e-12, atol=1e-14)
        xg = x.clone().requires_grad_(True)  # differentiable inputs: whole-kernel route
        kw = net.kernel(xg)
        torch.testing.assert_close(kw.nngp.detach(), k.nngp, rtol=1e-12, atol=1e-14)
        # NTK on self-pairs: the whole route's arccos at c ≈ 1 loses √eps (the tiled one sets
        # c = 1 exactly), hence 1e-7 there, as in test_kernel_engine.py
        torch.testing.assert_close(kw.ntk.detach(), k.ntk, rtol=1e-7, atol=1e-12)


def test_parser_and_exports():
    net = parse_net("ConvTranspose2d(8, 3, stride=2) -> ReLU -> Flatten -> Dense(1)")
    assert net.layers[0] == ConvTranspose2d(8, 3, stride=2)
    assert net.output_shape((2, 4, 4)) == (1,)
    assert ConvTranspose2d(8, 3, stride=2).output_shape((2, 4, 5)) == (8, 9, 11)
    assert ConvTranspose1d(8, 2, stride=3, padding="same").output_shape((2, 4)) == (8, 12)
    assert wl.ConvTranspose1d is ConvTranspose1d


def test_bad_arguments():
    with pytest.raises(ValueError, match="padding"):
        ConvTranspose1d(4, 3, padding="full")
    with pytest.raises(ValueError, match="kernel_size"):
        ConvTranspose2d(4, (3, 3, 3))
    with pytest.raises(ValueError, match="stride"):
        ConvTranspose1d(4, 3, stride=0)
    with pytest.raises(ValueError, match="w_std"):
        ConvTranspose1d(4, 3, w_std=-1.0)
    with pytest.raises(ValueError, match="parameterization"):
        ConvTranspose1d(4, 3, parameterization="mup")
    with pytest.raises(ValueError, match=r"ConvTranspose2d expects .*\(C, H, W\)"):
        ConvTranspose2d(4, 3).kernel(torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match="ConvTranspose1d module expects"):
        ConvTranspose1d(4, 3).module(input_shape=(2, 5))(torch.randn(2, 3, 5))


# --------------------------------------------------------------------------- Monte Carlo
@pytest.mark.parametrize(
    "padding", ["circular", *(pytest.param(p, marks=pytest.mark.slow) for p in ("valid", "same"))]
)
def test_monte_carlo_1d(padding):
    x = _images()[:, :, :, 0].contiguous()  # (N, C, 4)

    def make(out):
        return serial(
            ConvTranspose1d(8, 3, stride=2, padding=padding, w_std=1.4, b_std=0.1), ReLU(),
            ConvTranspose1d(8, 2, padding=padding, w_std=1.3, b_std=0.1), ReLU(),
            GlobalAvgPool(), Dense(out, w_std=1.1, b_std=0.1),
        )  # fmt: skip

    check_against_mc(make, x, hidden=2, seed=10)


@pytest.mark.slow
@pytest.mark.parametrize("padding", PADDINGS)
def test_monte_carlo_2d(padding):
    def make(out):
        return serial(
            ConvTranspose2d(8, 3, stride=2, padding=padding, w_std=1.4, b_std=0.1), ReLU(),
            ConvTranspose2d(8, 2, padding=padding, w_std=1.3, b_std=0.1), ReLU(),
            GlobalAvgPool(), Dense(out, w_std=1.1, b_std=0.1),
        )  # fmt: skip

    check_against_mc(make, _images(h=3, w=3), hidden=2, seed=11)


def test_monte_carlo_2d_flatten():
    """2-D, stride (2, 1), diagonal layout (Flatten)."""

    def make(out):
        return serial(
            ConvTranspose2d(8, (3, 2), stride=(2, 1), padding="circular", w_std=1.4, b_std=0.1),
            Tanh(), Flatten(), Dense(out, w_std=1.1, b_std=0.1),
        )  # fmt: skip

    check_against_mc(make, _images(h=2, w=3), hidden=1, seed=13)


def test_monte_carlo_1d_standard_spatial_output():
    """Standard parameterization; a net ending in a transposed conv (per-position kernels)."""
    x = _images()[:, :, :, 0].contiguous()

    def make(out):
        return serial(
            ConvTranspose1d(8, 4, stride=2, padding="same", w_std=1.4, b_std=0.2,
                            parameterization="standard"), Tanh(),
            ConvTranspose1d(out, 3, stride=3, w_std=1.2, b_std=0.1, parameterization="standard"),
        )  # fmt: skip

    check_against_mc(make, x, hidden=1, seed=12)


# --------------------------------------------------------------------------- from_module
def _user_convt(width=8):
    return nn.Sequential(
        nn.ConvTranspose2d(2, width, 3, stride=2),  # valid, output 2·3 + 1 = 7
        nn.ReLU(),
        nn.ConvTranspose2d(width, width, 4, stride=2, padding=1),  # 'same' (k − s = 2), 14
        nn.Tanh(),
        nn.ConvTranspose2d(width, width, (1, 2), stride=(3, 3), output_padding=(2, 1)),  # valid
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, 3),
    )


def test_from_module_maps_structure_and_function():
    user = _user_convt().to(F64)
    spec = from_module(user, parameterization="standard", input_shape=(2, 3, 3))
    kinds = [(type(m).__name__, m.padding) for m in spec.layers if hasattr(m, "padding")]
    assert kinds == [("ConvTranspose2d", p) for p in ("valid", "same", "valid")]
    mod = spec.module(input_shape=(2, 3, 3), seed=0, dtype=F64)
    with torch.no_grad():  # the user's parameters in the spec's module: the same function
        for u, m in zip(user, mod.layers, strict=True):
            if hasattr(u, "weight"):
                assert m.weight.shape == u.weight.shape
                m.weight.copy_(u.weight)
                m.bias.copy_(u.bias)
        x = _x(4, 2, 3, 3)
        torch.testing.assert_close(mod(x), user(x), rtol=1e-12, atol=1e-12)
    assert spec.output_shape((2, 3, 3)) == (3,)
    # torch's default init: Var W = 1/(3·out·∏k) (fan-in from weight.shape[1]), in widelimit's
    # Var W = σw²/(in·∏k) that is σw² = in/(3·out)
    first = spec.layers[0]
    assert first.w_std == pytest.approx(math.sqrt(2 / (3 * 8)))
    assert first.b_std == pytest.approx(1 / math.sqrt(3 * 8 * 9))
    w = torch.cat([nn.ConvTranspose2d(2, 8, 3).weight.detach().flatten() for _ in range(200)])
    assert float(w.var()) * 2 * 9 == pytest.approx(first.w_std**2, rel=0.05)


def test_from_module_kernel_matches_monte_carlo_over_gaussian_reinit():
    """Gaussian re-initialisation of the user's module (fan-in = in·∏k, widelimit's)."""
    width, w_std, b_std = 64, 1.4, 0.2
    user = nn.Sequential(
        nn.ConvTranspose1d(2, width, 4, stride=2, padding=1),  # "same": 4 -> 8
        nn.ReLU(),
        nn.ConvTranspose1d(width, width, 2, stride=2),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(width * 16, 4),
    ).to(F64)
    spec = from_module(user, w_std=w_std, b_std=b_std, parameterization="standard")
    x = _images()[:, :, :, 0].contiguous()  # (3, 2, 4)

    def reinit(seed):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in user.modules():
                if isinstance(m, nn.Linear | nn.ConvTranspose1d):
                    lin = isinstance(m, nn.Linear)
                    fan_in = m.in_features if lin else m.in_channels * m.kernel_size[0]
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g, dtype=F64))
                    m.weight.mul_(w_std / math.sqrt(fan_in))
                    m.bias.copy_(b_std * torch.randn(m.bias.shape, generator=g, dtype=F64))

    k = spec.kernel(x)
    for key, n in (("nngp", 300), ("ntk", 60)):
        vals = []
        for s in range(n):
            reinit(1000 * (key == "ntk") + s)
            if key == "nngp":
                with torch.no_grad():
                    f = user(x)
                vals.append(f @ f.T / f.shape[1])
            else:
                vals.append(empirical_ntk(user, x))
        v = torch.stack(vals)
        m, sem = v.mean(0), v.std(0) / math.sqrt(n)
        a = getattr(k, key)
        bias = 3.0 / width * float(a.abs().max())  # two hidden nonlinearities: O(1/width)
        ratio = float(((a - m).abs() / (4.5 * sem + bias)).max())
        assert ratio <= 1.0, (key, ratio)


@pytest.mark.parametrize(
    ("module", "match"),
    [
        (nn.ConvTranspose1d(2, 4, 3, stride=2, padding=1), "padding 1 with output_padding 0"),
        (nn.ConvTranspose1d(2, 4, 1, stride=2), r"output_padding=1 \('valid'\)"),
        (nn.ConvTranspose2d(2, 4, (4, 3), stride=2, padding=(1, 0)), "different widelimit"),
        (nn.ConvTranspose1d(2, 4, 3, dilation=2), "dilation"),
        (nn.ConvTranspose1d(2, 4, 3, groups=2), "groups"),
        (nn.Sequential(nn.Conv1d(3, 4, 2), nn.ConvTranspose1d(3, 4, 2)), "inconsistent widths"),
    ],
)
def test_from_module_refuses_other_geometries(module, match):
    with pytest.raises(ValueError, match=match):
        from_module(module)


# --------------------------------------------------------------------------- Neural Tangents
NT_PYTHON = Path("/root/.cache/nt-venv/bin/python")

_NT_SCRIPT = r"""
import json, sys
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
from neural_tangents import stax
cases = json.load(open(sys.argv[1]))
out = {}
for name, c in cases.items():
    x = np.asarray(c["x"])
    nd = x.ndim - 2
    x = np.moveaxis(x, 1, -1)  # NCL / NCHW -> NLC / NHWC, Neural Tangents' default layout
    layers = []
    for kind, *a in c["layers"]:
        if kind == "convt":
            ch, k, s, pad, w, b, param = a
            layers.append(stax.ConvTranspose(ch, (k,) * nd, (s,) * nd, pad.upper(), W_std=w,
                                             b_std=b or None, parameterization=param))
        elif kind == "dense":
            n, w, b, param = a
            layers.append(stax.Dense(n, W_std=w, b_std=b or None, parameterization=param))
        else:
            layers.append({"relu": stax.Relu, "flatten": stax.Flatten,
                           "gap": stax.GlobalAvgPool}[kind]())
    k = stax.serial(*layers)[2](x, None, ("nngp", "ntk"))
    out[name] = {"nngp": np.asarray(k.nngp).tolist(), "ntk": np.asarray(k.ntk).tolist()}
json.dump(out, sys.stdout)
"""


@pytest.mark.slow
@pytest.mark.skipif(not NT_PYTHON.exists(), reason="Neural Tangents environment not installed")
def test_agrees_with_neural_tangents(tmp_path):
    """Neural Tangents 0.6.5 ``stax.ConvTranspose`` (NHWC there, NCHW here; b_std = 0 here
    means no bias parameter, ``b_std=None`` there)."""
    cases, nets = {}, {}
    for nd, pad, (s, k), param, head in [
        (1, "valid", (2, 3), "ntk", "flatten"),
        (1, "same", (2, 3), "standard", "gap"),
        (1, "circular", (2, 3), "ntk", "gap"),
        (1, "valid", (3, 2), "standard", "flatten"),
        (2, "same", (2, 2), "ntk", "gap"),
        (2, "circular", (2, 3), "standard", "flatten"),
        (2, "valid", (1, 3), "ntk", "gap"),
    ]:
        x = _x(3, 2, *((4,) if nd == 1 else (3, 2)), seed=nd)
        name = f"{nd}d-{pad}-s{s}-k{k}-{param}-{head}"
        spec = [
            ["convt", 4, k, s, pad, 1.3, 0.2, param], ["relu"],
            ["convt", 3, k, s, pad, 1.1, 0.0, param], ["relu"],
            [head], ["dense", 1, 1.2, 0.1, param],
        ]  # fmt: skip
        cases[name] = {"x": x.tolist(), "layers": spec}
        conv = ConvTranspose1d if nd == 1 else ConvTranspose2d
        nets[name] = (x, serial(
            conv(4, k, s, pad, 1.3, 0.2, param), ReLU(), conv(3, k, s, pad, 1.1, 0.0, param),
            ReLU(), Flatten() if head == "flatten" else GlobalAvgPool(),
            Dense(1, 1.2, 0.1, param),
        ))  # fmt: skip
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(cases))
    run = subprocess.run(
        [str(NT_PYTHON), "-c", _NT_SCRIPT, str(path)], capture_output=True, text=True, timeout=900
    )
    if run.returncode:
        pytest.fail(f"Neural Tangents run failed:\n{run.stderr[-2000:]}", pytrace=False)
    res = json.loads(run.stdout)
    for name, (x, net) in nets.items():
        k = net.kernel(x)
        for key in ("nngp", "ntk"):
            want = torch.tensor(np.asarray(res[name][key]), dtype=F64)
            torch.testing.assert_close(getattr(k, key), want, rtol=1e-9, atol=0, msg=name)
