"""CNN kernels (conv, pooling, flatten; each padding, stride 2) against Monte Carlo.

Error model: the Monte Carlo mean over ``S`` finite networks ``net.module(width)``
has a per-entry standard error ``sem`` (estimated).  With one hidden
nonlinearity the expected finite-width NNGP and NTK equal the analytic ones
exactly (the first conv's outputs are exactly Gaussian and the later layers
are linear in i.i.d. channels), so only sampling error remains (``bias = 0``).
With two or more hidden nonlinearities the expectation has a finite-width
bias of order ``1/width`` (Hanin & Nica 2019; Yaida 2020), allowed as
``BIAS_C · max|K| / width``.  Calibration: for the 3-hidden-layer GAP net of
``test_deeper_cnn_gap_wide`` at widths 16, 32, 64 (2000 NNGP / 400 NTK samples)
``max|analytic − MC|·width/max|K|`` was 0.2-1.0, within the sampling noise, so
``BIAS_C = 3`` leaves a 3x margin.  A wrong padding rule gives errors ~8x
the allowance, so the tests keep their power.
Entries must satisfy ``|analytic − MC| ≤ Z·sem + bias`` with ``Z = 4.5``
(two-sided tail ≈ 7e-6 per entry, ≤ ~350 entries per test; seeds are fixed).
The NNGP is estimated with 32 readout channels, averaged, to shrink its
sampling error (see :func:`check_against_mc`).
"""

from __future__ import annotations

import pytest
import torch

from widelimit.layers import Dense, Erf, ReLU, Tanh, serial
from widelimit.layers.conv import Conv1d, Conv2d
from widelimit.layers.dense import input_kernel
from widelimit.layers.pooling import AvgPool1d, AvgPool2d, Flatten, GlobalAvgPool
from widelimit.monte_carlo import monte_carlo_kernel

Z = 4.5
BIAS_C = 3.0
WIDTH = 128
NNGP_SAMPLES = 300
NTK_SAMPLES = 60


def _images(n=3, c=2, h=4, w=4, seed=1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    x[1] = 0.8 * x[0] + 0.2 * x[1]  # a strongly correlated pair
    return x


def _spatial_diagonal(t: torch.Tensor, full: bool) -> torch.Tensor:
    """Full layout ``(N1, N2, S1, S1', S2, S2')`` -> per-position ``(N1, N2, S1, S2)``."""
    if not full:
        return t
    for _ in range((t.ndim - 2) // 2):
        t = torch.diagonal(t, dim1=2, dim2=3)
    return t


def _signals() -> torch.Tensor:
    """``(3, 2, 8)`` 1-D signals: the first image column and its mirror image."""
    x = _images()[:, :, :, 0].contiguous()
    return torch.cat([x, x.flip(-1)], dim=-1)


def check_against_mc(make, x, *, hidden: int, width=WIDTH, seed=0) -> None:
    """Analytic kernel vs Monte Carlo with the module docstring's error model.

    ``make(out)`` builds the net with ``out`` readout channels: the NNGP is
    estimated with 32 channels and ``NNGP_SAMPLES`` forward passes, the NTK
    (a Jacobian per output) with one channel and ``NTK_SAMPLES`` networks.
    """
    for name, out, samples in (("nngp", 32, NNGP_SAMPLES), ("ntk", 1, NTK_SAMPLES)):
        net = make(out)
        k = net.with_width(width).kernel(x, get=("nngp", "ntk"))
        mc = monte_carlo_kernel(net, x, width=width, n_samples=samples, seed=seed, get=name)
        a = _spatial_diagonal(getattr(k, name), k.full_spatial)
        m, sem = getattr(mc, name), getattr(mc, name + "_sem")
        assert a.shape == m.shape, (a.shape, m.shape)
        bias = 0.0 if hidden <= 1 else BIAS_C * float(a.abs().max()) / width
        ratio = float(((a - m).abs() / (Z * sem + bias)).max())
        assert ratio <= 1.0, f"{name}: max |err|/allowed = {ratio:.3g}"


@pytest.mark.parametrize("padding", ["same", "valid", "circular"])
def test_cnn_gap(padding: str) -> None:
    def make(out):
        return serial(
            Conv2d(8, 3, padding=padding, w_std=1.4, b_std=0.1), ReLU(),
            Conv2d(8, 2, padding=padding, w_std=1.3, b_std=0.1), ReLU(),
            GlobalAvgPool(), Dense(out, w_std=1.1, b_std=0.1),
        )  # fmt: skip

    check_against_mc(make, _images(), hidden=2, seed=1)


def test_cnn_flatten_stride2_erf() -> None:
    def make(out):
        return serial(
            Conv2d(8, 3, padding="same", w_std=1.4, b_std=0.2), Erf(),
            Conv2d(8, 2, stride=2, padding="valid", w_std=1.3), ReLU(), Flatten(), Dense(out),
        )  # fmt: skip

    check_against_mc(make, _images(h=5, w=5), hidden=2, seed=2)


def test_cnn_avgpool_circular_stride2() -> None:
    def make(out):
        return serial(
            Conv2d(8, 3, stride=2, padding="circular", w_std=1.5, b_std=0.1), ReLU(),
            AvgPool2d(2, 1, padding="same"), Conv2d(8, 2, padding="circular", w_std=1.2),
            ReLU(), AvgPool2d(2), Flatten(), Dense(out),
        )  # fmt: skip

    check_against_mc(make, _images(h=5, w=5), hidden=2, seed=3)


def test_cnn_standard_parameterization() -> None:
    """Standard param: width-dependent NTK with conv fan-in n = C·|window|."""

    def make(out):
        return serial(
            Conv2d(8, 2, padding="valid", w_std=1.4, b_std=0.3, parameterization="standard"),
            ReLU(), AvgPool2d(2, 1), Flatten(),
            Dense(out, b_std=0.2, parameterization="standard"),
        )  # fmt: skip

    check_against_mc(make, _images(), hidden=1, seed=4)


def test_conv1d_spatial_output() -> None:
    """A net ending in a conv: per-position kernels (diagonal of the full layout) compared."""
    x = _signals()  # (N, C, 8)

    def make(out):
        return serial(
            Conv1d(8, 3, padding="same", w_std=1.4, b_std=0.1), ReLU(),
            AvgPool1d(3, 2, padding="same"), Conv1d(out, 2, padding="circular"),
        )  # fmt: skip

    check_against_mc(make, x, hidden=1, seed=5)


@pytest.mark.slow
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_deeper_cnn_gap_wide(padding: str) -> None:
    """Three hidden conv layers at width 256 (smaller bias allowance, same error model)."""

    def make(out):
        return serial(
            Conv2d(8, 3, padding=padding, w_std=1.4, b_std=0.1), ReLU(),
            Conv2d(8, 2, padding=padding, w_std=1.4), ReLU(),
            Conv2d(8, 2, padding="same", w_std=1.4), ReLU(), GlobalAvgPool(), Dense(out),
        )  # fmt: skip

    check_against_mc(make, _images(h=5, w=5), hidden=3, width=256, seed=6)


def test_full_layout_cross_position_covariances() -> None:
    """Every entry Σ[x, x'][i, i', j, j'] of the full layout (through ReLU, Tanh, pooling)
    against the sample covariance between positions of finite nets (forward passes only)."""
    x = _images(h=5, w=4)
    net = serial(
        Conv2d(8, 3, padding="same", w_std=1.4, b_std=0.2), Tanh(),
        AvgPool2d(2, 1, padding="same"), Conv2d(8, (2, 3), stride=(2, 1), padding="circular"),
        ReLU(), Conv2d(32, 2, padding="valid", w_std=1.3),
    )  # fmt: skip
    k0 = input_kernel(x, None, full_spatial=True, ntk=False)
    k = net.with_width(WIDTH).transform_kernel(k0)
    samples = []
    gen = torch.Generator().manual_seed(21)
    spec = net.with_width(WIDTH)
    with torch.no_grad():
        for _ in range(NNGP_SAMPLES):
            f = spec.make_module(tuple(x.shape[1:]), generator=gen, dtype=x.dtype)(x)
            # (N, C, H, W) -> (N, N, H, H', W, W') averaged over the C output channels
            samples.append(torch.einsum("nchw,mcgv->nmhgwv", f, f) / f.shape[1])
    s = torch.stack(samples)
    mc, sem = s.mean(0), s.std(0) / NNGP_SAMPLES**0.5
    assert k.nngp.shape == mc.shape
    bias = BIAS_C * float(k.nngp.abs().max()) / WIDTH  # two hidden nonlinearities
    ratio = float(((k.nngp - mc).abs() / (Z * sem + bias)).max())
    assert ratio <= 1.0, f"max |err|/allowed = {ratio:.3g}"
