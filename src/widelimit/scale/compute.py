"""Tiled, resumable kernel computation into a Zarr store, locally or on Dask (docs/scale.md).

A tile is a pure function of the spec and two input slices::

    K[rows, cols] = net.kernel(x1[rows], x2[cols])      (off-diagonal tiles)
    K[rows, rows] = net.kernel(x1[rows])                 (diagonal tiles, symmetric)

because entry ``(i, j)`` of an NNGP/NTK depends only on inputs ``i`` and ``j``
(every layer rule acts entrywise on the pair, given the per-input variances
that travel with the tile's own inputs in ``cov1``/``cov2``).  Tiles run on local
threads by default (a thread pool in this process, largest tiles first), or on a
``dask.distributed`` cluster given its address or a ``Client``.  With local
threads each task writes its own chunk and record; on a cluster workers only
compute (they need the spec and their data slices, no shared disk) and the
client writes tiles as they arrive.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from widelimit._cpus import free_cores
from widelimit._threads import torch_threads
from widelimit._validation import as_float_tensor, check_positive_int, check_same_dtype_device
from widelimit.layers.base import Layer, check_get
from widelimit.scale.lock import StoreLock
from widelimit.scale.plan import (
    MemoryEstimate,
    auto_tile,
    check_disk,
    estimate_memory,
    fmt_bytes,
    parse_bytes,
    store_bytes,
)
from widelimit.scale.read import StoredKernel
from widelimit.scale.runners import (
    ProgressBar,
    client_for,
    compute_tile,
    concurrency,
    console,
    run_distributed,
    run_local,
    scheduler_name,
    tile_threads,
)
from widelimit.scale.store import (
    KernelStore,
    StoreCorruptError,
    StoreMetadata,
    data_fingerprint,
    describe_spec,
)
from widelimit.scale.tiles import tile_plan

__all__ = ["MemoryEstimate", "RunStats", "compute_kernel", "compute_tile", "estimate_memory"]


@dataclass(frozen=True)
class RunStats:
    """What one :func:`compute_kernel` call did."""

    tiles_total: int
    tiles_skipped: int
    tiles_computed: int
    seconds: float
    entries_per_second: float
    memory: MemoryEstimate
    scheduler: str


def compute_kernel(
    net: Layer,
    x1: torch.Tensor | np.ndarray,
    x2: torch.Tensor | np.ndarray | None = None,
    *,
    store: str | os.PathLike,
    tile: int | None = None,
    get: str | Sequence[str] = ("nngp", "ntk"),
    scheduler: Any = None,
    memory_budget: int | str | None = None,
    num_workers: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
    verify: bool = True,
    repair: bool = False,
    **side: Any,
) -> StoredKernel:
    """Compute ``net``'s NNGP/NTK in tiles into a Zarr store, resuming finished tiles.

    Args:
        net: network spec (any :class:`~widelimit.layers.base.Layer`) whose output
            kernel is ``(N1, N2)`` (dense readout, e.g. ``... -> GlobalAvgPool() -> Dense(1)``).
        x1: ``(N1, *input_shape)`` inputs (tensor or array; CPU or CUDA tensor —
            tiles run on its device).
        x2: ``(N2, *input_shape)`` or ``None`` for the symmetric kernel of ``x1``
            (only upper-triangle tiles are computed; the lower is filled on read).
        store: directory of the Zarr store; created if missing, resumed if it
            holds the same job, refused (:class:`~widelimit.scale.store.StoreMismatchError`)
            if it holds another.
        tile: tile side (rows = columns); default: the stored tile when resuming,
            else the largest multiple of 64 whose estimate fits 512 MiB (or the
            budget).  Need not divide N.
        get: ``"nngp"``, ``"ntk"`` or both.
        scheduler: ``None``/``"threads"`` for local threads, ``"sync"`` for
            the calling thread, a ``"tcp://host:port"`` address or a
            ``distributed.Client`` for a cluster.
        memory_budget: bytes (or ``"8GB"``) one process may use; refuse to start
            when the tiles running at once in one process would exceed it.
        num_workers: local threads, i.e. tiles at once (default: one per CPU); each
            tile runs with ``CPUs // num_workers`` torch threads (at least 1, at most
            ``torch.get_num_threads()``; torch's setting is restored afterwards).  By
            default the cores other processes keep busy are left out, looked at before
            the first tile and again as tiles end (docs/scale.md, *Threads*).
            Ignored on a cluster and with ``"sync"``.
        progress: show the memory estimate and a progress bar (stderr).
        overwrite: discard an existing store at ``store`` first.
        verify: on resume, re-hash finished tiles against their records.
        repair: on resume, drop damaged tiles (bad record, missing or truncated
            chunk, changed data) and recompute only those instead of raising.
        **side: side inputs the network's layers read, as for
            :meth:`~widelimit.layers.base.Layer.kernel`: ``mask=m1`` (``(N1, *spatial)``)
            or ``pattern=a1`` (``(N1, n, n)`` or a shared ``(n, n)``) when ``x2`` is
            None, ``mask=(m1, m2)`` with ``x2``.  Each tile gets its rows' and columns'
            entries; the store's data fingerprint includes them.
    Raises:
        ValueError: the store would not fit on its disk (checked before any tile runs,
            from ``shutil.disk_usage``), the tiles would exceed ``memory_budget``, or
            bad inputs.
        :class:`~widelimit.scale.lock.StoreLockedError`: another live process is
        writing ``store`` (an ``flock`` on ``.NAME.lock`` beside it, which records
        its host and pid; the lock dies with its process).
        :class:`~widelimit.scale.store.StoreMismatchError`: ``store`` holds a kernel
        of another net (by :func:`widelimit.fingerprint.describe_spec`), data,
        dtype, tile size or ``get``.
        :class:`~widelimit.fingerprint.FingerprintError`: the net holds a callable
        whose behaviour cannot be fingerprinted; wrap it with
        :func:`widelimit.versioned`.
        :class:`~widelimit.scale.store.StoreCorruptError`: the store is damaged
        and ``repair`` is false.
    Returns:
        :class:`~widelimit.scale.read.StoredKernel` with ``.nngp``/``.ntk`` block
        views; its ``run`` attribute holds :class:`RunStats`.
    """
    if not isinstance(net, Layer):
        raise TypeError(f"`net` must be a widelimit Layer (network spec); got {type(net).__name__}")
    gets = check_get(get)
    t1 = as_float_tensor("x1", x1, min_ndim=2, max_ndim=4)
    t2 = None if x2 is None else as_float_tensor("x2", x2, min_ndim=2, max_ndim=4)
    if t2 is not None:
        check_same_dtype_device("x1", t1, "x2", t2)
        if t1.shape[1:] != t2.shape[1:]:
            raise ValueError(
                "`x1` and `x2` must have the same per-example shape; got "
                f"{tuple(t1.shape[1:])} and {tuple(t2.shape[1:])}"
            )
    budget = parse_bytes("memory_budget", memory_budget)
    if num_workers is not None:
        num_workers = check_positive_int("num_workers", num_workers)
    side1, side2 = net.check_side_inputs(side, t1, t2)

    # Probe a 2×2 kernel: validates the architecture and the output layout early.
    probe = net.kernel(
        t1[:2], None if t2 is None else t2[:2], get=gets, **_side_kwargs(side1, side2, 0, 2)
    )
    if probe.nngp.ndim != 2:
        raise ValueError(
            f"compute_kernel needs a network whose output kernel is (N1, N2); this one ends "
            f"in layout {tuple(probe.nngp.shape)} (spatial {probe.spatial}). End the net "
            "with a readout, e.g. Flatten() or GlobalAvgPool() followed by Dense(1)"
        )

    device = str(t1.device)
    a1 = t1.detach().cpu().numpy()
    a2 = None if t2 is None else t2.detach().cpu().numpy()
    s1 = {k: v.detach().cpu().numpy() for k, v in side1.items()}
    s2 = None if side2 is None else {k: v.detach().cpu().numpy() for k, v in side2.items()}
    symmetric = a2 is None
    n1, n2 = len(a1), len(a1) if a2 is None else len(a2)
    itemsize = a1.dtype.itemsize

    client, close_client = client_for(scheduler)
    lock: StoreLock | None = None
    try:
        concurrent = concurrency(client, num_workers, scheduler)
        sched_name = scheduler_name(scheduler, client, concurrent)
        shape = tuple(a1.shape[1:])
        if tile is None and (Path(store) / "zarr.json").exists() and not overwrite:
            tile = KernelStore.open(store).meta.tile  # resume with the stored tiling
        if tile is None:
            tile = auto_tile(
                net, shape, n=max(n1, n2), itemsize=itemsize, n_kernels=len(gets),
                budget=budget, concurrent=concurrent,
            )  # fmt: skip
        tile = min(check_positive_int("tile", tile), max(n1, n2))
        mem = estimate_memory(
            net, shape, tile=tile, n1=n1, n2=n2, itemsize=itemsize, n_kernels=len(gets),
            concurrent=concurrent, symmetric=symmetric,
        )  # fmt: skip
        if budget is not None and mem.total > budget:
            raise ValueError(
                f"tiles do not fit memory_budget={fmt_bytes(budget)}: {mem.describe()}. "
                f"Use a smaller `tile` (about {int(tile * math.sqrt(budget / mem.total))}) "
                "or fewer workers"
            )

        meta = StoreMetadata(
            spec=describe_spec(net),
            x1=data_fingerprint(a1, side=s1),
            x2=None if a2 is None else data_fingerprint(a2, side=s2),
            n1=n1,
            n2=n2,
            input_shape=tuple(a1.shape[1:]),
            dtype=a1.dtype.name,
            tile=tile,
            get=gets,
        )
        if not overwrite and not (Path(store) / "zarr.json").exists():  # a new store
            check_disk(store, store_bytes(tile_plan(n1, n2, tile, symmetric=symmetric),
                                          itemsize, len(gets)))  # fmt: skip
        lock = StoreLock(store).acquire()
        kstore, done = _open_store(store, meta, overwrite=overwrite, verify=verify, repair=repair)
        plan = kstore.plan
        todo = [t for t in plan.tiles() if (t.i, t.j) not in done]
        # Refuse before any tile runs if the rest of the store cannot fit on its disk
        # (a new store was checked before it was created).
        check_disk(store, store_bytes(plan, itemsize, len(gets), len(todo)))
        if client is None and num_workers is None and len(todo) > 1 and concurrent > 1:
            # Not more tiles at once than free cores: with another process spinning on one of
            # two cores, two tile threads share the other core and lose to one (measured:
            # N = 20,000, 9.6 vs 7.8 s); when every core is busy all of them run (fair shares).
            concurrent = min(concurrent, free_cores())
        if client is None and len(todo) < concurrent:
            # Fewer tiles than workers (small N, or a resume's last tiles): run them all at
            # once and give each the idle cores' torch threads, instead of one thread per
            # tile beside idle cores (N = 2,000 is one tile: it ran on one of two cores).
            concurrent = max(len(todo), 1)
        if client is None and concurrent == 1 and scheduler not in ("sync", "synchronous"):
            # One tile at a time: in the calling thread, with its torch threads (no Dask
            # thread pool; a hand-over between threads waits for a time slice on a busy machine).
            threads_per_tile = tile_threads(client, scheduler, concurrent)
            scheduler = "sync"
        else:
            threads_per_tile = tile_threads(client, scheduler, concurrent)
        sched_name = scheduler_name(scheduler, client, concurrent)
        if progress:
            console.print(
                f"[bold]widelimit.scale[/]: {n1}×{n2} {'/'.join(gets)} ({meta.dtype}), "
                f"tile {tile}, {len(plan)} tiles ({len(done)} done), {sched_name}"
            )
            console.print(mem.describe())

        t0 = time.perf_counter()
        threads = torch_threads(threads_per_tile)
        with threads, ProgressBar(len(plan), len(done), tile, progress) as bar:
            if client is None:
                run_local(
                    net, (a1, s1), (a2, s2), gets, device, kstore, todo, bar, scheduler,
                    concurrent, adaptive=num_workers is None,
                )  # fmt: skip
            else:
                run_distributed(client, net, (a1, s1), (a2, s2), gets, device, kstore, todo, bar)
        seconds = time.perf_counter() - t0
    finally:
        if lock is not None:
            lock.release()
        if close_client:
            client.close()

    result = StoredKernel(kstore)
    entries = sum(t.entries for t in todo)
    result.run = RunStats(
        tiles_total=len(plan),
        tiles_skipped=len(done),
        tiles_computed=len(todo),
        seconds=seconds,
        entries_per_second=entries / seconds if seconds > 0 else float("nan"),
        memory=mem,
        scheduler=sched_name,
    )
    return result


def _side_kwargs(
    side1: Mapping[str, Any], side2: Mapping[str, Any] | None, start: int, stop: int
) -> dict[str, Any]:
    """Keyword side inputs of ``net.kernel`` for rows (and columns) ``start:stop``."""
    if side2 is None:
        return {k: v[start:stop] for k, v in side1.items()}
    return {k: (v[start:stop], side2[k][start:stop]) for k, v in side1.items()}


def _open_store(
    path: str | os.PathLike, meta: StoreMetadata, *, overwrite: bool, verify: bool, repair: bool
) -> tuple[KernelStore, set[tuple[int, int]]]:
    p = Path(path)
    if p.exists() and overwrite:
        if not (p / "zarr.json").exists() and any(p.iterdir()):
            raise ValueError(f"refusing to overwrite {str(p)!r}: it is not a kernel store")
        shutil.rmtree(p)
    if not p.exists():
        try:
            return KernelStore.create(p, meta), set()
        except OSError as err:
            raise ValueError(
                f"`store` {str(p)!r} cannot be created: {err.strerror or err}; "
                "choose a writable directory"
            ) from err
    if not (p / "zarr.json").exists():
        raise ValueError(f"`store` {str(p)!r} exists but is not a kernel store; pass a new path")
    kstore = KernelStore.open(p, mode="r+")
    kstore.check_matches(meta)
    try:
        done = kstore.done_tiles(verify_data=verify)
    except StoreCorruptError:
        if not repair:
            raise
        kstore.drop_bad_records()
        done = kstore.done_tiles(verify_data=verify)
    return kstore, done
