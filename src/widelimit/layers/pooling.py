"""Pooling and flattening: ``AvgPool1d/2d``, ``SumPool1d/2d``, ``GlobalAvgPool``,
``GlobalSumPool``, ``Flatten``.

All of them are linear maps without parameters, so (Novak et al. 2019, §3.2)
for a linear map ``y = P x`` applied per channel::

    Σ'(x, x') = P Σ(x, x') Pᵀ          Θ' = P Θ Pᵀ

* ``AvgPool`` (window ``k``, stride ``s``, padding as in :mod:`conv`; padded
  zeros count in the mean, like torch's ``count_include_pad=True``): per axis
  ``Σ'[i, j] = (1/k²) Σ_{a, b} Σ[s·i + a − before, s·j + b − before]``, a mean
  over windows on both sides.  It mixes positions, so the network tracks the
  full spatial layout.
* ``SumPool`` (same arguments): the window *sum*, ``k × AvgPool``, so
  ``Σ' = k² · AvgPool(Σ)`` (``k = |window|``).  Padded zeros add nothing, so with
  ``padding="same"`` a window at the edge sums its valid entries only — the same
  numbers as Neural Tangents' ``SumPool`` (whose default stride is 1; ours, like
  torch's pooling, is the window).
* ``GlobalAvgPool``: ``Σ' = (1/|S|²) Σ_{i, j} Σ[i, j]`` (full layout needed);
  ``GlobalSumPool``: the sum over positions, ``Σ' = Σ_{i, j} Σ[i, j] = |S|² ·
  GlobalAvgPool(Σ)``.
* ``Flatten``: features ``(c, i)`` with fan-in ``C·|S|`` for the next
  ``Dense``; its input covariance ``(1/(C|S|)) Σ_{c,i} x_{c,i} x'_{c,i}`` is the
  mean of the spatial *diagonal*, ``Σ' = (1/|S|) Σ_i Σ[i, i]`` — only the
  diagonal is needed, so a CNN + Flatten readout stays in the cheap layout.

Masked inputs (``mask=`` side input, :mod:`widelimit.layers.masking`): ``AvgPool``
reads masked positions as zeros (they still count in the window's mean, like
padding) and keeps the mask at each window's centre; ``GlobalAvgPool`` averages
over the unmasked positions only, ``Σ' = Σ_{i,j} m[i] m'[j] Σ[i, j] / (|m| |m'|)``;
``Flatten`` zeroes the masked positions.  Both drop the mask.

The outputs of these maps applied to a Gaussian layer are still zero-mean
Gaussian, so ``is_gaussian`` is kept (``FanInSum`` may add them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from widelimit.kernel import Kernel
from widelimit.layers.base import KernelLike, Layer, ShapeLike, single_kernel, single_shape
from widelimit.layers.conv import (
    as_tuple,
    axis_window,
    check_kernel_rank,
    check_padding,
    check_spatial_rank,
    spatial_dims,
    window_mask,
    window_side_out,
    window_sum,
)
from widelimit.layers.masking import (
    MASK,
    drop_mask,
    mask_kernel,
    masked_global_mean,
    prepare_mask,
    with_mask,
)
from widelimit.layers.spatial import AXIS_NAMES, spatial_diagonal


def _needs_full(layer: Layer, k: Kernel) -> None:
    if k.spatial and not k.full_spatial:
        raise ValueError(
            f"{type(layer).__name__} needs the full spatial covariance but got the diagonal "
            "layout; compute kernels through net.kernel(...) (which switches to the full "
            "layout when a pooling layer is present) rather than calling transform_kernel "
            "on a diagonal kernel"
        )


# --------------------------------------------------------------------------
# Average pooling
# --------------------------------------------------------------------------


class AvgPoolModule(nn.Module):
    """Finite average pooling: pad (zeros or wrap-around), then mean over each window."""

    takes_side = True  # reads the mask (widelimit.layers.masking)

    def __init__(self, window, stride, pads, circular: bool) -> None:
        super().__init__()
        self.window, self.stride = window, stride
        self.pad = tuple(p for bef_aft in reversed(pads) for p in bef_aft)
        self.pads = tuple(pads)
        self.mode = "circular" if circular else "constant"

    def forward(self, x: Tensor, mask: Tensor | None = None, **other_side: object) -> Tensor:
        nd = len(self.window)
        if x.ndim != 2 + nd:
            raise ValueError(f"AvgPool{nd}d module expects {2 + nd}-D inputs; got {tuple(x.shape)}")
        if mask is not None:
            x = x * mask.to(x.dtype).unsqueeze(1)
        if any(self.pad):
            x = F.pad(x, self.pad, mode=self.mode)
        pool = F.avg_pool1d if nd == 1 else F.avg_pool2d
        return pool(x, self.window, self.stride)

    def side_out(self, side: dict) -> dict:
        return window_side_out(side, self.pads, self.window, self.stride)

    def extra_repr(self) -> str:
        return f"window={self.window}, stride={self.stride}, pad={self.pad}, mode={self.mode}"


class SumPoolModule(AvgPoolModule):
    """Finite sum pooling: pad (zeros or wrap-around), then sum over each window
    (``|window|`` times the average; padded zeros add nothing)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) * math.prod(self.window)


@dataclass(frozen=True)
class _AvgPool(Layer):
    window: int | tuple[int, ...] = 2
    stride: int | tuple[int, ...] | None = None
    padding: str = "valid"

    mixes_positions: ClassVar[bool] = True
    n_spatial: ClassVar[int] = 2
    pairwise: ClassVar[bool] = True
    side_inputs: ClassVar[tuple[str, ...]] = (MASK,)
    #: mean over the window (AvgPool) or sum (SumPool, ``|window|`` × the mean)
    normalize: ClassVar[bool] = True

    def __post_init__(self) -> None:
        n = self.n_spatial
        object.__setattr__(self, "window", as_tuple("window", self.window, n))
        stride = self.window if self.stride is None else self.stride
        object.__setattr__(self, "stride", as_tuple("stride", stride, n))
        check_padding(self.padding)

    def windows(self, spatial):
        name = type(self).__name__
        for ax, size, k in zip(AXIS_NAMES[self.n_spatial], spatial, self.window, strict=True):
            if k > size:
                raise ValueError(
                    f"{name}: pooling window {k} along axis {ax} is larger than the input size "
                    f"{size}; use a smaller window or "
                    f"{'GlobalAvgPool' if self.normalize else 'GlobalSumPool'}()"
                )
        return tuple(
            axis_window(name, ax, size, k, s, self.padding)
            for ax, size, k, s in zip(
                AXIS_NAMES[self.n_spatial], spatial, self.window, self.stride, strict=True
            )
        )

    def out_shape(self, in_shape: ShapeLike) -> ShapeLike:
        s = check_spatial_rank(type(self).__name__, single_shape(self, in_shape), self.n_spatial)
        return (s[0], *(w.out for w in self.windows(s[1:])))

    def make_module(self, in_shape, *, generator=None, dtype=torch.float32, device=None):
        s = check_spatial_rank(type(self).__name__, single_shape(self, in_shape), self.n_spatial)
        wins = self.windows(s[1:])
        return (AvgPoolModule if self.normalize else SumPoolModule)(
            self.window,
            self.stride,
            tuple((w.before, w.after) for w in wins),
            self.padding == "circular",
        )

    def _op(self, t: Tensor, n_lead: int, wins) -> Tensor:
        circ = self.padding == "circular"
        for axis, win in enumerate(wins):
            d1, d2 = spatial_dims(n_lead, axis, True)
            # windows on both sides independently: P Σ Pᵀ along this axis
            t = window_sum(window_sum(t, (d1,), win, circ), (d2,), win, circ)
        # the sums over both windows are the SumPool rule; AvgPool divides by k² (k = |window|)
        return t / math.prod(self.window) ** 2 if self.normalize else t

    def prepare_side(self, name: str, value: object, x: Tensor, arg: str) -> Tensor:
        return prepare_mask(value, x, arg)

    def transform_kernel(self, k: KernelLike) -> Kernel:
        k = mask_kernel(single_kernel(self, k))  # masked positions read as zeros
        check_kernel_rank(type(self).__name__, k, self.n_spatial)
        _needs_full(self, k)
        wins = self.windows(k.spatial)
        return window_mask(k, wins).replace(
            nngp=self._op(k.nngp, 2, wins),
            ntk=None if k.ntk is None else self._op(k.ntk, 2, wins),
            cov1=self._op(k.cov1, 1, wins),
            cov2=None if k.cov2 is None else self._op(k.cov2, 1, wins),
            spatial=tuple(w.out for w in wins),
        )


@dataclass(frozen=True)
class AvgPool1d(_AvgPool):
    """Average pooling on ``(N, C, L)``: ``window``, ``stride`` (default ``window``),
    ``padding`` ``"valid"`` (default) | ``"same"`` | ``"circular"`` (module docstring)."""

    n_spatial: ClassVar[int] = 1


@dataclass(frozen=True)
class AvgPool2d(_AvgPool):
    """Average pooling on ``(N, C, H, W)``: ``window`` ``k`` or ``(kh, kw)``, ``stride``
    (default ``window``), ``padding`` ``"valid"`` (default) | ``"same"`` | ``"circular"``."""

    n_spatial: ClassVar[int] = 2


@dataclass(frozen=True)
class SumPool1d(_AvgPool):
    """Sum pooling on ``(N, C, L)``: ``|window|`` × ``AvgPool1d`` with the same ``window``,
    ``stride`` (default ``window``) and ``padding`` (padded zeros add nothing; module
    docstring)."""

    n_spatial: ClassVar[int] = 1
    normalize: ClassVar[bool] = False


@dataclass(frozen=True)
class SumPool2d(_AvgPool):
    """Sum pooling on ``(N, C, H, W)``: ``kh·kw`` × ``AvgPool2d`` with the same ``window``,
    ``stride`` (default ``window``) and ``padding`` (module docstring)."""

    n_spatial: ClassVar[int] = 2
    normalize: ClassVar[bool] = False


# --------------------------------------------------------------------------
# Global average/sum pooling and flattening
# --------------------------------------------------------------------------


class GlobalAvgPoolModule(nn.Module):
    takes_side = True  # reads the mask (widelimit.layers.masking)

    def forward(self, x: Tensor, mask: Tensor | None = None, **other_side: object) -> Tensor:
        """``(N, C, *S) -> (N, C)``: mean over all (or the unmasked) spatial positions."""
        if x.ndim <= 2:
            return x
        dims = tuple(range(2, x.ndim))
        if mask is None:
            return x.mean(dim=dims)
        m = mask.to(x.dtype).unsqueeze(1)
        count = m.sum(dim=dims)
        return (x * m).sum(dim=dims) / count.clamp_min(1.0)  # 0 for an empty mask

    def side_out(self, side: dict) -> dict:
        return drop_mask(side)


class GlobalSumPoolModule(nn.Module):
    takes_side = True  # reads the mask (widelimit.layers.masking)

    def forward(self, x: Tensor, mask: Tensor | None = None, **other_side: object) -> Tensor:
        """``(N, C, *S) -> (N, C)``: sum over all (or the unmasked) spatial positions."""
        if x.ndim <= 2:
            return x
        if mask is not None:
            x = x * mask.to(x.dtype).unsqueeze(1)
        return x.sum(dim=tuple(range(2, x.ndim)))

    def side_out(self, side: dict) -> dict:
        return drop_mask(side)


class FlattenModule(nn.Module):
    takes_side = True  # reads the mask (widelimit.layers.masking)

    def forward(self, x: Tensor, mask: Tensor | None = None, **other_side: object) -> Tensor:
        """``(N, C, *S) -> (N, C·|S|)`` (channel-major, like ``torch.flatten(x, 1)``);
        masked positions are zeroed."""
        if mask is not None and x.ndim > 2:
            x = x * mask.to(x.dtype).unsqueeze(1)
        return x.flatten(1)

    def side_out(self, side: dict) -> dict:
        return drop_mask(side)


def _check_spatial_input(layer: Layer, in_shape: ShapeLike) -> tuple[int, ...]:
    s = single_shape(layer, in_shape)
    if len(s) not in (2, 3):
        raise ValueError(
            f"{type(layer).__name__} expects per-example inputs (C, L) or (C, H, W); got "
            f"per-example shape {tuple(s)}"
        )
    return s


@dataclass(frozen=True)
class _GlobalPool(Layer):
    mixes_positions: ClassVar[bool] = True
    pairwise: ClassVar[bool] = True
    side_inputs: ClassVar[tuple[str, ...]] = (MASK,)

    #: mean over the positions (GlobalAvgPool) or sum (GlobalSumPool)
    normalize: ClassVar[bool] = True

    def prepare_side(self, name: str, value: object, x: Tensor, arg: str) -> Tensor:
        return prepare_mask(value, x, arg)

    def out_shape(self, in_shape: ShapeLike) -> ShapeLike:
        return (_check_spatial_input(self, in_shape)[0],)

    def make_module(self, in_shape, *, generator=None, dtype=torch.float32, device=None):
        _check_spatial_input(self, in_shape)
        return GlobalAvgPoolModule() if self.normalize else GlobalSumPoolModule()

    def transform_kernel(self, k: KernelLike) -> Kernel:
        k = single_kernel(self, k)
        name = type(self).__name__
        if not k.spatial:
            raise ValueError(f"{name} expects a kernel with spatial axes; got dense features")
        _needs_full(self, k)
        if k.side_pair(MASK) is not None and self.normalize:  # mean over the unmasked positions
            nngp, ntk, cov1, cov2 = masked_global_mean(k)
            out = with_mask(k, None, None)
            return out.replace(
                nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2, spatial=(), full_spatial=False
            )
        if k.side_pair(MASK) is not None:  # sum: masked positions read as zeros
            k = with_mask(mask_kernel(k), None, None)

        def mean(t: Tensor | None, n_lead: int) -> Tensor | None:
            # Σ' = (1/|S|²) Σ_{i,j} Σ[i, j]  (GlobalSumPool: Σ' = Σ_{i,j} Σ[i, j])
            if t is None:
                return None
            dims = tuple(range(n_lead, t.ndim))
            return t.mean(dim=dims) if self.normalize else t.sum(dim=dims)

        return k.replace(
            nngp=mean(k.nngp, 2),
            ntk=mean(k.ntk, 2),
            cov1=mean(k.cov1, 1),
            cov2=mean(k.cov2, 1),
            spatial=(),
            full_spatial=False,
        )


@dataclass(frozen=True)
class GlobalAvgPool(_GlobalPool):
    """Mean over all spatial positions: ``(N, C, *S) -> (N, C)`` (module docstring)."""


@dataclass(frozen=True)
class GlobalSumPool(_GlobalPool):
    """Sum over all spatial positions: ``(N, C, *S) -> (N, C)``; ``|S|`` × ``GlobalAvgPool``
    (module docstring)."""

    normalize: ClassVar[bool] = False


@dataclass(frozen=True)
class Flatten(Layer):
    """Flatten channels and positions: ``(N, C, *S) -> (N, C·|S|)``; identity on ``(N, d)``.

    The kernel keeps only the spatial diagonal (module docstring), so a CNN
    with a Flatten readout never needs the full ``(|S|²)`` covariance.
    """

    pairwise: ClassVar[bool] = True
    side_inputs: ClassVar[tuple[str, ...]] = (MASK,)

    def prepare_side(self, name: str, value: object, x: Tensor, arg: str) -> Tensor:
        return prepare_mask(value, x, arg)

    def out_shape(self, in_shape: ShapeLike) -> ShapeLike:
        s = single_shape(self, in_shape)
        return (math.prod(s),)

    def make_module(self, in_shape, *, generator=None, dtype=torch.float32, device=None):
        single_shape(self, in_shape)
        return FlattenModule()

    def transform_kernel(self, k: KernelLike) -> Kernel:
        k = single_kernel(self, k)
        if not k.spatial:
            return k
        if k.side_pair(MASK) is not None:  # zero the masked positions, then drop the mask
            k = with_mask(mask_kernel(k), None, None)
        n_sp = len(k.spatial)

        def diag_mean(t: Tensor | None, n_lead: int) -> Tensor | None:
            # Σ' = (1/|S|) Σ_i Σ[i, i]
            if t is None:
                return None
            if k.full_spatial:
                lead = t.shape[:n_lead]
                t = spatial_diagonal(t.reshape(-1, *t.shape[n_lead:]), n_sp)
                t = t.reshape(*lead, *t.shape[1:])
            return t.mean(dim=tuple(range(n_lead, t.ndim)))

        return k.replace(
            nngp=diag_mean(k.nngp, 2),
            ntk=diag_mean(k.ntk, 2),
            cov1=diag_mean(k.cov1, 1),
            cov2=diag_mean(k.cov2, 1),
            spatial=(),
            full_spatial=False,
            channels=k.channels * math.prod(k.spatial),
        )


__all__ = [
    "AvgPool1d",
    "AvgPool2d",
    "AvgPoolModule",
    "Flatten",
    "FlattenModule",
    "GlobalAvgPool",
    "GlobalAvgPoolModule",
    "GlobalSumPool",
    "GlobalSumPoolModule",
    "SumPool1d",
    "SumPool2d",
    "SumPoolModule",
]
