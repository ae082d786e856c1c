"""Convolutions ``Conv1d``/``Conv2d``: finite module and kernel rule side by side.

Finite layer (NCL / NCHW inputs), fan-in ``n = C·|window|`` (``C`` input
channels, ``|window| = ∏ kernel_size``), zero-mean weights ``W[o, c, a]``:

* ``"ntk"``: ``h[o, i] = (σw/√n) Σ_{c,a} W[o,c,a] x̃[c, s·i + a] + σb·b[o]``,
  ``W, b ~ N(0, 1)`` trained;
* ``"standard"``: ``h = W ⋆ x̃ + b`` with ``W ~ N(0, σw²/n)``, ``b ~ N(0, σb²)``;

where ``x̃`` is the input padded per axis with ``before``/``after`` positions
(zeros for ``"same"``, wrap-around for ``"circular"``, none for ``"valid"``)
and ``⋆`` is torch's cross-correlation with stride ``s``.  ``"same"`` and
``"circular"`` give ``ceil(size/stride)`` outputs with ``before = total//2``,
``after = total − before``, ``total = max((out−1)·s + k − size, 0)`` (the extra
position goes after, like ``torch``'s ``padding="same"`` and TensorFlow's SAME).

Kernel rule (Novak et al. 2019, eq. (7); Arora et al. 2019, §4), with
``A`` the window-mean operator over shifted pairs::

    A(T)[i, j] = (1/|window|) Σ_a T[s·i + a − before, s·j + a − before]

(zero-padded entries contribute 0; circular indices wrap)::

    Σ' = σw² A(Σ) + σb²
    Θ' = Σ' + σw² A(Θ)                                   ("ntk")
    Θ' = n·A(Σ) + 1[σb > 0] + σw² A(Θ)                   ("standard", n = C·|window|)

``width_factor=(s_in, s_out)`` (``"standard"`` only; Neural Tangents' ``s``, see
:mod:`widelimit.layers.dense`): ``s_out·out_channels`` finite channels, weights
``W ~ N(0, σw²/n)`` and ``h = W ⋆ x̃/√s_in + b`` with the base fan-in
``n = C·|window|/s_in``, which is the ``n`` of the standard NTK rule above.

``A`` is separable over the spatial axes.  On the diagonal layout
``(N1, N2, H, W)`` it is a window mean of the diagonal (``i = j`` only needs
``Σ[p, p]``); on the full layout ``(N1, N2, H, H', W, W')`` it sums, per axis,
the ``k`` shifted diagonals of each ``(H, H')`` block.  Zero padding is
handled by adding each shift into the output rows/columns it reaches, so
``"same"`` costs no padded copy (see ``benchmarks/conv.py``).

Masked inputs (``mask=`` side input, :mod:`widelimit.layers.masking`): masked
positions are read as zeros and the output mask is the mask at each window's centre.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from widelimit._validation import check_positive_int, check_std
from widelimit.kernel import Kernel
from widelimit.layers.base import (
    KernelLike,
    Shape,
    ShapeLike,
    WidthLayer,
    single_kernel,
    single_shape,
)
from widelimit.layers.dense import (
    base_fan_in,
    check_parameterization,
    check_width_factor,
    init_affine,
)
from widelimit.layers.inputs import is_zero_constant
from widelimit.layers.masking import MASK, centre_mask, mask_kernel, prepare_mask, with_mask
from widelimit.layers.spatial import AXIS_NAMES

PADDINGS = ("valid", "same", "circular")


# --------------------------------------------------------------------------
# Window geometry and the window-mean operator (shared with pooling.py)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class AxisWindow:
    """Geometry of a sliding window along one spatial axis.

    Output position ``i`` reads input positions ``s·i + a − before`` for
    ``a = 0..k−1``; positions outside ``[0, size)`` are padding.
    """

    size: int
    k: int
    stride: int
    before: int
    after: int
    out: int


def axis_window(layer: str, axis: str, size: int, k: int, stride: int, padding: str) -> AxisWindow:
    """Window geometry along one axis, raising clear errors for impossible shapes."""
    if padding == "valid":
        if k > size:
            raise ValueError(
                f"{layer}: window {k} along axis {axis} is larger than the input size {size} "
                "with padding='valid' (the output would have size <= 0); use padding='same' "
                "or a smaller kernel/window, or a larger input"
            )
        return AxisWindow(size, k, stride, 0, 0, (size - k) // stride + 1)
    out = -(-size // stride)  # ceil(size / stride)
    total = max((out - 1) * stride + k - size, 0)
    before = total // 2
    after = total - before
    if padding == "circular" and max(before, after) > size:
        raise ValueError(
            f"{layer}: circular padding of {max(before, after)} along axis {axis} exceeds the "
            f"input size {size} (the window {k} would wrap around more than once); use a "
            "smaller kernel or a larger input"
        )
    return AxisWindow(size, k, stride, before, after, out)


def window_sum(t: Tensor, dims: Sequence[int], win: AxisWindow, circular: bool) -> Tensor:
    """Window *sum* along one spatial axis, with the same shift on every dim in ``dims``.

    ``out[.., i, .., i', ..] = Σ_a t[.., p_a(i), .., p_a(i'), ..]`` with
    ``p_a(i) = s·i + a − before`` (divide by ``k`` for the mean).  With one dim
    this is the diagonal-layout rule; with the pair of dims ``(d, d+1)`` of a
    full layout it sums the shifted pairs ``(i + a, j + a)`` (Novak et al.
    2019, eq. (7)).  Entries outside the input are zero (each shift is added
    only into the output rows it reaches, no padded copy), or wrap around when
    ``circular``.
    """
    k, s, before, n_out = win.k, win.stride, win.before, win.out
    if circular and (win.before or win.after):
        # materialise the wrap-around once: positions -before .. (out-1)s + k - 1 - before
        idx = (torch.arange(-before, (n_out - 1) * s + k - before, device=t.device)) % win.size
        for d in dims:
            t = t.index_select(d, idx)
        before = 0
    size = t.shape[dims[0]]
    pieces = []  # (lo, hi, source view) per shift a
    for a in range(k):
        # output rows i with 0 <= s·i + a − before < size
        lo = max(0, -(-(before - a) // s))
        hi = min(n_out, (size - 1 - a + before) // s + 1)
        if hi <= lo:
            continue
        p0 = s * lo + a - before
        src = [slice(None)] * t.ndim
        for d in dims:
            src[d] = slice(p0, p0 + s * (hi - lo - 1) + 1, s)
        pieces.append((lo, hi, t[tuple(src)]))
    # start from a shift that covers every output (the centre one for "same"), else zeros
    first = next((i for i, (lo, hi, _) in enumerate(pieces) if lo == 0 and hi == n_out), None)
    if first is not None:
        out = pieces.pop(first)[2].clone()
    else:
        shape = list(t.shape)
        for d in dims:
            shape[d] = n_out
        out = t.new_zeros(shape)
    for lo, hi, view in pieces:
        dst = [slice(None)] * t.ndim
        for d in dims:
            dst[d] = slice(lo, hi)
        out[tuple(dst)] += view
    return out


def spatial_dims(n_lead: int, axis: int, full: bool) -> tuple[int, ...]:
    """Tensor dims of spatial ``axis`` in a kernel tensor with ``n_lead`` example axes."""
    return (n_lead + 2 * axis, n_lead + 2 * axis + 1) if full else (n_lead + axis,)


def as_tuple(name: str, value: int | Sequence[int], n: int) -> tuple[int, ...]:
    """``value`` (int or length-``n`` sequence of positive ints) as an ``n``-tuple."""
    if isinstance(value, int | bool) or not isinstance(value, Sequence):
        return (check_positive_int(name, value),) * n
    vals = tuple(value)
    if len(vals) != n:
        raise ValueError(f"`{name}` must be an int or a sequence of {n} ints; got {value!r}")
    return tuple(check_positive_int(name, v) for v in vals)


def check_padding(value: str) -> str:
    if value not in PADDINGS:
        raise ValueError(f"`padding` must be one of {PADDINGS}; got {value!r}")
    return value


def check_spatial_rank(layer: str, in_shape: Shape, n_spatial: int) -> Shape:
    """Raise unless ``in_shape`` is ``(C, *spatial)`` with ``n_spatial`` spatial axes."""
    if len(in_shape) != 1 + n_spatial:
        want = "(C, L)" if n_spatial == 1 else "(C, H, W)"
        batch = "(N, C, L)" if n_spatial == 1 else "(N, C, H, W)"
        raise ValueError(
            f"{layer} expects per-example inputs of shape {want} (batches {batch}); got "
            f"per-example shape {tuple(in_shape)}"
            + (
                "; use Flatten()/GlobalAvgPool() before Dense"
                if len(in_shape) > 1 + n_spatial
                else ""
            )
        )
    return in_shape


def check_kernel_rank(layer: str, k: Kernel, n_spatial: int) -> None:
    if len(k.spatial) != n_spatial:
        raise ValueError(
            f"{layer} expects a kernel with {n_spatial} spatial axes; got spatial shape "
            f"{k.spatial} (apply it to (N, C, *spatial) inputs)"
        )


def window_mask(k: Kernel, wins: Sequence[AxisWindow]) -> Kernel:
    """``k`` with its mask (if any) replaced by the mask of a window layer's output."""
    pair = k.side_pair(MASK)
    if pair is None:
        return k
    geo = ([w.before for w in wins], [w.k for w in wins], [w.stride for w in wins])
    outs = [w.out for w in wins]
    return with_mask(k, centre_mask(pair[0], *geo, outs), centre_mask(pair[1], *geo, outs))


def window_side_out(side: dict, pads, kernel_size, stride) -> dict:
    """Module side of :func:`window_mask`: ``pads`` ``((before, after), ...)`` per axis."""
    m = side.get(MASK)
    if m is None:
        return side
    outs = [
        (size + b + a - k) // s + 1
        for size, (b, a), k, s in zip(m.shape[1:], pads, kernel_size, stride, strict=True)
    ]
    befores = [b for b, _ in pads]
    return {**side, MASK: centre_mask(m, befores, kernel_size, stride, outs)}


# --------------------------------------------------------------------------
# Finite module
# --------------------------------------------------------------------------


class ConvModule(nn.Module):
    """Finite ``n_spatial``-D convolution (see module docstring).

    Parameters: ``weight: (out, in, *kernel_size)``, ``bias: (out,)`` (absent
    when ``b_std == 0``).  ``forward``: ``(N, in, *S) -> (N, out, *S_out)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, ...],
        stride: tuple[int, ...],
        pads: tuple[tuple[int, int], ...],
        circular: bool,
        w_std: float,
        b_std: float,
        parameterization: str,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        width_factor_in: int = 1,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.parameterization = kernel_size, stride, parameterization
        # F.pad order: last axis first
        self.pad = tuple(p for bef_aft in reversed(pads) for p in bef_aft)
        self.pads = tuple(pads)
        self.mode = "circular" if circular else "constant"
        fan_in = in_channels * math.prod(kernel_size)
        init_affine(
            self, (out_channels, in_channels, *kernel_size), fan_in, w_std, b_std,
            parameterization, generator=generator, dtype=dtype, device=device,
            width_factor_in=width_factor_in,
        )  # fmt: skip

    takes_side = True  # reads the mask (widelimit.layers.masking)

    def forward(self, x: Tensor, mask: Tensor | None = None, **other_side: object) -> Tensor:
        """``(N, in, *S) -> (N, out, *S_out)``; positions where ``mask`` is 0 read as zeros."""
        nd = len(self.kernel_size)
        if x.ndim != 2 + nd or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv{nd}d module expects (N, {self.in_channels}, "
                f"{'L' if nd == 1 else 'H, W'}) inputs; got shape {tuple(x.shape)}"
            )
        if mask is not None:
            x = x * mask.to(x.dtype).unsqueeze(1)
        if any(self.pad):
            x = F.pad(x, self.pad, mode=self.mode)
        conv = F.conv1d if nd == 1 else F.conv2d
        bias = None if self.bias is None else self.b_scale * self.bias
        return conv(x, self.w_scale * self.weight, bias, stride=self.stride)

    def side_out(self, side: dict) -> dict:
        """The mask of the output: the input mask at each window's centre."""
        return window_side_out(side, self.pads, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, pad={self.pad}, mode={self.mode}, "
            f"parameterization={self.parameterization}"
        )


# --------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Conv(WidthLayer):
    out_channels: int
    kernel_size: int | tuple[int, ...] = 3
    stride: int | tuple[int, ...] = 1
    padding: str = "valid"
    w_std: float = 1.0
    b_std: float = 0.0
    parameterization: str = "ntk"
    width_factor: tuple[int, int] = (1, 1)

    width_field: ClassVar[str] = "out_channels"
    n_spatial: ClassVar[int] = 2
    pairwise: ClassVar[bool] = True
    side_inputs: ClassVar[tuple[str, ...]] = (MASK,)

    def __post_init__(self) -> None:
        check_positive_int("out_channels", self.out_channels)
        n = self.n_spatial
        object.__setattr__(self, "kernel_size", as_tuple("kernel_size", self.kernel_size, n))
        object.__setattr__(self, "stride", as_tuple("stride", self.stride, n))
        check_padding(self.padding)
        object.__setattr__(self, "w_std", check_std("w_std", self.w_std))
        object.__setattr__(self, "b_std", check_std("b_std", self.b_std))
        check_parameterization(self.parameterization)
        wf = check_width_factor(self.width_factor, self.parameterization)
        object.__setattr__(self, "width_factor", wf)

    @property
    def _name(self) -> str:
        return type(self).__name__

    def windows(self, spatial: Sequence[int]) -> tuple[AxisWindow, ...]:
        """Per-axis window geometry for input spatial sizes ``spatial``."""
        return tuple(
            axis_window(self._name, ax, size, k, s, self.padding)
            for ax, size, k, s in zip(
                AXIS_NAMES[self.n_spatial], spatial, self.kernel_size, self.stride, strict=True
            )
        )

    def out_shape(self, in_shape: ShapeLike) -> ShapeLike:
        s = check_spatial_rank(self._name, single_shape(self, in_shape), self.n_spatial)
        base_fan_in(self._name, s[0], self.width_factor[0])
        return (self.out_channels * self.width_factor[1], *(w.out for w in self.windows(s[1:])))

    def make_module(self, in_shape, *, generator=None, dtype=torch.float32, device=None):
        s = check_spatial_rank(self._name, single_shape(self, in_shape), self.n_spatial)
        wins = self.windows(s[1:])
        base_fan_in(self._name, s[0], self.width_factor[0])
        return ConvModule(
            s[0],
            self.out_channels * self.width_factor[1],
            self.kernel_size,
            self.stride,
            tuple((w.before, w.after) for w in wins),
            self.padding == "circular",
            self.w_std,
            self.b_std,
            self.parameterization,
            generator=generator,
            dtype=dtype,
            device=device,
            width_factor_in=self.width_factor[0],
        )

    def _window_op(self, t: Tensor, n_lead: int, full: bool, wins) -> Tensor:
        """``|window|·A(t)`` for a kernel tensor with ``n_lead`` example axes (module docstring)."""
        for axis, win in enumerate(wins):
            t = window_sum(t, spatial_dims(n_lead, axis, full), win, self.padding == "circular")
        return t

    def prepare_side(self, name: str, value: object, x: Tensor, arg: str) -> Tensor:
        return prepare_mask(value, x, arg)

    def transform_kernel(self, k: KernelLike) -> Kernel:
        k = mask_kernel(single_kernel(self, k))  # masked positions read as zeros
        check_kernel_rank(self._name, k, self.n_spatial)
        wins = self.windows(k.spatial)
        full = k.full_spatial
        w2, b2 = self.w_std**2, self.b_std**2
        size = math.prod(self.kernel_size)
        s_nngp = self._window_op(k.nngp, 2, full, wins)  # |window|·A(Σ)
        if self.parameterization == "standard" and k.ntk is not None:
            nngp = (w2 / size) * s_nngp + b2  # Σ' = σw² A(Σ) + σb² (A(Σ) still needed)
        else:
            nngp = s_nngp.mul_(w2 / size).add_(b2)  # Σ' = σw² A(Σ) + σb², in place
        ntk = None
        if k.ntk is not None:
            zero = is_zero_constant(k.ntk)  # the raw input's Θ = 0: A(Θ) = 0
            s_ntk = None if zero else self._window_op(k.ntk, 2, full, wins)
            if self.parameterization == "ntk":
                # Θ' = Σ' + σw² A(Θ)
                ntk = nngp.clone() if zero else torch.add(nngp, s_ntk, alpha=w2 / size)
            else:
                # Θ' = n A(Σ) + 1[σb>0] + σw² A(Θ), n = C·|window| (∂h/∂W[o,c,a] = x̃[c, s·i+a]),
                # C/s_in channels with a width factor (|window| is inside s_nngp)
                c = base_fan_in(self._name, k.channels, self.width_factor[0])
                ntk = c * s_nngp + (1.0 if self.b_std > 0 else 0.0)
                if not zero:
                    ntk = ntk.add_(s_ntk, alpha=w2 / size)
        cov1 = (w2 / size) * self._window_op(k.cov1, 1, full, wins) + b2
        cov2 = None
        if k.cov2 is not None:
            cov2 = (w2 / size) * self._window_op(k.cov2, 1, full, wins) + b2
        return window_mask(k, wins).replace(
            nngp=nngp,
            ntk=ntk,
            cov1=cov1,
            cov2=cov2,
            spatial=tuple(w.out for w in wins),
            channels=self.out_channels * self.width_factor[1],
            is_gaussian=True,
        )


#: Base of the convolution layers: fields, validation and the affine kernel rule written once,
#: given the per-axis geometry ``windows`` and the window-sum operator ``_window_op``; the
#: transposed convolutions (``conv_transpose.py``) subclass it with their own geometry.
ConvBase = _Conv


@dataclass(frozen=True)
class Conv1d(_Conv):
    """1-D convolution on ``(N, C, L)`` signals (see module docstring).

    Args:
        out_channels: channels of the finite layer (hidden ones are usually
            set with ``net.module(width)``).
        kernel_size: window length ``k``.
        stride: step between windows.
        padding: ``"valid"`` (default, no padding), ``"same"`` (zeros, output
            ``ceil(L/stride)``) or ``"circular"`` (wrap-around, same size).
        w_std, b_std: σw, σb ≥ 0; weights have variance σw²/(C·k).
        parameterization: ``"ntk"`` (default) or ``"standard"``.
        width_factor: ``(s_in, s_out)``, ``"standard"`` only (module docstring); default
            ``(1, 1)``.
    """

    n_spatial: ClassVar[int] = 1


@dataclass(frozen=True)
class Conv2d(_Conv):
    """2-D convolution on ``(N, C, H, W)`` images (see module docstring).

    Args:
        out_channels: channels of the finite layer.
        kernel_size: ``k`` or ``(kh, kw)``.
        stride: ``s`` or ``(sh, sw)``.
        padding: ``"valid"`` (default), ``"same"`` or ``"circular"``.
        w_std, b_std: σw, σb ≥ 0; weights have variance σw²/(C·kh·kw).
        parameterization: ``"ntk"`` (default) or ``"standard"``.
        width_factor: ``(s_in, s_out)``, ``"standard"`` only (module docstring); default
            ``(1, 1)``.
    """

    n_spatial: ClassVar[int] = 2


__all__ = ["Conv1d", "Conv2d", "ConvModule"]
