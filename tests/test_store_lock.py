"""The writer lock admits one process at a time, also when many writers start together
against a stale lock left by a crashed writer (issue 24, item 9: the old takeover let two
or three processes in at once in 3 of 12 trials)."""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import os
import random
import socket
import time

import pytest

from widelimit.scale.lock import StoreLock, StoreLockedError, lock_path

N_WRITERS = 10
TRIALS = 6
HOLD = 0.02  # seconds each writer keeps the lock


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    ctx = mp.get_context("fork")
    p = ctx.Process(target=os._exit, args=(0,))
    p.start()
    p.join()
    return p.pid


def _slow(fn, rng):
    """``fn`` after a random 0-2 ms pause: file operations as slow as on a network disk."""

    def slow(*args, **kwargs):
        time.sleep(rng.uniform(0.0, 0.002))
        return fn(*args, **kwargs)

    return slow


def _writer(store: str, barrier, out) -> None:
    """Take the lock (retrying while it is busy), record entry/exit, release."""
    rng = random.Random(os.getpid())
    for name in ("open", "replace", "unlink", "stat"):  # widen every race window
        setattr(os, name, _slow(getattr(os, name), rng))
    barrier.wait()
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline:
        try:
            lock = StoreLock(store).acquire()
        except StoreLockedError:
            time.sleep(0.001)
            continue
        t0 = time.monotonic()  # CLOCK_MONOTONIC: one clock for all processes
        time.sleep(HOLD)
        t1 = time.monotonic()
        lock.release()
        out.put((os.getpid(), t0, t1))
        return
    out.put((os.getpid(), None, None))


def test_stale_lock_takeover_race_admits_one_writer_at_a_time(tmp_path) -> None:
    ctx = mp.get_context("fork")  # no re-import per writer: they start within milliseconds
    for trial in range(TRIALS):
        store = tmp_path / f"k{trial}.zarr"
        stale = {"host": socket.gethostname(), "pid": _dead_pid(), "started": "earlier"}
        lock_path(store).write_text(json.dumps(stale))  # a crashed writer's lock
        barrier, out = ctx.Barrier(N_WRITERS), ctx.Queue()
        procs = [
            ctx.Process(target=_writer, args=(str(store), barrier, out)) for _ in range(N_WRITERS)
        ]
        for p in procs:
            p.start()
        records = [out.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=30)
            assert p.exitcode == 0
        assert all(t0 is not None for _, t0, _ in records), "a writer never got the lock"
        spans = sorted((t0, t1) for _, t0, t1 in records)
        for (_, a1), (b0, _) in itertools.pairwise(spans):
            assert b0 >= a1, f"trial {trial}: two writers held the lock at once: {spans}"
        assert not lock_path(store).exists()


def test_second_holder_is_refused_while_the_first_holds_the_lock(tmp_path) -> None:
    store = tmp_path / "k.zarr"
    with StoreLock(store):
        with pytest.raises(StoreLockedError, match=f"being written by process {os.getpid()}"):
            StoreLock(store).acquire()
    with StoreLock(store) as again:  # released: free again
        assert again.held
