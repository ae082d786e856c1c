"""Transposed convolutions ``ConvTranspose1d``/``ConvTranspose2d``: finite module and kernel rule.

Geometry (per spatial axis; input size ``L``, kernel ``k``, stride ``s``), as
Neural Tangents' ``stax.ConvTranspose`` (JAX's ``lax.conv_transpose``) defines it.
The *valid* transposed convolution spreads every input position ``i`` over the
``k`` outputs ``v = s·i + a`` (``a = 0..k−1``)::

    V[o, v] = Σ_c Σ_{i, a: s·i + a = v} W[c, o, a] x[c, i],      v = 0 .. (L−1)·s + max(k, s) − 1

(torch's ``conv_transpose`` with ``padding=0``, ``output_padding=max(s − k, 0)``),
and the paddings keep or fold it, with ``q = ⌊max(k − s, 0)/2⌋``:

* ``"valid"``: ``out = V``, size ``L·s + max(k − s, 0)``;
* ``"same"``: ``out[p] = V[p + q]``, size ``L·s`` (JAX's transposed ``SAME`` padding);
* ``"circular"``: ``out[p] = Σ_m V[p + q + m·L·s]``, size ``L·s`` (``V`` wrapped around
  onto ``L·s`` positions, Neural Tangents' ``CIRCULAR``).

Equivalently output ``p`` reads input ``i = (p + q − a)/s`` through tap ``a`` whenever
that is an integer in ``[0, L)`` (for ``"circular"``: taken modulo ``L``).

Finite layer (NCL / NCHW), weights ``W: (C_in, C_out, *kernel_size)`` as in torch,
fan-in ``n = C_in·|window|`` (``|window| = ∏ kernel_size``), the convention of Neural
Tangents (``input channels × filter size``) and of widelimit's ``Conv``.  It is *not* the
number of terms reaching one output, which is about ``n/∏ stride``: with stride ``s``
the output variance is about ``1/s`` per axis of the convolution's.

* ``"ntk"``: ``h = (σw/√n)·convT(W, x) + σb·b``, ``W, b ~ N(0, 1)`` trained;
* ``"standard"``: ``h = convT(W, x) + b``, ``W ~ N(0, σw²/n)``, ``b ~ N(0, σb²)``.

Kernel rule (the covariance of a linear map of Gaussian channels, one weight per tap
shared by all positions)::

    T(Σ)[p, p'] = Σ_a Σ[(p + q − a)/s, (p' + q − a)/s]      (terms with a valid index pair)
    Σ' = σw²/|window| · T(Σ) + σb²
    Θ' = Σ' + σw²/|window| · T(Θ)                                ("ntk")
    Θ' = C_in · T(Σ) + 1[σb > 0] + σw²/|window| · T(Θ)           ("standard")

Both positions use the same tap ``a``, so the diagonal layout needs only ``Σ[i, i]``
(the layer is local in the sense of :mod:`widelimit.layers.conv`), and the rule is
separable over axes.  ``T`` is a stride-1 window sum over ``k`` taps (``window_sum`` of
:mod:`widelimit.layers.conv`, ``before = k − 1 − q``) of the *dilated* kernel, which holds
``Σ[i, i']`` at positions ``(s·i, s·i')`` of an ``L·s`` axis and zeros between: a transposed
convolution is a convolution of the zero-dilated input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from widelimit.kernel import Kernel
from widelimit.layers.base import KernelLike, single_kernel, single_shape
from widelimit.layers.conv import (
    AxisWindow,
    ConvBase,
    check_spatial_rank,
    spatial_dims,
    window_sum,
)
from widelimit.layers.dense import init_affine
from widelimit.layers.masking import MASK
from widelimit.seeding import Seed, as_generator

__all__ = ["ConvTranspose1d", "ConvTranspose2d", "ConvTransposeModule"]


@dataclass(frozen=True)
class TransposeAxis:
    """Geometry of a transposed convolution along one axis (module docstring).

    ``size`` input positions, kernel ``k``, stride ``stride``, crop ``q`` of the valid
    output (``crop``) and ``out`` output positions.
    """

    size: int
    k: int
    stride: int
    crop: int
    out: int

    def dilated_window(self) -> AxisWindow:
        """The stride-1 window over the dilated axis (length ``size·stride``) giving ``T``."""
        n = self.size * self.stride
        before = self.k - 1 - self.crop
        return AxisWindow(n, self.k, 1, before, self.out - 1 + self.k - before - n, self.out)


def transpose_axis(size: int, k: int, stride: int, padding: str) -> TransposeAxis:
    """Per-axis geometry of a transposed convolution (module docstring)."""
    if padding == "valid":
        return TransposeAxis(size, k, stride, 0, (size - 1) * stride + max(k, stride))
    return TransposeAxis(size, k, stride, max(k - stride, 0) // 2, size * stride)


def dilate(t: Tensor, dims: Sequence[int], stride: int) -> Tensor:
    """Put ``t`` at every ``stride``-th position of each dim in ``dims`` (zeros between)."""
    if stride == 1:
        return t
    shape = list(t.shape)
    idx: list[slice] = [slice(None)] * t.ndim
    for d in dims:
        shape[d] *= stride
        idx[d] = slice(None, None, stride)
    out = t.new_zeros(shape)
    out[tuple(idx)] = t
    return out


# --------------------------------------------------------------------------
# Finite module
# --------------------------------------------------------------------------


class ConvTransposeModule(nn.Module):
    """Finite ``n_spatial``-D transposed convolution (see module docstring).

    Parameters: ``weight: (in, out, *kernel_size)`` (torch's ``ConvTranspose`` layout),
    ``bias: (out,)`` (absent when ``b_std == 0``), drawn from ``seed`` (an int, a
    ``torch.Generator`` or ``None`` for torch's global RNG).  ``forward``: ``(N, in, *S) -> (N, out,
    *S_out)`` with ``S_out`` per axis as in the module docstring.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, ...],
        stride: tuple[int, ...],
        padding: str,
        w_std: float,
        b_std: float,
        parameterization: str,
        *,
        seed: Seed = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        generator = as_generator(seed)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.parameterization = parameterization
        fan_in = in_channels * math.prod(kernel_size)  # Neural Tangents' convention
        init_affine(
            self, (out_channels, in_channels, *kernel_size), fan_in, w_std, b_std,
            parameterization, generator=generator, dtype=dtype, device=device,
        )  # fmt: skip
        # i.i.d. entries: the (out, in) draw of init_affine, stored in torch's (in, out) layout
        self.weight = nn.Parameter(self.weight.detach().transpose(0, 1).contiguous())

    def forward(self, x: Tensor) -> Tensor:
        nd = len(self.kernel_size)
        if x.ndim != 2 + nd or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ConvTranspose{nd}d module expects (N, {self.in_channels}, "
                f"{'L' if nd == 1 else 'H, W'}) inputs; got shape {tuple(x.shape)}"
            )
        conv = F.conv_transpose1d if nd == 1 else F.conv_transpose2d
        extra = tuple(max(s - k, 0) for s, k in zip(self.stride, self.kernel_size, strict=True))
        v = conv(x, self.w_scale * self.weight, None, stride=self.stride, output_padding=extra)
        if self.padding != "valid":
            for d in range(nd):
                ax = transpose_axis(
                    x.shape[2 + d], self.kernel_size[d], self.stride[d], self.padding
                )
                v = self._crop(v, 2 + d, ax)
        if self.bias is not None:
            v = v + (self.b_scale * self.bias).reshape(-1, *([1] * nd))
        return v

    def _crop(self, v: Tensor, dim: int, ax: TransposeAxis) -> Tensor:
        if self.padding == "same":
            return v.narrow(dim, ax.crop, ax.out)
        # circular: out[p] = Σ_m V[p + q + m·n]; fold V onto n positions, then shift by q
        n = ax.out
        reps = -(-v.shape[dim] // n)
        pad = [0, 0] * (v.ndim - 1 - dim) + [0, reps * n - v.shape[dim]]
        folded = F.pad(v, pad).unflatten(dim, (reps, n)).sum(dim)
        return torch.roll(folded, -ax.crop, dim)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, "
            f"parameterization={self.parameterization}"
        )


# --------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _ConvTranspose(ConvBase):
    """Shared fields and the affine kernel rule come from ``ConvBase``; only the geometry
    (``windows``) and the window operator ``T`` (``_window_op``) differ."""

    side_inputs: ClassVar[tuple[str, ...]] = ()  # masks: not supported (yet)

    def __post_init__(self) -> None:
        super().__post_init__()
        if tuple(self.width_factor) != (1, 1):
            raise ValueError(
                f"{self._name}: `width_factor` is not supported by transposed convolutions; "
                f"got {self.width_factor!r} (use the default (1, 1))"
            )

    def transform_kernel(self, k: KernelLike) -> Kernel:
        kk = single_kernel(self, k)
        if kk.side_pair(MASK) is not None:
            raise ValueError(
                f"{self._name} does not support masked inputs (`mask=`); remove the mask or "
                "the transposed convolution"
            )
        return super().transform_kernel(kk)

    def windows(self, spatial: Sequence[int]) -> tuple[TransposeAxis, ...]:
        """Per-axis transposed geometry for input spatial sizes ``spatial``."""
        return tuple(
            transpose_axis(size, k, s, self.padding)
            for size, k, s in zip(spatial, self.kernel_size, self.stride, strict=True)
        )

    def _window_op(self, t: Tensor, n_lead: int, full: bool, wins) -> Tensor:
        """``T(t)`` (module docstring) for a kernel tensor with ``n_lead`` example axes."""
        circular = self.padding == "circular"
        for axis, ax in enumerate(wins):
            dims = spatial_dims(n_lead, axis, full)
            t = window_sum(dilate(t, dims, ax.stride), dims, ax.dilated_window(), circular)
        return t

    def make_module(self, in_shape, *, generator=None, dtype=torch.float32, device=None):
        s = check_spatial_rank(self._name, single_shape(self, in_shape), self.n_spatial)
        return ConvTransposeModule(
            s[0],
            self.out_channels,
            self.kernel_size,
            self.stride,
            self.padding,
            self.w_std,
            self.b_std,
            self.parameterization,
            seed=generator,
            dtype=dtype,
            device=device,
        )


@dataclass(frozen=True)
class ConvTranspose1d(_ConvTranspose):
    """1-D transposed convolution on ``(N, C, L)`` signals (see module docstring).

    Args:
        out_channels: channels of the finite layer (hidden ones are usually set with
            ``net.module(width)``).
        kernel_size: window length ``k``.
        stride: upsampling factor ``s``.
        padding: ``"valid"`` (default, output ``L·s + max(k − s, 0)``), ``"same"``
            (output ``L·s``) or ``"circular"`` (output ``L·s``, wrapped around), as
            Neural Tangents' ``stax.ConvTranspose``.
        w_std, b_std: σw, σb ≥ 0; weights have variance σw²/(C·k) (``C`` input channels).
        parameterization: ``"ntk"`` (default) or ``"standard"``.
    """

    n_spatial: ClassVar[int] = 1


@dataclass(frozen=True)
class ConvTranspose2d(_ConvTranspose):
    """2-D transposed convolution on ``(N, C, H, W)`` images (see module docstring).

    Args:
        out_channels: channels of the finite layer.
        kernel_size: ``k`` or ``(kh, kw)``.
        stride: ``s`` or ``(sh, sw)`` (upsampling factors).
        padding: ``"valid"`` (default), ``"same"`` or ``"circular"`` (module docstring).
        w_std, b_std: σw, σb ≥ 0; weights have variance σw²/(C·kh·kw).
        parameterization: ``"ntk"`` (default) or ``"standard"``.
    """

    n_spatial: ClassVar[int] = 2
