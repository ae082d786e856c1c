"""Zarr store of a tiled kernel: chunked arrays, metadata fingerprint, per-tile records.

Layout of a store directory ``path.zarr``::

    zarr.json              Zarr v3 group; attrs["widelimit"] = metadata (below)
    nngp/, ntk/            (N1, N2) arrays, chunks (tile, tile) = one chunk per tile
    tiles/r{I}_c{J}.json   completion record of tile (I, J), written atomically
                           *after* its chunks, holding their checksums

The metadata fingerprints everything a tile depends on: the network spec
(:func:`widelimit.fingerprint.describe_spec`: the layer tree, functions by a
hash of their code, closures, defaults and globals, tensors by all their bytes),
the data (BLAKE2 of the bytes, shape and dtype of ``x1`` and ``x2``),
the dtype, the tile size and the requested kernels.  Re-opening a store with
anything different is refused with :class:`StoreMismatchError`.  Records that
cannot be parsed or do not match the plan, chunk files that are missing or
have the wrong size, and chunks whose checksum disagrees with the record raise
:class:`StoreCorruptError` (one line naming the store, the kernel, the tile
and the repair).  Every read of a tile goes through :meth:`KernelStore.read_tile`,
which checks size and checksum (the checksum once per process while the file
is unchanged).  A tile is "done" only when its record exists, so a job killed
mid-write recomputes that tile on resume.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import google_crc32c
import numpy as np

from widelimit.fingerprint import describe_spec
from widelimit.scale.tiles import Tile, TilePlan, tile_plan

if TYPE_CHECKING:  # Zarr loads only when a store is read through it (never to compute one)
    import zarr

__all__ = [
    "FORMAT_VERSION",
    "KernelStore",
    "StoreCorruptError",
    "StoreMetadata",
    "StoreMismatchError",
    "data_fingerprint",
    "describe_spec",
]

FORMAT_VERSION = 1
_ATTR = "widelimit"


class StoreMismatchError(ValueError):
    """The store was made for another net, data, dtype, tile size or ``get``."""


class StoreCorruptError(ValueError):
    """A completion record or a tile's data in the store is damaged."""


REPAIR_HINT = (
    "recompute the damaged tiles with the command that made the store plus --repair "
    "(`widelimit kernel ... --store PATH --repair`; Python: compute_kernel(..., repair=True))"
)


# ---------------------------------------------------------------- fingerprints
def data_fingerprint(x: np.ndarray, side: Mapping[str, np.ndarray] | None = None) -> str:
    """BLAKE2 digest of an array's dtype, shape and bytes (C order), and of its side inputs.

    ``side``: per-example side inputs (``mask``, ``pattern``, ...) by name; each adds its
    name, dtype, shape and bytes, in sorted name order.  Without side inputs the digest is
    that of ``x`` alone (stores made before side inputs keep their fingerprint).
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{x.dtype.str}|{x.shape}|".encode())
    h.update(np.ascontiguousarray(x).data)
    for name in sorted(side or {}):
        a = np.asarray(side[name])  # type: ignore[index]
        h.update(f"|side:{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


#: Prefix of the chunk checksums written by this version (CRC-32C of the chunk's bytes).
CHECKSUM = "crc32c"


def _checksum(a: np.ndarray, like: str | None = None) -> str:
    """Checksum of an array's bytes (C order): ``'crc32c:xxxxxxxx'``.

    CRC-32C (Castagnoli, hardware-accelerated through ``google_crc32c``, which Zarr itself
    uses for its ``crc32c`` codec) runs at ~6 GB/s, ten times BLAKE2b's ~0.6 GB/s: hashing
    a tile with BLAKE2b cost a third of computing it (docs/scale.md).  A CRC detects every
    burst error up to 32 bits and misses a random corruption with probability 2⁻³²; the
    checksums guard against damaged or truncated files, not against an adversary.
    ``like``: a stored checksum; a record written before this change holds a bare BLAKE2b
    hex digest, which is then what is computed (old stores keep verifying).
    """
    c = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    if like is not None and ":" not in like:  # legacy record: BLAKE2b, 16-byte digest
        return hashlib.blake2b(c.data, digest_size=16).hexdigest()
    ro = c.view()
    ro.flags.writeable = False  # google_crc32c reads read-only buffers only
    return f"{CHECKSUM}:{google_crc32c.value(ro):08x}"


def _checksum_ok(a: np.ndarray, stored: str) -> bool:
    return _checksum(a, like=stored) == stored


@dataclass(frozen=True)
class StoreMetadata:
    """What a stored kernel was computed from (compared field by field on re-open)."""

    spec: str
    x1: str
    x2: str | None  # None: symmetric (x2 is x1)
    n1: int
    n2: int
    input_shape: tuple[int, ...]
    dtype: str
    tile: int
    get: tuple[str, ...]
    version: int = FORMAT_VERSION

    @property
    def symmetric(self) -> bool:
        return self.x2 is None

    @property
    def spec_digest(self) -> str:
        return hashlib.blake2b(self.spec.encode(), digest_size=16).hexdigest()

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["get"] = list(self.get)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StoreMetadata:
        d = dict(d)
        d["input_shape"] = tuple(d["input_shape"])
        d["get"] = tuple(d["get"])
        return cls(**d)

    def plan(self) -> TilePlan:
        return tile_plan(self.n1, self.n2, self.tile, symmetric=self.symmetric)


_FIELD_TEXT = {
    "spec": "network spec",
    "x1": "data x1 (hash of its bytes)",
    "x2": "data x2 (hash of its bytes; None = symmetric x2 = x1)",
    "n1": "number of rows N1",
    "n2": "number of columns N2",
    "input_shape": "per-example input shape",
    "dtype": "dtype",
    "tile": "tile size",
    "get": "requested kernels (get)",
    "version": "store format version",
}


def _short(v: object, n: int = 120) -> str:
    s = str(v)
    return s if len(s) <= n else s[: n - 3] + "..."


def _raw_chunks(array_dir: Path) -> bool:
    """Whether a Zarr v3 array stores raw little-endian chunks under ``c/I/J`` (no codec
    but ``bytes``, default key encoding with "/"): then a chunk file is the chunk's bytes."""
    try:
        meta = json.loads((array_dir / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    codecs = meta.get("codecs") or []
    keys = meta.get("chunk_key_encoding") or {}
    return (
        sys.byteorder == "little"
        and len(codecs) == 1
        and codecs[0].get("name") == "bytes"
        and (codecs[0].get("configuration") or {}).get("endian") == "little"
        and keys.get("name") == "default"
        and (keys.get("configuration") or {}).get("separator") == "/"
    )


def zarr_metadata(meta: StoreMetadata, attrs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The Zarr v3 ``zarr.json`` documents of a new store, by path inside it: the group
    (with ``attrs``) and one ``(N1, N2)`` array per kernel in ``meta.get`` with chunks
    ``(tile, tile)``, no compressor (kernels barely compress; raw chunks are fastest),
    little-endian bytes, "/"-separated chunk keys and fill value NaN (a tile never
    written reads as NaN, never as a number).  The same documents Zarr 3's
    ``create_array(..., compressors=None, fill_value=nan)`` writes
    (tests/test_store_metadata.py compares them).
    """
    array = {
        "shape": [meta.n1, meta.n2],
        "data_type": np.dtype(meta.dtype).name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [meta.tile] * 2}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": "NaN",
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        "attributes": {},
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }
    docs = {"zarr.json": {"attributes": attrs, "zarr_format": 3, "node_type": "group"}}
    docs.update({f"{name}/zarr.json": array for name in meta.get})
    return docs


# ---------------------------------------------------------------------- store
class KernelStore:
    """A kernel store on disk (see module docstring); open with :meth:`open`/:meth:`create`."""

    def __init__(self, path: Path, mode: str, meta: StoreMetadata, store_id: str):
        self.path = path
        self.mode = mode
        self._group: zarr.Group | None = None
        self.meta = meta
        self.store_id = store_id
        self.plan = meta.plan()
        self.records: dict[tuple[int, int], dict[str, Any]] = {}
        self._verified: dict[tuple[str, int, int], tuple[int, int, int]] = {}
        self._raw = all(_raw_chunks(path / name) for name in meta.get)

    # ............................................................. opening
    @property
    def group(self) -> zarr.Group:
        """The store's Zarr group, opened on first use (computing and reading tiles never
        need it: importing Zarr costs a fresh process ~0.2 s CPU, more than a 2,000-row job)."""
        if self._group is None:
            import zarr

            self._group = zarr.open_group(str(self.path), mode=self.mode)
        return self._group

    @classmethod
    def create(cls, path: str | os.PathLike, meta: StoreMetadata) -> KernelStore:
        """Create a new, empty store at ``path`` (which must not exist).

        The Zarr v3 metadata (:func:`zarr_metadata`: the ``zarr.json`` files Zarr writes for
        the group and its uncompressed arrays) is written directly, without importing
        Zarr: ~7 ms CPU per store less, plus Zarr's import in a fresh process.
        """
        p = Path(path)
        if p.exists():
            raise FileExistsError(f"store {str(p)!r} already exists")
        # Build in a sibling directory and rename: a kill never leaves a half-made store.
        tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex[:8]}.creating")
        store_id = uuid.uuid4().hex
        attrs = {_ATTR: {"meta": meta.to_json(), "store_id": store_id}}
        tmp.mkdir()
        for rel, doc in zarr_metadata(meta, attrs).items():
            f = tmp / rel
            f.parent.mkdir(exist_ok=True)
            f.write_text(json.dumps(doc, allow_nan=False))  # compact: the C encoder
        (tmp / "tiles").mkdir()
        os.replace(tmp, p)
        return cls(p, "r+", meta, store_id)

    @classmethod
    def open(cls, path: str | os.PathLike, *, mode: str = "r") -> KernelStore:
        """Open an existing store (``mode`` "r" or "r+")."""
        p = Path(path)
        if not (p / "zarr.json").exists():
            raise FileNotFoundError(f"{str(p)!r} is not a widelimit kernel store (no zarr.json)")
        try:  # the group's zarr.json read directly (what zarr.open_group(p).attrs holds)
            group = json.loads((p / "zarr.json").read_text())
            if group.get("zarr_format") != 3 or group.get("node_type") != "group":
                raise ValueError("zarr.json is not a Zarr v3 group")
            info = group["attributes"][_ATTR]
            meta = StoreMetadata.from_json(info["meta"])
            store_id = str(info["store_id"])
        except (KeyError, TypeError, ValueError) as err:
            raise StoreCorruptError(
                f"store {str(p)!r} has no readable widelimit metadata ({err!r}); it was not "
                "written by widelimit.scale.compute_kernel or is damaged: use a new path "
                "(or overwrite=True)"
            ) from err
        if meta.version != FORMAT_VERSION:
            raise StoreMismatchError(
                f"store {str(p)!r} has format version {meta.version}; this widelimit reads "
                f"version {FORMAT_VERSION}: recompute into a new path"
            )
        missing = [g for g in meta.get if not (p / g / "zarr.json").is_file()]
        if missing or not (p / "tiles").is_dir():
            raise StoreCorruptError(
                f"store {str(p)!r} is missing {missing or 'its tiles/ directory'}: it is damaged"
            )
        return cls(p, mode, meta, store_id)

    def check_matches(self, meta: StoreMetadata) -> None:
        """Raise :class:`StoreMismatchError` naming every field that differs from ``meta``."""
        diffs = [
            f"  {_FIELD_TEXT[f.name]}: stored {_short(getattr(self.meta, f.name))} "
            f"!= given {_short(getattr(meta, f.name))}"
            for f in dataclasses.fields(StoreMetadata)
            if getattr(self.meta, f.name) != getattr(meta, f.name)
        ]
        if diffs:
            raise StoreMismatchError(
                f"store {str(self.path)!r} holds a different kernel; refusing to mix results:\n"
                + "\n".join(diffs)
                + "\nuse a new store path, or pass overwrite=True to discard the stored tiles"
            )

    # ............................................................. records
    def _record_path(self, tile: Tile) -> Path:
        return self.path / "tiles" / f"{tile.key}.json"

    def chunk_path(self, name: str, tile: Tile) -> Path:
        """File of tile ``tile``'s chunk of kernel ``name`` (Zarr v3 default key encoding)."""
        return self.path / name / "c" / str(tile.i) / str(tile.j)

    def _chunk_size(self, name: str, rec: dict[str, Any]) -> int:
        """Bytes the chunk file must have: from the record, else one raw full chunk."""
        sizes = rec.get("sizes") or {}
        if name in sizes:
            return int(sizes[name])
        return self.meta.tile * self.meta.tile * np.dtype(self.meta.dtype).itemsize

    def damage(self, message: str, name: str | None, tile: Tile | None) -> StoreCorruptError:
        """The one-line refusal for a damaged tile: store, kernel, tile and the repair."""
        where = "" if tile is None else (
            f"{name + ' ' if name else ''}tile {tile.key} "
            f"(rows {tile.r0}:{tile.r1}, cols {tile.c0}:{tile.c1}) "
        )  # fmt: skip
        return StoreCorruptError(
            f"store {str(self.path)!r} is damaged: {where}{message}; " + REPAIR_HINT
        )

    def _file_problem(self, name: str, tile: Tile, rec: dict[str, Any]) -> str | None:
        """Size check of one chunk file (a stat, no read): missing or wrong size."""
        f = self.chunk_path(name, tile)
        try:
            size = f.stat().st_size
        except FileNotFoundError:
            return f"chunk file {name}/c/{tile.i}/{tile.j} is missing"
        want = self._chunk_size(name, rec)
        if size != want:
            return f"chunk file {name}/c/{tile.i}/{tile.j} has {size} bytes, expected {want}"
        return None

    def _data_problem(self, name: str, tile: Tile, rec: dict[str, Any]) -> str | None:
        """Full check of one chunk: size, then the checksum of its data."""
        problem = self._file_problem(name, tile, rec)
        if problem is not None:
            return problem
        try:
            data = (
                self._read_raw_chunk(self.chunk_path(name, tile), tile)
                if self._raw
                else self.group[name][tile.rows, tile.cols]
            )
        except Exception as err:  # zarr's own decode errors, whatever their type
            return f"chunk {name}/c/{tile.i}/{tile.j} cannot be read ({type(err).__name__})"
        if not _checksum_ok(data, rec["checksums"][name]):
            return f"stored {name} data does not match its checksum"
        return None

    def _check_record(
        self, f: Path, planned: dict[tuple[int, int], Tile], verify_data: bool
    ) -> tuple[tuple[int, int] | None, list[str]]:
        """Validate one record file; return its tile index (or None) and its problems.

        Always checks the record and the size of each chunk file (a ``stat``);
        ``verify_data`` also re-hashes the chunks.
        """
        try:
            rec = json.loads(f.read_text())
            ij = (int(rec["i"]), int(rec["j"]))
            tile = planned.get(ij)
            ok = (
                tile is not None
                and rec["store_id"] == self.store_id
                and [rec["r0"], rec["r1"], rec["c0"], rec["c1"]]
                == [tile.r0, tile.r1, tile.c0, tile.c1]
                and f.name == f"{tile.key}.json"
                and set(rec["checksums"]) == set(self.meta.get)
            )
        except (ValueError, KeyError, TypeError) as err:
            return None, [f"{f.name}: unreadable record ({type(err).__name__}: {err})"]
        if not ok or tile is None:
            return None, [f"{f.name}: record does not match this store's tile plan"]
        problems = []
        for name in self.meta.get:
            check = self._data_problem if verify_data else self._file_problem
            problem = check(name, tile, rec)
            if problem is not None:
                problems.append(
                    f"tile {tile.key} (rows {tile.r0}:{tile.r1}, cols {tile.c0}:{tile.c1}): "
                    + problem
                )
        if not problems:
            self.records[ij] = rec
        return (None if problems else ij), problems

    def scan(self, *, verify_data: bool = False) -> tuple[set[tuple[int, int]], list[str]]:
        """Check every completion record: the finished tiles and one line per problem.

        Records and chunk sizes are always checked; ``verify_data`` also
        re-hashes every finished tile (reads the whole store once).
        """
        planned = {(t.i, t.j): t for t in self.plan.tiles()}
        done: set[tuple[int, int]] = set()
        bad: list[str] = []
        self.records = {}
        for f in sorted((self.path / "tiles").glob("*.json")):
            ij, problems = self._check_record(f, planned, verify_data)
            bad += problems
            if ij is not None:
                done.add(ij)
        return done, bad

    def done_tiles(self, *, verify_data: bool = False) -> set[tuple[int, int]]:
        """Tiles with a valid completion record; raises :class:`StoreCorruptError` otherwise.

        Chunk files are checked for existence and size; ``verify_data`` also
        re-hashes each finished tile's chunks against the checksums in its record.
        """
        done, bad = self.scan(verify_data=verify_data)
        if bad:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise StoreCorruptError(
                f"store {str(self.path)!r} is damaged: {bad[0]}{more}; " + REPAIR_HINT
            )
        return done

    def read_tile(self, name: str, tile: Tile) -> np.ndarray:
        """Data of a finished tile, checked against its completion record.

        The first read of a tile in this process checks the chunk file's size and
        the checksum of its data; later reads check size and modification time and
        re-hash only if the file changed.  Raises :class:`StoreCorruptError` (one
        line naming store, kernel, tile and the repair) on any mismatch.
        """
        rec = self.records.get((tile.i, tile.j))
        if rec is None:
            raise self.damage("it has no completion record", name, tile)
        f = self.chunk_path(name, tile)
        try:
            st = f.stat()
        except FileNotFoundError:
            missing = f"chunk file {name}/c/{tile.i}/{tile.j} is missing"
            raise self.damage(missing, None, tile) from None
        want = self._chunk_size(name, rec)
        if st.st_size != want:
            raise self.damage(
                f"chunk file {name}/c/{tile.i}/{tile.j} has {st.st_size} bytes, expected {want}",
                None,
                tile,
            )
        try:
            data = (
                self._read_raw_chunk(f, tile)
                if self._raw
                else self.group[name][tile.rows, tile.cols]
            )
        except Exception as err:  # zarr's own decode errors, whatever their type
            raise self.damage(
                f"chunk {name}/c/{tile.i}/{tile.j} cannot be read ({type(err).__name__})",
                None,
                tile,
            ) from err
        stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
        key = (name, tile.i, tile.j)
        if self._verified.get(key) == stamp:
            return data
        if not _checksum_ok(data, rec["checksums"][name]):
            fresh = self._reload_record(tile)  # a concurrent repair may have rewritten it
            if fresh is None or not _checksum_ok(data, fresh["checksums"][name]):
                raise self.damage("its data does not match the checksum in its record", name, tile)
        self._verified[key] = stamp
        return data

    def _reload_record(self, tile: Tile) -> dict[str, Any] | None:
        try:
            rec = json.loads(self._record_path(tile).read_text())
        except (OSError, ValueError):
            return None
        if rec.get("store_id") != self.store_id or set(rec.get("checksums", ())) != set(
            self.meta.get
        ):
            return None
        self.records[(tile.i, tile.j)] = rec
        return rec

    def drop_bad_records(self) -> list[str]:
        """Delete records that fail the checks of :meth:`done_tiles` (data included)."""
        planned = {(t.i, t.j): t for t in self.plan.tiles()}
        dropped = []
        for f in sorted((self.path / "tiles").glob("*.json")):
            _, problems = self._check_record(f, planned, verify_data=True)
            if problems:
                f.unlink()
                dropped.append(f.name)
        return dropped

    # ............................................................. writing
    def _write_raw_chunk(self, name: str, tile: Tile, a: np.ndarray) -> None:
        """Write a tile's chunk file directly, as Zarr would for an uncompressed
        little-endian array (the only layout :meth:`create` makes): the C-order bytes of
        the full ``(tile, tile)`` chunk, edge chunks padded with the fill value NaN.

        Half the CPU of Zarr's own write path (which copies the chunk once more); reads
        still go through Zarr, so any disagreement with Zarr's layout fails every read's
        size and checksum test.  A kill mid-write leaves a chunk without a record, which
        is recomputed on resume.
        """
        side = self.meta.tile
        if a.shape != (side, side):
            h, w = a.shape
            full = np.empty((side, side), dtype=a.dtype)  # each byte written once
            full[:h, :w] = a
            full[:h, w:] = np.nan
            full[h:] = np.nan
            a = full
        f = self.chunk_path(name, tile)
        f.parent.mkdir(parents=True, exist_ok=True)
        with open(f, "wb") as fh:
            fh.write(memoryview(a).cast("B"))

    def _read_raw_chunk(self, f: Path, tile: Tile) -> np.ndarray:
        """A raw chunk file read directly (the layout :meth:`_write_raw_chunk` writes and Zarr
        reads): the tile's rows and columns of the full ``(tile, tile)`` chunk, as a new
        array.  Twice as fast as Zarr's read path (one copy fewer, no event loop), which
        streaming solvers pay at every pass over the store; the size was checked by the
        caller and the checksum is checked after."""
        side = self.meta.tile
        a = np.fromfile(f, dtype=np.dtype(self.meta.dtype).newbyteorder("<"), count=side * side)
        a = a.reshape(side, side)
        h, w = tile.shape
        return a if (h, w) == (side, side) else np.ascontiguousarray(a[:h, :w])

    def write_tile(self, tile: Tile, arrays: dict[str, np.ndarray]) -> None:
        """Write a tile's chunks, then (atomically) its completion record."""
        checksums, sizes = {}, {}
        for name in self.meta.get:
            a = np.ascontiguousarray(arrays[name], dtype=self.meta.dtype)
            if a.shape != tile.shape:
                raise ValueError(f"tile {tile.key} {name}: shape {a.shape}, expected {tile.shape}")
            if self._raw:
                self._write_raw_chunk(name, tile, a)
            else:
                self.group[name][tile.rows, tile.cols] = a
            checksums[name] = _checksum(a)
            sizes[name] = self.chunk_path(name, tile).stat().st_size
        rec = {
            "i": tile.i,
            "j": tile.j,
            "r0": tile.r0,
            "r1": tile.r1,
            "c0": tile.c0,
            "c1": tile.c1,
            "store_id": self.store_id,
            "checksums": checksums,
            "sizes": sizes,
        }
        final = self._record_path(tile)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "w") as fh:
            json.dump(rec, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
