"""Convolution/pooling kernels against exact (non-statistical) routes, identities and invariants.

Exact route for linear nets: for a bias-free linear network with ``"ntk"``
parameterization, ``f(x)`` is multilinear in the weight tensors
``W1, ..., WL`` (i.i.d. N(0, 1) entries), so

    E[f(x)[i] f(x')[j]] = Σ_{e1, ..., eL} f_e(x)[i] f_e(x')[j]

where ``f_e`` is the finite module with every weight tensor set to a one-hot
``e_l`` (``E[W_a W_b] = δ_ab`` per layer, layers independent).  For linear
nets the kernel rule is exact at any width (no activation concentrates), so
width 1 suffices and the comparison is at float64 round-off (1e-12).  This
checks padding, stride and the full-layout shifted-pair sums independently of
the kernel code: the module uses ``F.pad`` + ``F.conv2d``/``F.avg_pool2d``.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from widelimit.empirical import empirical_ntk
from widelimit.layers import Dense, Erf, FanInSum, FanOut, ReLU, parallel, serial
from widelimit.layers.conv import Conv1d, Conv2d
from widelimit.layers.dense import input_kernel
from widelimit.layers.pooling import AvgPool1d, AvgPool2d, Flatten, GlobalAvgPool

TOL = 1e-12


def _images(n=3, c=2, h=7, w=6, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, w, generator=g, dtype=torch.float64)


def _exact_linear(net, x: torch.Tensor) -> torch.Tensor:
    """``E[f(x)[i] f(x)[j]]`` by one-hot enumeration; ``(N, N, P, P)``, positions flattened."""
    mod = net.module(1, input_shape=tuple(x.shape[1:]), seed=0, dtype=torch.float64)
    params = list(mod.parameters())
    total = torch.zeros(())
    with torch.no_grad():
        for combo in itertools.product(*[range(p.numel()) for p in params]):
            for p, c in zip(params, combo, strict=True):
                p.zero_()
                p.view(-1)[c] = 1.0
            f = mod(x)[:, 0]  # (N, *S) one output channel
            f = f.reshape(f.shape[0], -1)
            total = total + torch.einsum("ni,mj->nmij", f, f)
    return total


def _full_as_matrix(t: torch.Tensor) -> torch.Tensor:
    """Full layout ``(N1, N2, S1, S1', ...)`` -> ``(N1, N2, P, P')``, positions row-major."""
    n_sp = (t.ndim - 2) // 2
    perm = [0, 1] + [2 + 2 * a for a in range(n_sp)] + [3 + 2 * a for a in range(n_sp)]
    t = t.permute(perm)
    p = int(torch.tensor(t.shape[2 : 2 + n_sp]).prod())
    return t.reshape(t.shape[0], t.shape[1], p, p)


def _full_kernel(net, x, x2=None):
    """Apply the spec to the full-layout input kernel (whatever the layers need)."""
    return net.transform_kernel(input_kernel(x, x2, full_spatial=True, ntk=True))


# ---------------------------------------------------------------- exact routes
@pytest.mark.parametrize("padding", ["valid", "same", "circular"])
@pytest.mark.parametrize("stride", [1, 2])
def test_linear_cnn_matches_exact_enumeration(padding: str, stride: int) -> None:
    x = _images()
    net = serial(
        Conv2d(1, (3, 2), stride=stride, padding=padding, w_std=1.3),
        Conv2d(1, 2, padding=padding, w_std=0.7),
    )
    k = _full_kernel(net, x)
    exact = _exact_linear(net, x)
    assert torch.allclose(_full_as_matrix(k.nngp), exact, atol=TOL, rtol=0)
    # the diagonal layout is the diagonal of the full one
    kd = net.transform_kernel(input_kernel(x, None, full_spatial=False, ntk=True))
    assert kd.nngp.shape == (3, 3, *k.spatial)
    diag = torch.diagonal(_full_as_matrix(k.nngp), dim1=2, dim2=3)
    assert torch.allclose(kd.nngp.reshape(3, 3, -1), diag, atol=TOL, rtol=0)
    diag_ntk = torch.diagonal(_full_as_matrix(k.ntk), dim1=2, dim2=3)
    assert torch.allclose(kd.ntk.reshape(3, 3, -1), diag_ntk, atol=TOL, rtol=0)
    assert torch.allclose(kd.cov1, torch.diagonal(kd.nngp, dim1=0, dim2=1).movedim(-1, 0))


@pytest.mark.parametrize("padding", ["valid", "same", "circular"])
def test_linear_cnn_with_pooling_matches_exact_enumeration(padding: str) -> None:
    x = _images()
    conv = Conv2d(1, 2, padding=padding, w_std=1.1)
    for tail in (AvgPool2d(2, 1, padding=padding), AvgPool2d((3, 2), 2, padding=padding)):
        net = serial(conv, tail)
        exact = _exact_linear(net, x)
        assert torch.allclose(_full_as_matrix(_full_kernel(net, x).nngp), exact, atol=TOL, rtol=0)
    net = serial(conv, AvgPool2d(2), Conv2d(1, 2, padding=padding), GlobalAvgPool())
    exact = _exact_linear(net, x)[..., 0, 0]
    k = net.kernel(x)
    assert k.nngp.shape == (3, 3) and not k.full_spatial
    assert torch.allclose(k.nngp, exact, atol=TOL, rtol=0)
    net = serial(conv, Conv2d(1, 2, stride=2, padding=padding), Flatten())
    # Flatten keeps one feature per (channel, position): the kernel is the mean of the diagonal
    exact = _exact_linear(serial(conv, Conv2d(1, 2, stride=2, padding=padding)), x)
    k = net.kernel(x)
    assert torch.allclose(k.nngp, torch.diagonal(exact, dim1=2, dim2=3).mean(-1), atol=TOL)


@pytest.mark.parametrize("padding", ["valid", "same", "circular"])
def test_linear_conv1d_matches_exact_enumeration(padding: str) -> None:
    x = _images()[:, :, :, 0]  # (N, C, L)
    net = serial(Conv1d(1, 3, stride=2, padding=padding, w_std=1.2), AvgPool1d(2, 1, padding))
    exact = _exact_linear(net, x)
    assert torch.allclose(_full_as_matrix(_full_kernel(net, x).nngp), exact, atol=TOL, rtol=0)


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
@pytest.mark.parametrize("padding", ["valid", "same", "circular"])
def test_single_conv_ntk_equals_its_empirical_ntk(parameterization: str, padding: str) -> None:
    """One affine layer: the empirical NTK does not depend on the weights, so it is exact.

    Standard parameterization: Θ = n·A(Σ⁰) + 1 with fan-in n = C·|window|.
    """
    x = _images(c=3)
    net = Conv2d(5, (3, 2), stride=(1, 2), padding=padding, w_std=1.4, b_std=0.3,
                 parameterization=parameterization)  # fmt: skip
    k = net.kernel(x)
    mod = net.module(input_shape=x.shape[1:], seed=1, dtype=torch.float64)
    assert torch.allclose(k.ntk, empirical_ntk(mod, x), atol=TOL, rtol=0)


# ------------------------------------------------------- closed-form identities
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_1x1_conv_is_dense_per_pixel(parameterization: str) -> None:
    x = _images(c=3)
    kw = {"w_std": 1.5, "b_std": 0.2, "parameterization": parameterization}
    conv_net = serial(Conv2d(7, 1, **kw), ReLU(), Conv2d(4, 1, **kw))
    dense_net = serial(Dense(7, **kw), ReLU(), Dense(4, **kw))
    # Dense on images is per position; Layer.kernel refuses a dense-only net on images
    # (it needs Flatten), so the dense side goes through the layer rules directly.
    per_pixel = dense_net.transform_kernel(input_kernel(x, None, full_spatial=False, ntk=True))
    for kc, kd in (
        (conv_net.kernel(x), per_pixel),
        (_full_kernel(conv_net, x), _full_kernel(dense_net, x)),
    ):
        assert torch.allclose(kc.nngp, kd.nngp, atol=TOL)
        assert torch.allclose(kc.ntk, kd.ntk, atol=TOL)
    mc = conv_net.module(input_shape=x.shape[1:], seed=4, dtype=torch.float64)
    md = dense_net.module(input_shape=x.shape[1:], seed=4, dtype=torch.float64)
    assert torch.allclose(mc(x), md(x), atol=1e-13)


@pytest.mark.parametrize("readout", [GlobalAvgPool(), Flatten()])
def test_circular_cnn_on_constant_images_is_a_dense_net(readout) -> None:
    """A constant image stays constant under circular conv: the CNN kernel is the MLP kernel."""
    g = torch.Generator().manual_seed(2)
    v = torch.randn(4, 3, generator=g, dtype=torch.float64)
    x = v[:, :, None, None].expand(4, 3, 5, 4).contiguous()
    cnn = serial(
        Conv2d(8, 3, padding="circular", w_std=1.4, b_std=0.1), ReLU(),
        Conv2d(8, (2, 3), padding="circular", w_std=1.2), Erf(), readout, Dense(1, b_std=0.3),
    )  # fmt: skip
    mlp = serial(Dense(8, w_std=1.4, b_std=0.1), ReLU(), Dense(8, w_std=1.2), Erf(),
                 Dense(1, b_std=0.3))  # fmt: skip
    kc, km = cnn.kernel(x), mlp.kernel(v)
    assert torch.allclose(kc.nngp, km.nngp, atol=TOL) and torch.allclose(kc.ntk, km.ntk, atol=TOL)
    # zero padding sees the border: the same net with padding="same" must differ
    same = cnn.map_layers(
        lambda l: (
            Conv2d(l.out_channels, l.kernel_size, padding="same", w_std=l.w_std, b_std=l.b_std)
            if isinstance(l, Conv2d)
            else l
        )
    )
    assert (same.kernel(x).nngp - km.nngp).abs().max() > 1e-3


def test_translation_equivariance_with_circular_padding() -> None:
    x1, x2 = _images(n=2, seed=3), _images(n=3, seed=4)
    body = serial(
        Conv2d(8, 3, padding="circular", w_std=1.5, b_std=0.1), ReLU(),
        Conv2d(8, (2, 3), padding="circular", w_std=1.3), ReLU(), Conv2d(8, 3, padding="circular"),
    )  # fmt: skip
    shift = (2, -1)

    def roll(t):
        return torch.roll(t, shift, dims=(-2, -1))

    k, kr = body.kernel(x1, x2), body.kernel(roll(x1), roll(x2))
    assert torch.allclose(kr.nngp, roll(k.nngp), atol=TOL)
    assert torch.allclose(kr.ntk, roll(k.ntk), atol=TOL)
    # full layout rolls along both position axes of each pair
    kf, kfr = _full_kernel(body, x1, x2), _full_kernel(body, roll(x1), roll(x2))
    rolled = torch.roll(kf.nngp, (shift[0], shift[0], shift[1], shift[1]), dims=(2, 3, 4, 5))
    assert torch.allclose(kfr.nngp, rolled, atol=TOL)
    net = serial(body, ReLU(), GlobalAvgPool(), Dense(1))
    assert torch.allclose(net.kernel(roll(x1), roll(x2)).ntk, net.kernel(x1, x2).ntk, atol=TOL)


# ------------------------------------------------------------------ invariants
ARCHS = {
    "gap-same": serial(Conv2d(8, 3, padding="same", w_std=1.4, b_std=0.1), ReLU(),
                       Conv2d(8, 3, stride=2, padding="same"), ReLU(), GlobalAvgPool(), Dense(1)),
    "flatten-valid": serial(Conv2d(8, 2, w_std=1.4), Erf(), Conv2d(8, 2), ReLU(), Flatten(),
                            Dense(1, parameterization="standard")),
    "avgpool-circ": serial(Conv2d(8, 3, padding="circular", parameterization="standard"), ReLU(),
                           AvgPool2d(2), Conv2d(8, 2, padding="circular", b_std=0.5), ReLU(),
                           Flatten(), Dense(1)),
    "residual": serial(Conv2d(8, 3, padding="same"), FanOut(2),
                       parallel(serial(ReLU(), Conv2d(8, 3, padding="same")),
                                Conv2d(8, 1)), FanInSum(), ReLU(), GlobalAvgPool(), Dense(1)),
}  # fmt: skip


@pytest.mark.parametrize("name", list(ARCHS))
def test_kernels_symmetric_psd_and_consistent(name: str) -> None:
    x = _images(n=6, h=5, w=5, seed=5)
    x[1] = 0.9 * x[0] + 0.1 * x[1]  # nearly collinear pair: stresses PSD
    net = ARCHS[name]
    k = net.kernel(x)
    assert k.nngp.shape == (6, 6) and k.nngp.dtype == torch.float64
    for t in (k.nngp, k.ntk):
        assert torch.equal(t, t.T)
        ev = torch.linalg.eigvalsh(t)
        assert ev.min() >= -1e-12 * ev.max()
    kxx = net.kernel(x, x)  # the x2 path (cov2 tracked) agrees with the symmetric one
    assert torch.allclose(kxx.nngp, k.nngp, atol=TOL) and torch.allclose(kxx.ntk, k.ntk, atol=TOL)
    k2 = net.kernel(x[:2], x[2:])
    assert torch.allclose(k2.nngp, k.nngp[:2, 2:], atol=TOL)
    # the spatial covariance of all positions of all images is itself PSD
    body = net.layers[0] if name == "residual" else serial(*net.layers[:3])
    m = _full_as_matrix(_full_kernel(body, x).nngp)
    n, p = m.shape[0], m.shape[2]
    big = m.permute(0, 2, 1, 3).reshape(n * p, n * p)
    assert torch.allclose(big, big.T, atol=TOL)
    ev = torch.linalg.eigvalsh(big)
    assert ev.min() >= -1e-12 * ev.max()


def test_float32_inputs_keep_dtype_and_agree_with_float64() -> None:
    x = _images(n=4, h=5, w=5, seed=7)
    net = ARCHS["avgpool-circ"]
    k64, k32 = net.kernel(x), net.kernel(x.float())
    assert k32.nngp.dtype == torch.float32 and k32.ntk.dtype == torch.float32
    # float32 round-off through a few layers: relative 1e-5 of the kernel scale
    for a, b in ((k64.nngp, k32.nngp), (k64.ntk, k32.ntk)):
        assert (a - b.double()).abs().max() <= 1e-5 * a.abs().max()
    mod = net.module(8, input_shape=x.shape[1:], seed=0, dtype=torch.float32)
    assert mod(x.float()).dtype == torch.float32
