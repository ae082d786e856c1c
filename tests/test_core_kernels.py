"""Invariants of the kernel recursion: symmetry, PSD, consistency, degenerate inputs, errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from widelimit import Kernel
from widelimit.layers import (
    Dense,
    Erf,
    FanInSum,
    FanOut,
    Identity,
    ReLU,
    Tanh,
    parallel,
    serial,
)

ACTS = [ReLU(), Erf(), Tanh()]


def _min_eig_ok(m: torch.Tensor, rtol: float = 1e-10) -> bool:
    ev = torch.linalg.eigvalsh(m)
    return bool(ev[0] >= -rtol * max(1.0, float(ev[-1].abs())))


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 6),
    d=st.integers(1, 5),
    depth=st.integers(1, 3),
    act=st.sampled_from(range(len(ACTS))),
    w_std=st.floats(0.1, 3.0),
    b_std=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
    param=st.sampled_from(["ntk", "standard"]),
)
def test_kernels_symmetric_psd_and_consistent(n, d, depth, act, w_std, b_std, seed, param):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * 2
    layers = []
    for _ in range(depth):
        layers += [Dense(16, w_std, b_std, param), ACTS[act]]
    net = serial(*layers, Dense(1, w_std, b_std, param))
    k = net.kernel(x)
    for m in (k.nngp, k.ntk):
        assert torch.isfinite(m).all()
        torch.testing.assert_close(m, m.T, rtol=0, atol=0)
        assert _min_eig_ok(m)
    # diagonal of the full kernel == the separately tracked variances
    torch.testing.assert_close(k.nngp.diagonal(), k.cov1, rtol=1e-12, atol=1e-14)
    # k(X) == k(X, X).  k(X) sets c = 1 exactly on its diagonal; k(X, X) computes c from a
    # matmul and row sums that round differently, and arccos(1 − O(ulp)) is off by
    # O(√ulp) ≈ 1.5e-8 (ReLU NTK); quadrature rules add their ≤ 1e-8 accuracy.
    tol = {"rtol": 1e-7, "atol": 1e-12}
    k2 = net.kernel(x, x)
    torch.testing.assert_close(k.nngp, k2.nngp, **tol)
    torch.testing.assert_close(k.ntk, k2.ntk, **tol)
    # cross kernel blocks equal the joint kernel's blocks
    if n > 1:
        kx = net.kernel(x[:1], x[1:])
        torch.testing.assert_close(kx.nngp, k.nngp[:1, 1:], **tol)
        torch.testing.assert_close(kx.ntk, k.ntk[:1, 1:], **tol)


def test_dense_only_net_is_exact_linear_kernel() -> None:
    """Independent route: a linear net's NNGP is σw² x·x'/d + σb² composed per layer."""
    x = torch.randn(5, 3, dtype=torch.float64)
    net = serial(Dense(7, 1.5, 0.3), Dense(1, 0.7, 0.2))
    s0 = x @ x.T / 3
    s1 = 1.5**2 * s0 + 0.3**2
    s2 = 0.7**2 * s1 + 0.2**2
    th = s2 + 0.7**2 * s1  # Θ2 = Σ2 + σw² Θ1, Θ1 = Σ1
    k = net.kernel(x)
    torch.testing.assert_close(k.nngp, s2)
    torch.testing.assert_close(k.ntk, th)


def test_relu_one_layer_against_one_dimensional_quadrature() -> None:
    """Σ' for ReLU at c = 1 is q/2: independent check of the arc-cosine formula."""
    x = torch.randn(4, 6, dtype=torch.float64)
    k = serial(Dense(1, 2.0), ReLU()).kernel(x)
    q = 4.0 * (x * x).sum(1) / 6
    torch.testing.assert_close(k.cov1, q / 2)
    torch.testing.assert_close(k.nngp.diagonal(), q / 2)


@pytest.mark.parametrize("scale", [0.0, 1e-6, 1e6])
def test_degenerate_inputs_give_finite_psd_kernels(scale: float) -> None:
    x = torch.randn(4, 3, dtype=torch.float64) * scale
    x = torch.cat([x, x[:1], torch.zeros(1, 3, dtype=torch.float64)])  # duplicate + zero row
    for act in ACTS:
        for b_std in (0.0, 0.1):
            net = serial(Dense(8, 1.5, b_std), act, Dense(8, 1.5, b_std), act, Dense(1))
            k = net.kernel(x)
            for m in (k.nngp, k.ntk):
                assert torch.isfinite(m).all(), (act, b_std, scale)
                assert _min_eig_ok(m, rtol=1e-9), (act, b_std, scale)
            # duplicated points have identical rows
            torch.testing.assert_close(k.nngp[0], k.nngp[4])


def test_residual_mlp_kernel_is_sum_of_branches() -> None:
    x = torch.randn(3, 4, dtype=torch.float64)
    trunk = Dense(8, 1.2, 0.1)
    branch = serial(ReLU(), Dense(8, 1.3, 0.0))
    res = serial(trunk, FanOut(2), parallel(Identity(), branch), FanInSum())
    k = res.kernel(x)
    kt = trunk.kernel(x)
    kb = serial(trunk, branch).kernel(x)
    torch.testing.assert_close(k.nngp, kt.nngp + kb.nngp)
    torch.testing.assert_close(k.ntk, kt.ntk + kb.ntk)


def test_kernel_is_frozen_and_shapes_fixed() -> None:
    x = torch.randn(3, 2, dtype=torch.float64)
    k = serial(Dense(4), ReLU(), Dense(1)).kernel(x, get="nngp")
    assert isinstance(k, Kernel) and k.ntk is None and k.nngp.shape == (3, 3)
    with pytest.raises(AttributeError):
        k.nngp = k.nngp  # type: ignore[misc]


def test_dtype_and_device_follow_inputs() -> None:
    net = serial(Dense(4, 1.5), Tanh(), Dense(1))
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(3, 2, dtype=dtype)
        k = net.kernel(x)
        assert k.nngp.dtype == dtype and k.ntk.dtype == dtype
        assert k.nngp.device == x.device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda() -> None:  # pragma: no cover - no GPU in CI
    x = torch.randn(3, 2, dtype=torch.float64)
    net = serial(Dense(4, 1.5), Tanh(), Dense(1))
    k_cpu = net.kernel(x)
    k_gpu = net.kernel(x.cuda())
    torch.testing.assert_close(k_gpu.ntk.cpu(), k_cpu.ntk)


def test_module_initialisation_matches_parameterization() -> None:
    torch.manual_seed(0)
    for param, w_expected in (("ntk", 1.0), ("standard", 1.5**2 / 400)):
        m = Dense(2000, 1.5, 0.5, param).module(input_shape=400, seed=1)
        var = float(m.weight.detach().var())
        # sample variance of 8e5 Gaussians: relative sd sqrt(2/8e5) = 1.6e-3
        assert abs(var / w_expected - 1) < 6 * math.sqrt(2 / m.weight.numel())


def test_module_seed_reproducible_and_width_override() -> None:
    net = serial(Dense(5), ReLU(), Dense(5), ReLU(), Dense(2))
    m1 = net.module(64, input_shape=3, seed=3)
    m2 = net.module(64, input_shape=3, seed=3)
    x = torch.randn(2, 3)
    torch.testing.assert_close(m1(x), m2(x))
    shapes = [p.shape for p in m1.parameters()]
    assert shapes[0] == (64, 3) and shapes[-1] == (2, 64)
    assert net.output_shape(3) == (2,)


# ------------------------------------------------------------------ errors
def test_errors_are_clear() -> None:
    net = serial(Dense(4), ReLU(), Dense(1))
    x = torch.randn(3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="same per-example shape"):
        net.kernel(x, torch.randn(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="non-finite"):
        net.kernel(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="non-finite"):
        net.kernel(x, torch.tensor([[1.0, float("inf")]], dtype=torch.float64))
    with pytest.raises(ValueError, match="w_std"):
        Dense(3, w_std=-1.0)
    with pytest.raises(ValueError, match="b_std"):
        Dense(3, b_std=float("nan"))
    with pytest.raises(ValueError, match="parameterization"):
        Dense(3, parameterization="mup")
    with pytest.raises(TypeError, match="dtype"):
        net.kernel(x, torch.randn(2, 2, dtype=torch.float32))
    with pytest.raises(ValueError, match="empty"):
        net.kernel(torch.zeros(0, 2))
    with pytest.raises(ValueError, match="dimensions"):
        net.kernel(torch.zeros(3))
    with pytest.raises(ValueError, match="get"):
        net.kernel(x, get="foo")
    with pytest.raises(TypeError, match="forget the parentheses"):
        serial(Dense(3), ReLU)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must follow an affine layer"):
        serial(ReLU(), Dense(1)).kernel(x)
    with pytest.raises(ValueError, match="FanInSum"):
        serial(Dense(3), FanOut(2)).kernel(x)
    with pytest.raises(ValueError, match="branches"):
        serial(Dense(3), FanOut(2), parallel(ReLU(), ReLU()), FanInSum()).kernel(x)
    with pytest.raises(ValueError, match="parallel"):
        serial(Dense(3), FanOut(2), parallel(Identity()), FanInSum()).kernel(x)
    with pytest.raises(ValueError, match="width"):
        net.module(0, input_shape=2)
    with pytest.raises(TypeError, match="x1"):
        net.kernel("not an array")  # type: ignore[arg-type]
