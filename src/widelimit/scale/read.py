"""Reading a stored kernel: block access without loading the whole matrix.

:func:`load_kernel` opens a store written by :func:`~widelimit.scale.compute_kernel`
and returns a :class:`StoredKernel` whose ``nngp``/``ntk`` are
:class:`KernelArray` views: ``K[r0:r1, c0:c1]`` reads only the chunks it
touches, and for a symmetric store the lower triangle is filled on the fly
from the stored upper tiles (``K[J, I] = K[I, J]ᵀ``).  ``np.asarray(K)`` loads
the whole matrix.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from widelimit.scale.store import KernelStore, StoreMetadata
from widelimit.scale.tiles import Tile, TilePlan

__all__ = ["KernelArray", "StoreInfo", "StoredKernel", "load_kernel", "verify_store"]


@dataclass(frozen=True)
class StoreInfo:
    """Summary of a store (``widelimit store-info``)."""

    path: str
    shape: tuple[int, int]
    dtype: str
    tile: int
    get: tuple[str, ...]
    symmetric: bool
    tiles_done: int
    tiles_total: int
    complete: bool
    spec: str
    x1_hash: str
    x2_hash: str | None
    bytes_on_disk: int


class KernelArray:
    """Read-only ``(N1, N2)`` view of one stored kernel (``"nngp"`` or ``"ntk"``).

    Supports ``K[rows, cols]`` with integer or unit-step slices, ``K.shape``,
    ``K.dtype`` and ``np.asarray(K)``.  Raises ``ValueError`` when a requested
    block touches a tile that is not finished yet (never returns unfilled values)
    and :class:`~widelimit.scale.store.StoreCorruptError` when a tile read does not
    match its completion record (missing or resized chunk file, changed data).
    """

    def __init__(self, store: KernelStore, name: str, done: set[tuple[int, int]]):
        self._store = store
        self._plan: TilePlan = store.plan
        self._done = done
        self.name = name

    @property
    def shape(self) -> tuple[int, int]:
        return (self._plan.n1, self._plan.n2)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._store.meta.dtype)

    def __len__(self) -> int:
        return self._plan.n1

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        out = self.block(0, self._plan.n1, 0, self._plan.n2)
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key: object) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key, slice(None))
        if len(key) != 2:
            raise IndexError("a stored kernel is 2-D: index it as K[rows, cols]")
        bounds = []
        squeeze = []
        for k, n in zip(key, self.shape, strict=True):
            if isinstance(k, int | np.integer):
                i = int(k) + (n if k < 0 else 0)
                if not 0 <= i < n:
                    raise IndexError(f"index {k} out of range for size {n}")
                bounds.append((i, i + 1))
                squeeze.append(True)
            elif isinstance(k, slice):
                start, stop, step = k.indices(n)
                if step != 1:
                    raise IndexError("stored kernels support unit-step slices only")
                bounds.append((start, max(start, stop)))
                squeeze.append(False)
            else:
                raise IndexError(f"unsupported index {k!r}: use ints or unit-step slices")
        out = self.block(*bounds[0], *bounds[1])
        if squeeze[1]:
            out = out[:, 0]
        if squeeze[0]:
            out = out[0]
        return out

    def block(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Rows ``r0:r1`` and columns ``c0:c1`` as a new numpy array."""
        t = self._plan.tile
        out = np.empty((r1 - r0, c1 - c0), dtype=self.dtype)
        if out.size == 0:
            return out
        for i in range(r0 // t, (r1 - 1) // t + 1):
            for j in range(c0 // t, (c1 - 1) // t + 1):
                rr = (max(r0, i * t), min(r1, (i + 1) * t))
                cc = (max(c0, j * t), min(c1, (j + 1) * t))
                dst = out[rr[0] - r0 : rr[1] - r0, cc[0] - c0 : cc[1] - c0]
                if self._plan.symmetric and j < i:  # lower triangle: transpose of (j, i)
                    data = self._tile(j, i)
                    dst[...] = data[cc[0] - j * t : cc[1] - j * t, rr[0] - i * t : rr[1] - i * t].T
                else:
                    data = self._tile(i, j)
                    dst[...] = data[rr[0] - i * t : rr[1] - i * t, cc[0] - j * t : cc[1] - j * t]
        return out

    def _tile(self, i: int, j: int) -> np.ndarray:
        """Whole tile ``(i, j)``, checked against its completion record (size, checksum)."""
        self._need(i, j)
        return self._store.read_tile(self.name, self._plan.tile_at(i, j))

    def _need(self, i: int, j: int) -> None:
        if (i, j) not in self._done:
            raise ValueError(
                f"tile ({i}, {j}) of {self.name!r} in store {str(self._store.path)!r} is not "
                "computed yet; finish the job with compute_kernel(...) (it resumes)"
            )

    def stored_tiles(self) -> Iterator[tuple[Tile, np.ndarray]]:
        """Yield ``(tile, data)`` for every stored tile (upper triangle when symmetric)."""
        return self.stored_tiles_where(lambda t: True)

    def stored_tiles_where(self, keep: Callable[[Tile], bool]) -> Iterator[tuple[Tile, np.ndarray]]:
        """Yield ``(tile, data)`` for the stored tiles with ``keep(tile)`` true."""
        for tile in self._plan.tiles():
            if keep(tile):
                yield tile, self._tile(tile.i, tile.j)


class StoredKernel:
    """A kernel store opened for reading: ``.nngp``/``.ntk`` are :class:`KernelArray` views."""

    def __init__(self, store: KernelStore, *, verify: bool = False):
        self.store = store
        self.meta: StoreMetadata = store.meta
        self.done = store.done_tiles(verify_data=verify)
        self.run: Any = None  # RunStats of the compute_kernel call that returned this object
        self.nngp = KernelArray(store, "nngp", self.done) if "nngp" in self.meta.get else None
        self.ntk = KernelArray(store, "ntk", self.done) if "ntk" in self.meta.get else None

    @property
    def complete(self) -> bool:
        return len(self.done) == len(self.store.plan)

    @property
    def symmetric(self) -> bool:
        return self.meta.symmetric

    @property
    def shape(self) -> tuple[int, int]:
        return (self.meta.n1, self.meta.n2)

    def __getitem__(self, name: str) -> KernelArray:
        arr = getattr(self, name, None) if name in ("nngp", "ntk") else None
        if arr is None:
            raise KeyError(f"store holds {list(self.meta.get)}; {name!r} was not computed")
        return arr

    def info(self) -> StoreInfo:
        path = self.store.path
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        return StoreInfo(
            path=str(path),
            shape=self.shape,
            dtype=self.meta.dtype,
            tile=self.meta.tile,
            get=self.meta.get,
            symmetric=self.symmetric,
            tiles_done=len(self.done),
            tiles_total=len(self.store.plan),
            complete=self.complete,
            spec=self.meta.spec,
            x1_hash=self.meta.x1,
            x2_hash=self.meta.x2,
            bytes_on_disk=size,
        )

    def __repr__(self) -> str:
        return (
            f"StoredKernel({str(self.store.path)!r}, shape={self.shape}, dtype={self.meta.dtype}, "
            f"get={self.meta.get}, tiles={len(self.done)}/{len(self.store.plan)})"
        )


def load_kernel(path: str | os.PathLike, *, verify: bool = False) -> StoredKernel:
    """Open a kernel store for reading.

    Opening checks every completion record and the size of every chunk file
    (missing or truncated chunks are refused at once); every later tile read
    checks the data against the checksum in its record.

    Args:
        path: directory written by :func:`~widelimit.scale.compute_kernel`.
        verify: also re-hash every finished tile now (reads the whole store
            once) instead of on first read.
    Raises:
        :class:`~widelimit.scale.store.StoreCorruptError`: one line naming the
        store, the first damaged tile and the repair.
    Returns:
        :class:`StoredKernel`; ``.nngp[r0:r1, c0:c1]`` reads a block, ``np.asarray(.nngp)``
        the whole ``(N1, N2)`` matrix (lower triangle filled for symmetric stores).
    """
    return StoredKernel(KernelStore.open(path, mode="r"), verify=verify)


def verify_store(path: str | os.PathLike) -> list[str]:
    """Re-hash every finished tile of a store; one line per damaged tile (``[]``: all good).

    Unlike :func:`load_kernel` this lists *every* problem (``widelimit store-info
    --verify``) instead of stopping at the first.
    """
    _, bad = KernelStore.open(path, mode="r").scan(verify_data=True)
    return bad
