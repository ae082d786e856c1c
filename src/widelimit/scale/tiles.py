"""Tile plan of a kernel matrix: which ``(rows, cols)`` blocks to compute.

Kernels are block-separable (docs/scale.md): entry ``(i, j)`` depends only on
inputs ``i`` and ``j``, so the ``(N1, N2)`` kernel splits into square tiles of
side ``tile`` (edge tiles are smaller when ``tile`` does not divide ``N``).
Tile ``(I, J)`` covers rows ``[I·tile, min((I+1)·tile, N1))`` and columns
``[J·tile, min((J+1)·tile, N2))``, which is exactly one Zarr chunk of the store,
so concurrent tiles never write the same chunk.

For a symmetric kernel (``x2 is x1``) only the upper triangle ``I <= J`` is
planned; ``K[J, I] = K[I, J]ᵀ`` is filled on read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from widelimit._checks import check_positive_int

__all__ = ["Tile", "TilePlan", "tile_plan"]


@dataclass(frozen=True)
class Tile:
    """One block of the kernel: rows ``r0:r1`` of ``x1`` against columns ``c0:c1`` of ``x2``."""

    i: int
    j: int
    r0: int
    r1: int
    c0: int
    c1: int

    @property
    def rows(self) -> slice:
        return slice(self.r0, self.r1)

    @property
    def cols(self) -> slice:
        return slice(self.c0, self.c1)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.r1 - self.r0, self.c1 - self.c0)

    @property
    def entries(self) -> int:
        return (self.r1 - self.r0) * (self.c1 - self.c0)

    @property
    def key(self) -> str:
        """Stable name of the tile, used for its completion record."""
        return f"r{self.i}_c{self.j}"


@dataclass(frozen=True)
class TilePlan:
    """All tiles of an ``(n1, n2)`` kernel with square tiles of side ``tile``."""

    n1: int
    n2: int
    tile: int
    symmetric: bool

    @property
    def grid(self) -> tuple[int, int]:
        """Number of tile rows and tile columns."""
        return (math.ceil(self.n1 / self.tile), math.ceil(self.n2 / self.tile))

    def tile_at(self, i: int, j: int) -> Tile:
        t = self.tile
        return Tile(i, j, i * t, min((i + 1) * t, self.n1), j * t, min((j + 1) * t, self.n2))

    def tiles(self) -> list[Tile]:
        """Tiles to compute, row-major; upper triangle ``i <= j`` only when symmetric."""
        gi, gj = self.grid
        return [
            self.tile_at(i, j)
            for i in range(gi)
            for j in range(gj)
            if not (self.symmetric and j < i)
        ]

    def computed_entries(self, t: Tile) -> int:
        """Entries the engine computes for tile ``t``: a diagonal tile of a symmetric plan
        computes its upper triangle with the diagonal, any other tile all of its entries."""
        if self.symmetric and t.i == t.j:
            side = t.r1 - t.r0
            return side * (side + 1) // 2
        return t.entries

    def __len__(self) -> int:
        gi, gj = self.grid
        return gi * (gi + 1) // 2 if self.symmetric else gi * gj

    @property
    def entries(self) -> int:
        """Kernel entries actually computed (the upper triangle of tiles when symmetric).

        Closed form, O(1): all ``n1·n2`` entries, or for a symmetric plan half of them plus
        half of the diagonal tiles' entries (``(n² + Σ_I side_I²)/2``; every side is
        ``tile`` except the last).  Never enumerates tiles.
        """
        if not self.symmetric:
            return self.n1 * self.n2
        g = self.grid[0]
        last = self.n1 - (g - 1) * self.tile
        diagonal = (g - 1) * self.tile**2 + last**2
        return (self.n1 * self.n1 + diagonal) // 2

    def tile_entries(self, i: int, j: int) -> int:
        """Entries of tile ``(i, j)`` without building it."""
        t = self.tile
        return (min((i + 1) * t, self.n1) - i * t) * (min((j + 1) * t, self.n2) - j * t)


def tile_plan(n1: int, n2: int, tile: int, *, symmetric: bool) -> TilePlan:
    """Plan square tiles of side ``tile`` over an ``(n1, n2)`` kernel.

    ``tile`` larger than the kernel is clipped to ``max(n1, n2)``.  A symmetric
    plan needs ``n1 == n2``.
    """
    n1 = check_positive_int("n1", n1)
    n2 = check_positive_int("n2", n2)
    tile = check_positive_int("tile", tile)
    if symmetric and n1 != n2:
        raise ValueError(f"a symmetric tile plan needs n1 == n2; got {n1} and {n2}")
    return TilePlan(n1, n2, min(tile, max(n1, n2)), bool(symmetric))
