"""Input rules of the Python API (docs/errors.md)."""

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
