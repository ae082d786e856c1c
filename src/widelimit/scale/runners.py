"""Where tiles run: local threads, the calling thread, or a ``dask.distributed`` cluster.

Each tile is :func:`compute_tile`, a pure function of the spec and two input
slices.  Local threads (a thread pool, largest tiles first): every task computes its
tile and writes its chunk and completion record itself (tiles own distinct chunks, so no
locking).  Cluster: workers only compute (they receive the spec and the scattered row blocks, no
shared disk); the client writes each tile as it arrives, keeping at most
``2 × total worker threads`` tiles in flight.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from rich.progress import TextColumn

from widelimit._cpus import cores, threads_per_tile
from widelimit._threads import Concurrency, run_adapting
from widelimit.layers.base import Layer
from widelimit.progress import progress_bar, stderr_console
from widelimit.scale.tiles import Tile

if TYPE_CHECKING:  # Zarr loads only when a store is opened (``--plan`` never does)
    from widelimit.scale.store import KernelStore

__all__ = ["compute_tile"]

console = stderr_console


#: Inputs of one side of the kernel: the ``(N, *input_shape)`` array and its side inputs.
Inputs = tuple[np.ndarray | None, dict[str, np.ndarray] | None]


def compute_tile(
    net: Layer,
    xa: np.ndarray,
    xb: np.ndarray | None,
    get: tuple[str, ...],
    device: str,
    side_a: Mapping[str, np.ndarray] | None = None,
    side_b: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """One tile: ``net.kernel(xa, xb)`` as numpy ``(len(xa), len(xb or xa))`` arrays per kernel.

    ``side_a``/``side_b``: the side inputs (``mask``, ``pattern``, ...) of the rows
    ``xa`` and the columns ``xb`` (``side_b`` unused when ``xb`` is None).  A pure
    function of its arguments (what a Dask worker runs).
    """
    ta = torch.from_numpy(xa).to(device)
    tb = None if xb is None else torch.from_numpy(xb).to(device)
    sa = {k: torch.as_tensor(v, device=device) for k, v in (side_a or {}).items()}
    if tb is None:
        side: dict[str, object] = dict(sa)
    else:
        sb = side_b or {}
        side = {k: (v, torch.as_tensor(sb[k], device=device)) for k, v in sa.items()}
    k = net.kernel(ta, tb, get=get, **side)
    return {g: getattr(k, g).detach().cpu().numpy() for g in get}


def client_for(scheduler: Any) -> tuple[Any, bool]:
    if scheduler is None or scheduler in ("threads", "sync", "synchronous"):
        return None, False
    try:
        from distributed import Client
    except ImportError as err:  # pragma: no cover - distributed is a dependency
        raise ValueError("a cluster scheduler needs the `distributed` package") from err
    if isinstance(scheduler, Client):
        return scheduler, False
    if isinstance(scheduler, str):
        if "://" not in scheduler:
            raise ValueError(
                "`scheduler` must be 'threads', 'sync' or a scheduler address like "
                f"'tcp://host:8786'; got {scheduler!r}"
            )
        return Client(scheduler), True
    raise TypeError(
        "`scheduler` must be None, 'threads', 'sync', a 'tcp://host:port' address or a "
        f"distributed.Client; got {type(scheduler).__name__}"
    )


def concurrency(client: Any, num_workers: int | None, scheduler: Any) -> int:
    """Tiles that run at once: 1 (sync), ``num_workers`` or one per core (local threads;
    :func:`~widelimit.scale.compute_kernel` then leaves out cores that other processes keep
    busy, :func:`~widelimit._cpus.free_cores`), the largest worker's threads (cluster)."""
    if scheduler in ("sync", "synchronous"):
        return 1
    if client is None:
        return num_workers or cores()
    workers = client.scheduler_info().get("workers", {})
    threads = [w.get("nthreads", 1) for w in workers.values()]
    return max(threads) if threads else 1


def tile_threads(client: Any, scheduler: Any, concurrent: int) -> int | None:
    """Torch intra-op threads per tile while local tiles run: ``cores // concurrent`` (at
    least 1, at most torch's current setting), so that tiles × threads fill the cores
    without exceeding what the caller allowed; ``None`` (leave torch's setting) for the
    calling thread and for a cluster.

    Tiles are the parallelism: one intra-op thread per tile never waits at OpenMP
    barriers for a core another process holds (docs/scale.md measures it)."""
    if client is not None or scheduler in ("sync", "synchronous"):
        return None
    return threads_per_tile(torch.get_num_threads(), concurrent)


def scheduler_name(scheduler: Any, client: Any, concurrent: int) -> str:
    if client is None:
        if scheduler in ("sync", "synchronous"):
            return "sync (calling thread)"
        per_tile = tile_threads(client, scheduler, concurrent)
        return f"local threads ({concurrent} tiles × {per_tile} torch threads)"
    n = len(client.scheduler_info().get("workers", {}))
    return f"dask.distributed {client.scheduler.address} ({n} workers)"


class ProgressBar:
    """Rich progress bar: tiles done/total and throughput in tiles/s and entries/s."""

    def __init__(self, total: int, done: int, tile: int, enabled: bool):
        self.total, self.done, self.enabled = total, done, enabled
        self.entries = 0
        self.t0 = time.perf_counter()

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            self.bar = progress_bar(
                transient=False, extra_columns=[TextColumn("{task.fields[rate]}")]
            )
            self.bar.__enter__()
            self.task = self.bar.add_task(
                "kernel tiles", total=self.total, completed=self.done, rate=""
            )
        return self

    def advance(self, tile: Tile) -> None:
        if not self.enabled:
            return
        self.entries += tile.entries
        dt = max(time.perf_counter() - self.t0, 1e-9)
        self.bar.update(self.task, advance=1, rate=f"{self.entries / dt:.3g} entries/s")

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.__exit__(*exc)


def _rows(x: Inputs, s: slice) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    a, side = x
    assert a is not None
    return a[s], {k: v[s] for k, v in (side or {}).items()}


def tile_inputs(
    x1: Inputs, x2: Inputs, t: Tile
) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(xa, xb, side_a, side_b)`` of a tile; ``xb`` None for a diagonal tile of a
    symmetric kernel (``x2 = (None, None)``)."""
    xa, sa = _rows(x1, t.rows)
    if x2[0] is None:
        if t.i == t.j:
            return xa, None, sa, {}
        xb, sb = _rows(x1, t.cols)
    else:
        xb, sb = _rows(x2, t.cols)
    return xa, xb, sa, sb


def _local_task(
    net: Layer, x1: Inputs, x2: Inputs, gets: tuple[str, ...], device: str,
    kstore: KernelStore, bar: ProgressBar, t: Tile,
) -> int:  # fmt: skip
    xa, xb, sa, sb = tile_inputs(x1, x2, t)
    out = compute_tile(net, xa, xb, gets, device, sa, sb)
    kstore.write_tile(t, out)
    bar.advance(t)
    return t.entries


def run_local(
    net: Layer, x1: Inputs, x2: Inputs, gets: tuple[str, ...], device: str,
    kstore: KernelStore, todo: list[Tile], bar: ProgressBar, scheduler: Any,
    num_workers: int | None, *, adaptive: bool = False,
) -> None:  # fmt: skip
    """Compute and write ``todo`` in this process: tile after tile in the calling thread
    (``scheduler="sync"``), else on ``num_workers`` threads, largest tiles first.

    Largest first (a diagonal tile of a symmetric kernel computes half its entries) is the
    greedy longest-processing-time order: the last tiles to start are the short ones, so no
    worker runs a long tile alone at the end while the others idle.  N = 5,000 is three
    tiles: in Dask's order its off-diagonal tile ran last, alone, next to an idle core.
    ``adaptive``: look at the busy cores again as tiles end (every
    :data:`~widelimit._threads.RESAMPLE_SECONDS`) and run between 1 and ``num_workers``
    tiles at once (:class:`~widelimit._threads.Concurrency`).
    """
    task = partial(_local_task, net, x1, x2, gets, device, kstore, bar)
    if scheduler in ("sync", "synchronous"):
        for t in todo:  # a plain loop: no thread hand-over, no pool
            task(t)
        return
    plan = kstore.plan
    order = sorted(todo, key=plan.computed_entries, reverse=True)
    workers = num_workers or cores()
    conc = Concurrency(most=workers, limit=workers, adaptive=adaptive)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="widelimit-tile") as pool:
        run_adapting(task, order, pool, conc)  # Ctrl-C: leaving waits for the running tiles


def _block_tile(
    net: Layer, a: tuple[np.ndarray, dict], b: tuple[np.ndarray, dict] | None,
    gets: tuple[str, ...], device: str,
) -> dict[str, np.ndarray]:  # fmt: skip
    """:func:`compute_tile` on scattered ``(rows, side inputs)`` blocks (cluster workers)."""
    if b is None:
        return compute_tile(net, a[0], None, gets, device, a[1])
    return compute_tile(net, a[0], b[0], gets, device, a[1], b[1])


def run_distributed(
    client: Any, net: Layer, x1: Inputs, x2: Inputs, gets: tuple[str, ...],
    device: str, kstore: KernelStore, todo: list[Tile], bar: ProgressBar,
) -> None:  # fmt: skip
    from distributed import as_completed

    if not todo:
        return
    plan = kstore.plan
    symmetric = x2[0] is None
    # Ship each row block (with its side inputs) once; tiles reference the scattered blocks.
    rows = sorted({t.i for t in todo})
    cols = sorted({t.j for t in todo})
    blocks1 = dict(
        zip(rows, client.scatter([_rows(x1, plan.tile_at(i, 0).rows) for i in rows]), strict=True)
    )
    src2 = x1 if symmetric else x2
    blocks2 = dict(
        zip(cols, client.scatter([_rows(src2, plan.tile_at(0, j).cols) for j in cols]), strict=True)
    )
    total_threads = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values())
    window = max(2 * total_threads, 2)
    pending = list(reversed(todo))
    futures = {}

    def submit(t: Tile) -> Any:
        xb = None if (symmetric and t.i == t.j) else blocks2[t.j]
        fut = client.submit(
            _block_tile, net, blocks1[t.i], xb, gets, device,
            key=f"widelimit-tile-{kstore.store_id[:8]}-{t.key}", pure=False,
        )  # fmt: skip
        futures[fut.key] = t
        return fut

    ac = as_completed([submit(pending.pop()) for _ in range(min(window, len(pending)))])
    for fut in ac:
        t = futures.pop(fut.key)
        kstore.write_tile(t, fut.result())
        fut.release()
        bar.advance(t)
        if pending:
            ac.add(submit(pending.pop()))
