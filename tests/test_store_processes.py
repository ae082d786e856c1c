"""Real processes on one store: a second writer is refused by the lock (and takes over a stale
lock after a crash), Ctrl-C prints how much was saved and exits 130, and repeated kill -9 at
random moments followed by a resume gives the same bytes as an uninterrupted run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from widelimit.scale import compute_kernel, load_kernel, verify_store
from widelimit.scale.lock import lock_path
from widelimit.spec_text import parse_net

torch.set_num_threads(1)

NET = (
    "Dense(64, w_std=1.4, b_std=0.1) -> ReLU -> Dense(64, w_std=1.4, b_std=0.1) -> ReLU -> Dense(1)"
)
N_TILES = 6 * 7 // 2  # 70 rows, tile 12: 6 tile rows, upper triangle

# The `widelimit kernel --store` command, with every tile write slowed by `delay` seconds
# so the parent can act while some, but not all, tiles are recorded.
_CLI = textwrap.dedent(
    """
    import sys, time
    import torch
    torch.set_num_threads(1)
    import widelimit.scale.store as st
    delay = float(sys.argv[1])
    orig = st.KernelStore.write_tile
    def slow(self, tile, arrays):
        time.sleep(delay)
        orig(self, tile, arrays)
    st.KernelStore.write_tile = slow
    from widelimit.cli import main
    sys.argv = ["widelimit", "kernel", *sys.argv[2:]]
    main()
    """
)


@pytest.fixture()
def job(tmp_path):
    x = np.random.default_rng(7).normal(size=(70, 9))
    np.save(tmp_path / "x.npy", x)
    script = tmp_path / "cli.py"
    script.write_text(_CLI)

    def argv(store, delay):
        return [sys.executable, str(script), str(delay), "--net", NET, "--x1",
                str(tmp_path / "x.npy"), "--store", str(store), "--tile", "12",
                "--scheduler", "sync", "--no-progress"]  # fmt: skip

    ref = compute_kernel(
        parse_net(NET), torch.as_tensor(x), store=tmp_path / "ref.zarr", tile=12,
        scheduler="sync", progress=False,
    )  # fmt: skip
    return argv, {g: np.asarray(ref[g]).tobytes() for g in ("nngp", "ntk")}


def _as_from_a_terminal() -> None:
    """In the child before exec: SIGINT handled as in a terminal (default disposition,
    unblocked).  A test run started in the background of a non-interactive shell has SIGINT
    ignored, and a child would inherit that and never see the Ctrl-C this file sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _records(store) -> int:
    d = store / "tiles"
    return len(list(d.glob("*.json"))) if d.exists() else 0


def _wait_for(proc, store, n, timeout=90.0) -> None:
    deadline = time.monotonic() + timeout
    while _records(store) < n:
        assert proc.poll() is None, "the job ended before the test could act"
        assert time.monotonic() < deadline, "the job made no progress"
        time.sleep(0.02)


def _same_bytes(store, ref) -> None:
    assert verify_store(store) == []
    k = load_kernel(store)
    assert k.complete
    for g in ("nngp", "ntk"):
        assert np.asarray(k[g]).tobytes() == ref[g]


def test_second_writer_is_refused_then_takes_over_a_stale_lock(tmp_path, job) -> None:
    argv, ref = job
    store = tmp_path / "k.zarr"
    # slow enough (21 tiles × 4 s) that the second process (whose start-up alone can take
    # 20 s on a loaded machine) always finds the first one still writing
    first = subprocess.Popen(argv(store, 4.0), stderr=subprocess.DEVNULL)
    try:
        _wait_for(first, store, 1)
        second = subprocess.run(argv(store, 0.0), capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert f"is being written by process {first.pid} on host" in lines[0]
        assert str(lock_path(store)) in lines[0]
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert lock_path(store).exists()  # the crash left its lock behind
    done = _records(store)
    assert 1 <= done < N_TILES
    resumed = subprocess.run(argv(store, 0.0), capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"removed a stale lock on {str(store)!r} left by process {first.pid}" in resumed.stderr
    assert not lock_path(store).exists()
    _same_bytes(store, ref)


def test_ctrl_c_reports_saved_tiles_and_exits_130(tmp_path, job) -> None:
    argv, ref = job
    store = tmp_path / "k.zarr"
    proc = subprocess.Popen(
        argv(store, 0.2), stderr=subprocess.PIPE, text=True, preexec_fn=_as_from_a_terminal
    )
    _wait_for(proc, store, 3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    last = err.strip().splitlines()[-1]
    m = re.fullmatch(
        r"interrupted: (\d+)/(\d+) tiles saved in (.+); run the same command again to resume",
        last,
    )
    assert m is not None, err
    assert int(m[1]) == _records(store) and 3 <= int(m[1]) < N_TILES
    assert int(m[2]) == N_TILES and m[3] == str(store)
    assert not lock_path(store).exists()  # released on the way out
    again = subprocess.run(argv(store, 0.0), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    _same_bytes(store, ref)


def test_second_ctrl_c_within_50_ms_exits_cleanly_and_keeps_the_store_valid(tmp_path, job) -> None:
    """Issue 24: a second Ctrl-C during the shutdown after the first aborted with a C++
    "terminate called" (or printed tracebacks from threading/torch teardown)."""
    argv, ref = job
    store = tmp_path / "k.zarr"
    proc = subprocess.Popen(
        argv(store, 0.2), stderr=subprocess.PIPE, text=True, preexec_fn=_as_from_a_terminal
    )
    _wait_for(proc, store, 3)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.03)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "terminate called" not in err, err
    assert err.strip().splitlines()[-1].startswith("interrupted"), err
    assert verify_store(store) == []
    x = torch.as_tensor(np.random.default_rng(7).normal(size=(70, 9)))
    compute_kernel(parse_net(NET), x, store=store, scheduler="sync", progress=False)
    _same_bytes(store, ref)


@pytest.mark.slow  # three process start-ups + a resume: ~20 s idle, a minute on a busy machine
def test_repeated_kill_9_at_random_moments_then_resume_gives_identical_bytes(tmp_path, job) -> None:
    argv, ref = job
    store = tmp_path / "k.zarr"
    rng = np.random.default_rng(2026)
    seen = [0]
    for _ in range(3):
        proc = subprocess.Popen(argv(store, 0.1), stderr=subprocess.DEVNULL)
        # once this run has recorded a tile of its own, kill it at a random moment
        # (in a tile's computation, its chunk writes, its record or between tiles)
        _wait_for(proc, store, seen[-1] + 1)
        time.sleep(float(rng.uniform(0.0, 0.4)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        seen.append(_records(store))
    assert seen == sorted(seen) and seen[-1] < N_TILES  # recorded tiles are never lost
    final = subprocess.run(argv(store, 0.0), capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    _same_bytes(store, ref)
