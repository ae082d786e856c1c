"""Analytic NNGP/NTK of fully-connected nets against Monte Carlo over finite nets.

Error model: the Monte Carlo mean over ``S`` networks has standard error
``sem`` (estimated per entry).  With one hidden layer the finite-width NNGP is
exact at any width (the hidden pre-activations are exactly Gaussian), so
only sampling error remains; deeper nets add a finite-width bias of order
``1/width`` (Hanin & Nica 2019), allowed for as ``BIAS_C / width`` relative to
the kernel's scale.  Entries must satisfy ``|analytic - MC| <= Z * sem + bias``
with ``Z = 4.5`` (≈ 7e-6 two-sided per entry; ≤ ~100 entries per test).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from widelimit.layers import Dense, Erf, ReLU, Tanh, serial
from widelimit.monte_carlo import monte_carlo_kernel

Z = 4.5
BIAS_C = 3.0  # |E_finite - K_inf| <= BIAS_C * max|K| / width, generous for depth <= 4


def _x(n: int = 4, d: int = 5, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    x[1] = 0.8 * x[0] + 0.2 * x[1]  # a strongly correlated pair
    return x


def _net(depth: int, act, param: str):
    layers = []
    for i in range(depth):
        layers += [Dense(8, w_std=1.3 + 0.1 * i, b_std=0.2, parameterization=param), act]
    return serial(*layers, Dense(3, w_std=1.1, b_std=0.1, parameterization=param))


def _check(analytic: torch.Tensor, mc: torch.Tensor, sem: torch.Tensor, bias: float) -> None:
    err = (analytic - mc).abs()
    allowed = Z * sem + bias
    worst = float((err / allowed).max())
    assert worst <= 1.0, f"max err/allowed = {worst:.3g}; err={err.max():.3g}, sem={sem.max():.3g}"


@pytest.mark.parametrize("param", ["ntk", "standard"])
@pytest.mark.parametrize(
    ("depth", "act"),
    [(1, ReLU()), (2, Erf()), (3, Tanh()), (4, ReLU())],
    ids=["d1-relu", "d2-erf", "d3-tanh", "d4-relu"],
)
def test_dense_kernels_match_monte_carlo(depth: int, act, param: str) -> None:
    width = 256
    x = _x()
    net = _net(depth, act, param)
    k = net.with_width(width).kernel(x)
    mc = monte_carlo_kernel(net, x, width=width, n_samples=150, seed=depth)
    scale = float(k.nngp.abs().max())
    bias = 0.0 if depth == 1 else BIAS_C * scale / width
    _check(k.nngp, mc.nngp, mc.nngp_sem, bias)
    bias_ntk = BIAS_C * float(k.ntk.abs().max()) / width
    _check(k.ntk, mc.ntk, mc.ntk_sem, bias_ntk)


def test_cross_kernel_matches_monte_carlo() -> None:
    """x2 != x1 path (cov2 tracked separately)."""
    width = 256
    x1, x2 = _x(3, 5, seed=2), _x(2, 5, seed=3)
    net = _net(2, ReLU(), "ntk")
    k = net.kernel(x1, x2)
    assert k.nngp.shape == (3, 2)
    mc = monte_carlo_kernel(net, x1, x2, width=width, n_samples=150, seed=7)
    _check(k.nngp, mc.nngp, mc.nngp_sem, BIAS_C * float(k.nngp.abs().max()) / width)
    _check(k.ntk, mc.ntk, mc.ntk_sem, BIAS_C * float(k.ntk.abs().max()) / width)


def test_standard_parameterization_ntk_grows_with_width() -> None:
    """Standard-param NTK is width dependent; NNGP is not (DESIGN.md §1)."""
    x = _x()
    net = _net(2, ReLU(), "standard")
    k64, k512 = net.with_width(64).kernel(x), net.with_width(512).kernel(x)
    torch.testing.assert_close(k64.nngp, k512.nngp)
    assert float(k512.ntk.diagonal().mean()) > 4 * float(k64.ntk.diagonal().mean())


def test_monte_carlo_error_falls_like_inverse_sqrt_width() -> None:
    """RMS over networks of the relative NTK deviation ~ width^{-1/2} (fit over 4 widths)."""
    x = _x(3, 4)
    net = serial(Dense(1, w_std=1.4, b_std=0.1), ReLU(), Dense(1, w_std=1.4), ReLU(), Dense(1))
    k = net.kernel(x).ntk
    widths = [32, 128, 512, 2048]
    rms = []
    for w in widths:
        devs = []
        for s in range(12):
            mc = monte_carlo_kernel(net, x, width=w, n_samples=2, seed=100 * s + w)
            devs.append(float(torch.linalg.norm(mc.ntk - k) / torch.linalg.norm(k)))
        rms.append(math.sqrt(np.mean(np.square(devs))))
    slope = np.polyfit(np.log(widths), np.log(rms), 1)[0]
    assert -0.65 <= slope <= -0.35, f"slope {slope:.3f}, rms {rms}"
