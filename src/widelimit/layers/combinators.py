"""Combinators: ``serial``, ``parallel``, ``FanOut``, ``FanInSum``, ``Identity``.

Residual block example::

    serial(FanOut(2), parallel(Identity(), serial(Dense(512), ReLU(), Dense(512))), FanInSum())

Kernel rules (docs/kernels.md, 'Residual blocks'): ``FanOut(n)`` copies the kernel into ``n``
branches; ``parallel`` applies one layer per branch; ``FanInSum`` adds the
branches' kernels.  Adding is exact when the branches are uncorrelated given
the input, which holds when every branch but at most one ends in a
zero-mean Gaussian layer (``Dense``/``Conv``); ``FanInSum`` checks this and
raises otherwise (e.g. ``Identity`` + ``ReLU`` branch would need a cross term).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from widelimit.kernel import Kernel
from widelimit.layers.base import (
    Branches,
    KernelLike,
    Layer,
    ShapeLike,
    call_module,
    side_after,
    single_kernel,
    single_shape,
)
from widelimit.layers.inputs import is_zero_constant


class SerialModule(nn.Module):
    """Apply sub-modules in order (values may be tensors or tuples of tensors).

    Side inputs given as keywords (``forward(x, pattern=a)``) reach the sub-modules
    that take them (:func:`~widelimit.layers.base.call_module`).
    """

    takes_side = True

    def __init__(self, mods: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(mods)

    def forward(self, x, **side):
        for m in self.layers:
            x = call_module(m, x, side)
            side = side_after(m, side)
        return x

    def side_out(self, side: dict) -> dict:
        for m in self.layers:
            side = side_after(m, side)
        return side


class ParallelModule(nn.Module):
    """Apply the i-th sub-module to the i-th branch (side inputs as in :class:`SerialModule`)."""

    takes_side = True

    def __init__(self, mods: list[nn.Module]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(mods)

    def forward(self, xs, **side):
        if not isinstance(xs, tuple) or len(xs) != len(self.branches):
            raise ValueError(f"ParallelModule expects a tuple of {len(self.branches)} tensors")
        return tuple(call_module(m, x, side) for m, x in zip(self.branches, xs, strict=True))

    def side_out(self, side: dict) -> dict:
        # branches end with equal shapes (FanInSum checks), so the first one's side serves
        return side_after(self.branches[0], side)


class FanOutModule(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return (x,) * self.n


class FanInSumModule(nn.Module):
    def forward(self, xs: tuple[Tensor, ...]) -> Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class IdentityModule(nn.Module):
    def forward(self, x):
        return x


@dataclass(frozen=True)
class Serial(Layer):
    """Layers applied one after the other (build with :func:`serial`)."""

    layers: tuple[Layer, ...]

    pairwise: ClassVar[bool] = True

    def __post_init__(self) -> None:
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise TypeError(
                    f"serial(...) argument {i} must be a widelimit layer; got "
                    f"{type(layer).__name__} (did you forget the parentheses, e.g. ReLU()?)"
                )

    def children(self) -> tuple[Layer, ...]:
        return self.layers

    def map_layers(self, fn):
        return Serial(tuple(layer.map_layers(fn) for layer in self.layers))

    def out_shape(self, in_shape: ShapeLike) -> ShapeLike:
        for layer in self.layers:
            in_shape = layer.out_shape(in_shape)
        return in_shape

    def make_module(self, in_shape, *, generator=None, dtype=torch.float32, device=None):
        mods = []
        for layer in self.layers:
            mods.append(
                layer.make_module(in_shape, generator=generator, dtype=dtype, device=device)
            )
            in_shape = layer.out_shape(in_shape)
        return SerialModule(mods)

    def transform_kernel(self, k: KernelLike) -> KernelLike:
        for layer in self.layers:
            k = layer.transform_kernel(k)
        return k

    def transform_tile(self, t):
        for layer in self.layers:
            t = layer.transform_tile(t)
        return t


@dataclass(frozen=True)
class Parallel(Layer):
    """One layer per branch (build with :func:`parallel`)."""

    layers: tuple[Layer, ...]

    pairwise: ClassVar[bool] = True

    def __post_init__(self) -> None:
        Serial(self.layers)  # same type checks

    def children(self) -> tuple[Layer, ...]:
        return self.layers

    def map_layers(self, fn):
        return Parallel(tuple(layer.map_layers(fn) for layer in self.layers))

    def _check(self, n: int) -> None:
        if n != len(self.layers):
            raise ValueError(
                f"parallel(...) has {len(self.layers)} layers but got {n} branches; "
                f"use FanOut({len(self.layers)}) before it"
            )

    def out_shape(self, in_shape: ShapeLike) -> ShapeLike:
        if not isinstance(in_shape, Branches):
            raise ValueError("parallel(...) needs several branches; put FanOut(n) before it")
        self._check(len(in_shape))
        return Branches(l.out_shape(s) for l, s in zip(self.layers, in_shape, strict=True))

    def make_module(self, in_shape, *, generator=None, dtype=torch.float32, device=None):
        self.out_shape(in_shape)
        return ParallelModule(
            [
                l.make_module(s, generator=generator, dtype=dtype, device=device)
                for l, s in zip(self.layers, in_shape, strict=True)
            ]
        )

    def transform_kernel(self, k: KernelLike) -> KernelLike:
        if not isinstance(k, tuple):
            raise ValueError("parallel(...) needs several branches; put FanOut(n) before it")
        self._check(len(k))
        return tuple(l.transform_kernel(kk) for l, kk in zip(self.layers, k, strict=True))

    def transform_tile(self, t):
        if not isinstance(t, tuple):
            raise ValueError("parallel(...) needs several branches; put FanOut(n) before it")
        self._check(len(t))
        return tuple(l.transform_tile(tt) for l, tt in zip(self.layers, t, strict=True))


@dataclass(frozen=True)
class FanOut(Layer):
    """Copy the input into ``n`` branches."""

    n: int

    pairwise: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"FanOut `n` must be a positive integer; got {self.n!r}")

    def out_shape(self, in_shape: ShapeLike) -> ShapeLike:
        return Branches([single_shape(self, in_shape)] * self.n)

    def make_module(self, in_shape, *, generator=None, dtype=torch.float32, device=None):
        single_shape(self, in_shape)
        return FanOutModule(self.n)

    def transform_kernel(self, k: KernelLike) -> tuple[Kernel, ...]:
        return (single_kernel(self, k),) * self.n

    def transform_tile(self, t):
        t = single_kernel(self, t)

        def own(x: Tensor | None) -> Tensor | None:  # the input's Θ = 0 is never written
            return x if x is None or is_zero_constant(x) else x.clone()

        # branches may overwrite their tile in place: each extra branch gets a copy
        return (t, *(t.replace(nngp=own(t.nngp), ntk=own(t.ntk)) for _ in range(self.n - 1)))


@dataclass(frozen=True)
class FanInSum(Layer):
    """Sum the branches (their shapes must match)."""

    pairwise: ClassVar[bool] = True

    def out_shape(self, in_shape: ShapeLike) -> ShapeLike:
        if not isinstance(in_shape, Branches):
            raise ValueError("FanInSum() needs several branches; put FanOut(n) before it")
        if len(set(in_shape)) != 1:
            raise ValueError(
                f"FanInSum() branches must have equal shapes; got {[tuple(s) for s in in_shape]}"
            )
        return in_shape[0]

    def make_module(self, in_shape, *, generator=None, dtype=torch.float32, device=None):
        self.out_shape(in_shape)
        return FanInSumModule()

    def transform_kernel(self, k: KernelLike) -> Kernel:
        if not isinstance(k, tuple):
            raise ValueError("FanInSum() needs several branches; put FanOut(n) before it")
        non_gaussian = [i for i, kk in enumerate(k) if not kk.is_gaussian]
        if len(non_gaussian) > 1:
            raise ValueError(
                f"FanInSum(): branches {non_gaussian} do not end in a zero-mean Gaussian layer "
                "(Dense/Conv), so their outputs are correlated and the kernels do not add; "
                "end all branches but one with an affine layer"
            )
        spatial = {(kk.spatial, kk.full_spatial, kk.nngp.shape) for kk in k}
        if len(spatial) != 1:
            raise ValueError("FanInSum(): branch kernels have different spatial layouts/shapes")
        has_ntk = {kk.ntk is None for kk in k}
        if len(has_ntk) != 1:  # pragma: no cover - all branches share the input's `get`
            raise ValueError("FanInSum(): branches disagree on whether the NTK is computed")

        def add(attr: str) -> Tensor | None:
            vals = [getattr(kk, attr) for kk in k]
            if vals[0] is None:
                return None
            out = vals[0]
            for v in vals[1:]:
                out = out + v
            return out

        return k[0].replace(
            nngp=add("nngp"),
            ntk=add("ntk"),
            cov1=add("cov1"),
            cov2=add("cov2"),
            is_gaussian=not non_gaussian,
        )


@dataclass(frozen=True)
class Identity(Layer):
    """Pass the input through unchanged."""

    pairwise: ClassVar[bool] = True

    def out_shape(self, in_shape: ShapeLike) -> ShapeLike:
        return in_shape

    def make_module(self, in_shape, *, generator=None, dtype=torch.float32, device=None):
        return IdentityModule()

    def transform_kernel(self, k: KernelLike) -> KernelLike:
        return k


def serial(*layers: Layer) -> Serial:
    """Compose layers in sequence: ``serial(Dense(512), ReLU(), Dense(1))``."""
    if not layers:
        raise ValueError("serial() needs at least one layer")
    return Serial(tuple(layers))


def parallel(*layers: Layer) -> Parallel:
    """Apply ``layers[i]`` to branch ``i`` (after ``FanOut(len(layers))``)."""
    if not layers:
        raise ValueError("parallel() needs at least one layer")
    return Parallel(tuple(layers))


__all__ = ["FanInSum", "FanOut", "Identity", "Parallel", "Serial", "parallel", "serial"]
