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

``WIDELIMIT_ENGINE_THREADS=N`` in the environment sets the number of workers (``1``: no
pool, the old behaviour of torch's own threads inside every operation).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import TypeVar

import torch

__all__ = ["engine_threads", "in_worker", "run_jobs", "torch_threads"]

T = TypeVar("T")
R = TypeVar("R")

_local = threading.local()


def in_worker() -> bool:
    """``True`` inside a job run by :func:`run_jobs` on a worker thread."""
    return getattr(_local, "worker", False)


#: Entries (output elements) from which :func:`engine_threads` checks for busy cores (~7 ms,
#: against ≥ 0.3 s of work at N ≈ 4,100); smaller calls take ``torch.get_num_threads()``
#: workers as they are.
SAMPLE_FROM_ENTRIES = 1 << 24


@contextmanager
def engine_threads(device: torch.device, entries: int | None = None) -> Iterator[int]:
    """Workers for the block's tiles: the block runs with one intra-op thread when > 1.

    ``torch.get_num_threads()`` workers (``WIDELIMIT_ENGINE_THREADS`` overrides it) on the
    CPU, outside a worker; 1 otherwise (then nothing changes).  For a block of at least
    :data:`SAMPLE_FROM_ENTRIES` output ``entries`` (or unknown), no more workers than
    :func:`widelimit._cpus.free_cores`: with a core kept busy by another process, two
    workers share the other core and lose to one (and when that leaves one worker, the
    block runs at one intra-op thread too).  With more than one, the
    calling thread too runs at one intra-op thread inside the block (its own operations,
    such as the first tile, would otherwise wait for every thread under load), and the
    count it had is set again when the block exits.
    """
    workers, explicit = _wanted_workers(device)
    if workers > 1 and not explicit and (entries is None or entries >= SAMPLE_FROM_ENTRIES):
        from widelimit._cpus import free_cores

        workers = min(workers, free_cores())
        if workers == 1:  # and one intra-op thread: OpenMP would wait for the busy core
            with torch_threads(1):
                yield 1
            return
    if workers == 1:
        yield 1
        return
    with torch_threads(1):
        yield workers


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
    """
    items: Sequence[T] = list(jobs)
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
