"""``all_finite`` (the input check of every kernel) agrees with the per-entry test."""

from __future__ import annotations

import warnings

import pytest
import torch

from widelimit._validation import all_finite


def _cases() -> list[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 7, generator=g)
    nan, inf = x.clone(), x.clone()
    nan[3, 4], inf[49, 6] = float("nan"), float("-inf")
    huge = torch.full((10,), 3e38)  # finite entries whose float32 sum overflows
    both = huge.clone()
    both[2], both[3] = float("inf"), float("-inf")  # sum is NaN
    return [
        ("finite", x), ("float64", x.double()), ("transposed", x.T), ("strided", x[:, ::2]),
        ("nan", nan), ("inf", inf), ("overflowing sum", huge), ("inf and -inf", both),
        ("negative view", torch._neg_view(x)), ("negative view nan", torch._neg_view(nan)),
        ("requires grad", x.clone().requires_grad_()), ("empty", x[:0]),
    ]  # fmt: skip


@pytest.mark.parametrize(("name", "t"), _cases(), ids=[c[0] for c in _cases()])
def test_all_finite_equals_per_entry_test(name, t):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow RuntimeWarning from the fast sum
        assert all_finite(t) == bool(torch.isfinite(t.detach()).all())
