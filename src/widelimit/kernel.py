"""The one kernel state type that flows between layers.

A :class:`Kernel` holds the infinite-width covariances of a layer's outputs for
two batches of inputs ``x1`` (``N1`` examples) and ``x2`` (``N2`` examples).
Output channels are traced out: at infinite width they are i.i.d.

Spatial layouts (``spatial`` = spatial sizes of the layer's output):

* dense features: ``spatial == ()``; ``nngp``/``ntk`` are ``(N1, N2)``;
  ``cov1`` is ``(N1,)`` and ``cov2`` is ``(N2,)``.
* diagonal spatial mode (``full_spatial=False``): covariances between the same
  position of two inputs only.  ``nngp``/``ntk``: ``(N1, N2, *spatial)``,
  e.g. ``(N1, N2, H, W)``; ``cov1``: ``(N1, *spatial)``.
* full spatial mode (``full_spatial=True``): covariances between every pair of
  positions, in separable layout ``(N1, N2, H, H', W, W')`` (2-D) or
  ``(N1, N2, L, L')`` (1-D); ``cov1``: ``(N1, H, H', W, W')``, the covariance of
  each ``x1`` with itself between all position pairs.

Side inputs (data carried with the examples that some layers need, e.g. the
graph of each example for :class:`~widelimit.layers.graph.Aggregate`) travel
with the kernel: ``side1``/``side2`` map a name (the keyword of
``net.kernel(..., pattern=...)``) to a tensor whose leading axis is the
examples of ``x1``/``x2``.  Every layer copies them on with :meth:`Kernel.replace`
and the tiled engine slices them with the tile's rows and columns.

``cov1[n]`` is always the ``x1[n]``-with-itself block (variances on its
diagonal), so elementwise layers can find ``Σ(x,x)`` and ``Σ(x',x')`` for every
entry of ``nngp``.  ``cov2`` is ``None`` when ``x2`` is ``x1`` (``nngp`` is then
symmetric and ``cov2`` equals ``cov1``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["Kernel"]


@dataclass(frozen=True)
class Kernel:
    """Infinite-width NNGP/NTK state of a layer output (immutable).

    Attributes:
        nngp: ``(N1, N2, *spatial_pairs)`` NNGP covariance Σ between ``x1`` and ``x2``.
        ntk: same shape as ``nngp``; the NTK Θ, or ``None`` when not requested.
        cov1: ``(N1, *spatial_pairs)`` covariance of each ``x1`` with itself.
        cov2: ``(N2, *spatial_pairs)`` for ``x2``, or ``None`` when ``x2 is x1``.
        spatial: spatial sizes of the layer output, ``()`` for dense features.
        full_spatial: whether position pairs are all tracked (see module docstring).
        channels: number of features/channels of the corresponding *finite*
            layer output (fan-in of the next layer; used by the standard
            parameterization, whose NTK depends on width).
        is_gaussian: whether the outputs are Gaussian pre-activations (the
            output of an affine layer) rather than post-activations.
        side1: side inputs of ``x1`` by name, each ``(N1, ...)`` (module docstring).
        side2: the same for ``x2`` (``(N2, ...)``), or ``None`` when ``x2 is x1``.
    """

    nngp: Tensor
    ntk: Tensor | None
    cov1: Tensor
    cov2: Tensor | None
    spatial: tuple[int, ...] = ()
    full_spatial: bool = False
    channels: int = 1
    is_gaussian: bool = False
    side1: Mapping[str, Tensor] = field(default_factory=dict, compare=False)
    side2: Mapping[str, Tensor] | None = field(default=None, compare=False)

    # ------------------------------------------------------------------ basics
    @property
    def n1(self) -> int:
        """Number of examples in ``x1``."""
        return int(self.nngp.shape[0])

    @property
    def n2(self) -> int:
        """Number of examples in ``x2``."""
        return int(self.nngp.shape[1])

    @property
    def is_symmetric(self) -> bool:
        """True when ``x2`` is ``x1`` (``cov2 is None``)."""
        return self.cov2 is None

    @property
    def dtype(self) -> torch.dtype:
        return self.nngp.dtype

    @property
    def device(self) -> torch.device:
        return self.nngp.device

    def replace(self, **changes: object) -> Kernel:
        """Return a copy with the given fields replaced."""
        return dataclasses.replace(self, **changes)

    def side_pair(self, name: str) -> tuple[Tensor, Tensor] | None:
        """Side input ``name`` of ``x1`` and ``x2`` (``x1``'s twice when symmetric), or ``None``."""
        s1 = self.side1.get(name)
        if s1 is None:
            return None
        s2 = s1 if self.side2 is None else self.side2.get(name)
        return None if s2 is None else (s1, s2)

    def cov2_or_cov1(self) -> Tensor:
        """``cov2``, falling back to ``cov1`` for symmetric kernels."""
        return self.cov1 if self.cov2 is None else self.cov2

    # ------------------------------------------------- variances per entry
    def variances(self) -> tuple[Tensor, Tensor]:
        """Variances ``Σ(x,x)`` and ``Σ(x',x')`` broadcastable to ``nngp``.

        Returns ``(q1, q2)`` with shapes that broadcast against ``nngp``: for
        dense ``(N1, 1)`` and ``(1, N2)``; for diagonal spatial
        ``(N1, 1, *spatial)`` and ``(1, N2, *spatial)``; for full spatial the
        variance at the first/second position of each pair.
        """
        from widelimit.layers.spatial import pair_variances  # here: layers imports this module

        return pair_variances(self.cov1, self.cov2_or_cov1(), self.spatial, self.full_spatial)

    def self_variances(self, which: int = 1) -> tuple[Tensor, Tensor]:
        """Variances broadcastable to ``cov1`` (``which=1``) or ``cov2`` (``which=2``).

        For dense/diagonal layouts both are the diagonal itself; for full
        spatial layouts they are the variances at the two positions of each pair.
        """
        from widelimit.layers.spatial import expand_first, expand_second, spatial_diagonal

        cov = self.cov1 if which == 1 else self.cov2_or_cov1()
        if not self.full_spatial or not self.spatial:
            return cov, cov
        var = spatial_diagonal(cov, len(self.spatial))  # (N, *spatial)
        return expand_first(var), expand_second(var)
