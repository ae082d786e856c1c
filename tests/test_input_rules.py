"""Input rules of the Python API (docs/errors.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import widelimit as wl
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


# --------------------------------------------------------------------------- issue 24, crashes
@pytest.mark.parametrize(
    ("build", "name"),
    [
        (lambda: Dense(8, w_std=1e200), "w_std"),
        (lambda: Dense(8, b_std=1e160), "b_std"),
        (lambda: Conv1d(8, 3, w_std=1e200), "w_std"),
        (lambda: wl.ConvTranspose2d(8, 3, b_std=1e200), "b_std"),
        (lambda: wl.ConvLocal1d(8, 3, w_std=1e200), "w_std"),
        (lambda: wl.GlobalSelfAttention(w_std_value=1e200), "w_std_value"),
        (lambda: wl.GlobalSelfAttention(pos_emb="sum", pos_emb_std=1e200), "pos_emb_std"),
        (lambda: wl.Multiply(-1e200), "alpha"),
    ],
)
def test_issue24_std_whose_square_overflows_is_refused(build, name) -> None:
    """Was ``internal error OverflowError`` (Python's float ``**`` in the kernel)."""
    with pytest.raises(ValueError, match=rf"`{name}` = .*too large.*square"):
        net = serial(build())
        net.kernel(torch.randn(2, 3, 5, dtype=torch.float64))
    ok = Dense(8, w_std=1e150)  # the square 1e300 is finite: still accepted
    k = serial(ok).kernel(torch.ones(1, 2, dtype=torch.float64)).nngp  # σw²·x·x/d
    assert float(k) == pytest.approx(1e300, rel=1e-12)


def test_issue24_repeat_refuses_huge_counts_before_building() -> None:
    import tracemalloc

    from widelimit.layers.combinators import MAX_REPEAT

    tracemalloc.start()
    with pytest.raises(
        ValueError, match=rf"repeat `n` = 1000000000 is above the limit {MAX_REPEAT}"
    ):
        wl.repeat(Dense(8), 10**9)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1e6, peak  # nothing of size n was allocated
    assert len(wl.repeat(Dense(8), MAX_REPEAT).layers) == MAX_REPEAT


def test_issue24_meta_device_inputs_are_refused_clearly() -> None:
    x = torch.randn(3, 4, device="meta")
    with pytest.raises(ValueError, match=r"`x1` is on the meta device.*no values"):
        MLP.kernel(x)
    with pytest.raises(ValueError, match=r"`x2` is on the meta device"):
        MLP.kernel(torch.randn(3, 4), x)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_issue24_nonfinite_pos_emb_decay_is_refused_clearly(bad) -> None:
    """Was a raw ``torch.linalg.eigh`` failure (``_LinAlgError``)."""

    def decay(d):
        return torch.where(d > 2, torch.full_like(d, bad), torch.exp(-d))

    net = serial(wl.GlobalSelfAttention(pos_emb="sum", pos_emb_decay=decay))
    with pytest.raises(ValueError, match=r"`pos_emb_decay` returned .* at distance [3-9].*finite"):
        net.kernel(torch.randn(2, 3, 5, dtype=torch.float64))


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
