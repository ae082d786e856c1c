"""``Aggregate`` (graph convolution over a per-example adjacency) by independent routes.

* exact: as a first layer, the kernel of ``serial(Aggregate(), rest)`` on ``(x, a)`` is
  the kernel of ``rest`` on the aggregated inputs ``y = x @ a`` computed here by hand;
  as a hidden layer, its output kernel is ``aᵀ Σ a'`` with ``Σ`` the kernel before it,
  multiplied here example pair by example pair (NNGP, NTK and self-covariances);
* the tiled engine: every block of ``k(x)`` and of ``k(x1, x2)`` (tiles of two
  examples) equals the kernel of that block's examples alone and the whole-kernel route;
* the finite module is ``x @ a`` and its Monte Carlo kernel agrees with the analytic one;
* Neural Tangents 0.6.5 (``stax.Aggregate``), when its environment is installed.

Monte Carlo error model (as tests/test_conv_monte_carlo.py): with one hidden
nonlinearity followed only by linear layers (``Aggregate``, pooling, readout) the
finite-width expectation equals the analytic kernel, so only sampling error is
allowed: ``|analytic − MC| ≤ Z·sem`` per entry, ``Z = 4.5`` (≤ 20 entries per test).
With two hidden nonlinearities a ``1/width`` bias ``BIAS_C·max|K|/width`` is added
(``BIAS_C = 3`` as in that file).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import widelimit.layers.tiles as tiles
from nt_reference import NT_PYTHON, run_npz_worker
from widelimit.layers import (
    Aggregate,
    Conv1d,
    Conv2d,
    Dense,
    Erf,
    GlobalAvgPool,
    ReLU,
    serial,
)
from widelimit.layers.inputs import input_kernel
from widelimit.monte_carlo import monte_carlo_kernel
from widelimit.spec_text import parse_net

Z = 4.5
BIAS_C = 3.0


def _data(n: int, c: int, nodes: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``(n, c, *nodes)`` and weighted random graphs ``(n, *nodes, *nodes)``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, *nodes, generator=g, dtype=torch.float64)
    p = int(np.prod(nodes))
    arcs = (torch.rand(n, p, p, generator=g) < 0.4).double()
    a = arcs * torch.rand(n, p, p, generator=g, dtype=torch.float64) + torch.eye(p)
    return x, a.reshape(n, *nodes, *nodes)


def _aggregate_by_hand(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``y[n, c, j] = Σ_i x[n, c, i] a[n, i, j]`` with loops over examples and nodes."""
    n, c = x.shape[:2]
    p = int(np.prod(x.shape[2:]))
    xf, af = x.reshape(n, c, p), a.reshape(n, p, p)
    y = torch.zeros_like(xf)
    for e in range(n):
        for j in range(p):
            y[e, :, j] = (xf[e] * af[e, :, j]).sum(1)
    return y.reshape(x.shape)


def _rest_1d() -> list:
    return [
        Conv1d(4, 3, padding="same", w_std=1.3, b_std=0.2),
        ReLU(),
        Conv1d(4, 3, padding="circular", w_std=1.1, b_std=0.1),
        Erf(),
        GlobalAvgPool(),
        Dense(1, w_std=1.2, b_std=0.05),
    ]


# ----------------------------------------------------------------------------- exact routes
def test_first_layer_is_the_net_on_aggregated_inputs():
    x1, a1 = _data(4, 3, (6,), seed=0)
    x2, a2 = _data(3, 3, (6,), seed=1)
    net, rest = serial(Aggregate(), *_rest_1d()), serial(*_rest_1d())
    y1, y2 = _aggregate_by_hand(x1, a1), _aggregate_by_hand(x2, a2)
    for got, want in (
        (net.kernel(x1, x2, pattern=(a1, a2)), rest.kernel(y1, y2)),
        (net.kernel(x1, pattern=a1), rest.kernel(y1)),
    ):
        torch.testing.assert_close(got.nngp, want.nngp, rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(got.ntk, want.ntk, rtol=1e-12, atol=1e-13)


def test_first_layer_on_images():
    """2-D nodes: a pattern ``(N, H, W, H, W)`` over pixels (separable layout inside)."""
    x1, a1 = _data(3, 2, (3, 4), seed=2)
    x2, a2 = _data(2, 2, (3, 4), seed=3)
    rest = [Conv2d(4, 3, padding="same", w_std=1.4, b_std=0.1), ReLU(), GlobalAvgPool(), Dense(1)]
    got = serial(Aggregate(), *rest).kernel(x1, x2, pattern=(a1, a2))
    want = serial(*rest).kernel(_aggregate_by_hand(x1, a1), _aggregate_by_hand(x2, a2))
    torch.testing.assert_close(got.nngp, want.nngp, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(got.ntk, want.ntk, rtol=1e-12, atol=1e-13)


def test_hidden_layer_is_a_transpose_sigma_a():
    """After a conv and an activation: ``Σ'[n, m] = a1[n]ᵀ Σ[n, m] a2[m]`` (and the NTK)."""
    x1, a1 = _data(3, 2, (5,), seed=4)
    x2, a2 = _data(2, 2, (5,), seed=5)
    pre = serial(Conv1d(4, 3, padding="same", w_std=1.5, b_std=0.3), Erf())
    k = pre.transform_kernel(input_kernel(x1, x2, full_spatial=True, ntk=True))
    got = serial(pre, Aggregate()).kernel(x1, x2, pattern=(a1, a2))
    assert got.nngp.shape == (3, 2, 5, 5) and got.full_spatial
    for n in range(3):
        for m in range(2):
            for name in ("nngp", "ntk"):
                want = a1[n].T @ getattr(k, name)[n, m] @ a2[m]
                torch.testing.assert_close(getattr(got, name)[n, m], want, rtol=1e-13, atol=1e-14)
        torch.testing.assert_close(got.cov1[n], a1[n].T @ k.cov1[n] @ a1[n], rtol=1e-13, atol=0)
    for m in range(2):
        torch.testing.assert_close(got.cov2[m], a2[m].T @ k.cov2[m] @ a2[m], rtol=1e-13, atol=0)


def test_shared_pattern_equals_batched():
    x, a = _data(4, 3, (6,), seed=6)
    shared = a[0]
    net = serial(Conv1d(4, 3, padding="same"), ReLU(), Aggregate(), GlobalAvgPool(), Dense(1))
    got = net.kernel(x, x[:2], pattern=(shared, shared))
    want = net.kernel(x, x[:2], pattern=(shared.expand(4, 6, 6), shared.expand(2, 6, 6)))
    torch.testing.assert_close(got.nngp, want.nngp, rtol=0, atol=0)
    mod = net.module(8, input_shape=(3, 6), seed=0, dtype=torch.float64)
    torch.testing.assert_close(mod(x, pattern=shared), mod(x, pattern=shared.expand(4, 6, 6)))


# ----------------------------------------------------------------------------- tiled engine
def _two_aggregates() -> object:
    return serial(
        Conv1d(4, 3, padding="same", w_std=1.3, b_std=0.2),
        ReLU(),
        Aggregate(),
        Conv1d(4, 3, padding="same", w_std=1.1, b_std=0.1),
        Erf(),
        Aggregate(),
        GlobalAvgPool(),
        Dense(1),
    )


def test_tiles_slice_the_patterns(monkeypatch):
    """Tiles of 2×2 examples: every block equals that block's examples computed alone
    and the whole-kernel route (taken when the inputs require gradients)."""
    net = _two_aggregates()
    x, a = _data(7, 3, (5,), seed=7)
    xb, ab = _data(5, 3, (5,), seed=8)
    # one tile = 2 examples × 2 examples (full layout: 5·5 entries per pair)
    monkeypatch.setattr(tiles, "TILE_ENTRIES_SPATIAL", 4 * 25)
    k_sym = net.kernel(x, pattern=a)
    k_cross = net.kernel(x, xb, pattern=(a, ab))
    whole = net.kernel(x.clone().requires_grad_(), xb, pattern=(a, ab))
    torch.testing.assert_close(k_cross.nngp, whole.nngp.detach(), rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(k_cross.ntk, whole.ntk.detach(), rtol=1e-13, atol=1e-14)
    for r0, r1, c0, c1 in ((0, 3, 2, 7), (4, 7, 0, 1), (1, 6, 1, 6)):
        block = net.kernel(x[r0:r1], x[c0:c1], pattern=(a[r0:r1], a[c0:c1]))
        off = ~torch.eye(7, dtype=torch.bool)[r0:r1, c0:c1]  # k(x) has exact c = 1 on its diagonal
        for name in ("nngp", "ntk"):
            want, got = getattr(block, name), getattr(k_sym, name)[r0:r1, c0:c1]
            torch.testing.assert_close(got[off], want[off], rtol=1e-12, atol=1e-13)
        cross = net.kernel(x[r0:r1], xb[c0:c1], pattern=(a[r0:r1], ab[c0:c1]))
        torch.testing.assert_close(k_cross.ntk[r0:r1, c0:c1], cross.ntk, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(k_sym.nngp, k_sym.nngp.T, rtol=0, atol=0)


# ----------------------------------------------------------------------------- finite module
def test_module_is_x_at_a():
    x, a = _data(3, 2, (5,), seed=9)
    mod = Aggregate().module(input_shape=(2, 5))
    torch.testing.assert_close(mod(x, pattern=a), _aggregate_by_hand(x, a), rtol=1e-14, atol=0)
    ximg, aimg = _data(2, 2, (2, 3), seed=10)
    mod2 = serial(Aggregate()).module(input_shape=(2, 2, 3))  # through SerialModule
    torch.testing.assert_close(mod2(ximg, pattern=aimg), _aggregate_by_hand(ximg, aimg))


def _check_mc(net, x, a, *, hidden: int, width: int, samples: tuple[int, int], seed: int):
    for name, out, n_samples in (("nngp", 16, samples[0]), ("ntk", 1, samples[1])):
        spec = net(out)
        k = spec.with_width(width).kernel(x, pattern=a)
        mc = monte_carlo_kernel(
            spec,
            x,
            width=width,
            n_samples=n_samples,
            seed=seed,
            get=name,
            progress=False,
            pattern=a,
        )
        got, m, sem = getattr(k, name), getattr(mc, name), getattr(mc, name + "_sem")
        bias = 0.0 if hidden <= 1 else BIAS_C * float(got.abs().max()) / width
        ratio = float(((got - m).abs() / (Z * sem + bias)).max())
        assert ratio <= 1.0, f"{name}: max |err|/allowed = {ratio:.3g}"


def test_monte_carlo_one_hidden_layer():
    x, a = _data(3, 2, (5,), seed=11)

    def net(out):
        return serial(
            Conv1d(64, 3, padding="same", w_std=1.4, b_std=0.2),
            ReLU(),
            Aggregate(),
            GlobalAvgPool(),
            Dense(out, w_std=1.1, b_std=0.1),
        )

    _check_mc(net, x, a, hidden=1, width=64, samples=(300, 60), seed=0)


@pytest.mark.slow
def test_monte_carlo_two_hidden_layers():
    x, a = _data(3, 2, (5,), seed=12)

    def net(out):
        return serial(
            Conv1d(64, 3, padding="same", w_std=1.4, b_std=0.2),
            ReLU(),
            Aggregate(),
            Conv1d(64, 3, padding="same", w_std=1.2, b_std=0.1),
            Erf(),
            Aggregate(),
            GlobalAvgPool(),
            Dense(out),
        )

    _check_mc(net, x, a, hidden=2, width=128, samples=(400, 80), seed=1)


# ----------------------------------------------------------------------------- the API
def test_parser_knows_aggregate():
    x, a = _data(3, 3, (5,), seed=13)
    parsed = parse_net(
        "Conv1d(8, 3, padding='same', b_std=0.1) -> ReLU -> Aggregate -> GlobalAvgPool -> Dense(1)"
    )
    built = serial(
        Conv1d(8, 3, padding="same", b_std=0.1), ReLU(), Aggregate(), GlobalAvgPool(), Dense(1)
    )
    assert parsed == built
    torch.testing.assert_close(parsed.kernel(x, pattern=a).ntk, built.kernel(x, pattern=a).ntk)


def test_errors_name_the_argument():
    x, a = _data(3, 3, (5,), seed=14)
    net = serial(Conv1d(8, 3, padding="same"), Aggregate(), GlobalAvgPool(), Dense(1))
    with pytest.raises(ValueError, match="pattern="):
        net.kernel(x)
    with pytest.raises(TypeError, match="pair"):
        net.kernel(x, x, pattern=a)
    with pytest.raises(TypeError, match="one tensor"):
        net.kernel(x, pattern=(a, a))
    with pytest.raises(TypeError, match=r"'graph'.*pattern="):
        net.kernel(x, graph=a)
    with pytest.raises(TypeError, match="unexpected keyword argument 'pattern'"):
        serial(Conv1d(8, 3), GlobalAvgPool(), Dense(1)).kernel(x, pattern=a)
    with pytest.raises(ValueError, match=r"`pattern\[1\]`.*2 examples"):
        net.kernel(x, x[:2], pattern=(a, a))
    with pytest.raises(ValueError, match=r"`pattern`.*shape"):
        net.kernel(x, pattern=a[:, :4, :4])
    with pytest.raises(ValueError, match="finite"):
        net.kernel(x, pattern=torch.full_like(a, float("nan")))
    with pytest.raises(ValueError, match="node features"):
        serial(Dense(4), Aggregate()).kernel(torch.ones(2, 3))
    mod = net.module(input_shape=(3, 5), dtype=torch.float64)
    with pytest.raises(ValueError, match="pattern=a"):
        mod(x)


# ----------------------------------------------------------------------------- Neural Tangents
_NT_SCRIPT = """
import sys

import numpy as np
import jax
jax.config.update("jax_enable_x64", True)
from neural_tangents import stax

d = np.load(sys.argv[1])
agg = dict(aggregate_axis=2, batch_axis=0, channel_axis=1)
conv = dict(padding="SAME", dimension_numbers=("NCH", "OIH", "NCH"))
_, _, kernel_fn = stax.serial(
    stax.Aggregate(**agg),
    stax.Conv(1, (1,), W_std=1.3, b_std=0.2, **conv),
    stax.Relu(),
    stax.Aggregate(**agg),
    stax.Conv(1, (3,), W_std=1.1, b_std=0.1, **conv),
    stax.Erf(),
    stax.GlobalAvgPool(channel_axis=1),
    stax.Dense(1, W_std=1.0, b_std=0.0),
)
k = kernel_fn(d["x1"], d["x2"], ("nngp", "ntk"), pattern=(d["a1"], d["a2"]), channel_axis=1)
np.savez(sys.argv[2], nngp=np.asarray(k.nngp), ntk=np.asarray(k.ntk))
"""


@pytest.mark.slow  # importing JAX alone takes ~30-60 s on the shared machine
@pytest.mark.skipif(NT_PYTHON is None, reason="Neural Tangents environment not installed")
def test_matches_neural_tangents(tmp_path):
    x1, a1 = _data(4, 3, (7,), seed=15)
    x2, a2 = _data(3, 3, (7,), seed=16)
    nt = run_npz_worker(
        _NT_SCRIPT, tmp_path, "aggregate_worker.py", timeout=300, probe=True,
        x1=x1.numpy(), x2=x2.numpy(), a1=a1.numpy(), a2=a2.numpy(),
    )  # fmt: skip
    net = serial(
        Aggregate(),
        Conv1d(1, 1, padding="same", w_std=1.3, b_std=0.2),
        ReLU(),
        Aggregate(),
        Conv1d(1, 3, padding="same", w_std=1.1, b_std=0.1),
        Erf(),
        GlobalAvgPool(),
        Dense(1),
    )
    k = net.kernel(x1, x2, pattern=(a1, a2))
    np.testing.assert_allclose(k.nngp.numpy(), nt["nngp"], rtol=1e-10, atol=0)
    np.testing.assert_allclose(k.ntk.numpy(), nt["ntk"], rtol=1e-10, atol=0)
