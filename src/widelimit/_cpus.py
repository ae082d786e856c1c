"""CPUs this process may use, and how many of them other processes keep busy right now.

Torch-free (the planner and the command line use it without torch).  Why the engine asks:
with two cores and another process spinning on one, Linux leaves two busy workers of ours
on the other core (three tasks on two cores: moving one would not reduce the imbalance),
so a second worker adds switching and cache misses and no CPU — default threads then lost to
one thread (N = 5,000 in memory: 0.73 vs 0.65 s; a store at N = 20,000: 9.6 vs 7.8 s).  When
every core is busy, more workers do claim more fair shares, so they are kept.
"""

from __future__ import annotations

import os
import statistics
import time

__all__ = [
    "cores",
    "free_cores",
    "others_running",
    "recent_free_cores",
    "threads_per_tile",
]

#: Reads of ``/proc/loadavg`` per sample, and the pause between them (≈ 7 ms in all: a task
#: must run through most of it to count, so a short-lived one does not).
SAMPLES, INTERVAL = 8, 1e-3


def cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def threads_per_tile(limit: int, concurrent: int) -> int:
    """Torch intra-op threads for each of ``concurrent`` tiles running at once: the cores
    shared out (at least 1), at most ``limit`` (torch's thread count)."""
    return max(1, min(limit, cores() // concurrent))


def _running() -> int | None:
    """Runnable tasks on the machine now (the 4th field of ``/proc/loadavg``, ``R/T``)."""
    try:
        with open("/proc/loadavg") as f:
            return int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):  # not Linux, or an unexpected format
        return None


def others_running(ours: int = 0) -> int | None:
    """Tasks of other threads and processes running or runnable now: the median of
    :data:`SAMPLES` reads of the runnable count, minus the reading thread itself and
    ``ours``, the threads of this process known to be computing meanwhile (``None`` where
    the count is not available)."""
    counts = []
    for k in range(SAMPLES):
        n = _running()
        if n is None:
            return None
        counts.append(n)
        if k < SAMPLES - 1:
            time.sleep(INTERVAL)
    others = max(0, int(statistics.median(counts)) - 1 - ours)
    global _last_look
    _last_look = (time.monotonic(), others)
    return others


#: ``(time.monotonic(), others)`` of the last :func:`others_running` in this process.
_last_look: tuple[float, int] | None = None


def recent_free_cores(max_age: float) -> tuple[int, float] | None:
    """``(free cores, time of the look)`` from the last look of this process if it is at
    most ``max_age`` seconds old, else ``None`` (then look: :func:`free_cores`)."""
    last = _last_look
    if last is None or time.monotonic() - last[0] > max_age:
        return None
    when, others = last
    return _free(others), when


def free_cores(ours: int = 0) -> int:
    """Workers that gain from running at once: :func:`cores` minus the cores other tasks
    keep busy now, when that leaves at least one; :func:`cores` when it leaves none (every
    worker then claims a fair share of busy cores) or when the count is unknown.
    ``ours``: threads of this process computing while the count is read (not "others")."""
    return _free(others_running(ours))


def _free(others: int | None) -> int:
    """Cores left by ``others`` busy tasks; all of them when that leaves none or ``others`` is
    unknown (see :func:`free_cores`)."""
    total = cores()
    if others is None or others >= total:
        return total
    return total - others
