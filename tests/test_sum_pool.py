"""Sum pooling (``SumPool1d/2d``, ``GlobalSumPool``): finite modules and kernel rules.

Routes, each independent of the code under test:

* an explicit pooling matrix ``P`` built here by loops over the window (padded positions
  simply absent from the sum: Neural Tangents' SumPool convention), applied to the inputs;
  since the input kernel is a channel mean and ``P`` acts per channel, the kernel of ``P x``
  is exactly ``P Σ(x) Pᵀ``, the rule the layer must apply (float64, rounding only);
* ``SumPool = |window| × AvgPool`` on the finite module and ``|window|² × AvgPool`` on the
  kernel (NNGP, NTK and self-covariances), ``GlobalSumPool = |S|² × GlobalAvgPool``;
* Monte Carlo through finite nets with the error model of ``test_conv_monte_carlo.py``.
"""

from __future__ import annotations

import math

import pytest
import torch

from test_conv_monte_carlo import _images, _signals, check_against_mc
from widelimit.layers import (
    AvgPool1d,
    AvgPool2d,
    Conv1d,
    Conv2d,
    Dense,
    Flatten,
    GlobalAvgPool,
    GlobalSumPool,
    ReLU,
    SumPool1d,
    SumPool2d,
    Tanh,
    serial,
)
from widelimit.layers.inputs import input_kernel
from widelimit.spec_text import parse_net

RTOL = 1e-12  # float64 rounding of sums of a few dozen terms


def _axis_matrix(size: int, k: int, s: int, padding: str) -> torch.Tensor:
    """``(out, size)`` 0/1 matrix of a window sum along one axis, built by loops.

    ``same``/``circular``: ``out = ceil(size/s)``, total padding ``(out−1)s + k − size``
    split with the extra position after (TensorFlow SAME); padded positions are dropped
    (``same``) or wrap around (``circular``).
    """
    if padding == "valid":
        out, before = (size - k) // s + 1, 0
    else:
        out = -(-size // s)
        before = max((out - 1) * s + k - size, 0) // 2
    p = torch.zeros(out, size, dtype=torch.float64)
    for i in range(out):
        for a in range(k):
            j = s * i + a - before
            if padding == "circular":
                p[i, j % size] += 1.0
            elif 0 <= j < size:
                p[i, j] += 1.0
    return p


def _explicit_sum_pool(x: torch.Tensor, window, stride, padding: str) -> torch.Tensor:
    """``(N, C, *S)`` -> window sums via the per-axis matrices (separable)."""
    for axis, (k, s) in enumerate(zip(window, stride, strict=True)):
        p = _axis_matrix(x.shape[2 + axis], k, s, padding)
        x = torch.movedim(torch.movedim(x, 2 + axis, -1) @ p.T, -1, 2 + axis)
    return x


CASES = [  # (n_spatial, window, stride, padding)
    (1, (3,), (1,), "same"),
    (1, (3,), (2,), "circular"),
    (1, (2,), (2,), "valid"),
    (2, (2, 3), (1, 1), "same"),
    (2, (3, 2), (2, 1), "circular"),
    (2, (2, 2), (2, 2), "valid"),
    (2, (3, 3), (2, 2), "same"),
]


def _layers(n: int, window, stride, padding):
    sp = (SumPool1d if n == 1 else SumPool2d)(window, stride, padding=padding)
    ap = (AvgPool1d if n == 1 else AvgPool2d)(window, stride, padding=padding)
    return sp, ap


def _x(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (3, 2, 7) if n == 1 else (3, 2, 5, 6)
    return torch.randn(shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize(("n", "window", "stride", "padding"), CASES)
def test_module_is_explicit_window_sum(n, window, stride, padding) -> None:
    """The finite module sums the valid entries of each window (padding adds nothing)."""
    x = _x(n)
    sp, ap = _layers(n, window, stride, padding)
    shape = tuple(x.shape[1:])
    got = sp.make_module(shape)(x)
    want = _explicit_sum_pool(x, window, stride, padding)
    assert tuple(got.shape[1:]) == sp.out_shape(shape) == tuple(want.shape[1:])
    torch.testing.assert_close(got, want, rtol=RTOL, atol=0)
    torch.testing.assert_close(got, math.prod(window) * ap.make_module(shape)(x), rtol=RTOL, atol=0)


@pytest.mark.parametrize(("n", "window", "stride", "padding"), CASES)
def test_kernel_is_pooling_matrix_rule(n, window, stride, padding) -> None:
    """SumPool's kernel rule on the raw input kernel equals the kernel of ``P x``."""
    x1, x2 = _x(n, 0), _x(n, 1)[:2]
    sp, _ = _layers(n, window, stride, padding)
    for b in (None, x2):
        k = sp.transform_kernel(input_kernel(x1, b, full_spatial=True, ntk=False))
        px2 = None if b is None else _explicit_sum_pool(b, window, stride, padding)
        want = input_kernel(
            _explicit_sum_pool(x1, window, stride, padding), px2, full_spatial=True, ntk=False
        )
        assert k.spatial == want.spatial and k.full_spatial
        torch.testing.assert_close(k.nngp, want.nngp, rtol=RTOL, atol=1e-13)
        torch.testing.assert_close(k.cov1, want.cov1, rtol=RTOL, atol=1e-13)
        if b is not None:
            torch.testing.assert_close(k.cov2, want.cov2, rtol=RTOL, atol=1e-13)


@pytest.mark.parametrize(("n", "window", "stride", "padding"), CASES)
def test_kernel_is_window_squared_times_avgpool(n, window, stride, padding) -> None:
    """Through a conv + Tanh net: NNGP and NTK of SumPool = |window|² × those of AvgPool."""
    x = _x(n)
    conv = (Conv1d if n == 1 else Conv2d)(4, 2, padding="same", w_std=1.3, b_std=0.2)
    ks = serial(conv, Tanh(), _layers(n, window, stride, padding)[0], Flatten(), Dense(1))
    ka = serial(conv, Tanh(), _layers(n, window, stride, padding)[1], Flatten(), Dense(1))
    s, a = ks.kernel(x), ka.kernel(x)
    w2 = math.prod(window) ** 2
    torch.testing.assert_close(s.nngp, w2 * a.nngp, rtol=RTOL, atol=0)
    torch.testing.assert_close(s.ntk, w2 * a.ntk, rtol=RTOL, atol=0)
    # on the spatial output (no readout): every entry of the full layout
    s = serial(conv, Tanh(), _layers(n, window, stride, padding)[0]).kernel(x)
    a = serial(conv, Tanh(), _layers(n, window, stride, padding)[1]).kernel(x)
    assert s.full_spatial
    torch.testing.assert_close(s.nngp, w2 * a.nngp, rtol=RTOL, atol=0)
    torch.testing.assert_close(s.ntk, w2 * a.ntk, rtol=RTOL, atol=0)
    torch.testing.assert_close(s.cov1, w2 * a.cov1, rtol=RTOL, atol=0)


@pytest.mark.parametrize("n", [1, 2])
def test_global_sum_pool(n: int) -> None:
    """GlobalSumPool: module = sum over positions; kernel = |S|² × GlobalAvgPool's, and
    equals the kernel of the summed inputs (the input kernel of ``Σ_p x[:, :, p]``)."""
    x = _x(n)
    shape = tuple(x.shape[1:])
    n_pos = math.prod(shape[1:])
    layer = GlobalSumPool()
    out = layer.make_module(shape)(x)
    assert layer.out_shape(shape) == (shape[0],)
    torch.testing.assert_close(out, x.flatten(2).sum(-1), rtol=RTOL, atol=0)
    k = layer.transform_kernel(input_kernel(x, None, full_spatial=True, ntk=False))
    want = input_kernel(x.flatten(2).sum(-1), None, full_spatial=False, ntk=False)
    torch.testing.assert_close(k.nngp, want.nngp, rtol=RTOL, atol=1e-13)
    torch.testing.assert_close(k.cov1, want.cov1, rtol=RTOL, atol=1e-13)
    conv = (Conv1d if n == 1 else Conv2d)(4, 2, padding="circular", w_std=1.3, b_std=0.2)
    s = serial(conv, ReLU(), GlobalSumPool(), Dense(1)).kernel(x)
    a = serial(conv, ReLU(), GlobalAvgPool(), Dense(1)).kernel(x)
    torch.testing.assert_close(s.nngp, n_pos**2 * a.nngp, rtol=RTOL, atol=0)
    torch.testing.assert_close(s.ntk, n_pos**2 * a.ntk, rtol=RTOL, atol=0)


@pytest.mark.parametrize("pool", [SumPool2d(2, 1, padding="same"), GlobalSumPool()])
def test_blocks_of_two_batches_agree_with_one(pool) -> None:
    """``net.kernel(x1, x2)`` blocks equal those of ``net.kernel(cat(x1, x2))`` (tiled engine)."""
    assert pool.pairwise
    x = _x(2)
    net = serial(Conv2d(4, 2, padding="same", w_std=1.4, b_std=0.1), ReLU(), pool, Flatten(),
                 Dense(1))  # fmt: skip
    assert net.is_pairwise()
    full = net.kernel(x)
    cross = net.kernel(x[:2], x[2:])
    torch.testing.assert_close(cross.nngp, full.nngp[:2, 2:], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(cross.ntk, full.ntk[:2, 2:], rtol=1e-12, atol=1e-14)


def test_parser_names() -> None:
    net = parse_net("Conv2d(8,3) -> ReLU -> SumPool2d(2) -> Flatten -> Dense(1)")
    assert net.layers[2] == SumPool2d(2)
    net = parse_net("Conv1d(8, 3, padding='same') -> ReLU -> SumPool1d(3, 1, padding='circular')"
                    " -> GlobalSumPool -> Dense(1)")  # fmt: skip
    assert net.layers[2] == SumPool1d(3, 1, padding="circular")
    assert net.layers[3] == GlobalSumPool()
    assert GlobalSumPool() != GlobalAvgPool()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: SumPool2d(0), "`window`"),
        (lambda: SumPool2d((2, 2, 2)), "`window`"),
        (lambda: SumPool1d(2, stride=-1), "`stride`"),
        (lambda: SumPool2d(2, padding="reflect"), "`padding`"),
        (lambda: SumPool2d(6).out_shape((2, 5, 5)), "GlobalSumPool"),
        (lambda: SumPool1d(2).out_shape((2, 5, 5)), r"\(C, L\)"),
        (lambda: GlobalSumPool().out_shape((4,)), r"\(C, L\) or \(C, H, W\)"),
    ],
)
def test_bad_arguments(make, match) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        make()


# ------------------------------------------------------------------ Monte Carlo


def test_monte_carlo_sum_pool_2d_same() -> None:
    """One hidden nonlinearity: the expected finite kernel is the analytic one (bias 0)."""

    def make(out):
        return serial(
            Conv2d(8, 3, padding="same", w_std=1.4, b_std=0.1), ReLU(),
            SumPool2d(2, 1, padding="same"), Flatten(), Dense(out, w_std=0.5, b_std=0.1),
        )  # fmt: skip

    check_against_mc(make, _images(), hidden=1, seed=11)


def test_monte_carlo_global_sum_pool_1d_circular() -> None:
    x = _signals()  # (N, C, 8)

    def make(out):
        return serial(
            Conv1d(8, 3, padding="circular", w_std=1.4, b_std=0.1), Tanh(),
            SumPool1d(3, 2, padding="circular"), GlobalSumPool(), Dense(out, w_std=0.3),
        )  # fmt: skip

    check_against_mc(make, x, hidden=1, seed=12)
