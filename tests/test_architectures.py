"""Residual blocks (MLP and CNN, with branch scaling), LayerNorm, Dropout, Multiply; clear errors.

Monte Carlo error model as in ``test_conv_monte_carlo.py``: ``|analytic − MC|
≤ Z·sem + bias`` with ``Z = 4.5`` and a finite-width bias allowance
``BIAS_C·max|K|/width`` (``BIAS_C = 3``) for nets with two or more hidden
nonlinearities or a LayerNorm (whose normaliser ``1/√(mean_c x_c²)`` has an
``O(1/width)`` bias from the fluctuation of the channel variance).
"""

from __future__ import annotations

import pytest
import torch

from test_conv_monte_carlo import _images, check_against_mc
from widelimit.layers import Dense, FanInSum, FanOut, Identity, ReLU, Tanh, parallel, serial
from widelimit.layers.conv import Conv1d, Conv2d
from widelimit.layers.dense import input_kernel
from widelimit.layers.normalization import Dropout, LayerNorm, Multiply
from widelimit.layers.pooling import AvgPool2d, Flatten, GlobalAvgPool
from widelimit.monte_carlo import monte_carlo_kernel


def _vectors(n=4, d=5, seed=1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    x[1] = 0.8 * x[0] + 0.2 * x[1]
    return x


def _res_block(make_branch, alpha: float):
    return serial(
        FanOut(2), parallel(Identity(), serial(make_branch(), Multiply(alpha))), FanInSum()
    )


# ----------------------------------------------------------------- residual
def test_residual_mlp_two_blocks() -> None:
    def branch():
        return serial(ReLU(), Dense(8, w_std=1.4, b_std=0.1), ReLU(), Dense(8, w_std=1.2))

    def make(out):
        return serial(
            Dense(8, w_std=1.2, b_std=0.1), _res_block(branch, 0.8), _res_block(branch, 0.5),
            ReLU(), Dense(out),
        )  # fmt: skip

    check_against_mc(make, _vectors(), hidden=5, seed=11)


def test_residual_cnn_with_gap() -> None:
    def branch():
        # even 2x2 windows: "same" pads 0 before and 1 after
        return serial(ReLU(), Conv2d(8, 2, padding="same", w_std=1.4, b_std=0.1), ReLU(),
                      Conv2d(8, 2, padding="same", w_std=1.2))  # fmt: skip

    def make(out):
        return serial(
            Conv2d(8, 3, padding="same", w_std=1.3), _res_block(branch, 0.7), ReLU(),
            GlobalAvgPool(), Dense(out),
        )  # fmt: skip

    check_against_mc(make, _images(), hidden=3, seed=12)


def test_residual_kernel_is_sum_of_branches() -> None:
    """Kernels of independent branches add: identity branch + α² × conv branch."""
    x = _images(h=5, w=5)
    stem = Conv2d(8, 3, padding="same", w_std=1.3, b_std=0.2)
    branch = serial(ReLU(), Conv2d(8, 3, padding="same", w_std=1.4))
    res = serial(stem, _res_block(lambda: branch, 0.6)).kernel(x)
    k_stem, k_branch = stem.kernel(x), serial(stem, branch).kernel(x)
    assert torch.allclose(res.nngp, k_stem.nngp + 0.36 * k_branch.nngp, atol=1e-12)
    assert torch.allclose(res.ntk, k_stem.ntk + 0.36 * k_branch.ntk, atol=1e-12)
    scaled = serial(stem, Multiply(-2.0)).kernel(x)  # Σ·α², Θ·α²
    assert torch.allclose(scaled.ntk, 4 * k_stem.ntk) and torch.allclose(
        scaled.cov1, 4 * k_stem.cov1
    )


# ---------------------------------------------------------------- LayerNorm
def test_layernorm_dense_monte_carlo() -> None:
    def make(out):
        return serial(
            Dense(8, w_std=1.5, b_std=0.3), LayerNorm(), Tanh(), Dense(8, w_std=1.2, b_std=0.2),
            LayerNorm(), ReLU(), Dense(out),
        )  # fmt: skip

    check_against_mc(make, _vectors(), hidden=2, width=256, seed=13)


def test_layernorm_cnn_full_layout_monte_carlo() -> None:
    """Per-position LayerNorm over channels inside a pooled CNN (full spatial layout)."""

    def make(out):
        return serial(
            Conv2d(8, 3, padding="same", w_std=1.5, b_std=0.2), LayerNorm(), ReLU(),
            AvgPool2d(2, 1), Conv2d(8, 2, padding="valid", w_std=1.3), LayerNorm(), ReLU(),
            GlobalAvgPool(), Dense(out),
        )  # fmt: skip

    check_against_mc(make, _images(), hidden=2, seed=14)


def test_layernorm_unit_variance_and_correlation() -> None:
    """Closed form: Σ' = Σ/√(q q'), so variances become 1 and Σ' is the correlation."""
    x = _images(n=3, h=5, w=5)
    conv = Conv2d(8, 3, padding="same", w_std=1.7, b_std=0.4)
    for k0 in (input_kernel(x, None, full_spatial=fs, ntk=True) for fs in (False, True)):
        k, kn = conv.transform_kernel(k0), serial(conv, LayerNorm(eps=0.0)).transform_kernel(k0)
        q1, q2 = k.variances()
        assert torch.allclose(kn.nngp, k.nngp / (q1 * q2).sqrt(), atol=1e-14)
        assert torch.allclose(kn.ntk, k.ntk / (q1 * q2).sqrt(), atol=1e-14)
        a, b = kn.self_variances(1)
        assert torch.allclose(a, torch.ones_like(a)) and torch.allclose(b, torch.ones_like(b))
        assert kn.nngp.abs().max() <= 1 + 1e-12


# ------------------------------------------------------- Dropout / Multiply
def test_dropout_is_identity_in_kernel_and_eval_module() -> None:
    x = _images()
    net = serial(Conv2d(8, 3, padding="same"), ReLU(), Dropout(0.3), Flatten(), Dense(2))
    plain = serial(Conv2d(8, 3, padding="same"), ReLU(), Flatten(), Dense(2))
    k, kp = net.kernel(x), plain.kernel(x)
    assert torch.equal(k.nngp, kp.nngp) and torch.equal(k.ntk, kp.ntk)
    mod = net.module(16, input_shape=x.shape[1:], seed=0, dtype=torch.float64)
    drop = mod.layers[2]
    assert not drop.training
    h = torch.randn(1000, dtype=torch.float64)
    assert torch.equal(drop(h), h)  # eval mode: identity, as the kernel assumes
    drop.train()
    y = drop(h)
    kept = y != 0
    assert 0.55 < float(kept.double().mean()) < 0.85  # p = 0.3 dropped, ±5σ for 1000 draws
    assert torch.allclose(y[kept], h[kept] / 0.7)


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("net", "shape", "match"),
    [
        (Conv2d(4, 3), (5,), r"Conv2d expects per-example inputs of shape \(C, H, W\)"),
        (Conv2d(4, 3), (2, 6), r"Conv2d expects .*got per-example shape \(2, 6\)"),
        (Conv1d(4, 3), (2, 5, 5), r"Conv1d expects per-example inputs of shape \(C, L\)"),
        (Conv2d(4, 5), (2, 4, 4), r"window 5 along axis H is larger than the input size 4"),
        (serial(Conv2d(4, 3), Conv2d(4, 3)), (2, 4, 4), r"padding='valid'"),
        (Conv2d(4, 11, padding="circular"), (2, 4, 4), r"circular padding of 5 along axis H"),
        (AvgPool2d(5), (2, 4, 4), r"pooling window 5 along axis H is larger than the input"),
        (GlobalAvgPool(), (7,), r"GlobalAvgPool expects per-example inputs"),
        (
            serial(FanOut(2), parallel(Conv2d(4, 3, padding="same"), Conv2d(4, 3)), FanInSum()),
            (2, 5, 5),
            r"FanInSum\(\) branches must have equal shapes",
        ),
        (serial(Conv2d(4, 3, padding="same"), Dense(2)), (2, 5, 5), None),  # valid: per pixel
    ],
)
def test_clear_errors_on_bad_architectures(net, shape, match) -> None:
    x = torch.randn(2, *shape, dtype=torch.float64)
    if match is None:
        net.kernel(x)
        return
    with pytest.raises(ValueError, match=match):
        net.kernel(x)
    with pytest.raises(ValueError, match=match):
        net.module(input_shape=shape)


def test_clear_errors_on_bad_arguments() -> None:
    with pytest.raises(ValueError, match="`padding` must be one of"):
        Conv2d(4, 3, padding="SAME")
    with pytest.raises(ValueError, match="`kernel_size` must be an int or a sequence of 2"):
        Conv2d(4, (3, 3, 3))
    with pytest.raises(ValueError, match="`stride` must be a positive integer"):
        Conv1d(4, 3, stride=0)
    with pytest.raises(TypeError, match="`out_channels` must be a positive integer"):
        Conv2d(4.5, 3)
    with pytest.raises(ValueError, match="`parameterization` must be one of"):
        Conv2d(4, 3, parameterization="mup")
    with pytest.raises(ValueError, match="`w_std` must be a finite number >= 0"):
        Conv2d(4, 3, w_std=-1)
    with pytest.raises(ValueError, match=r"`rate` must be in \[0, 1\)"):
        Dropout(1.0)
    with pytest.raises(ValueError, match="`alpha` must be finite"):
        Multiply(float("inf"))
    x = _images()
    with pytest.raises(ValueError, match="LayerNorm must follow an affine layer"):
        serial(LayerNorm(), Conv2d(4, 3)).kernel(x)
    with pytest.raises(ValueError, match="needs the full spatial covariance"):
        AvgPool2d(2).transform_kernel(input_kernel(x, None, full_spatial=False, ntk=False))
    flat = serial(Conv2d(4, 3), Flatten(), Conv2d(4, 1))
    with pytest.raises(ValueError, match="Conv2d expects"):
        flat.kernel(x)


def test_monte_carlo_of_dropout_net_matches_kernel() -> None:
    """Dropout modules come in eval mode, so sampled nets agree with the identity rule."""

    def make(out):
        return serial(Conv1d(8, 3, padding="same", w_std=1.5), ReLU(), Dropout(0.5),
                      Flatten(), Dense(out))  # fmt: skip

    x = _images()[:, :, 0, :].contiguous()
    check_against_mc(make, x, hidden=1, seed=15)
    mc = monte_carlo_kernel(make(1), x, width=16, n_samples=3, get="nngp")
    assert torch.isfinite(mc.nngp).all()
