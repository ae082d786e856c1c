"""Locally connected layers ``ConvLocal1d``/``ConvLocal2d``: finite module and kernel rule.

A locally connected layer ("unshared convolution", LCN) slides a window over the
input like ``Conv1d``/``Conv2d`` (same ``kernel_size``, ``stride``, ``padding``
and the same padded input ``x̃``; see :mod:`widelimit.layers.conv`), but every
output position ``p`` has its own weights ``W[o, c, a, p]`` and bias ``b[o, p]``:

* ``"ntk"``: ``h[o, p] = (σw/√n) Σ_{c,a} W[o,c,a,p] x̃[c, s·p + a] + σb·b[o, p]``,
  ``W, b ~ N(0, 1)`` trained;
* ``"standard"``: ``W ~ N(0, σw²/n)``, ``b ~ N(0, σb²)``, scales 1;

with fan-in ``n = C·|window|`` (padded zeros count, as for ``Conv``).  Each output
position is a ``Dense`` layer on its own (flattened) input patch.

Kernel rule.  Outputs at different positions share no parameter, so in the
infinite-width limit they are independent: **every cross-position entry
``p ≠ p'`` of the output NNGP and NTK is exactly 0**, the bias term included
(each position has its own bias).  The ``p = p'`` entries are those of the
convolution with the same arguments (``A`` the window mean of
:mod:`widelimit.layers.conv`; it reads the input's ``p = p'`` entries only)::

    Σ'[p, p] = σw² A(Σ)[p, p] + σb²
    Θ'[p, p] = Σ'[p, p] + σw² A(Θ)[p, p]                         ("ntk")
    Θ'[p, p] = n·A(Σ)[p, p] + 1[σb > 0] + σw² A(Θ)[p, p]         ("standard")
    Σ'[p, p'] = Θ'[p, p'] = 0                                    (p ≠ p')

(Novak et al. 2019, who show that without pooling the LCN-GP equals the CNN-GP; Neural
Tangents' ``stax.ConvLocal``, whose kernels these equal). Hence in the diagonal layout
(a net that never pools) ``ConvLocalNd`` and ``ConvNd`` have the same kernel — an LCN
and a CNN with a ``Flatten`` readout are equivalent at infinite width — and the two
differ only when a later layer mixes positions (pooling, where the CNN's cross-position
covariances contribute and the LCN's are 0). The layer itself mixes no positions and no
examples (``pairwise``).
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
from widelimit.layers.base import KernelLike, ShapeLike, WidthLayer, single_kernel, single_shape
from widelimit.layers.conv import (
    AxisWindow,
    Conv1d,
    Conv2d,
    axis_window,
    check_kernel_rank,
    check_spatial_rank,
)
from widelimit.layers.dense import init_affine
from widelimit.layers.spatial import AXIS_NAMES

__all__ = ["ConvLocal1d", "ConvLocal2d", "ConvLocalModule"]


# --------------------------------------------------------------------------
# Finite module
# --------------------------------------------------------------------------


class ConvLocalModule(nn.Module):
    """Finite locally connected layer (module docstring).

    Parameters: ``weight: (out, in, *kernel_size, *out_spatial)`` (one filter per output
    position), ``bias: (out, *out_spatial)`` (absent when ``b_std == 0``).
    ``forward``: ``(N, in, *in_spatial) -> (N, out, *out_spatial)`` (the unshared weights
    fix the input's spatial size).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, ...],
        stride: tuple[int, ...],
        pads: tuple[tuple[int, int], ...],
        circular: bool,
        in_spatial: tuple[int, ...],
        out_spatial: tuple[int, ...],
        w_std: float,
        b_std: float,
        parameterization: str,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.parameterization = kernel_size, stride, parameterization
        self.in_spatial, self.out_spatial = in_spatial, out_spatial
        self.pad = tuple(p for bef_aft in reversed(pads) for p in bef_aft)  # F.pad: last axis first
        self.mode = "circular" if circular else "constant"
        fan_in = in_channels * math.prod(kernel_size)
        init_affine(
            self, (out_channels, in_channels, *kernel_size, *out_spatial), fan_in, w_std, b_std,
            parameterization, generator=generator, dtype=dtype, device=device,
            bias_shape=(out_channels, *out_spatial),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        nd = len(self.kernel_size)
        if x.ndim != 2 + nd or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ConvLocal{nd}d module expects (N, {self.in_channels}, "
                f"{'L' if nd == 1 else 'H, W'}) inputs; got shape {tuple(x.shape)}"
            )
        if tuple(x.shape[2:]) != self.in_spatial:
            raise ValueError(
                f"ConvLocal{nd}d module was built for inputs of spatial size {self.in_spatial} "
                f"(unshared weights fix the input size); got input of shape {tuple(x.shape)}"
            )
        if any(self.pad):
            x = F.pad(x, self.pad, mode=self.mode)
        # patches (N, C·|window|, |out positions|), channel-major like the weight's (C, *k)
        # (F.unfold, im2col, also has a vmap rule: the empirical NTK stays fast)
        x2d = x.unsqueeze(2) if nd == 1 else x
        k2d = (1, *self.kernel_size) if nd == 1 else self.kernel_size
        s2d = (1, *self.stride) if nd == 1 else self.stride
        patches = F.unfold(x2d, k2d, stride=s2d)
        w = (self.w_scale * self.weight).reshape(
            self.out_channels, patches.shape[1], patches.shape[2]
        )
        out = torch.einsum("njp,ojp->nop", patches, w).reshape(
            x.shape[0], self.out_channels, *self.out_spatial
        )
        if self.bias is not None:
            out = out + self.b_scale * self.bias
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, in_spatial={self.in_spatial}, out_spatial={self.out_spatial}, "
            f"pad={self.pad}, "
            f"mode={self.mode}, parameterization={self.parameterization}"
        )


# --------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------


def _spatial_pair_diagonal(t: Tensor, n_lead: int, n_spatial: int) -> Tensor:
    """Full layout ``(*lead, S1, S1', S2, S2')`` -> ``(*lead, S1, S2)``: the ``p = p'`` entries
    (a view; a zero expanded from one element stays one)."""
    for _ in range(n_spatial):
        t = t.diagonal(dim1=n_lead, dim2=n_lead + 1)  # the diagonal moves to the end
    return t


def _embed_pair_diagonal(t: Tensor, n_lead: int) -> Tensor:
    """``(*lead, S1, S2)`` -> full layout ``(*lead, S1, S1', S2, S2')``, zero off ``p = p'``."""
    lead, spatial = t.shape[:n_lead], t.shape[n_lead:]
    out = t.new_zeros((*lead, *(s for s in spatial for _ in range(2))))
    _spatial_pair_diagonal(out, n_lead, len(spatial)).copy_(t)
    return out


@dataclass(frozen=True)
class _ConvLocal(WidthLayer):
    out_channels: int
    kernel_size: int | tuple[int, ...] = 3
    stride: int | tuple[int, ...] = 1
    padding: str = "valid"
    w_std: float = 1.0
    b_std: float = 0.0
    parameterization: str = "ntk"

    width_field: ClassVar[str] = "out_channels"
    n_spatial: ClassVar[int] = 2
    pairwise: ClassVar[bool] = True

    def __post_init__(self) -> None:
        shared = self.shared()  # validates every argument (the same checks as Conv)
        for name in ("kernel_size", "stride", "w_std", "b_std"):
            object.__setattr__(self, name, getattr(shared, name))

    def shared(self) -> Conv1d | Conv2d:
        """The convolution with the same arguments (shared weights): the same kernel on the
        ``p = p'`` entries (module docstring)."""
        cls = Conv1d if self.n_spatial == 1 else Conv2d
        return cls(
            self.out_channels, self.kernel_size, self.stride, self.padding,
            self.w_std, self.b_std, self.parameterization,
        )  # fmt: skip

    def windows(self, spatial: Sequence[int]) -> tuple[AxisWindow, ...]:
        """Per-axis window geometry for input spatial sizes ``spatial``."""
        name = type(self).__name__
        return tuple(
            axis_window(name, ax, size, k, s, self.padding)
            for ax, size, k, s in zip(
                AXIS_NAMES[self.n_spatial], spatial, self.kernel_size, self.stride, strict=True
            )
        )

    def out_shape(self, in_shape: ShapeLike) -> ShapeLike:
        name = type(self).__name__
        s = check_spatial_rank(name, single_shape(self, in_shape), self.n_spatial)
        return (self.out_channels, *(w.out for w in self.windows(s[1:])))

    def make_module(self, in_shape, *, generator=None, dtype=torch.float32, device=None):
        name = type(self).__name__
        s = check_spatial_rank(name, single_shape(self, in_shape), self.n_spatial)
        wins = self.windows(s[1:])
        return ConvLocalModule(
            s[0],
            self.out_channels,
            self.kernel_size,
            self.stride,
            tuple((w.before, w.after) for w in wins),
            self.padding == "circular",
            tuple(s[1:]),
            tuple(w.out for w in wins),
            self.w_std,
            self.b_std,
            self.parameterization,
            generator=generator,
            dtype=dtype,
            device=device,
        )

    def transform_kernel(self, k: KernelLike) -> Kernel:
        k = single_kernel(self, k)
        check_kernel_rank(type(self).__name__, k, self.n_spatial)
        self.windows(k.spatial)  # clear errors naming this layer
        if not k.full_spatial:
            # the diagonal layout holds the p = p' entries only: the convolution's rule
            return self.shared().transform_kernel(k)
        n = self.n_spatial

        def diag(t: Tensor | None, n_lead: int) -> Tensor | None:
            return None if t is None else _spatial_pair_diagonal(t, n_lead, n)

        # the p = p' entries read only the input's p = p' entries (conv rule, diagonal layout)
        d = self.shared().transform_kernel(
            k.replace(
                nngp=diag(k.nngp, 2),
                ntk=diag(k.ntk, 2),
                cov1=diag(k.cov1, 1),
                cov2=diag(k.cov2, 1),
                full_spatial=False,
            )
        )
        # unshared weights and biases: every p ≠ p' entry is exactly 0
        return d.replace(
            nngp=_embed_pair_diagonal(d.nngp, 2),
            ntk=None if d.ntk is None else _embed_pair_diagonal(d.ntk, 2),
            cov1=_embed_pair_diagonal(d.cov1, 1),
            cov2=None if d.cov2 is None else _embed_pair_diagonal(d.cov2, 1),
            full_spatial=True,
        )


@dataclass(frozen=True)
class ConvLocal1d(_ConvLocal):
    """Locally connected 1-D layer on ``(N, C, L)`` signals: ``Conv1d`` without weight
    sharing (module docstring).

    Args:
        out_channels: channels of the finite layer (hidden ones are usually set with
            ``net.module(width)``).
        kernel_size: window length ``k``.
        stride: step between windows.
        padding: ``"valid"`` (default), ``"same"`` (zeros) or ``"circular"`` (wrap-around).
        w_std, b_std: σw, σb ≥ 0; weights have variance σw²/(C·k).
        parameterization: ``"ntk"`` (default) or ``"standard"``.
    """

    n_spatial: ClassVar[int] = 1


@dataclass(frozen=True)
class ConvLocal2d(_ConvLocal):
    """Locally connected 2-D layer on ``(N, C, H, W)`` images: ``Conv2d`` without weight
    sharing (module docstring).

    Args:
        out_channels: channels of the finite layer.
        kernel_size: ``k`` or ``(kh, kw)``.
        stride: ``s`` or ``(sh, sw)``.
        padding: ``"valid"`` (default), ``"same"`` or ``"circular"``.
        w_std, b_std: σw, σb ≥ 0; weights have variance σw²/(C·kh·kw).
        parameterization: ``"ntk"`` (default) or ``"standard"``.
    """

    n_spatial: ClassVar[int] = 2
