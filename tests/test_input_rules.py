"""Input rules of the Python API (README, "Errors and guarantees")."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from widelimit.layers import Conv1d, Conv2d, Dense, Exp, Flatten, GlobalAvgPool, ReLU, serial
from widelimit.scale import compute_kernel

MLP = serial(Dense(8, 1.4, 0.1), ReLU(), Dense(1))


def test_integer_inputs_become_float64_like_scikit_learn() -> None:
    xi = np.arange(12).reshape(4, 3) % 5
    k = MLP.kernel(torch.as_tensor(xi))
    assert k.nngp.dtype == torch.float64
    ref = MLP.kernel(torch.as_tensor(xi, dtype=torch.float64))
    assert torch.equal(k.nngp, ref.nngp) and torch.equal(k.ntk, ref.ntk)
    assert MLP.kernel(xi.astype(bool)).nngp.dtype == torch.float64


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_refused(dtype, tmp_path) -> None:
    x = torch.randn(4, 3).to(dtype)
    with pytest.raises(TypeError, match=r"half precision is not supported.*x1\.float\(\)"):
        MLP.kernel(x)
    with pytest.raises(TypeError, match="half precision"):
        MLP.kernel(torch.randn(4, 3), x.float().to(dtype))
    with pytest.raises(TypeError, match="half precision"):
        compute_kernel(MLP, x, store=tmp_path / "k.zarr", progress=False)


def test_dense_only_net_on_images_names_flatten() -> None:
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"Flatten\(\)") as err:
        MLP.kernel(x)
    assert "(3, 4, 4)" in str(err.value)
    assert serial(Flatten(), MLP).kernel(x).nngp.shape == (5, 5)
    # per-position dense layers after a convolution stay allowed
    conv = serial(Conv2d(4, 3, padding="same"), ReLU(), Dense(4), GlobalAvgPool(), Dense(1))
    assert conv.kernel(x).nngp.shape == (5, 5)


def test_overflowing_kernel_is_refused_not_returned_as_inf() -> None:
    x = 100 * torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"overflowed or is undefined.*rescale the inputs"):
        serial(Dense(4), Exp(), Dense(1)).kernel(x)
    with pytest.raises(ValueError, match=r"overflowed or is undefined"):  # a cross kernel
        serial(Dense(4), Exp(), Dense(1)).kernel(x[:1] / 100, x)
    with pytest.raises(ValueError, match=r"overflowed or is undefined"):  # spatial tiles
        serial(Conv1d(2, 1), Exp(), Flatten(), Dense(1)).kernel(x[:, None, :])
    k = serial(Dense(4), Exp(), Dense(1)).kernel(x / 100)
    assert bool(torch.isfinite(k.nngp).all())


def test_numpy_negative_strides_big_endian_and_longdouble_are_accepted_not_called_non_numeric():
    """Issue 24: these arrays were refused as "not numeric array-like"."""
    x = np.random.default_rng(0).normal(size=(5, 3))
    x2 = x[1:4] * 0.5
    ref = MLP.kernel(torch.as_tensor(x[::-1].copy()), torch.as_tensor(x2.copy()))
    for a in (x[::-1], x.astype(">f8")[::-1], x[:, ::-1][:, ::-1][::-1]):
        k = MLP.kernel(a, x2.astype(">f8"))
        assert k.nngp.dtype == torch.float64
        assert torch.equal(k.nngp, ref.nngp) and torch.equal(k.ntk, ref.ntk)
    assert MLP.kernel(x.astype(">f4")).nngp.dtype == torch.float32
    if np.dtype(np.longdouble).itemsize > 8:  # extended precision on this platform
        with pytest.warns(UserWarning, match="extended precision.*converted to float64"):
            k = MLP.kernel(x[::-1].astype(np.longdouble), x2)
        assert torch.equal(k.nngp, ref.nngp)
    with pytest.raises(TypeError, match="numeric array-like; got ndarray of dtype <U"):
        MLP.kernel(np.array([["a", "b"]]))
