"""Masked inputs (``mask=`` side input) by independent routes.

* exact: with ``"same"`` stride-1 convolutions and a ``GlobalAvgPool`` readout, a
  signal of length ``ℓ`` padded to ``L`` with a mask equals the signal truncated to
  ``ℓ`` (zero padding beyond the end is what a masked position reads), for the
  kernel and for the finite network;
* masked positions contribute nothing: whatever the inputs hold there, the kernel and
  the finite network's output do not change (strided, ``"valid"``, pooling and
  ``Flatten`` nets; without the mask they do change, so the check has power);
* tiles: blocks of the tiled ``k(x)`` equal the block's examples computed alone;
* Monte Carlo through the finite network with masks of mixed lengths (error model
  of tests/test_conv_monte_carlo.py: one hidden nonlinearity followed by linear
  layers, so no finite-width bias; ``|analytic − MC| ≤ Z·sem``, ``Z = 4.5``);
* Neural Tangents 0.6.5 with ``mask_constant`` (slow; skipped without its venv).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import widelimit.layers.tiles as tiles
from nt_reference import NT_PYTHON, run_npz_worker
from widelimit.layers import (
    AvgPool1d,
    AvgPool2d,
    Conv1d,
    Conv2d,
    Dense,
    Erf,
    Flatten,
    GlobalAvgPool,
    ReLU,
    serial,
)
from widelimit.monte_carlo import monte_carlo_kernel

Z = 4.5
L = 9


def _signals(n: int, seed: int, length: int = L) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, length, generator=g, dtype=torch.float64)


def _prefix_mask(lengths: list[int], length: int = L) -> torch.Tensor:
    return torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]


def _same_net(out: int = 1, width: int = 8):
    return serial(
        Conv1d(width, 3, padding="same", w_std=1.3, b_std=0.2),
        ReLU(),
        Conv1d(width, 3, padding="same", w_std=1.2, b_std=0.1),
        Erf(),
        GlobalAvgPool(),
        Dense(out, w_std=1.1, b_std=0.05),
    )


def _strided_net(readout):
    return serial(
        Conv1d(8, 3, padding="valid", stride=2, w_std=1.3, b_std=0.2),
        ReLU(),
        AvgPool1d(2, padding="same"),
        Conv1d(8, 2, padding="same", w_std=1.1, b_std=0.1),
        Erf(),
        readout,
        Dense(1),
    )


# ----------------------------------------------------------------------------- exact routes
def test_mask_equals_truncation():
    x1, x2 = _signals(4, seed=0), _signals(3, seed=1)
    net = _same_net()
    for ell in (5, 8):
        m1, m2 = _prefix_mask([ell] * 4), _prefix_mask([ell] * 3)
        got = net.kernel(x1, x2, mask=(m1, m2))
        want = net.kernel(x1[..., :ell], x2[..., :ell])
        sym, want_sym = net.kernel(x1, mask=m1), net.kernel(x1[..., :ell])
        for name in ("nngp", "ntk"):
            torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=1e-12, atol=0)
            torch.testing.assert_close(
                getattr(sym, name), getattr(want_sym, name), rtol=1e-12, atol=0
            )
        mod = net.module(16, input_shape=(3, L), seed=0, dtype=torch.float64)
        torch.testing.assert_close(mod(x1, mask=m1), mod(x1[..., :ell]), rtol=1e-12, atol=1e-14)


def test_mask_equals_truncation_on_images():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 2, 6, 5, generator=g, dtype=torch.float64)
    m = torch.zeros(3, 6, 5, dtype=torch.bool)
    m[:, :4, :3] = True  # 4×3 images padded to 6×5
    net = serial(
        Conv2d(8, 3, padding="same", w_std=1.4, b_std=0.1), ReLU(), GlobalAvgPool(), Dense(1)
    )
    got, want = net.kernel(x, mask=m), net.kernel(x[..., :4, :3])
    torch.testing.assert_close(got.ntk, want.ntk, rtol=1e-12, atol=0)
    torch.testing.assert_close(got.nngp, want.nngp, rtol=1e-12, atol=0)


def test_mixed_lengths_blocks_are_truncations():
    """Examples of lengths 4, 7, 4, 9, 7: each block of equal lengths is the truncated kernel."""
    lengths = [4, 7, 4, 9, 7]
    x, net = _signals(5, seed=3), _same_net()
    k = net.kernel(x, mask=_prefix_mask(lengths))
    for ell in set(lengths):
        idx = [i for i, n in enumerate(lengths) if n == ell]
        want = net.kernel(x[idx][..., :ell])
        sub = k.ntk[idx][:, idx]
        torch.testing.assert_close(sub, want.ntk, rtol=1e-12, atol=0)


def _scramble(x: torch.Tensor, m: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    noise = 5 * torch.randn(x.shape, generator=g, dtype=x.dtype)
    return torch.where(m.unsqueeze(1), x, noise)


@pytest.mark.parametrize("readout", [GlobalAvgPool(), Flatten()], ids=["gap", "flatten"])
def test_masked_positions_contribute_nothing(readout):
    x = _signals(4, seed=4, length=12)
    m = _prefix_mask([12, 7, 5, 10], length=12)
    m[0, 2] = False  # a hole inside a signal
    y = _scramble(x, m, seed=5)
    net = _strided_net(readout)
    for name in ("nngp", "ntk"):
        a = getattr(net.kernel(x, mask=m), name)
        b = getattr(net.kernel(y, mask=m), name)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
        assert not torch.allclose(getattr(net.kernel(x), name), getattr(net.kernel(y), name))
    mod = net.module(16, input_shape=(3, 12), seed=0, dtype=torch.float64)
    torch.testing.assert_close(mod(x, mask=m), mod(y, mask=m), rtol=1e-12, atol=1e-14)
    assert not torch.allclose(mod(x), mod(y))


def test_masked_positions_contribute_nothing_2d_pooling():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(3, 2, 6, 6, generator=g, dtype=torch.float64)
    m = torch.rand(3, 6, 6, generator=g) < 0.7
    y = _scramble(x, m, seed=7)
    net = serial(
        Conv2d(8, 3, padding="same", stride=2, b_std=0.1),
        ReLU(),
        AvgPool2d(2, stride=1, padding="circular"),
        GlobalAvgPool(),
        Dense(1),
    )
    torch.testing.assert_close(net.kernel(x, mask=m).ntk, net.kernel(y, mask=m).ntk)
    mod = net.module(8, input_shape=(2, 6, 6), seed=0, dtype=torch.float64)
    torch.testing.assert_close(mod(x, mask=m), mod(y, mask=m))


def test_tiles_with_masks(monkeypatch):
    x = _signals(6, seed=8, length=10)
    m = _prefix_mask([10, 3, 7, 10, 5, 8], length=10)
    net = _strided_net(GlobalAvgPool())
    monkeypatch.setattr(tiles, "TILE_ENTRIES_SPATIAL", 4 * 100)  # 2×2 examples per tile
    k = net.kernel(x, mask=m)
    whole = net.kernel(x.clone().requires_grad_(), mask=m)  # the whole-kernel route
    # off the diagonal: there the tiles set the ReLU correlation to exactly 1, the whole-kernel
    # route to 1 up to rounding, which arccos amplifies to ~1e-9 (tiles.py docstring)
    off = ~torch.eye(6, dtype=torch.bool)
    torch.testing.assert_close(k.ntk[off], whole.ntk.detach()[off], rtol=1e-12, atol=1e-14)
    block = net.kernel(x[1:4], x[3:6], mask=(m[1:4], m[3:6]))
    torch.testing.assert_close(k.nngp[1:4, 4:6], block.nngp[:, 1:], rtol=1e-12, atol=0)


# ----------------------------------------------------------------------------- Monte Carlo
@pytest.mark.parametrize(
    "name", ["nngp", pytest.param("ntk", marks=pytest.mark.slow)]
)  # the NTK's per-example Jacobians take ~15 s here
def test_monte_carlo_mixed_lengths(name):
    x = _signals(4, seed=9)
    m = _prefix_mask([9, 4, 6, 2])

    def net(out):
        return serial(
            Conv1d(64, 3, padding="same", w_std=1.4, b_std=0.2),
            ReLU(),
            Conv1d(64, 3, padding="valid", stride=2, w_std=1.2, b_std=0.1),
            GlobalAvgPool(),
            Dense(out),
        )

    out, n_samples = {"nngp": (16, 200), "ntk": (1, 40)}[name]
    spec = net(out)
    k = spec.with_width(64).kernel(x, mask=m)
    mc = monte_carlo_kernel(
        spec, x, width=64, n_samples=n_samples, seed=0, get=name, progress=False, mask=m
    )
    got, mean, sem = getattr(k, name), getattr(mc, name), getattr(mc, name + "_sem")
    ratio = float(((got - mean).abs() / (Z * sem)).max())
    assert ratio <= 1.0, f"{name}: max |err|/allowed = {ratio:.3g}"


# ----------------------------------------------------------------------------- errors
def test_mask_errors():
    x, net = _signals(3, seed=10), _same_net()
    m = _prefix_mask([9, 4, 6])
    with pytest.raises(ValueError, match=r"`mask`.*\(3, 9\)"):
        net.kernel(x, mask=m[:, :5])
    with pytest.raises(ValueError, match="0/1"):
        net.kernel(x, mask=2.0 * m)
    with pytest.raises(TypeError, match="pair"):
        net.kernel(x, x, mask=m)
    with pytest.raises(ValueError, match="dense features"):
        serial(Flatten(), Dense(1)).kernel(torch.ones(3, 4), mask=torch.ones(3, 4))
    with pytest.raises(TypeError, match="unexpected keyword argument 'mask'"):
        serial(Dense(2), Dense(1)).kernel(torch.ones(3, 4), mask=torch.ones(3, 4))


# ----------------------------------------------------------------------------- Neural Tangents
_NT_SCRIPT = """
import sys

import numpy as np
import jax
jax.config.update("jax_enable_x64", True)
from neural_tangents import stax

d = np.load(sys.argv[1])
conv = dict(dimension_numbers=("NCH", "OIH", "NCH"))
head = [
    stax.Conv(1, (3,), padding="VALID", strides=(2,), W_std=1.3, b_std=0.2, **conv),
    stax.Relu(),
    stax.AvgPool((2,), strides=(2,), padding="SAME", channel_axis=1),
    stax.Conv(1, (2,), padding="SAME", W_std=1.1, b_std=0.1, **conv),
    stax.Erf(),
]
out = {}
for name, tail in (("gap", stax.GlobalAvgPool(channel_axis=1)), ("flatten", stax.Flatten())):
    _, _, kernel_fn = stax.serial(*head, tail, stax.Dense(1))
    k = kernel_fn(d["x1"], d["x2"], ("nngp", "ntk"), mask_constant=float(d["c"]), channel_axis=1)
    out[name + "_nngp"], out[name + "_ntk"] = np.asarray(k.nngp), np.asarray(k.ntk)
np.savez(sys.argv[2], **out)
"""


@pytest.mark.slow  # importing JAX alone takes ~30-60 s on the shared machine
@pytest.mark.skipif(NT_PYTHON is None, reason="Neural Tangents environment not installed")
def test_matches_neural_tangents_mask_constant(tmp_path):
    x1, x2 = _signals(4, seed=11, length=13), _signals(3, seed=12, length=13)
    m1 = _prefix_mask([13, 9, 6, 11], length=13)
    m1[0, 3] = False
    m2 = _prefix_mask([4, 13, 8], length=13)
    c = -7.0  # Neural Tangents masks the entries equal to mask_constant
    y1, y2 = torch.where(m1[:, None], x1, c), torch.where(m2[:, None], x2, c)
    nt = run_npz_worker(
        _NT_SCRIPT, tmp_path, "mask_worker.py", timeout=300, probe=True,
        x1=y1.numpy(), x2=y2.numpy(), c=c,
    )  # fmt: skip
    for name, readout in (("gap", GlobalAvgPool()), ("flatten", Flatten())):
        k = _strided_net(readout).kernel(x1, x2, mask=(m1, m2))
        for q in ("nngp", "ntk"):
            want = nt[f"{name}_{q}"]
            np.testing.assert_allclose(getattr(k, q).numpy(), want, rtol=1e-10, atol=0)


def test_global_sum_pool_with_a_mask_sums_the_unmasked_positions() -> None:
    """GlobalSumPool over a masked signal = GlobalSumPool over the truncated signal (same
    convs), kernel and finite module alike."""
    import widelimit as wl

    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 2, 7, generator=g, dtype=torch.float64)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[:, 5:] = False
    net = wl.serial(wl.Conv1d(4, 1, w_std=1.3, b_std=0.2), wl.ReLU(), wl.GlobalSumPool(),
                    wl.Dense(1))  # fmt: skip
    k_masked = net.kernel(x, mask=mask)
    k_trunc = net.kernel(x[..., :5])
    torch.testing.assert_close(k_masked.nngp, k_trunc.nngp, rtol=1e-12, atol=0)
    torch.testing.assert_close(k_masked.ntk, k_trunc.ntk, rtol=1e-12, atol=0)
    f = net.module(8, input_shape=(2, 7), seed=0, dtype=torch.float64)
    y = x.clone()
    y[..., 5:] = 100.0  # values at masked positions must not matter
    torch.testing.assert_close(f(y, mask=mask), f(x[..., :5]), rtol=1e-12, atol=1e-12)
