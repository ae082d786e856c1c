"""The standard-parameterization width factor ``width_factor=(s_in, s_out)`` of Dense and Conv.

Neural Tangents' ``s`` (Sohl-Dickstein et al. 2020, arXiv:2001.07301): the finite layer is
``s_out`` times wider than ``out_features``, ``W ~ N(0, σw²/n)`` with the base fan-in
``n = fan_in/s_in`` and ``h = W·x/√s_in + b``, so the NTK is ``Θ' = n·Σ + 1[σb>0] + σw²Θ``
for every ``s`` and finite nets converge to it as ``s`` grows at fixed base widths.

Routes:

* one layer: the empirical NTK of any finite layer is deterministic (``∂h/∂W = x/√s_in``,
  ``∂h/∂b = 1``), written by hand with ``unfold`` for convolutions;
* two layers (one nonlinearity): the mean empirical NTK over initialisations equals the
  analytic one at every width (the first layer's outputs are exactly Gaussian), so the
  tolerance is ``Z`` standard errors; the spread of a single net's NTK around it falls like
  ``s^(-1/2)`` (log-log slope);
* deeper MLP and CNN: Monte Carlo with the ``O(1/width)`` finite-width bias allowance of
  ``test_conv_monte_carlo.py`` at the finite width ``N·s``;
* power: the plain standard kernel at the finite width ``N·s`` (no factor) is rejected;
* Neural Tangents 0.6.5 in float64 (optional subprocess, ``tests/nt_reference.py``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nt_reference import NT_PYTHON, nt_kernels, widelimit_net
from test_conv_monte_carlo import BIAS_C, Z
from widelimit import (
    Conv2d,
    Dense,
    Erf,
    Flatten,
    ReLU,
    empirical_ntk,
    monte_carlo_kernel,
    parse_net,
    serial,
)
from widelimit.fitting import loglog_slope

F64 = torch.float64
STD = "standard"


def _vectors(n=4, d=6, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=F64)
    x[1] = 0.7 * x[0] + 0.3 * x[1]
    return x


def _images(n=3, c=4, h=5, w=4, seed=1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, w, generator=g, dtype=F64)


# ------------------------------------------------------------- one layer
def test_one_dense_layer_exact() -> None:
    """Θ = (x·x')/s_in + 1 for the kernel and every finite layer; s_out·out outputs."""
    x = _vectors()
    layer = Dense(5, w_std=1.3, b_std=0.4, parameterization=STD, width_factor=(2, 3))
    want = x @ x.T / 2 + 1  # n·Σ⁰ + 1 with n = 6/2 and Σ⁰ = x·x'/6
    torch.testing.assert_close(layer.kernel(x).ntk, want, rtol=1e-14, atol=0)
    mod = layer.module(None, input_shape=6, seed=1, dtype=F64)
    assert mod.weight.shape == (15, 6) and mod.bias.shape == (15,)
    assert mod(x).shape == (4, 15)
    torch.testing.assert_close(empirical_ntk(mod, x), want, rtol=1e-13, atol=0)
    plain = Dense(5, w_std=1.3, b_std=0.4, parameterization=STD).kernel(x).ntk
    assert (plain - want).abs().max() > 0.1  # the factor changes the NTK ...
    # ... but not the NNGP
    torch.testing.assert_close(layer.kernel(x).nngp, Dense(5, 1.3, 0.4).kernel(x).nngp)


@pytest.mark.parametrize("padding", ["same", "valid", "circular"])
def test_one_conv_layer_exact(padding: str) -> None:
    """Θ[p] = Σ_{c,a} x̃[c, p+a] x̃'[c, p+a] / s_in + 1, patches by hand with ``unfold``."""
    x = _images()
    layer = Conv2d(3, 3, padding=padding, w_std=1.3, b_std=0.4, parameterization=STD,
                   width_factor=(2, 5))  # fmt: skip
    xp = F.pad(x, (1, 1, 1, 1), mode="circular") if padding == "circular" else x
    patches = F.unfold(xp, 3, padding=1 if padding == "same" else 0)  # (N, C·9, P)
    h, w = (5, 4) if padding != "valid" else (3, 2)
    want = (torch.einsum("nkp,mkp->nmp", patches, patches) / 2 + 1).reshape(3, 3, h, w)
    tol = 1e-14 * float(want.abs().max())  # rounding of sums with cancellations
    torch.testing.assert_close(layer.kernel(x).ntk, want, rtol=1e-13, atol=tol)
    mod = layer.module(None, input_shape=x.shape[1:], seed=2, dtype=F64)
    assert mod.weight.shape == (15, 4, 3, 3) and mod(x).shape == (3, 15, h, w)
    torch.testing.assert_close(empirical_ntk(mod, x), want, rtol=1e-12, atol=tol)


def test_finite_module_initialisation() -> None:
    """Weights ~ N(0, σw²/n), n = fan_in/s_in, and the forward multiplier 1/√s_in."""
    d, s_in, w_std = 64, 4, 1.3
    mod = Dense(1000, w_std=w_std, b_std=0.5, parameterization=STD, width_factor=(s_in, 2))
    m = mod.module(None, input_shape=d, seed=3, dtype=F64)
    w = m.weight.detach()
    assert w.shape == (2000, d) and m.w_scale == 1 / math.sqrt(s_in) and m.b_scale == 1.0
    var, want = float(w.var()), w_std**2 / (d / s_in)
    assert abs(var / want - 1) < 5 * math.sqrt(2 / w.numel())  # 5 standard errors of a variance
    assert abs(float(m.bias.detach().var()) / 0.25 - 1) < 5 * math.sqrt(2 / 2000)
    conv = Conv2d(7, 3, w_std=w_std, parameterization=STD, width_factor=(s_in, 3))
    mc = conv.module(None, input_shape=(8, 5, 5), seed=4, dtype=F64)
    assert mc.weight.shape == (21, 8, 3, 3) and mc.w_scale == 1 / math.sqrt(s_in)
    want = w_std**2 / (8 * 9 / s_in)
    assert abs(float(mc.weight.detach().var()) / want - 1) < 5 * math.sqrt(2 / mc.weight.numel())


# ------------------------------------------------------- growing width
def _two_layer(s: int, n: int = 4):
    return serial(
        Dense(n, w_std=1.4, b_std=0.3, parameterization=STD, width_factor=(1, s)), ReLU(),
        Dense(1, w_std=1.1, b_std=0.2, parameterization=STD, width_factor=(s, 1)),
    )  # fmt: skip


@pytest.mark.slow
def test_two_layer_unbiased_at_every_width_and_converges() -> None:
    """Mean empirical NTK = analytic (Z·sem); one net's spread ∝ s^(-1/2); kernel fixed in s."""
    x, samples = _vectors(), 200
    theta = _two_layer(1).kernel(x).ntk
    spreads = []
    factors = [1, 4, 16, 64]
    for s in factors:
        net = _two_layer(s)
        torch.testing.assert_close(net.kernel(x).ntk, theta, rtol=1e-14, atol=0)
        mc = monte_carlo_kernel(net, x, width=None, n_samples=samples, seed=s, get="ntk",
                                progress=False)  # fmt: skip
        assert float(((mc.ntk - theta).abs() / (Z * mc.ntk_sem)).max()) <= 1.0
        spreads.append(float(mc.ntk_sem.mean()) * math.sqrt(samples))
    slope = loglog_slope(factors, spreads)
    print(f"spread of one net's NTK vs s {factors}: {spreads}, slope {slope:.3f}")
    # a fitted slope of 4 points, each spread estimated to ~5% (200 samples): ±0.1
    assert abs(slope + 0.5) < 0.1, slope
    # power: the plain standard NTK at the finite width 4·64 grows with it and is rejected
    wide = serial(
        Dense(4 * 64, w_std=1.4, b_std=0.3, parameterization=STD), ReLU(),
        Dense(1, w_std=1.1, b_std=0.2, parameterization=STD),
    ).kernel(x).ntk  # fmt: skip
    assert float(((mc.ntk - wide).abs() / (Z * mc.ntk_sem)).min()) > 1.0


def test_deep_mlp_and_cnn_monte_carlo_at_growing_width() -> None:
    """Two nonlinearities: error within Z·sem + BIAS_C·max|Θ|/(N·s) at s = 16."""
    x, img, s = _vectors(), _images(c=2), 16

    def mlp(s):
        return serial(
            Dense(4, w_std=1.4, b_std=0.3, parameterization=STD, width_factor=(1, s)), ReLU(),
            Dense(3, w_std=1.2, b_std=0.0, parameterization=STD, width_factor=(s, s)), Erf(),
            Dense(1, w_std=1.1, b_std=0.2, parameterization=STD, width_factor=(s, 1)),
        )  # fmt: skip

    def cnn(s):
        return serial(
            Conv2d(3, 3, padding="same", w_std=1.4, b_std=0.2, parameterization=STD,
                   width_factor=(1, s)), ReLU(),
            Conv2d(2, 2, w_std=1.2, parameterization=STD, width_factor=(s, s)), ReLU(),
            Flatten(), Dense(1, w_std=1.1, b_std=0.1, parameterization=STD, width_factor=(s, 1)),
        )  # fmt: skip

    for make, data, n in ((mlp, x, 3), (cnn, img, 2)):
        net = make(s)
        theta = net.kernel(data).ntk
        torch.testing.assert_close(make(1).kernel(data).ntk, theta, rtol=1e-13, atol=0)
        mc = monte_carlo_kernel(net, data, width=None, n_samples=60, seed=7, get="ntk",
                                progress=False)  # fmt: skip
        bias = BIAS_C * float(theta.abs().max()) / (n * s)
        assert float(((mc.ntk - theta).abs() / (Z * mc.ntk_sem + bias)).max()) <= 1.0


# ----------------------------------------------------------------- errors
def test_errors_and_parser() -> None:
    with pytest.raises(ValueError, match="parameterization='standard' only"):
        Dense(4, width_factor=(1, 2))
    with pytest.raises(ValueError, match="parameterization='standard' only"):
        Conv2d(4, 3, width_factor=(2, 2))
    with pytest.raises(TypeError, match="width_factor"):
        Dense(4, parameterization=STD, width_factor=2)
    with pytest.raises(ValueError, match="width_factor"):
        Dense(4, parameterization=STD, width_factor=(0, 2))
    bad = serial(
        Dense(3, parameterization=STD, width_factor=(1, 2)), ReLU(),
        Dense(1, parameterization=STD, width_factor=(4, 1)),
    )  # fmt: skip
    with pytest.raises(ValueError, match="not a multiple of width_factor"):
        bad.kernel(_vectors())
    with pytest.raises(ValueError, match="not a multiple of width_factor"):
        bad.module(None, input_shape=6)
    net = parse_net(
        "Dense(4, 1.4, 0.1, parameterization='standard', width_factor=(1, 8)) -> ReLU -> "
        "Dense(1, parameterization='standard', width_factor=[8, 1])"
    )
    assert net.layers[2].width_factor == (8, 1)
    assert net.output_shape(6) == (1,) and net.layers[0].output_shape(6) == (32,)
    assert Dense(4) == Dense(4, width_factor=(1, 1))  # the default is the plain layer


# -------------------------------------------------------- Neural Tangents
@pytest.mark.slow
@pytest.mark.skipif(NT_PYTHON is None, reason="Neural Tangents environment not installed")
def test_agrees_with_neural_tangents() -> None:
    """float64; the NTK diagonal at 1e-8 (NT's arccos at c = 1 − O(ε); see
    ``test_layernorm_axis.py``), everything else at 1e-12."""
    rng = np.random.default_rng(0)
    x, xd = rng.standard_normal((3, 2, 5, 4)), rng.standard_normal((4, 6))
    cases = [
        ([["dense", 5, 1.3, 0.2, STD, [1, 4]], ["relu"], ["dense", 3, 1.1, 0.0, STD, [4, 2]],
          ["erf"], ["dense", 1, 0.9, 0.3, STD, [2, 1]]], xd),
        ([["conv", 4, [3, 3], [1, 1], "same", 1.4, 0.1, STD, [1, 3]], ["relu"],
          ["conv", 3, [2, 3], [1, 1], "valid", 1.2, 0.2, STD, [3, 2]], ["relu"], ["flatten"],
          ["dense", 1, 1.0, 0.1, STD, [2, 1]]], x),
        ([["conv", 4, [3, 3], [2, 1], "circular", 1.4, 0.1, STD, [1, 3]], ["relu"],
          ["conv", 3, [3, 3], [1, 1], "same", 1.2, 0.0, STD, [3, 5]], ["erf"], ["gap"],
          ["dense", 1, 1.0, 0.1, STD, [5, 1]]], x),
    ]  # fmt: skip
    for (layers, xx), (nngp, ntk) in zip(cases, nt_kernels(cases), strict=True):
        k = widelimit_net(layers).kernel(torch.from_numpy(xx))
        np.testing.assert_allclose(k.nngp.numpy(), nngp, rtol=1e-12, atol=1e-14)
        off = ~np.eye(len(xx), dtype=bool)
        np.testing.assert_allclose(k.ntk.numpy()[off], ntk[off], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(np.diag(k.ntk.numpy()), np.diag(ntk), rtol=1e-8, atol=0)
