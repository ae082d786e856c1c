"""Dense (fully-connected) layer and the input kernel.

Parameterizations for fan-in ``n`` (docs/kernels.md, 'Parameterizations'):

* ``"ntk"``: ``h = (σw/√n)·W·x + σb·b`` with ``W, b ~ N(0, 1)`` trained;
* ``"standard"``: ``h = W·x + b`` with ``W ~ N(0, σw²/n)``, ``b ~ N(0, σb²)``.

Kernel rules (Lee et al. 2018; Jacot et al. 2018), Σ = input covariance,
Θ = input NTK:

* NNGP (both): ``Σ' = σw² Σ + σb²``;
* NTK, ``"ntk"``: ``Θ' = Σ' + σw² Θ``;
* NTK, ``"standard"``: ``Θ' = n·Σ + 1[σb>0] + σw² Θ`` (∂h/∂W_ij = x_j gives
  ``Σ_j x_j x'_j = n Σ``; ∂h/∂b = 1), so it grows with the width ``n``.

A layer with ``b_std == 0`` has no bias parameter in either parameterization.

Width factor (``"standard"`` only; Neural Tangents' ``s``, Sohl-Dickstein et al. 2020,
arXiv:2001.07301): ``width_factor=(s_in, s_out)`` builds a finite layer ``s_out`` times
wider than ``out_features`` that reads an input ``s_in`` times wider than its *base* fan-in
``n = fan_in / s_in`` (``s_in`` = the previous width layer's ``s_out``; 1 for the first
layer, ``s_out = 1`` for the readout), with ``W ~ N(0, σw²/n)`` and
``h = W·x/√s_in + b``.  The function at initialisation is that of a standard layer of
fan-in ``fan_in`` (same NNGP), but the weights' gradients are ``x/√s_in``, so the NTK
counts the base width: ``Θ' = n·Σ + 1[σb>0] + σw² Θ`` with ``n = fan_in/s_in``.  Growing
``s`` at fixed ``out_features`` therefore converges to a finite, fixed NTK, the
infinite-width limit of standard parameterization with the layer sizes ``n`` setting the
relative learning rates.  The default ``(1, 1)`` is the plain standard layer.
On inputs with spatial axes (``(N, C, *spatial)``) Dense acts on the channel
axis at every position, like a 1×1 convolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from widelimit._validation import check_positive_int, check_std
from widelimit.kernel import Kernel
from widelimit.layers.base import (
    KernelLike,
    ShapeLike,
    WidthLayer,
    randn,
    single_kernel,
    single_shape,
)
from widelimit.layers.inputs import (  # input_kernel re-exported (its home before inputs.py)
    input_kernel,  # noqa: F401 - re-exported for importers of its old home
    is_zero_constant,
)
from widelimit.layers.tiles import Tile

Parameterization = Literal["ntk", "standard"]
PARAMETERIZATIONS = ("ntk", "standard")


def check_parameterization(value: str) -> str:
    if value not in PARAMETERIZATIONS:
        raise ValueError(f"`parameterization` must be one of {PARAMETERIZATIONS}; got {value!r}")
    return value


def check_width_factor(value: object, parameterization: str) -> tuple[int, int]:
    """``width_factor`` as ``(s_in, s_out)`` positive ints (module docstring); raises
    ``TypeError``/``ValueError`` naming the argument.  Only ``"standard"`` accepts factors
    other than ``(1, 1)``."""
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise TypeError(
            f"`width_factor` must be a pair (s_in, s_out) of positive ints; got {value!r}"
        )
    pair = (
        check_positive_int("width_factor", value[0]),
        check_positive_int("width_factor", value[1]),
    )
    if pair != (1, 1) and parameterization != "standard":
        raise ValueError(
            f"`width_factor` {pair} applies to parameterization='standard' only: under 'ntk' "
            "the kernel does not depend on the widths (set the width itself instead)"
        )
    return pair


def base_fan_in(layer: str, fan_in: int, s_in: int) -> int:
    """``fan_in / s_in``, the base fan-in ``n`` of a layer with ``width_factor[0] = s_in``."""
    if fan_in % s_in:
        raise ValueError(
            f"{layer}: the input width {fan_in} is not a multiple of width_factor[0] = {s_in}; "
            "width_factor[0] must equal width_factor[1] of the previous width layer (1 for "
            "the first layer)"
        )
    return fan_in // s_in


def init_affine(
    module: nn.Module,
    weight_shape: tuple[int, ...],
    fan_in: int,
    w_std: float,
    b_std: float,
    parameterization: str,
    *,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device | str | None,
    width_factor_in: int = 1,
    bias_shape: tuple[int, ...] | None = None,
) -> None:
    """Give an affine module ``weight`` (``weight_shape``), ``bias`` (``bias_shape``, default
    ``(weight_shape[0],)``; ``None`` when ``b_std == 0``) and the scales ``w_scale``/``b_scale``
    of its forward pass ``h = w_scale·W·x + b_scale·b``, initialised per ``parameterization``
    (module docstring; ``width_factor_in`` = ``s_in`` of the standard parameterization's width
    factor). Shared by dense, convolution and locally connected layers."""
    kw = {"generator": generator, "dtype": dtype, "device": device}
    w = randn(weight_shape, **kw)
    if bias_shape is None:
        bias_shape = (weight_shape[0],)
    b = randn(bias_shape, **kw) if b_std > 0 else None
    if parameterization == "ntk":
        module.w_scale, module.b_scale = w_std / math.sqrt(fan_in), b_std
    else:
        # W ~ N(0, σw²/n) with base fan-in n = fan_in/s_in; h = W·x/√s_in + b
        w = w * (w_std / math.sqrt(fan_in / width_factor_in))
        b = None if b is None else b * b_std
        module.w_scale = 1.0 if width_factor_in == 1 else 1.0 / math.sqrt(width_factor_in)
        module.b_scale = 1.0
    module.weight = nn.Parameter(w)
    module.bias = None if b is None else nn.Parameter(b)


class DenseModule(nn.Module):
    """Finite dense layer acting on axis 1 (features or channels).

    Parameters are ``weight: (out, in)`` and ``bias: (out,)`` (absent when
    ``b_std == 0``); see the module docstring for the two parameterizations.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
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
        self.in_features, self.out_features = in_features, out_features
        self.parameterization = parameterization
        init_affine(
            self, (out_features, in_features), in_features, w_std, b_std, parameterization,
            generator=generator, dtype=dtype, device=device, width_factor_in=width_factor_in,
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        """``x: (N, in, *spatial)`` -> ``(N, out, *spatial)``."""
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"DenseModule expects {self.in_features} features on axis 1; "
                f"got input of shape {tuple(x.shape)}"
            )
        h = torch.movedim(x, 1, -1) @ (self.w_scale * self.weight).T
        if self.bias is not None:
            h = h + self.b_scale * self.bias
        return torch.movedim(h, -1, 1)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, parameterization={self.parameterization}"


def _affine_(t: Tensor, a: float, b: float) -> Tensor:
    """``t ← a·t + b`` in place (no pass when ``a = 1, b = 0``).

    Rounded exactly as ``a * cov + b`` on the variance vectors (multiply, then add): a fused
    multiply-add would round the kernel's diagonal differently from the variances, so that
    the correlation of an example with itself came out 1 − ε, which arc-cosine duals amplify
    to √ε (seen as 1e-8 errors in attention kernels)."""
    if b == 0.0:
        return t if a == 1.0 else t.mul_(a)
    if a == 1.0:
        return t.add_(b)
    return t.mul_(a).add_(b)


@dataclass(frozen=True)
class Dense(WidthLayer):
    """Fully-connected layer with ``out_features`` outputs.

    Args:
        out_features: width of the finite layer (hidden widths are usually set
            with ``net.module(width)``; the kernel ignores them under ``"ntk"``).
        w_std: σw ≥ 0; weights have variance σw²/fan_in.
        b_std: σb ≥ 0; biases have variance σb² (no bias when 0).
        parameterization: ``"ntk"`` (default) or ``"standard"``.
        width_factor: ``(s_in, s_out)``, ``"standard"`` only (Neural Tangents' ``s``; module
            docstring): the finite layer has ``out_features·s_out`` outputs, reads
            ``s_in``-times wider inputs, and the NTK counts the base fan-in
            ``fan_in/s_in``.  Default ``(1, 1)``.
    """

    out_features: int
    w_std: float = 1.0
    b_std: float = 0.0
    parameterization: str = "ntk"
    width_factor: tuple[int, int] = (1, 1)

    width_field: ClassVar[str] = "out_features"
    pairwise: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_positive_int("out_features", self.out_features)
        object.__setattr__(self, "w_std", check_std("w_std", self.w_std))
        object.__setattr__(self, "b_std", check_std("b_std", self.b_std))
        check_parameterization(self.parameterization)
        wf = check_width_factor(self.width_factor, self.parameterization)
        object.__setattr__(self, "width_factor", wf)

    def out_shape(self, in_shape: ShapeLike) -> ShapeLike:
        s = single_shape(self, in_shape)
        base_fan_in("Dense", s[0], self.width_factor[0])
        return (self.out_features * self.width_factor[1], *s[1:])

    def make_module(self, in_shape, *, generator=None, dtype=torch.float32, device=None):
        s = single_shape(self, in_shape)
        base_fan_in("Dense", s[0], self.width_factor[0])
        return DenseModule(
            s[0],
            self.out_features * self.width_factor[1],
            self.w_std,
            self.b_std,
            self.parameterization,
            generator=generator,
            dtype=dtype,
            device=device,
            width_factor_in=self.width_factor[0],
        )

    def transform_kernel(self, k: KernelLike) -> Kernel:
        k = single_kernel(self, k)
        w2, b2 = self.w_std**2, self.b_std**2
        nngp = w2 * k.nngp + b2  # Σ' = σw² Σ + σb²
        ntk = None
        if k.ntk is not None:
            zero = is_zero_constant(k.ntk)  # the raw input's Θ = 0
            if self.parameterization == "ntk":
                ntk = nngp.clone() if zero else nngp + w2 * k.ntk  # Θ' = Σ' + σw² Θ
            else:
                # Θ' = n Σ + 1[σb>0] + σw² Θ, n = base fan-in (fan-in of the finite layer / s_in)
                n = base_fan_in("Dense", k.channels, self.width_factor[0])
                ntk = n * k.nngp + (1.0 if self.b_std > 0 else 0.0)
                if not zero:
                    ntk = ntk + w2 * k.ntk
        return k.replace(
            nngp=nngp,
            ntk=ntk,
            cov1=w2 * k.cov1 + b2,
            cov2=None if k.cov2 is None else w2 * k.cov2 + b2,
            channels=self.out_features * self.width_factor[1],
            is_gaussian=True,
        )

    def transform_tile(self, t: Tile) -> Tile:
        """The rule of :meth:`transform_kernel` in place on an owned tile (``layers.tiles``)."""
        w2, b2 = self.w_std**2, self.b_std**2
        s, theta = t.nngp, t.ntk
        if theta is not None and self.parameterization == "standard":
            # Θ' = n Σ + 1[σb>0] + σw² Θ, from Σ before it is overwritten
            bias = 1.0 if self.b_std > 0 else 0.0
            n = float(base_fan_in("Dense", t.channels, self.width_factor[0]))
            if is_zero_constant(theta):  # Θ = 0 (raw input)
                theta = s * n
                if bias:
                    theta.add_(bias)
            else:
                theta.mul_(w2).add_(s, alpha=n)
                if bias:
                    theta.add_(bias)
        _affine_(s, w2, b2)  # Σ' = σw² Σ + σb²
        if theta is not None and self.parameterization == "ntk":
            # Θ' = Σ' + σw² Θ (one pass); the raw input's Θ = 0 gives Θ' = Σ' (no zeros array)
            theta = (
                s.clone() if is_zero_constant(theta) else torch.add(s, theta, alpha=w2, out=theta)
            )
        return t.replace(
            nngp=s,
            ntk=theta,
            cov1=w2 * t.cov1 + b2,
            cov2=w2 * t.cov2 + b2,
            channels=self.out_features * self.width_factor[1],
            is_gaussian=True,
        )


__all__ = ["Dense", "DenseModule"]
