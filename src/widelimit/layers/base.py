"""The layer protocol: one class, two faces (finite module and kernel rule).

Every layer is a frozen dataclass that knows

* ``out_shape(in_shape)``: the per-example output shape of its finite module,
* ``make_module(in_shape, generator=..., dtype=..., device=...)``: a
  ``torch.nn.Module`` initialised from exactly the distribution its kernel
  rule assumes,
* ``transform_kernel(k)``: the infinite-width rule mapping the input
  :class:`~widelimit.kernel.Kernel` to the output one.

Any layer (a single ``Dense`` or a whole ``serial(...)``) is also a *network
spec*: :meth:`Layer.kernel` computes NNGP/NTK on data and :meth:`Layer.module`
builds the finite network.

Multi-branch values (between ``FanOut`` and ``FanInSum``) are Python tuples:
a tuple of kernels, a :class:`Branches` of shapes, a tuple of tensors.

Networks whose layers are all *pairwise* (``pairwise = True``: the kernel block
of each pair of examples maps from the same block and the two examples'
self-covariances; on dense features every entry from the same entry and the
two variances) are evaluated tile by tile with in-place rules
(``transform_tile``); see :mod:`widelimit.layers.tiles` for that protocol.

Side inputs: data that comes with each example but is not the features, e.g.
the graph of :class:`~widelimit.layers.graph.Aggregate`.  A layer that needs one
lists its keyword in ``side_inputs`` and normalises it in ``prepare_side``; the
user passes it by that keyword, as Neural Tangents does::

    net.kernel(x1, pattern=a1)                  # x2 is None: one tensor
    net.kernel(x1, x2, pattern=(a1, a2))        # one per batch
    net.module(width, input_shape=...)(x, pattern=a)   # the finite network

In the kernel it travels as ``Kernel.side1``/``side2`` (sliced per tile by the
tiled engine); in the finite network ``SerialModule``/``ParallelModule`` hand
it to the sub-modules whose ``takes_side`` is true (:func:`call_module`), updated by
the modules that change it (``side_out``, :func:`side_after`).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from widelimit._validation import (
    as_float_tensor,
    check_dense_input,
    check_kernel_finite,
    check_same_dtype_device,
)
from widelimit.kernel import Kernel
from widelimit.layers.inputs import input_kernel
from widelimit.layers.tiles import Tile, network_output, pairwise_kernel

Shape = tuple[int, ...]


class Branches(tuple):
    """Per-example shapes of several parallel branches (a tuple of shapes)."""


ShapeLike = Shape | Branches
KernelLike = Kernel | tuple[Kernel, ...]

GET_CHOICES = ("nngp", "ntk")


class Layer(ABC):
    """Base class of all layers and network specs (see module docstring)."""

    #: True for layers whose kernel rule mixes different spatial positions'
    #: covariances (pooling, attention): the network then tracks the full
    #: spatial covariance instead of its diagonal.
    mixes_positions: ClassVar[bool] = False

    #: True for layers whose rule maps the block (i, j) of nngp/ntk (one pair of
    #: examples; one entry on dense features) from the same block and the
    #: self-covariances cov1[i], cov2[j] only, i.e. mixes no examples; a network of
    #: such layers is evaluated tile by tile (:mod:`widelimit.layers.tiles`).
    pairwise: ClassVar[bool] = False

    #: Keywords of the side inputs this layer reads (module docstring), e.g. ``("pattern",)``.
    side_inputs: ClassVar[tuple[str, ...]] = ()

    # ------------------------------------------------------------- the rules
    @abstractmethod
    def out_shape(self, in_shape: ShapeLike) -> ShapeLike:
        """Per-example output shape for per-example input shape ``in_shape``."""

    @abstractmethod
    def make_module(
        self,
        in_shape: ShapeLike,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> nn.Module:
        """Finite module for inputs of per-example shape ``in_shape``, freshly initialised."""

    @abstractmethod
    def transform_kernel(self, k: KernelLike) -> KernelLike:
        """Infinite-width kernel rule: input kernel -> output kernel."""

    def transform_tile(self, t: Tile) -> Tile | tuple[Tile, ...]:
        """Rule on one tile of a dense-feature kernel (:mod:`widelimit.layers.tiles`).

        The default is the pure :meth:`transform_kernel` (tiles are kernels);
        pairwise layers may override it to overwrite the tile's ``nngp``/``ntk``
        in place (the caller hands over ownership of them).
        """
        return self.transform_kernel(t)

    # ------------------------------------------------------------ structure
    def children(self) -> tuple[Layer, ...]:
        """Sub-layers (combinators override)."""
        return ()

    def is_pairwise(self) -> bool:
        """Whether this layer and all its sub-layers are pairwise (``pairwise``)."""
        return self.pairwise and all(c.is_pairwise() for c in self.children())

    def side_input_layers(self) -> dict[str, Layer]:
        """The first layer (in forward order) reading each side input, by keyword."""
        out: dict[str, Layer] = {name: self for name in self.side_inputs}
        for c in self.children():
            for name, layer in c.side_input_layers().items():
                out.setdefault(name, layer)
        return out

    def prepare_side(self, name: str, value: object, x: Tensor, arg: str) -> Tensor:
        """Check side input ``name`` for the batch ``x`` and return it per example ``(N, ...)``.

        Layers listing ``name`` in ``side_inputs`` override this; ``arg`` names the
        user's argument in error messages (e.g. ``"pattern[1]"``).
        """
        raise NotImplementedError(f"{type(self).__name__} reads no side input {arg!r}")

    def needs_full_spatial(self) -> bool:
        """Whether any layer in this spec mixes spatial positions."""
        return self.mixes_positions or any(c.needs_full_spatial() for c in self.children())

    def width_layers(self) -> list[Layer]:
        """Layers with a width (``Dense``, ``Conv``) in forward order."""
        out: list[Layer] = []
        if isinstance(self, WidthLayer):
            out.append(self)
        for c in self.children():
            out.extend(c.width_layers())
        return out

    def map_layers(self, fn: Callable[[Layer], Layer]) -> Layer:
        """Rebuild the spec with ``fn`` applied to every leaf layer (combinators override)."""
        return fn(self)

    def with_width(self, width: int) -> Layer:
        """Copy of the spec whose hidden width layers all have ``width`` outputs.

        The last width layer in forward order (the readout) keeps its size.
        """
        from widelimit._validation import check_positive_int

        width = check_positive_int("width", width)
        layers = self.width_layers()
        hidden = {id(layer) for layer in layers[:-1]}
        return self.map_layers(lambda l: l.set_width(width) if id(l) in hidden else l)

    # ------------------------------------------------------- network facade
    def module(
        self,
        width: int | None = None,
        *,
        input_shape: int | Sequence[int],
        seed: int | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> nn.Module:
        """Build the finite network, initialised as the kernel assumes.

        Args:
            width: hidden width for every width layer but the readout (``None``
                keeps the sizes given in the spec).
            input_shape: per-example input shape, e.g. ``784`` or ``(3, 32, 32)``.
            seed: seed of the initialisation (``None``: torch's global RNG).
            dtype: of the parameters (default: ``torch.get_default_dtype()``).
            device: of the parameters.
        Returns:
            A module mapping ``(N, *input_shape)`` to ``(N, *out_shape)``.
        """
        spec = self if width is None else self.with_width(width)
        shape = _as_shape("input_shape", input_shape)
        gen = None
        if seed is not None:
            gen = torch.Generator(device="cpu")
            gen.manual_seed(int(seed))
        dtype = torch.get_default_dtype() if dtype is None else dtype
        return spec.make_module(shape, generator=gen, dtype=dtype, device=device)

    def output_shape(self, input_shape: int | Sequence[int]) -> ShapeLike:
        """Per-example output shape of the finite network."""
        return self.out_shape(_as_shape("input_shape", input_shape))

    def kernel(
        self,
        x1: Tensor,
        x2: Tensor | None = None,
        *,
        get: str | Sequence[str] = GET_CHOICES,
        **side: Tensor | tuple[Tensor, Tensor],
    ) -> Kernel:
        """Infinite-width NNGP (and NTK) of the network's outputs.

        Args:
            x1: ``(N1, d)`` dense inputs, ``(N1, C, L)`` signals or ``(N1, C, H, W)`` images.
            x2: second batch with the same trailing shape, or ``None`` for ``x1``.
            get: ``"nngp"``, ``"ntk"`` or both; the NNGP is always computed
                (the NTK recursion needs it), the NTK only when asked.
            **side: side inputs the network's layers read (module docstring), e.g.
                ``pattern=a1`` (``x2`` None) or ``pattern=(a1, a2)`` for
                :class:`~widelimit.layers.graph.Aggregate`.
        Returns:
            A :class:`Kernel`; for a network ending in a readout (``Dense`` or
            pooling + ``Dense``) ``nngp``/``ntk`` are ``(N1, N2)``.
        """
        gets = check_get(get)
        x1 = as_float_tensor("x1", x1, min_ndim=2, max_ndim=4)
        if x2 is not None:
            x2 = as_float_tensor("x2", x2, min_ndim=2, max_ndim=4)
            check_same_dtype_device("x1", x1, "x2", x2)
            if x1.shape[1:] != x2.shape[1:]:
                raise ValueError(
                    "`x1` and `x2` must have the same per-example shape; got "
                    f"{tuple(x1.shape[1:])} and {tuple(x2.shape[1:])}"
                )
        side1, side2 = self.check_side_inputs(side, x1, x2)
        check_dense_input(self, tuple(x1.shape[1:]))  # an MLP on images: needs Flatten
        self.out_shape(tuple(x1.shape[1:]))  # validates the architecture against the input
        full = self.needs_full_spatial()
        differentiate = torch.is_grad_enabled() and (
            x1.requires_grad or (x2 is not None and x2.requires_grad)
        )
        if self.is_pairwise() and not differentiate:
            # never hands back inf/NaN silently: checks its tiles as it computes them
            return pairwise_kernel(
                self, x1, x2, ntk="ntk" in gets, full_spatial=full, side1=side1, side2=side2
            )
        k0 = input_kernel(x1, x2, full_spatial=full, ntk="ntk" in gets)
        k0 = k0.replace(side1=side1, side2=side2)
        k = network_output(self.transform_kernel(k0))
        check_kernel_finite(k.nngp, k.ntk)  # never hand back inf/NaN silently
        if k.is_symmetric and not k.spatial:
            k = k.replace(
                nngp=0.5 * (k.nngp + k.nngp.T),
                ntk=None if k.ntk is None else 0.5 * (k.ntk + k.ntk.T),
            )
        return k

    def check_side_inputs(
        self, side: Mapping[str, object], x1: Tensor, x2: Tensor | None
    ) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
        """Side inputs given as keywords to :meth:`kernel` (module docstring), checked.

        Returns ``side1``, ``side2``: per-example tensors ``(N1, ...)``/``(N2, ...)``
        by keyword (``side2`` is ``None`` when ``x2`` is).  Raises ``TypeError`` for a
        keyword no layer reads or a value of the wrong form, ``ValueError`` for shapes.
        """
        readers = self.side_input_layers()
        side1: dict[str, Tensor] = {}
        side2: dict[str, Tensor] = {}
        for name, value in side.items():
            if name not in readers:
                known = ", ".join(f"{n}=" for n in readers) or "none"
                raise TypeError(
                    f"kernel() got an unexpected keyword argument {name!r}; the side inputs "
                    f"of this network are: {known}"
                )
            layer = readers[name]
            if x2 is None:
                if isinstance(value, tuple | list):
                    raise TypeError(
                        f"`{name}` must be one tensor for x1 when x2 is None; got a "
                        f"{type(value).__name__} (pass ({name}1, {name}2) together with x2)"
                    )
                side1[name] = _per_example(layer, name, value, x1, name)
            else:
                if not isinstance(value, tuple | list) or len(value) != 2:
                    raise TypeError(
                        f"`{name}` must be a pair ({name}1, {name}2) for x1 and x2; got "
                        f"{type(value).__name__}"
                    )
                side1[name] = _per_example(layer, name, value[0], x1, f"{name}[0]")
                side2[name] = _per_example(layer, name, value[1], x2, f"{name}[1]")
        return side1, (None if x2 is None else side2)


def _per_example(layer: Layer, name: str, value: object, x: Tensor, arg: str) -> Tensor:
    t = layer.prepare_side(name, value, x, arg)
    if t.ndim == 0 or t.shape[0] != x.shape[0]:  # pragma: no cover - prepare_side checks
        raise ValueError(f"`{arg}` must have one entry per example ({x.shape[0]})")
    return t


def call_module(module: nn.Module, x: object, side: dict[str, object]) -> object:
    """``module(x, **side)`` if ``module.takes_side`` (it reads side inputs), else ``module(x)``."""
    if side and getattr(module, "takes_side", False):
        return module(x, **side)
    return module(x)


def side_after(module: nn.Module, side: dict[str, object]) -> dict[str, object]:
    """Side inputs for the modules after ``module``: ``module.side_out(side)`` if it has one
    (e.g. a strided convolution shrinks the mask), else ``side`` unchanged."""
    fn = getattr(module, "side_out", None)
    return side if fn is None or not side else fn(side)


class WidthLayer(Layer):
    """A layer whose output has a width (features or channels) set in the spec."""

    width_field: ClassVar[str] = "out_features"

    @property
    def width(self) -> int:
        return int(getattr(self, self.width_field))

    def set_width(self, width: int) -> Layer:
        return dataclasses.replace(self, **{self.width_field: width})


def _as_shape(name: str, shape: int | Sequence[int]) -> Shape:
    if isinstance(shape, int):
        shape = (shape,)
    try:
        out = tuple(int(s) for s in shape)
    except TypeError as err:
        raise TypeError(f"`{name}` must be an int or a sequence of ints; got {shape!r}") from err
    if not out or any(s <= 0 for s in out):
        raise ValueError(f"`{name}` must be non-empty with positive sizes; got {shape!r}")
    return out


def check_get(get: str | Sequence[str]) -> tuple[str, ...]:
    """``get`` (``"nngp"``, ``"ntk"`` or a sequence of them) as a tuple; raises ``ValueError``."""
    gets = (get,) if isinstance(get, str) else tuple(get)
    bad = [g for g in gets if g not in GET_CHOICES]
    if bad or not gets:
        raise ValueError(f"`get` must be a subset of {GET_CHOICES}; got {get!r}")
    return gets


def single_kernel(layer: Layer, k: KernelLike) -> Kernel:
    """Return ``k`` if it is one kernel, else raise a clear error naming ``layer``."""
    if isinstance(k, tuple):
        raise ValueError(
            f"{type(layer).__name__} got {len(k)} parallel branches; "
            "use parallel(...) to apply layers per branch or FanInSum() to merge them"
        )
    return k


def single_shape(layer: Layer, shape: ShapeLike) -> Shape:
    """Return ``shape`` if it is one shape, else raise (see :func:`single_kernel`)."""
    if isinstance(shape, Branches):
        raise ValueError(
            f"{type(layer).__name__} got {len(shape)} parallel branches; "
            "use parallel(...) to apply layers per branch or FanInSum() to merge them"
        )
    return shape


def randn(
    shape: Sequence[int],
    *,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device | str | None,
) -> Tensor:
    """Standard normal tensor drawn on the CPU from ``generator`` (reproducible) then moved."""
    return torch.randn(tuple(shape), generator=generator, dtype=dtype).to(device)
