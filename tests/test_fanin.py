"""FanInProd, FanInConcat and repeat: exact second routes, Monte Carlo, tiles, parser, errors.

Exact routes: the kernels are computed by hand from the input Gram matrix
``Σ⁰ = x·x'/d`` (first ``Dense`` from the input: ``Σ = w²Σ⁰ + b²``, ``Θ = Σ``; a readout
``Dense`` maps ``Σ ↦ w²Σ + b²``, ``Θ ↦ Σ_out + w²Θ``), or by an equivalent single layer.
Monte Carlo tolerances as tests/test_core_monte_carlo.py: ``|analytic - MC| <= Z·sem + bias``
with ``Z = 4.5`` and a finite-width bias ``BIAS_C·max|K|/width``.
"""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
import torch

from nt_reference import NT_PYTHON
from widelimit.layers import (
    Conv2d,
    Dense,
    Erf,
    FanInConcat,
    FanInProd,
    FanOut,
    GlobalAvgPool,
    Identity,
    ReLU,
    parallel,
    repeat,
    serial,
    tiles,
)
from widelimit.layers.inputs import input_kernel
from widelimit.monte_carlo import monte_carlo_kernel
from widelimit.spec_text import parse_net

F64 = torch.float64
Z = 4.5
BIAS_C = 3.0


def _x(n: int = 4, d: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=F64)
    x[1] = 0.8 * x[0] + 0.2 * x[1]
    return x


def _check(analytic: torch.Tensor, mc: torch.Tensor, sem: torch.Tensor, bias: float) -> None:
    err = (analytic - mc).abs()
    worst = float((err / (Z * sem + bias)).max())
    assert worst <= 1.0, f"max err/allowed = {worst:.3g}; err={err.max():.3g}, sem={sem.max():.3g}"


# ------------------------------------------------------------------ exact routes
def test_prod_of_dense_branches_matches_hand_formula() -> None:
    x = _x()
    s0 = x @ x.T / x.shape[1]
    (w1, b1), (w2, b2), (w, b) = (1.3, 0.2), (0.7, 0.5), (1.1, 0.3)
    net = serial(
        FanOut(3),
        parallel(Identity(), Dense(3, w1, b1), Dense(3, w2, b2)),
        FanInProd(),
        Dense(1, w, b),
    )
    k = net.kernel(x)
    k1, k2 = w1**2 * s0 + b1**2, w2**2 * s0 + b2**2
    prod = s0 * k1 * k2  # Identity branch: Σ⁰, Θ⁰ = 0; Dense branches: Θ_i = Σ_i
    prod_ntk = 0 * k1 * k2 + s0 * k1 * k2 + s0 * k1 * k2
    nngp = w**2 * prod + b**2
    torch.testing.assert_close(k.nngp, nngp, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(k.ntk, nngp + w**2 * prod_ntk, rtol=1e-13, atol=1e-15)
    x2 = _x(3, seed=5)
    kx = net.kernel(x, x2)
    s0x = x @ x2.T / 3
    prodx = s0x * (w1**2 * s0x + b1**2) * (w2**2 * s0x + b2**2)
    torch.testing.assert_close(kx.nngp, w**2 * prodx + b**2, rtol=1e-13, atol=1e-15)


def test_prod_and_concat_modules_compute_product_and_concatenation() -> None:
    a, b = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    p = FanInProd().make_module(_branches((3, 4), (3, 4)))
    torch.testing.assert_close(p((a, b)), a * b)
    c = torch.randn(2, 5, 4)
    cat = FanInConcat().make_module(_branches((3, 4), (5, 4)))
    torch.testing.assert_close(cat((a, c)), torch.cat([a, c], dim=1))
    assert FanInConcat().out_shape(_branches((3, 4), (5, 4))) == (8, 4)


def _branches(*shapes):
    from widelimit.layers.base import Branches

    return Branches(shapes)


@pytest.mark.parametrize("param", ["ntk", "standard"])
def test_concat_of_dense_branches_equals_one_mixed_dense(param: str) -> None:
    """Concat of Dense(n1, w1, b1) and Dense(n2, w2, b2) on the input, then a readout, has
    the kernel of a single Dense(n1 + n2) with w² = (n1 w1² + n2 w2²)/(n1 + n2) (and b² alike):
    the readout averages the channels, whose kernels are the branches' kernels."""
    x = _x(5)
    (n1, w1, b1), (n2, w2, b2) = (3, 1.3, 0.2), (5, 0.6, 0.7)
    mix = lambda u, v: ((n1 * u**2 + n2 * v**2) / (n1 + n2)) ** 0.5  # noqa: E731
    kw = {"parameterization": param}
    net = serial(
        FanOut(2),
        parallel(Dense(n1, w1, b1, **kw), Dense(n2, w2, b2, **kw)),
        FanInConcat(),
        Dense(1, 1.2, 0.1, **kw),
    )
    ref = serial(Dense(n1 + n2, mix(w1, w2), mix(b1, b2), **kw), Dense(1, 1.2, 0.1, **kw))
    k, r = net.kernel(x), ref.kernel(x)
    torch.testing.assert_close(k.nngp, r.nngp, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(k.ntk, r.ntk, rtol=1e-13, atol=1e-15)


def test_concat_of_activated_branches_is_channel_weighted_average() -> None:
    x = _x(5)
    a = serial(Dense(3, 1.4, 0.1), ReLU())
    b = serial(Dense(5, 0.9, 0.3), Erf())
    net = serial(FanOut(2), parallel(a, b), FanInConcat(axis=-1), Dense(1, 1.0, 0.0))
    ka, kb = serial(a, Dense(1, 1.0, 0.0)).kernel(x), serial(b, Dense(1, 1.0, 0.0)).kernel(x)
    k = net.kernel(x)
    torch.testing.assert_close(k.nngp, (3 * ka.nngp + 5 * kb.nngp) / 8, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(k.ntk, (3 * ka.ntk + 5 * kb.ntk) / 8, rtol=1e-13, atol=1e-15)


def test_repeat_equals_serial_of_copies() -> None:
    x = _x(5)
    block = serial(Dense(8, 1.4, 0.1), ReLU())
    k, r = serial(repeat(block, 3), Dense(1)).kernel(x), serial(block, block, block, Dense(1))
    r = r.kernel(x)
    torch.testing.assert_close(k.nngp, r.nngp, rtol=0, atol=0)
    torch.testing.assert_close(k.ntk, r.ntk, rtol=0, atol=0)
    mod = repeat(Dense(4), 2).module(None, input_shape=(3,))
    w = [p for n, p in mod.named_parameters() if "weight" in n]
    assert len(w) == 2 and not torch.equal(w[0], w[1])  # independent copies


# ------------------------------------------------------------------ Monte Carlo
MC_NETS = {
    "prod": serial(
        Dense(8, 1.3, 0.2),
        ReLU(),
        FanOut(2),
        parallel(Dense(8, 1.2, 0.3), serial(Dense(8, 1.5, 0.1), Erf(), Dense(8, 1.1, 0.2))),
        FanInProd(),
        Dense(2, 1.0, 0.1),
    ),
    # unequal branch widths (width=None below): checks the channel weights 96/384, 288/384
    "concat": serial(
        Dense(256, 1.3, 0.2),
        FanOut(2),
        parallel(serial(Dense(96, 1.4), ReLU()), serial(ReLU(), Dense(288, 0.8, 0.4))),
        FanInConcat(),
        Dense(2, 1.0, 0.1),
    ),
}
MC_WIDTH = {"prod": 256, "concat": None}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MC_NETS))
def test_kernels_match_monte_carlo(name: str) -> None:
    width = MC_WIDTH[name]
    x = _x(4, 5, seed=1)
    net = MC_NETS[name] if width is None else MC_NETS[name].with_width(width)
    width = width or 96  # the narrowest hidden layer sets the 1/width bias
    k = net.kernel(x)
    mc = monte_carlo_kernel(net, x, width=None, n_samples=150, seed=3, progress=False)
    _check(k.nngp, mc.nngp, mc.nngp_sem, BIAS_C * float(k.nngp.abs().max()) / width)
    _check(k.ntk, mc.ntk, mc.ntk_sem, BIAS_C * float(k.ntk.abs().max()) / width)


# ------------------------------------------------------------------ tiled engine
@pytest.mark.parametrize("fan_in", [FanInProd(), FanInConcat()], ids=["prod", "concat"])
def test_tiles_equal_untiled_route_dense(monkeypatch, fan_in) -> None:
    monkeypatch.setattr(tiles, "PANEL_ROWS", 5)
    monkeypatch.setattr(tiles, "TILE_ENTRIES_CPU", 35)
    x = _x(13, 4, seed=2)
    x[7] = x[2]
    net = serial(
        Dense(6, 1.3, 0.2),
        ReLU(),
        FanOut(2),
        parallel(Dense(6, 1.1, 0.1), serial(Dense(6), Erf(), Dense(6, 1.2, 0.3))),
        fan_in,
        Dense(1),
    )
    k = net.kernel(x)
    ref = net.transform_kernel(input_kernel(x, None, full_spatial=False, ntk=True))
    torch.testing.assert_close(k.nngp, ref.nngp, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(k.ntk, ref.ntk, rtol=1e-10, atol=1e-14)
    kx = net.kernel(x[:5], x[4:])
    torch.testing.assert_close(kx.nngp, k.nngp[:5, 4:], rtol=1e-7, atol=1e-14)
    torch.testing.assert_close(kx.ntk, k.ntk[:5, 4:], rtol=1e-7, atol=1e-14)


@pytest.mark.parametrize("fan_in", [FanInProd(), FanInConcat()], ids=["prod", "concat"])
def test_tiles_equal_untiled_route_images(monkeypatch, fan_in) -> None:
    """Full spatial layout (GlobalAvgPool head): products/averages of position-pair blocks."""
    monkeypatch.setattr(tiles, "TILE_ENTRIES_SPATIAL", 4 * 16**2)  # 2×2 example pairs
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 2, 4, 4, generator=g, dtype=F64)
    c2 = 3 if isinstance(fan_in, FanInProd) else 5  # a product needs equal shapes
    net = serial(
        FanOut(2),
        parallel(Conv2d(3, 3, padding="same"), serial(Conv2d(c2, 3, padding="same"), ReLU())),
        fan_in,
        GlobalAvgPool(),
        Dense(1),
    )
    k = net.kernel(x)
    ref = net.transform_kernel(input_kernel(x, None, full_spatial=True, ntk=True))
    torch.testing.assert_close(k.nngp, ref.nngp, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(k.ntk, ref.ntk, rtol=1e-10, atol=1e-14)
    kx = net.kernel(x[:2], x[1:])
    torch.testing.assert_close(kx.nngp, k.nngp[:2, 1:], rtol=1e-7, atol=1e-14)


# ------------------------------------------------------------------ parser and errors
def test_parser_knows_the_new_layers() -> None:
    net = parse_net(
        "Dense(8) -> FanOut(2) -> parallel(Dense(8), Dense(8)) -> FanInProd -> Dense(1)"
    )
    ref = serial(Dense(8), FanOut(2), parallel(Dense(8), Dense(8)), FanInProd(), Dense(1))
    x = _x()
    torch.testing.assert_close(net.kernel(x).ntk, ref.kernel(x).ntk, rtol=0, atol=0)
    net = parse_net("FanOut(2) -> parallel(Dense(3), Dense(5)) -> FanInConcat(axis=1) -> Dense(1)")
    assert net.module(None, input_shape=(3,))(torch.randn(2, 3)).shape == (2, 1)


def test_errors() -> None:
    x = _x()
    with pytest.raises(ValueError, match="no weights of their own"):
        serial(Dense(4), FanOut(2), FanInProd())
    with pytest.raises(ValueError, match="no weights of their own"):
        serial(FanOut(3), parallel(Identity(), ReLU(), Dense(3)), FanInProd())
    serial(FanOut(2), parallel(Identity(), Dense(3)), FanInProd())  # one plain branch is fine
    with pytest.raises(ValueError, match="must follow an affine layer"):
        serial(FanOut(2), parallel(Dense(3), Dense(3)), FanInProd(), ReLU()).kernel(x)
    with pytest.raises(ValueError, match="must follow an affine layer"):
        serial(FanOut(2), parallel(Dense(3), Dense(3)), FanInConcat(), ReLU()).kernel(x)
    with pytest.raises(ValueError, match="needs several branches"):
        serial(Dense(3), FanInProd()).kernel(x)
    with pytest.raises(ValueError, match="needs several branches"):
        serial(Dense(3), FanInConcat()).kernel(x)
    with pytest.raises(ValueError, match="equal shapes"):
        serial(FanOut(2), parallel(Dense(3), Dense(4)), FanInProd()).kernel(x)
    with pytest.raises(ValueError, match="equal shapes"):  # (3, 4, 4) vs (3, 2, 2)
        serial(FanOut(2), parallel(Conv2d(3, 3, padding="same"), Conv2d(3, 3)), FanInProd()).kernel(
            torch.randn(2, 1, 4, 4, dtype=F64)
        )
    with pytest.raises(ValueError, match="channel axis"):
        serial(FanOut(2), parallel(Conv2d(2, 1), Conv2d(2, 1)), FanInConcat(axis=2)).kernel(
            torch.randn(2, 1, 3, 3, dtype=F64)
        )
    with pytest.raises(ValueError, match="batch axis"):
        FanInConcat(axis=0)
    with pytest.raises(TypeError, match="axis"):
        FanInConcat(axis=1.0)
    with pytest.raises(ValueError, match="out of range"):
        serial(FanOut(2), parallel(Dense(3), Dense(3)), FanInConcat(axis=3)).kernel(x)
    with pytest.raises(ValueError, match="except the channel axis"):
        serial(FanOut(2), parallel(Conv2d(2, 3), Conv2d(2, 1)), FanInConcat()).kernel(
            torch.randn(2, 1, 4, 4, dtype=F64)
        )
    with pytest.raises(ValueError, match="positive integer"):
        repeat(Dense(3), 0)
    with pytest.raises(TypeError, match="widelimit layer"):
        repeat(ReLU, 2)


# ------------------------------------------------------------------ Neural Tangents
_NT_SCRIPT = r"""
import sys
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
from neural_tangents import stax

work = sys.argv[1]
x = np.load(work + "/x.npy")
branches = stax.parallel(
    stax.Dense(8, 1.2, 0.3),
    stax.serial(stax.Dense(8, 1.5, 0.1), stax.Erf(), stax.Dense(8, 1.1, 0.2)),
)
head = [stax.Dense(8, 1.3, 0.2), stax.Relu(), stax.FanOut(2), branches]
nets = {
    "prod": stax.serial(*head, stax.FanInProd(), stax.Dense(2, 1.0, 0.1)),
    "concat": stax.serial(
        stax.Dense(16, 1.3, 0.2),
        stax.FanOut(2),
        stax.parallel(
            stax.serial(stax.Dense(6, 1.4, None, parameterization="standard"), stax.Relu()),
            stax.serial(stax.Relu(), stax.Dense(18, 0.8, 0.4, parameterization="standard")),
        ),
        stax.FanInConcat(),
        stax.Dense(2, 1.0, 0.1, parameterization="standard"),
    ),
}
for name, (_, _, kernel_fn) in nets.items():
    k = kernel_fn(x, None, ("nngp", "ntk"))
    np.save(f"{work}/{name}_nngp.npy", np.asarray(k.nngp))
    np.save(f"{work}/{name}_ntk.npy", np.asarray(k.ntk))
"""


def _nt_nets():
    head = [
        Dense(8, 1.3, 0.2),
        ReLU(),
        FanOut(2),
        parallel(Dense(8, 1.2, 0.3), serial(Dense(8, 1.5, 0.1), Erf(), Dense(8, 1.1, 0.2))),
    ]
    std = {"parameterization": "standard"}
    return {
        "prod": serial(*head, FanInProd(), Dense(2, 1.0, 0.1)),
        "concat": serial(
            Dense(16, 1.3, 0.2),
            FanOut(2),
            parallel(
                serial(Dense(6, 1.4, 0.0, **std), ReLU()),
                serial(ReLU(), Dense(18, 0.8, 0.4, **std)),
            ),
            FanInConcat(),
            Dense(2, 1.0, 0.1, **std),
        ),
    }


@pytest.mark.slow
@pytest.mark.skipif(NT_PYTHON is None, reason="Neural Tangents environment not installed")
def test_matches_neural_tangents(tmp_path) -> None:
    """NT 0.6.5's stax.FanInProd / stax.FanInConcat on the same nets (its own Python); b_std = 0
    is NT's b_std=None (no bias parameter), as in tests/nt_reference.py."""
    x = _x(5, 3, seed=4)
    np.save(tmp_path / "x.npy", x.numpy())
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    subprocess.run(
        [str(NT_PYTHON), "-c", _NT_SCRIPT, str(tmp_path)],
        check=True,
        env=env,
        capture_output=True,
        timeout=600,
    )
    for name, net in _nt_nets().items():
        k = net.kernel(x)
        for attr in ("nngp", "ntk"):
            ref = torch.from_numpy(np.load(tmp_path / f"{name}_{attr}.npy"))
            torch.testing.assert_close(getattr(k, attr), ref, rtol=1e-10, atol=1e-12)


def test_parser_knows_repeat_and_bounds_its_count() -> None:
    from widelimit import layers as L
    from widelimit.spec_text import known_layers, parse_net

    assert "repeat" in known_layers()
    net = parse_net("Dense(8) -> repeat(serial(Dense(16), ReLU), 3) -> Dense(1)")
    ref = L.serial(L.Dense(8), L.repeat(L.serial(L.Dense(16), L.ReLU()), 3), L.Dense(1))
    assert net == ref
    for bad in ("repeat(Dense(8))", "repeat(Dense(8), n=2)", "repeat(Dense(8), 0)",
                "repeat(Dense(8), 10**9)", "repeat(Dense(8), 100000)"):  # fmt: skip
        with pytest.raises(ValueError):
            parse_net(bad)
