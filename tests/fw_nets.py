"""Inputs and deep fully connected nets shared by the finite-width tests
(``test_finite_width.py``, ``test_ntk_fluctuations.py``)."""

from __future__ import annotations

import torch

from widelimit import Dense, serial

D = torch.float64


def inputs(n: int, d: int = 4, seed: int = 0) -> torch.Tensor:
    """``(n, d)`` standard normal float64 inputs from a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=D)


def deep_net(act, depth: int, width: int, *, out: int, w_std=1.3, b_std=0.2, param="ntk"):
    """``depth × (Dense(width, w_std, b_std) → act) → Dense(out, 1.1, 0.1)``."""
    layers = []
    for _ in range(depth):
        layers += [Dense(width, w_std=w_std, b_std=b_std, parameterization=param), act]
    return serial(*layers, Dense(out, w_std=1.1, b_std=0.1, parameterization=param))
