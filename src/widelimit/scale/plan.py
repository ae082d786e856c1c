"""Planning a tiled kernel job before it runs: tile size, memory, disk and an ETA.

Everything here costs O(1) or O(tiles), never O(N²): the number of computed
entries and the store's size come in closed form from the tile grid
(:attr:`~widelimit.scale.tiles.TilePlan.entries`), nothing enumerates entries,
and only the first rows of the inputs are read (the ETA probe), so a plan for
N = 10⁶ takes well under a second.  :func:`~widelimit.scale.compute_kernel`
uses the same functions to choose its tile and to refuse a job whose store
does not fit on the disk.

This module imports neither torch nor the layers at import time: ``widelimit kernel
--plan`` answers from the probe cache (:func:`plan_from_text`) without them, in a fraction
of the 1.4 s that importing torch alone takes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from widelimit._checks import check_positive_int
from widelimit._cpus import cores, threads_per_tile
from widelimit.scale.tiles import TilePlan, tile_plan

if TYPE_CHECKING:
    import torch

    from widelimit.layers.base import Layer

__all__ = [
    "KernelPlan",
    "MemoryEstimate",
    "auto_tile",
    "check_disk",
    "estimate_memory",
    "fmt_bytes",
    "parse_bytes",
    "plan_kernel",
    "store_bytes",
]

#: Live ``tile × tile × per_pair`` float arrays per running tile: the NNGP and NTK outputs
#: of the tile, the engine's cache-sized temporaries (``widelimit.layers.tiles``: a few
#: 4 MiB blocks, negligible for large tiles), the padded copy of an edge chunk, and what
#: the allocator keeps between tiles.  Measured: FC 3×(Dense 512, ReLU) float32 NNGP+NTK,
#: N = 8192, tile 4096, one worker: peak RSS 2.8 tile arrays above the inputs; 6 leaves
#: room for the edge-tile copy and spatial nets' larger temporaries.
_LIVE_TENSORS = 6
#: Bytes of the largest store tile chosen automatically for one worker.
TILE_TARGET_BYTES = 512 * 2**20
#: Filesystem bytes of one completion record (one JSON file: one block).
RECORD_BYTES = 4096
#: Rows of the ETA probe (the symmetric kernel of the first ``PROBE_ROWS`` rows, timed twice).
PROBE_ROWS = 1024


def fmt_bytes(nbytes: float) -> str:
    """``1536`` → ``'1.5 KiB'`` (binary units, three significant digits)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(nbytes) < 1024 or unit == "TiB":
            return f"{nbytes:.3g} {unit}"
        nbytes /= 1024
    return f"{nbytes:.3g} TiB"  # pragma: no cover


def parse_bytes(name: str, value: int | str | None) -> int | None:
    """A byte count from an int or a size like ``'8GB'`` (``None`` passes through)."""
    if value is None:
        return None
    if isinstance(value, str):
        from dask.utils import parse_bytes as dask_parse

        try:
            return int(dask_parse(value))
        except ValueError as err:
            raise ValueError(f"`{name}` must be bytes or a size like '8GB'; got {value!r}") from err
    return check_positive_int(name, value)


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak memory of a tiled job (bytes)."""

    per_tile: int
    concurrent_tiles: int
    total: int
    store_bytes: int
    per_pair: int  # kernel entries tracked per pair of inputs (spatial layout)

    def describe(self) -> str:
        return (
            f"memory estimate: {fmt_bytes(self.per_tile)} per tile × {self.concurrent_tiles} "
            f"concurrent + data = {fmt_bytes(self.total)} per process; store on disk "
            f"{fmt_bytes(self.store_bytes)}"
        )


def _per_pair(net: Layer, input_shape: Sequence[int]) -> int:
    spatial = tuple(input_shape[1:])
    per_pair = math.prod(spatial) if spatial else 1
    if spatial and net.needs_full_spatial():
        per_pair *= per_pair
    return per_pair


def store_bytes(plan: TilePlan, itemsize: int, n_kernels: int, tiles: int | None = None) -> int:
    """Bytes on disk of ``tiles`` (default: all) tiles of a store: one raw full chunk per
    kernel (Zarr pads edge chunks to the full chunk shape) and one record each."""
    tiles = len(plan) if tiles is None else tiles
    return tiles * (plan.tile * plan.tile * itemsize * n_kernels + RECORD_BYTES)


def estimate_memory(
    net: Layer | None,
    input_shape: Sequence[int],
    *,
    tile: int,
    n1: int,
    n2: int,
    itemsize: int,
    n_kernels: int,
    concurrent: int,
    symmetric: bool,
    per_pair: int | None = None,
) -> MemoryEstimate:
    """Peak memory: per tile ``_LIVE_TENSORS · tile² · per_pair · itemsize`` + its inputs,
    times the tiles running at once, plus the data held by the driver.  O(1).

    ``per_pair`` is the number of covariance entries a pair of inputs carries
    in the largest layout along the net: ``∏ spatial`` (diagonal layout) or
    ``(∏ spatial)²`` (full layout, when a layer mixes positions, e.g. pooling);
    1 for dense inputs.  Layers never enlarge the spatial extent, so the
    input layout is the largest.  A known ``per_pair`` may be given instead of ``net``.
    """
    per_pair = _per_pair(net, input_shape) if per_pair is None else per_pair
    live = _LIVE_TENSORS if n_kernels > 1 else (_LIVE_TENSORS * 3) // 5
    per_tile = (
        live * tile * tile * per_pair * itemsize + 2 * tile * math.prod(input_shape) * itemsize
    )
    data = (n1 + (0 if symmetric else n2)) * math.prod(input_shape) * itemsize  # driver's copy
    plan = tile_plan(n1, n2, tile, symmetric=symmetric)
    return MemoryEstimate(
        per_tile=int(per_tile),
        concurrent_tiles=concurrent,
        total=int(per_tile * concurrent + data),
        store_bytes=store_bytes(plan, itemsize, n_kernels),
        per_pair=per_pair,
    )


def auto_tile(
    net: Layer | None,
    input_shape: Sequence[int],
    *,
    n: int,
    itemsize: int,
    n_kernels: int,
    budget: int | None,
    concurrent: int,
    per_pair: int | None = None,
) -> int:
    """Tile side for ``n`` rows: tiles of at most ``TILE_TARGET_BYTES`` (or ``budget /
    concurrent``) each, as few as that allows, all of nearly the same size.

    ``side_max`` is the largest multiple of 64 within the target; then ``g = ⌈n /
    side_max⌉`` tiles per side of ``⌈n / g⌉`` rows: the last tile is nearly full
    (``≥ side − g + 1`` rows), so little of the store is padding (Zarr stores edge chunks
    at full size) and no tile is tiny.  O(1).  A known ``per_pair`` (see
    :func:`estimate_memory`) may be given instead of ``net``.
    """
    live = _LIVE_TENSORS if n_kernels > 1 else (_LIVE_TENSORS * 3) // 5
    per_pair = _per_pair(net, input_shape) if per_pair is None else per_pair
    per_entry = live * per_pair * itemsize
    target = TILE_TARGET_BYTES
    if budget is not None:
        target = min(target, budget // max(concurrent, 1))
    side_max = max(64, int(math.sqrt(max(target, 1) / per_entry)) // 64 * 64)
    return min(math.ceil(n / math.ceil(n / side_max)), n)


def _existing_dir(path: Path) -> Path:
    """``path`` or its nearest existing ancestor (where the store's bytes will go)."""
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def disk_free(store: str | os.PathLike) -> int:
    """Free bytes on the filesystem that will hold ``store``."""
    return int(shutil.disk_usage(_existing_dir(Path(store))).free)


def check_disk(store: str | os.PathLike, needed: int) -> int:
    """Raise ``ValueError`` when fewer than ``needed`` bytes are free where ``store`` goes;
    return the free bytes."""
    free = disk_free(store)
    if needed > free:
        raise ValueError(
            f"`store` {str(store)!r} needs {fmt_bytes(needed)} more on disk but only "
            f"{fmt_bytes(free)} is free on {str(_existing_dir(Path(store)))!r}; free space, "
            "choose a store path on a larger disk, or make the kernel smaller (float32 halves "
            "it, get='nngp' halves it again; fewer rows shrink it quadratically)"
        )
    return free


@dataclass(frozen=True)
class KernelPlan:
    """What a :func:`~widelimit.scale.compute_kernel` job will do (:func:`plan_kernel`).

    Sizes are bytes; ``entries`` counts the kernel entries the job computes per
    kernel (the upper triangle of tiles when symmetric); ``eta_seconds`` is the
    measured cost per entry of a probe kernel (:func:`probe_seconds_per_entry`) times the
    entries still to compute, divided by the tiles that run at once (``None`` without a
    probe); it leaves out writing the store.  ``probe_age_seconds`` is ``None`` when the
    probe ran for this plan, else the age of the cached probe it reused
    (:func:`plan_from_text`).
    """

    n1: int
    n2: int
    input_shape: tuple[int, ...]
    dtype: str
    get: tuple[str, ...]
    symmetric: bool
    tile: int
    tiles: int
    tiles_done: int
    entries: int
    disk_bytes: int
    disk_needed: int
    disk_free: int | None
    memory_bytes: int
    memory_per_tile_bytes: int
    concurrent: int
    seconds_per_entry: float | None
    eta_seconds: float | None
    probe_age_seconds: float | None = None

    @property
    def fits_disk(self) -> bool:
        return self.disk_free is None or self.disk_needed <= self.disk_free

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fits_disk"] = self.fits_disk
        return d

    def rows(self) -> list[list[Any]]:
        """``[field, value]`` rows for a table (sizes and times in readable units)."""
        if self.eta_seconds is None:
            eta = "n/a"
        elif self.probe_age_seconds is None:
            eta = f"{_fmt_seconds(self.eta_seconds)} (probe: measured now)"
        else:
            age = _fmt_seconds(self.probe_age_seconds)
            eta = f"{_fmt_seconds(self.eta_seconds)} (probe: cached, measured {age} ago)"
        free = "n/a" if self.disk_free is None else fmt_bytes(self.disk_free)
        return [
            ["kernel", f"{self.n1}×{self.n2} {'/'.join(self.get)} ({self.dtype})"],
            ["symmetric", self.symmetric],
            ["tile", self.tile],
            ["tiles", f"{self.tiles} ({self.tiles_done} done)"],
            ["entries per kernel", f"{self.entries:.4g}"],
            ["disk (store)", fmt_bytes(self.disk_bytes)],
            ["disk still needed", f"{fmt_bytes(self.disk_needed)} (free: {free})"],
            ["memory (peak, est.)", fmt_bytes(self.memory_bytes)],
            ["tiles at once", self.concurrent],
            ["ETA", eta],
        ]


def _fmt_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.3g} s"
    if s < 7200:
        return f"{s / 60:.3g} min"
    return f"{s / 3600:.3g} h"


def probe_seconds_per_entry(
    net: Layer, x1: Any, gets: tuple[str, ...], dtype: np.dtype | None = None
) -> float:
    """Seconds per computed entry of the symmetric kernel of the first ``PROBE_ROWS`` rows
    of ``x1`` (what a diagonal tile does; ``m(m+1)/2`` entries), best of two runs (the
    first warms the allocator), at the current torch thread count."""
    import torch

    m = min(PROBE_ROWS, len(x1))
    xa = _head(x1, m)
    if dtype is not None:
        xa = xa.to(torch.from_numpy(np.empty(0, dtype)).dtype)
    best = math.inf
    for _ in range(2):
        t0 = time.perf_counter()
        net.kernel(xa, get=gets)
        best = min(best, time.perf_counter() - t0)
    return best / (m * (m + 1) / 2)


def _shapes(x1: Any, x2: Any, dtype: Any) -> tuple[int, int, tuple[int, ...], np.dtype]:
    """``(n1, n2, input_shape, numpy dtype)`` of a job, with clear errors."""
    shape1 = tuple(int(s) for s in x1.shape)
    if len(shape1) < 2:
        raise ValueError(f"`x1` must be (N1, *input_shape); got shape {shape1}")
    n1 = shape1[0]
    n2 = n1 if x2 is None else int(x2.shape[0])
    if x2 is not None and tuple(x2.shape[1:]) != shape1[1:]:
        raise ValueError(
            "`x1` and `x2` must have the same per-example shape; got "
            f"{shape1[1:]} and {tuple(x2.shape[1:])}"
        )
    np_dtype = _numpy_dtype(x1.dtype if dtype is None else dtype)
    if np_dtype.kind != "f":
        raise TypeError(f"the kernel dtype must be a float dtype; got {np_dtype}")
    return n1, n2, shape1[1:], np_dtype


def _assemble(
    *,
    n1: int,
    n2: int,
    input_shape: tuple[int, ...],
    np_dtype: np.dtype,
    gets: tuple[str, ...],
    symmetric: bool,
    per_pair: int,
    store: str | os.PathLike | None,
    tile: int | None,
    budget: int | None,
    num_workers: int | None,
    done_keys: set[tuple[int, int]],
    seconds_per_entry: Callable[[int], float | None],
) -> KernelPlan:
    """The plan from the job's sizes and the net's ``per_pair``; ``seconds_per_entry(c)``
    gives the probe's cost per entry when ``c`` tiles run at once (``None``: no ETA).
    Torch-free, O(tiles done) at most."""
    itemsize = int(np_dtype.itemsize)
    concurrent = num_workers or cores()  # as compute_kernel with local threads
    if tile is None:
        tile = auto_tile(
            None, input_shape, n=max(n1, n2), itemsize=itemsize, n_kernels=len(gets),
            budget=budget, concurrent=concurrent, per_pair=per_pair,
        )  # fmt: skip
    tile = min(check_positive_int("tile", tile), max(n1, n2))
    plan = tile_plan(n1, n2, tile, symmetric=symmetric)
    concurrent = min(concurrent, max(len(plan) - len(done_keys), 1))  # as compute_kernel
    mem = estimate_memory(
        None, input_shape, tile=tile, n1=n1, n2=n2, itemsize=itemsize, n_kernels=len(gets),
        concurrent=concurrent, symmetric=symmetric, per_pair=per_pair,
    )  # fmt: skip
    done_entries = sum(plan.tile_entries(i, j) for i, j in done_keys)
    spe = seconds_per_entry(concurrent)
    return KernelPlan(
        n1=n1,
        n2=n2,
        input_shape=input_shape,
        dtype=np_dtype.name,
        get=gets,
        symmetric=symmetric,
        tile=tile,
        tiles=len(plan),
        tiles_done=len(done_keys),
        entries=plan.entries,
        disk_bytes=store_bytes(plan, itemsize, len(gets)),
        disk_needed=store_bytes(plan, itemsize, len(gets), len(plan) - len(done_keys)),
        disk_free=None if store is None else disk_free(store),
        memory_bytes=mem.total,
        memory_per_tile_bytes=mem.per_tile,
        concurrent=concurrent,
        seconds_per_entry=spe,
        eta_seconds=None if spe is None else spe * (plan.entries - done_entries) / concurrent,
    )


def plan_kernel(
    net: Layer,
    x1: Any,
    x2: Any = None,
    *,
    store: str | os.PathLike | None = None,
    tile: int | None = None,
    get: str | Sequence[str] = ("nngp", "ntk"),
    memory_budget: int | str | None = None,
    num_workers: int | None = None,
    probe: bool = True,
    dtype: torch.dtype | np.dtype | str | None = None,
) -> KernelPlan:
    """Plan :func:`~widelimit.scale.compute_kernel` without computing the kernel.

    Args:
        net: the network spec.
        x1: ``(N1, *input_shape)`` inputs: any array with ``shape``, ``dtype`` and slicing
            (a ``np.load(..., mmap_mode="r")`` memory map is read only in its first rows).
        x2: ``(N2, *input_shape)`` or ``None`` (symmetric).
        store: where the store would go: its free disk space is reported, and an
            existing store's tile size and finished tiles are taken into account.
        tile, get, memory_budget, num_workers: as for ``compute_kernel`` (local threads).
        dtype: of the job (default: ``x1``'s); the probe rows are cast to it.
        probe: time the kernel of the first ``PROBE_ROWS`` rows for the ETA (~0.1 s on
            an idle core); without it ``eta_seconds`` is ``None``.
    Returns:
        :class:`KernelPlan`.  Costs O(tiles) at most (reading an existing store's
        records), O(1) otherwise.
    """
    from widelimit._threads import torch_threads
    from widelimit.layers.base import check_get
    from widelimit.scale.runners import tile_threads

    gets = check_get(get)
    n1, n2, input_shape, np_dtype = _shapes(x1, x2, dtype)
    done_keys: set[tuple[int, int]] = set()
    if store is not None and (Path(store) / "zarr.json").exists():
        from widelimit.scale.store import KernelStore  # Zarr only for an existing store

        ks = KernelStore.open(store)
        if tile is None:
            tile = ks.meta.tile
        if ks.meta.tile == tile and (ks.meta.n1, ks.meta.n2) == (n1, n2):
            done_keys = ks.scan()[0]

    def seconds_per_entry(concurrent: int) -> float | None:
        if not probe:
            return None
        with torch_threads(tile_threads(None, None, concurrent)):  # as each tile will have
            return probe_seconds_per_entry(net, x1, gets, np_dtype)

    return _assemble(
        n1=n1, n2=n2, input_shape=input_shape, np_dtype=np_dtype, gets=gets,
        symmetric=x2 is None, per_pair=_per_pair(net, input_shape), store=store, tile=tile,
        budget=parse_bytes("memory_budget", memory_budget), num_workers=num_workers,
        done_keys=done_keys, seconds_per_entry=seconds_per_entry,
    )  # fmt: skip


#: A cached probe older than this is measured again (the machine's load changes).
PROBE_CACHE_MAX_AGE = 24 * 3600.0


def probe_cache_file() -> Path:
    """Where :func:`plan_from_text` keeps its probes: ``$WIDELIMIT_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/widelimit``, else ``~/.cache/widelimit``; file ``plan-probes.json``."""
    root = os.environ.get("WIDELIMIT_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        root = Path(base) / "widelimit"
    return Path(root) / "plan-probes.json"


def _probe_key(
    net_text: str, input_shape: tuple[int, ...], np_dtype: np.dtype, gets: tuple[str, ...]
) -> str:
    """What a probe's cost depends on besides the load: the net (a file's contents), the
    per-example shape, dtype, kernels, the cores, ``OMP_NUM_THREADS`` and the versions."""
    from importlib.metadata import PackageNotFoundError, version

    path = Path(net_text)
    try:
        text = path.read_text() if path.suffix in (".txt", ".toml") and path.is_file() else net_text
    except OSError:
        text = net_text
    try:
        torch_version = version("torch")
    except PackageNotFoundError:  # pragma: no cover - torch is a dependency
        torch_version = None
    from widelimit import __version__

    ident = {
        "net": " ".join(text.split()),
        "input_shape": list(input_shape),
        "dtype": np_dtype.name,
        "get": list(gets),
        "cores": cores(),
        "omp": os.environ.get("OMP_NUM_THREADS"),
        "widelimit": __version__,
        "torch": torch_version,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads(probe_cache_file().read_text())
    except (OSError, ValueError):  # none yet, or unreadable: the cache only saves time
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(data: dict[str, Any]) -> None:
    path = probe_cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".plan-probes-")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)  # atomic: concurrent plans never read half a file
    except OSError:  # read-only home: plans still work, only slower
        pass


def plan_from_text(
    net_text: str,
    x1: Any,
    x2: Any = None,
    *,
    store: str | os.PathLike | None = None,
    tile: int | None = None,
    get: Sequence[str] = ("nngp", "ntk"),
    memory_budget: int | str | None = None,
    dtype: np.dtype | str | None = None,
    load_net: Callable[[str], Layer] | None = None,
) -> KernelPlan:
    """:func:`plan_kernel` for a net given as text (``widelimit kernel --plan``), without
    importing torch when it can.

    The net enters a plan only through its per-pair layout and the probe's cost per entry;
    both are cached per (net text, per-example shape, dtype, kernels, cores,
    ``OMP_NUM_THREADS``, versions) in :func:`probe_cache_file` for
    :data:`PROBE_CACHE_MAX_AGE`.  A cache hit plans from them (no torch, no parsing: the
    same text parsed and ran before); a miss parses the net with ``load_net`` (default
    :func:`widelimit.spec_text.load_net`), runs :func:`plan_kernel` with its probe and
    remembers the result.  A plan into an existing store always takes the second route
    (it reads the store's records).  ``x1``/``x2``: arrays with ``shape`` and ``dtype``
    (memory maps are read only in their first rows, and only on a miss).
    """
    gets = tuple(get)
    n1, n2, input_shape, np_dtype = _shapes(x1, x2, dtype)
    existing = store is not None and (Path(store) / "zarr.json").exists()
    key = _probe_key(net_text, input_shape, np_dtype, gets)
    entry = None if existing else _read_cache().get(key)
    now = time.time()
    if isinstance(entry, dict):
        try:
            per_pair = int(entry["per_pair"])
            default_threads = int(entry["default_threads"])
            probes = {int(k): (float(v[0]), float(v[1])) for k, v in entry["probes"].items()}
        except (KeyError, TypeError, ValueError, IndexError):
            probes = {}
        found: dict[str, float] = {}

        def cached(concurrent: int) -> float | None:
            threads = threads_per_tile(default_threads, concurrent)  # as tile_threads
            seconds, when = probes.get(threads, (math.nan, -math.inf))
            if now - when > PROBE_CACHE_MAX_AGE:
                return None
            found["age"] = now - when
            return seconds

        if probes:
            plan = _assemble(
                n1=n1, n2=n2, input_shape=input_shape, np_dtype=np_dtype, gets=gets,
                symmetric=x2 is None, per_pair=per_pair, store=store, tile=tile,
                budget=parse_bytes("memory_budget", memory_budget), num_workers=None,
                done_keys=set(), seconds_per_entry=cached,
            )  # fmt: skip
            if plan.seconds_per_entry is not None:
                return replace(plan, probe_age_seconds=found["age"])
    # Miss: parse, probe, remember.
    import torch

    if load_net is None:
        from widelimit.spec_text import load_net
    net = load_net(net_text)
    plan = plan_kernel(
        net, x1, x2, store=store, tile=tile, get=gets, memory_budget=memory_budget, dtype=np_dtype
    )
    if plan.seconds_per_entry is not None:
        data = _read_cache()
        entry = data.get(key) if isinstance(data.get(key), dict) else {}
        threads = threads_per_tile(torch.get_num_threads(), plan.concurrent)  # the probe's
        probes = entry.get("probes") if isinstance(entry.get("probes"), dict) else {}
        probes[str(threads)] = [plan.seconds_per_entry, now]
        data[key] = {
            "per_pair": _per_pair(net, input_shape),
            "default_threads": torch.get_num_threads(),
            "probes": probes,
        }
        if len(data) > _CACHE_ENTRIES:  # keep the most recently probed nets
            recent = sorted(data, key=lambda k: _newest(data[k]), reverse=True)
            data = {k: data[k] for k in recent[:_CACHE_ENTRIES]}
        _write_cache(data)
    return plan


_CACHE_ENTRIES = 256


def _newest(entry: Any) -> float:
    try:
        return max(float(v[1]) for v in entry["probes"].values())
    except (KeyError, TypeError, ValueError, AttributeError):
        return -math.inf


def _head(x: Any, m: int) -> torch.Tensor:
    """The first ``m`` rows of an array or tensor as a contiguous tensor (nothing else read)."""
    import torch

    if isinstance(x, torch.Tensor):
        return x[:m].contiguous()
    return torch.from_numpy(np.array(x[:m]))  # a writable copy of the rows (memmaps are not)


def _numpy_dtype(dtype: Any) -> np.dtype:
    torch = sys.modules.get("torch")  # a torch dtype means torch is loaded already
    if torch is not None and isinstance(dtype, torch.dtype):
        return torch.empty((), dtype=dtype).numpy().dtype
    return np.dtype(dtype)
