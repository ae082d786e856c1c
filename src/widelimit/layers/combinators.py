"""Combinators: ``serial``, ``parallel``, ``repeat``, ``FanOut``, ``FanInSum``, ``FanInProd``,
``FanInConcat``, ``Identity``.

Residual block example::

    serial(FanOut(2), parallel(Identity(), serial(Dense(512), ReLU(), Dense(512))), FanInSum())

Kernel rules (docs/kernels.md, 'Residual blocks'): ``FanOut(n)`` copies the kernel into ``n``
branches; ``parallel`` applies one layer per branch; ``FanInSum`` adds the
branches' kernels.  Adding is exact when the branches are uncorrelated given
the input, which holds when every branch but at most one ends in a
zero-mean Gaussian layer (``Dense``/``Conv``); ``FanInSum`` checks this and
raises otherwise (e.g. ``Identity`` + ``ReLU`` branch would need a cross term).

``FanInProd`` multiplies the branches elementwise (Neural Tangents' ``stax.FanInProd``):
for *independent* branches the second moments multiply, NNGP ``Π_i K_i`` and NTK
``Σ_i Θ_i Π_{j≠i} K_j``.  ``FanInConcat`` stacks the branches along the channel axis
(Neural Tangents' ``stax.FanInConcat`` on channels): the next layer averages over all
channels, so the kernel is the channel-count-weighted average of the branches' kernels.
Neither output is a Gaussian pre-activation, so an activation may not follow directly
(put a ``Dense``/``Conv`` in between).
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


class FanInProdModule(nn.Module):
    def forward(self, xs: tuple[Tensor, ...]) -> Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out


class FanInConcatModule(nn.Module):
    def forward(self, xs: tuple[Tensor, ...]) -> Tensor:
        return torch.cat(xs, dim=1)


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
        _check_products(self.layers)

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


def _fan_in_kernels(name: str, k: KernelLike) -> tuple[Kernel, ...]:
    if not isinstance(k, tuple):
        raise ValueError(f"{name}() needs several branches; put FanOut(n) before it")
    if len({kk.ntk is None for kk in k}) != 1:  # pragma: no cover - branches share `get`
        raise ValueError(f"{name}(): branches disagree on whether the NTK is computed")
    return k


@dataclass(frozen=True)
class FanInProd(Layer):
    """Multiply the branches elementwise (their shapes must match).

    Kernel rule (Neural Tangents' ``stax.FanInProd``): for branch outputs that are
    *independent* given the input, the second moments multiply:
    NNGP ``Σ = Π_i Σ_i`` and NTK ``Θ = Σ_i Θ_i Π_{j≠i} Σ_j`` (product rule), on every
    layout (dense ``(N1, N2)``, diagonal or full spatial), ``cov1``/``cov2`` alike.

    Assumption: the branches are independent, which holds when every branch but at most
    one contains its own weights (a ``Dense``/``Conv``...); ``serial(...)`` checks this
    where it can see the branches (``FanOut``/``parallel`` before ``FanInProd``) and
    raises otherwise (``FanOut(2) -> FanInProd`` computes ``x²``, whose second moment is
    not ``Σ²``).  The output is not Gaussian: an activation may not follow directly.
    """

    pairwise: ClassVar[bool] = True

    def out_shape(self, in_shape: ShapeLike) -> ShapeLike:
        if not isinstance(in_shape, Branches):
            raise ValueError("FanInProd() needs several branches; put FanOut(n) before it")
        if len(set(in_shape)) != 1:
            raise ValueError(
                f"FanInProd() branches must have equal shapes; got {[tuple(s) for s in in_shape]}"
            )
        return in_shape[0]

    def make_module(self, in_shape, *, generator=None, dtype=torch.float32, device=None):
        self.out_shape(in_shape)
        return FanInProdModule()

    def transform_kernel(self, k: KernelLike) -> Kernel:
        k = _fan_in_kernels("FanInProd", k)
        layouts = {(kk.spatial, kk.full_spatial, kk.nngp.shape, kk.channels) for kk in k}
        if len(layouts) != 1:
            raise ValueError(
                "FanInProd(): branch kernels have different shapes/spatial layouts; "
                "the branches must end with equal shapes"
            )

        def prod(vals: list[Tensor | None]) -> Tensor | None:
            if vals[0] is None:
                return None
            out = vals[0]
            for v in vals[1:]:
                out = out * v
            return out

        nngp, ntk = k[0].nngp, k[0].ntk
        for kk in k[1:]:
            if ntk is not None:  # (Π_{<i} Σ)·Θ_i + Θ_{<i}·Σ_i, before nngp is updated
                ntk = ntk * kk.nngp + nngp * kk.ntk
            nngp = nngp * kk.nngp
        return k[0].replace(
            nngp=nngp,
            ntk=ntk,
            cov1=prod([kk.cov1 for kk in k]),
            cov2=prod([kk.cov2 for kk in k]),
            is_gaussian=len(k) == 1 and k[0].is_gaussian,
        )


@dataclass(frozen=True)
class FanInConcat(Layer):
    """Concatenate the branches along the channel axis (``axis=1``: NCHW / NCL / ``(N, d)``).

    Kernel rule (Neural Tangents' ``stax.FanInConcat`` on the channel axis): the next
    layer averages over all ``C = Σ_i C_i`` channels, so NNGP and NTK are the weighted
    averages ``Σ_i (C_i / C) K_i`` (``C_i``: the branch's channel count,
    ``Kernel.channels``).  Exact whatever the branches' dependence (no cross-branch term
    enters a channel average).  The output channels are not identically distributed,
    so the result is not a Gaussian pre-activation: an activation may not follow
    directly (put a ``Dense``/``Conv`` in between).

    Args:
        axis: the concatenation axis counted with the batch axis (1, or ``-1`` on dense
            features ``(N, d)``); spatial axes are not supported (ValueError).
    """

    axis: int = 1

    pairwise: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if isinstance(self.axis, bool) or not isinstance(self.axis, int):
            raise TypeError(f"FanInConcat `axis` must be an int; got {self.axis!r}")
        if self.axis == 0:
            raise ValueError("FanInConcat `axis` must not be 0 (the batch axis); use axis=1")

    def _check_axis(self, ndim: int) -> None:
        """``ndim``: per-example rank (1 for dense features)."""
        if not -(ndim + 1) <= self.axis <= ndim:
            raise ValueError(
                f"FanInConcat `axis`={self.axis} is out of range for inputs of rank {ndim + 1}"
            )
        if self.axis % (ndim + 1) != 1:
            raise ValueError(
                f"FanInConcat `axis`={self.axis}: only concatenation along the channel axis "
                "(axis=1) is supported; concatenating along a spatial axis would need the "
                "cross-branch position covariances"
            )

    def out_shape(self, in_shape: ShapeLike) -> ShapeLike:
        if not isinstance(in_shape, Branches):
            raise ValueError("FanInConcat() needs several branches; put FanOut(n) before it")
        self._check_axis(len(in_shape[0]))
        if len({tuple(s[1:]) for s in in_shape}) != 1 or len({len(s) for s in in_shape}) != 1:
            raise ValueError(
                "FanInConcat() branches must have equal shapes except the channel axis; "
                f"got {[tuple(s) for s in in_shape]}"
            )
        return (sum(s[0] for s in in_shape), *in_shape[0][1:])

    def make_module(self, in_shape, *, generator=None, dtype=torch.float32, device=None):
        self.out_shape(in_shape)
        return FanInConcatModule()

    def transform_kernel(self, k: KernelLike) -> Kernel:
        k = _fan_in_kernels("FanInConcat", k)
        self._check_axis(1 + len(k[0].spatial))
        layouts = {(kk.spatial, kk.full_spatial, kk.nngp.shape) for kk in k}
        if len(layouts) != 1:
            raise ValueError(
                "FanInConcat(): branch kernels have different spatial layouts/shapes; "
                "the branches must end with equal shapes except the channel axis"
            )
        total = sum(kk.channels for kk in k)

        def average(attr: str) -> Tensor | None:
            vals = [getattr(kk, attr) for kk in k]
            if vals[0] is None:
                return None
            out = vals[0] * (k[0].channels / total)
            for kk, v in zip(k[1:], vals[1:], strict=True):
                out = out + v * (kk.channels / total)
            return out

        return k[0].replace(
            nngp=average("nngp"),
            ntk=average("ntk"),
            cov1=average("cov1"),
            cov2=average("cov2"),
            channels=total,
            is_gaussian=False,
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


MAX_REPEAT = 100_000
"""Largest ``n`` of :func:`repeat` (the text parser of net descriptions allows 1000)."""


def repeat(layer: Layer, n: int) -> Serial:
    """``n`` copies of ``layer`` in sequence, each with its own weights in the finite net:
    ``repeat(serial(Dense(512), ReLU()), 3)`` (Neural Tangents' ``stax.repeat``)."""
    if not isinstance(layer, Layer):
        raise TypeError(f"repeat `layer` must be a widelimit layer; got {type(layer).__name__}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"repeat `n` must be a positive integer; got {n!r}")
    if n > MAX_REPEAT:  # checked before building: (layer,) * 10**9 exhausts memory
        raise ValueError(
            f"repeat `n` = {n} is above the limit {MAX_REPEAT}: every layer is stored and each "
            "kernel evaluation walks all of them; for deep-network signal propagation use "
            "widelimit.propagation (q/c maps iterated to any depth)"
        )
    return Serial((layer,) * n)


def _flatten(layers: tuple[Layer, ...]) -> list[Layer]:
    out: list[Layer] = []
    for layer in layers:
        out.extend(_flatten(layer.layers) if isinstance(layer, Serial) else [layer])
    return out


def _check_products(layers: tuple[Layer, ...]) -> None:
    """Refuse ``FanInProd`` of branches that are visibly dependent (see :class:`FanInProd`).

    Walks back from each ``FanInProd`` through the ``parallel`` layers to the ``FanOut``
    and counts the branches without weights (no ``Dense``/``Conv``): more than one means
    two branches are deterministic functions of the same input.
    """
    flat = _flatten(layers)
    for i, layer in enumerate(flat):
        if not isinstance(layer, FanInProd):
            continue
        weighted: list[bool] | None = None
        j = i - 1
        while j >= 0 and isinstance(flat[j], Parallel):
            branch = [bool(b.width_layers()) for b in flat[j].layers]
            weighted = (
                branch
                if weighted is None or len(weighted) != len(branch)
                else [a or b for a, b in zip(weighted, branch, strict=True)]
            )
            j -= 1
        if j < 0 or not isinstance(flat[j], FanOut):
            continue  # branches made elsewhere: nothing to check here
        if weighted is None:
            weighted = [False] * flat[j].n
        plain = [b for b, w in enumerate(weighted) if not w]
        if len(weighted) > 1 and len(plain) > 1:
            raise ValueError(
                f"FanInProd(): branches {plain} have no weights of their own (no Dense/Conv), "
                "so they are dependent and the product's kernel is not the product of "
                "kernels; give every branch but at most one its own Dense/Conv"
            )


__all__ = [
    "FanInConcat",
    "FanInProd",
    "FanInSum",
    "FanOut",
    "Identity",
    "Parallel",
    "Serial",
    "parallel",
    "repeat",
    "serial",
]
