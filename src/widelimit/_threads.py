"""Threads of the kernel engine: tiles on a pool of workers, one intra-op thread each.

The tiled engine (:mod:`widelimit.layers.tiles`) runs many small operations per tile: a
panel's matrix product, then a dozen elementwise passes per layer over 4 MiB.  Left to
torch's intra-op threads (OpenMP), every one of those operations is split across all
threads and ends at a barrier: when another process keeps a core busy, each operation waits
for the thread that lost its core, and a kernel that takes 8 s on one thread took 44-92 s at
the default two threads (N = 20,000, fully connected, float32, on 2 cores).

Here the parallelism is across tiles instead: :func:`run_jobs` hands independent jobs
(panels of tiles; square tiles for images) to ``torch.get_num_threads()`` worker threads, in
order, each taking the next job when it is done with the last (a busy core slows one worker,
not every operation), and every job runs with **one** intra-op thread.  torch releases the
GIL inside its operations, so the workers' operations overlap; the Python between them is
short next to a 4 MiB pass.  A job computes the same operations on the same data whichever
worker runs it, with one thread either way, so the result does not depend on the number of
workers or on their timing: it is bitwise the result of one thread.

``torch.set_num_threads`` sets the calling thread's count (OpenMP and MKL keep one per
thread) and the count that threads start from before their first parallel operation.
:func:`engine_threads` sets one thread for the engine's call in the calling thread and puts
its count back when the call returns; the workers run at one thread for life.  Threads that
already ran torch operations keep their own count; a thread starting its first torch
operation *during* a call starts at one.  Work that calls the engine from inside a job
(:func:`in_worker`; e.g. a layer that evaluates a small kernel) runs in that worker without
starting workers of its own.

Blocks of :data:`LOOK_FROM_ENTRIES` entries or more leave out the cores other processes keep
busy, looked at while the first jobs run and again every :data:`RESAMPLE_SECONDS` as jobs
end (:func:`engine_threads`, :class:`Concurrency`, :func:`run_adapting`, which the store's
local tiles use too).

``WIDELIMIT_ENGINE_THREADS=N`` in the environment sets the number of workers (``1``: no
pool, the old behaviour of torch's own threads inside every operation).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import torch

__all__ = [
    "Concurrency",
    "engine_threads",
    "in_worker",
    "run_adapting",
    "run_jobs",
    "torch_threads",
]

T = TypeVar("T")
R = TypeVar("R")

_local = threading.local()


def in_worker() -> bool:
    """``True`` inside a job run by :func:`run_jobs` on a worker thread."""
    return getattr(_local, "worker", False)


#: Entries (output elements) from which :func:`engine_threads` follows the busy cores: at
#: N ≈ 1,450 (2²¹ entries) a kernel is ~40 ms of one-thread work, enough to hide a ~7 ms
#: look (taken by the waiting calling thread while the first jobs run); smaller calls take
#: ``torch.get_num_threads()`` workers as they are.
LOOK_FROM_ENTRIES = 1 << 21


@contextmanager
def engine_threads(device: torch.device, entries: int | None = None) -> Iterator[int]:
    """Workers for the block's tiles: the block runs with one intra-op thread when > 1.

    ``torch.get_num_threads()`` workers (``WIDELIMIT_ENGINE_THREADS`` overrides it) on the
    CPU, outside a worker; 1 otherwise (then nothing changes).  No more of them run at
    once than :func:`widelimit._cpus.free_cores`: with a core kept busy by another process,
    two workers share the other core and lose to one.  A block of at least
    :data:`LOOK_FROM_ENTRIES` output ``entries`` (or unknown) follows the busy cores: its
    :func:`run_jobs` starts every worker, looks at once while those first jobs run (or starts
    from a look of this process less than :data:`RESAMPLE_SECONDS` old: the store's, or the
    previous tile's), and again every :data:`RESAMPLE_SECONDS` as jobs end, running between 1
    and the wanted number of jobs at once (:class:`Concurrency`).  A look costs no wall time
    (the calling thread would only wait), one unlucky look (another task running through
    most of its ~7 ms) holds only until the next, and a process that starts or ends during
    the block is followed.  With more than one worker, the calling thread runs at one
    intra-op thread inside the block (its own operations, such as the first tile, would
    otherwise wait for every thread under load; OpenMP waits for a busy core), and the count
    it had is set again when the block exits.
    """
    workers, explicit = _wanted_workers(device)
    conc = None
    if workers > 1 and not explicit and (entries is None or entries >= LOOK_FROM_ENTRIES):
        from widelimit._cpus import recent_free_cores

        # A look less than a second old (the store's, the last tile's) sets the start; else
        # every worker starts and the first look is due at once, while they run.
        free, when = recent_free_cores(RESAMPLE_SECONDS) or (workers, -math.inf)
        conc = Concurrency(most=workers, limit=min(workers, free), adaptive=True, checked=when)
    before = getattr(_local, "concurrency", None)
    _local.concurrency = conc  # a block nested in this thread does not inherit it
    try:
        if workers == 1:
            yield 1
        else:
            with torch_threads(1):
                yield workers
    finally:
        _local.concurrency = before


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Set torch's intra-op threads to ``n`` inside the block (restored after); ``None``:
    unchanged."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _wanted_workers(device: torch.device) -> tuple[int, bool]:
    """``(workers, explicit)``: ``explicit`` when ``WIDELIMIT_ENGINE_THREADS`` set the count
    (then it is taken as it is)."""
    if device.type != "cpu" or in_worker():
        return 1, False
    env = os.environ.get("WIDELIMIT_ENGINE_THREADS", "").strip()
    if not env:
        return torch.get_num_threads(), False
    if not env.isdigit() or int(env) < 1:
        raise ValueError(
            f"WIDELIMIT_ENGINE_THREADS must be a positive integer; got {env!r} "
            "(unset it to use torch.get_num_threads())"
        )
    return int(env), True


def _worker_init() -> None:
    _local.worker = True
    torch.set_num_threads(1)


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _forget_pool() -> None:  # a forked child has the pool object but not its threads
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _executor(workers: int) -> ThreadPoolExecutor:
    """The process's pool of engine workers, (re)made with ``workers`` threads.

    Kept between calls: its threads keep their warm heaps (glibc gives each thread its own
    arena; a new thread's arena starts cold) and need not be started again.
    """
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers != workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(
                workers, thread_name_prefix="widelimit-engine", initializer=_worker_init
            )
        return _pool


def run_jobs(fn: Callable[[T], R], jobs: Iterable[T], workers: int) -> list[R]:
    """``[fn(j) for j in jobs]`` on ``workers`` threads with one intra-op thread each.

    Jobs start in order (put the longest first) and must write disjoint memory.  With one
    worker or one job they run here, in order.  The first exception raised by a job is
    re-raised here once the running jobs have finished; jobs not yet started are cancelled.
    Inside an :func:`engine_threads` block that looked at the busy cores, ``workers`` is
    where the block started: jobs run on its :class:`Concurrency` (:func:`run_adapting`).
    """
    items: Sequence[T] = list(jobs)
    conc = getattr(_local, "concurrency", None)
    if conc is not None and len(items) > 1:  # (a block has one only with > 1 workers)
        return run_adapting(fn, items, _executor(conc.most), conc)
    if workers <= 1 or len(items) <= 1:
        return [fn(j) for j in items]
    pool = _executor(workers)
    futures = [pool.submit(fn, j) for j in items]
    done, _ = wait(futures, return_when=FIRST_EXCEPTION)
    failed = [f for f in futures if f in done and f.exception() is not None]
    if failed:
        for f in futures:
            f.cancel()
        wait(futures)  # the running ones: they write into the caller's buffers
        raise failed[0].exception()  # type: ignore[misc]
    return [f.result() for f in futures]


#: Seconds between two looks at the busy cores (:meth:`Concurrency.look`; ~7 ms each,
#: spent asleep in the calling thread while the workers compute).
RESAMPLE_SECONDS = 1.0


@dataclass
class Concurrency:
    """How many jobs run at once: ``limit`` (between 1 and ``most``); when ``adaptive``,
    re-set from :func:`widelimit._cpus.free_cores` every :data:`RESAMPLE_SECONDS`."""

    most: int
    limit: int
    adaptive: bool = False
    checked: float = field(default_factory=time.monotonic)

    def look(self, ours: int) -> None:
        """Re-set ``limit`` if a look is due; ``ours``: this process's jobs running now
        (they count as runnable but are not other tasks)."""
        if not self.adaptive or time.monotonic() - self.checked < RESAMPLE_SECONDS:
            return
        from widelimit._cpus import free_cores

        self.limit = max(1, min(self.most, free_cores(ours)))
        self.checked = time.monotonic()


def run_adapting(
    fn: Callable[[T], R], items: Sequence[T], pool: ThreadPoolExecutor, conc: Concurrency
) -> list[R]:
    """``[fn(j) for j in items]`` on ``pool`` (at least ``conc.most`` threads), at most
    ``conc.limit`` at once, starting them in order; the limit is looked at again as jobs end.
    While the limit is 1 the jobs run here, in the calling thread.  A look (when due: see
    :meth:`Concurrency.look`) is taken after starting jobs, while they run.

    The first exception raised by a job is re-raised here once the running jobs have
    finished (they may write into the caller's buffers); later jobs never start.
    """
    results: list[R] = [None] * len(items)  # type: ignore[list-item]
    running: dict[Future[R], int] = {}
    nxt = 0

    def fill() -> None:
        nonlocal nxt
        while nxt < len(items) and len(running) < conc.limit:
            running[pool.submit(fn, items[nxt])] = nxt
            nxt += 1

    try:
        while nxt < len(items) or running:
            if conc.limit <= 1 and not running:
                # One at a time: in the calling thread, as run_jobs does for one worker (no
                # hand-over, its warm heap: 1-2 % faster than a pool thread at N = 20,000).
                results[nxt] = fn(items[nxt])
                nxt += 1
                conc.look(ours=0)
                continue
            fill()
            conc.look(ours=len(running))  # when due: the started jobs run meanwhile
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in done:
                results[running.pop(f)] = f.result()  # a job's exception is raised here
    except BaseException:
        wait(running)
        raise
    return results
