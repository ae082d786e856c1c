"""The kernel engine's workers (``widelimit._threads``): tiles on threads, one intra-op each.

Reference: the same engine run in order on one thread (itself checked against the textbook
formulas in ``test_kernel_engine.py``).  Every tile is computed by the same operations on
one intra-op thread whichever worker runs it, so the kernels must be *bitwise* equal, for
several worker counts and schedules; the workers must really run (counted), exceptions
must reach the caller, and the caller's torch thread count must come back.
"""

from __future__ import annotations

import threading

import pytest
import torch

from widelimit import _threads
from widelimit.layers import (
    Conv2d,
    Dense,
    Erf,
    Flatten,
    GlobalAvgPool,
    LayerNorm,
    ReLU,
    serial,
    tiles,
)

F64 = torch.float64


@pytest.fixture
def small_tiles(monkeypatch):
    """Panels of 4 rows, tiles of 6 columns, spatial tiles of 2×2 example pairs (8×8 full)."""
    monkeypatch.setattr(tiles, "PANEL_ROWS", 4)
    monkeypatch.setattr(tiles, "TILE_ENTRIES_CPU", 24)
    monkeypatch.setattr(tiles, "TILE_ENTRIES_SPATIAL", 4 * 4**4)


@pytest.fixture
def counted_workers(monkeypatch):
    """A fresh pool whose threads record their ids (the pool is otherwise kept between calls)."""
    seen: set[int] = set()
    init = _threads._worker_init

    def recording_init() -> None:
        seen.add(threading.get_ident())
        init()

    monkeypatch.setattr(_threads, "_worker_init", recording_init)
    monkeypatch.setattr(_threads, "_pool", None)
    yield seen
    if _threads._pool is not None:
        _threads._pool.shutdown()
    _threads._pool = None


def _kernels(net, x1, x2, monkeypatch, workers: int):
    monkeypatch.setenv("WIDELIMIT_ENGINE_THREADS", str(workers))
    return net.kernel(x1, x2)


NETS = {
    "fc_relu": (
        lambda: serial(Dense(16, 1.5, 0.1), ReLU(), Dense(16, 1.2, 0.05), ReLU(), Dense(1)),
        (6,),
    ),
    "fc_erf_layernorm": (lambda: serial(Dense(8, 1.3, 0.2), LayerNorm(), Erf(), Dense(1)), (5,)),
    "conv_gap": (
        lambda: serial(Conv2d(4, 3, padding="same"), ReLU(), GlobalAvgPool(), Dense(1)),
        (2, 4, 4),
    ),
    "conv_flatten": (
        lambda: serial(Conv2d(4, 3, padding="valid"), Erf(), Flatten(), Dense(1)),
        (2, 4, 4),
    ),
}


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("cross", [False, True])
def test_workers_give_bitwise_the_one_thread_kernel(
    small_tiles, counted_workers, monkeypatch, name: str, cross: bool
) -> None:
    make, shape = NETS[name]
    net = make()
    g = torch.Generator().manual_seed(3)
    x1 = torch.randn(19, *shape, generator=g, dtype=F64)
    x1[4] = x1[9]  # equal examples: tied to the self-kernel after the tiles
    x2 = torch.randn(11, *shape, generator=g, dtype=F64) if cross else None
    ref = _kernels(net, x1, x2, monkeypatch, 1)
    assert not counted_workers  # one worker: runs in the calling thread
    for workers in (2, 3):
        k = _kernels(net, x1, x2, monkeypatch, workers)
        for field in ("nngp", "ntk", "cov1", "cov2"):
            a, b = getattr(ref, field), getattr(k, field)
            assert (a is None) == (b is None), field
            if a is not None:
                assert torch.equal(a, b), (field, workers)
    assert len(counted_workers) >= 2  # the tiles really ran on several threads


def test_default_threads_use_workers_and_restore_the_thread_count(
    small_tiles, counted_workers, monkeypatch
) -> None:
    monkeypatch.delenv("WIDELIMIT_ENGINE_THREADS", raising=False)
    net = serial(Dense(8), ReLU(), Dense(1))
    x = torch.randn(17, 3, dtype=F64)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = net.kernel(x)
        assert not counted_workers
        torch.set_num_threads(2)
        two = net.kernel(x)
        assert len(counted_workers) == 2
        assert torch.get_num_threads() == 2  # the caller's count is back
        seen_by_new_thread = []
        t = threading.Thread(target=lambda: seen_by_new_thread.append(torch.get_num_threads()))
        t.start()
        t.join()
        assert seen_by_new_thread == [2]
    finally:
        torch.set_num_threads(saved)
    assert torch.equal(one.nngp, two.nngp) and torch.equal(one.ntk, two.ntk)


def test_a_failing_job_raises_in_the_caller_and_cancels_the_rest(counted_workers) -> None:
    ran = []

    def job(i: int) -> int:
        if i == 2:
            raise ValueError("job 2 failed")
        ran.append(i)
        return i

    with pytest.raises(ValueError, match="job 2 failed"):
        _threads.run_jobs(job, range(200), 2)
    assert len(ran) < 199  # jobs after the failure were cancelled, not all run
    assert _threads.run_jobs(job, [0, 1, 3], 2) == [0, 1, 3]  # the pool still works


def test_overflow_in_a_worker_tile_is_a_clear_error(small_tiles, monkeypatch) -> None:
    monkeypatch.setenv("WIDELIMIT_ENGINE_THREADS", "2")
    x = torch.randn(13, 4, dtype=F64)
    x[9] = 1e160  # x·x'/d overflows float64 in the tile of rows 8..11
    with pytest.raises(ValueError, match="NNGP overflowed"):
        serial(Dense(4), ReLU(), Dense(1)).kernel(x)


def test_jobs_inside_a_worker_run_in_that_worker(counted_workers) -> None:
    def job(_: int) -> int:
        with _threads.engine_threads(torch.device("cpu")) as workers:
            return workers

    assert _threads.run_jobs(job, range(4), 2) == [1, 1, 1, 1]


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_bad_engine_threads_variable_is_named(monkeypatch, value: str) -> None:
    monkeypatch.setenv("WIDELIMIT_ENGINE_THREADS", value)
    with pytest.raises(ValueError, match="WIDELIMIT_ENGINE_THREADS must be a positive integer"):
        serial(Dense(4), ReLU()).kernel(torch.randn(3, 2, dtype=F64))


def test_worker_tiles_run_under_the_busy_heap_threshold(
    small_tiles, counted_workers, monkeypatch
) -> None:
    """glibc's trim threshold is process-wide: every worker's tile must run while the
    engine holds it at TRIM_BUSY, and the idle value must come back after the call."""
    from widelimit import _memory

    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(_memory, "_mallopt", lambda: lambda p, v: calls.append((p, v)) or 1)
    seen: list[tuple[int, int]] = []
    inner = tiles.network_output

    def recording(k):
        seen.append((threading.get_ident(), _memory._depth))
        return inner(k)

    monkeypatch.setattr(tiles, "network_output", recording)
    monkeypatch.setenv("WIDELIMIT_ENGINE_THREADS", "2")
    serial(Dense(8), ReLU(), Dense(1)).kernel(torch.randn(30, 3, dtype=F64))
    assert len({t for t, _ in seen}) >= 2 and all(d == 1 for _, d in seen)
    assert calls == [
        (_memory._M_TRIM_THRESHOLD, _memory.TRIM_BUSY),
        (_memory._M_TRIM_THRESHOLD, _memory.TRIM_IDLE),
    ]


class _Gauge:
    """Jobs that sleep a little and record how many run at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peaks: list[int] = []
        self.threads: list[int] = []

    def job(self, i: int) -> int:
        import time

        with self.lock:
            self.now += 1
            self.peaks.append(self.now)
            self.threads.append(threading.get_ident())
        time.sleep(0.01)
        with self.lock:
            self.now -= 1
        return i * i


# ------------------------------------------------------------------ busy cores
@pytest.mark.parametrize(
    "counts,expected", [([1] * 8, 2), ([2] * 8, 1), ([2, 1, 2, 2, 1, 2, 2, 2], 1), ([4] * 8, 2)]
)
def test_free_cores_leave_out_cores_other_tasks_keep_busy(monkeypatch, counts, expected) -> None:
    """Runnable counts include the reading thread: 1 → nothing else runs (2 free of 2); 2 →
    one core busy (1 free); 4 → every core busy: all workers, to claim fair shares."""
    from widelimit import _cpus

    reads = iter(counts)
    monkeypatch.setattr(_cpus, "_running", lambda: next(reads))
    monkeypatch.setattr(_cpus, "cores", lambda: 2)
    monkeypatch.setattr(_cpus, "INTERVAL", 0.0)
    assert _cpus.free_cores() == expected


def test_free_cores_without_a_runnable_count_is_every_core(monkeypatch) -> None:
    from widelimit import _cpus

    monkeypatch.setattr(_cpus, "_running", lambda: None)
    assert _cpus.free_cores() == _cpus.cores()


def test_a_spinning_process_is_seen_as_running() -> None:
    """The runnable count of the machine sees another process that keeps a core busy."""
    import subprocess
    import sys
    import time

    from widelimit import _cpus

    if _cpus._running() is None:
        pytest.skip("no /proc/loadavg")
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert _cpus.others_running() >= 1
    finally:
        spin.kill()
        spin.wait()


def test_large_blocks_follow_the_free_cores_while_they_run(monkeypatch, counted_workers) -> None:
    """A block of ≥ LOOK_FROM_ENTRIES entries starts every worker and looks while they run:
    one free core → after the jobs already started, one at a time in the calling thread,
    and the calling thread at one intra-op thread; a smaller block or an explicit
    WIDELIMIT_ENGINE_THREADS never looks."""
    from widelimit import _cpus

    monkeypatch.setattr(_cpus, "_last_look", None)  # no recent look to start from
    monkeypatch.delenv("WIDELIMIT_ENGINE_THREADS", raising=False)
    looks: list[int] = []
    monkeypatch.setattr(_cpus, "free_cores", lambda ours=0: looks.append(ours) or 1)
    big = _threads.LOOK_FROM_ENTRIES
    gauge = _Gauge()
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with _threads.engine_threads(torch.device("cpu"), big) as w:
            assert w == 2 and torch.get_num_threads() == 1
            assert _threads.run_jobs(gauge.job, range(8), w) == [i * i for i in range(8)]
        assert torch.get_num_threads() == 2
        assert looks[0] == 2  # the first look, while the first two jobs run
        assert gauge.threads[2:] == [threading.get_ident()] * 6 and max(gauge.peaks[2:]) == 1
        looks.clear()
        with _threads.engine_threads(torch.device("cpu"), big - 1) as w:
            assert w == 2
            _threads.run_jobs(gauge.job, range(4), w)
        monkeypatch.setenv("WIDELIMIT_ENGINE_THREADS", "2")
        with _threads.engine_threads(torch.device("cpu"), big) as w:
            assert w == 2
            _threads.run_jobs(gauge.job, range(4), w)
        assert looks == []
    finally:
        torch.set_num_threads(saved)


@pytest.mark.parametrize(
    "counts,ours,expected", [([3] * 8, 2, 2), ([4] * 8, 2, 1), ([2] * 8, 1, 2)]
)
def test_free_cores_do_not_count_our_own_running_jobs(monkeypatch, counts, ours, expected) -> None:
    """Looked at while ``ours`` jobs of this process compute: 3 runnable = reader + our 2 →
    both cores ours; 4 → one other task (1 free); 2 = reader + our 1 → nothing else runs."""
    from widelimit import _cpus

    reads = iter(counts)
    monkeypatch.setattr(_cpus, "_running", lambda: next(reads))
    monkeypatch.setattr(_cpus, "cores", lambda: 2)
    monkeypatch.setattr(_cpus, "INTERVAL", 0.0)
    assert _cpus.free_cores(ours) == expected


def test_run_adapting_follows_the_free_cores_as_jobs_end(monkeypatch) -> None:
    """Every job end is a look (RESAMPLE_SECONDS = 0): while one core is free, one job at a
    time, in the calling thread; when both are, two on the pool; results in order; each look
    is told how many of our jobs run."""
    from concurrent.futures import ThreadPoolExecutor

    from widelimit import _cpus

    looks: list[int] = []
    free = iter([1] * 5 + [2] * 100)
    monkeypatch.setattr(_threads, "RESAMPLE_SECONDS", 0.0)
    monkeypatch.setattr(_cpus, "free_cores", lambda ours=0: looks.append(ours) or next(free))
    gauge = _Gauge()
    conc = _threads.Concurrency(most=2, limit=1, adaptive=True)
    with ThreadPoolExecutor(2) as pool:
        out = _threads.run_adapting(gauge.job, range(20), pool, conc)
    assert out == [i * i for i in range(20)]
    assert max(gauge.peaks[:6]) == 1  # the first look came after job 0; five said 1, then 2
    assert max(gauge.peaks) == 2 and conc.limit == 2
    # one at a time runs here (no job of ours runs during the look), two on the pool
    assert looks[:6] == [0] * 6 and looks[6] >= 1 and max(looks) <= 2
    assert gauge.threads[:6] == [threading.get_ident()] * 6
    assert threading.get_ident() not in gauge.threads[7:]


def test_run_adapting_fixed_limit_and_errors() -> None:
    """Not adaptive: never more than ``limit`` at once, no look; a job's error reaches the
    caller after the running jobs end, and later jobs never start."""
    from concurrent.futures import ThreadPoolExecutor

    gauge = _Gauge()
    with ThreadPoolExecutor(3) as pool:
        _threads.run_adapting(gauge.job, range(12), pool, _threads.Concurrency(most=3, limit=2))
    assert max(gauge.peaks) == 2
    started: list[int] = []

    def job(i: int) -> int:
        started.append(i)
        if i == 3:
            raise ValueError("job 3 failed")
        return i

    with ThreadPoolExecutor(2) as pool, pytest.raises(ValueError, match="job 3 failed"):
        _threads.run_adapting(job, range(50), pool, _threads.Concurrency(most=2, limit=2))
    assert len(started) < 10


def test_a_block_that_starts_on_one_core_takes_the_second_when_it_frees(
    monkeypatch, small_tiles
) -> None:
    """The first looks of a large block see a busy core (one job at a time, in the calling
    thread), later ones see it free: the block ends on two workers, and the kernel is
    bitwise the one-thread kernel."""
    from widelimit import _cpus

    monkeypatch.setattr(_cpus, "_last_look", None)  # no recent look to start from
    monkeypatch.delenv("WIDELIMIT_ENGINE_THREADS", raising=False)
    monkeypatch.setattr(_threads, "LOOK_FROM_ENTRIES", 1)
    monkeypatch.setattr(_threads, "RESAMPLE_SECONDS", 0.0)
    free = iter([1] * 4 + [2] * 10_000)
    monkeypatch.setattr(_cpus, "free_cores", lambda ours=0: next(free))
    ran_in: list[bool] = []
    inner = tiles.network_output

    def recording(k):
        ran_in.append(_threads.in_worker())
        return inner(k)

    net = serial(Dense(8, 1.1, 0.1), ReLU(), Dense(8, 1.1, 0.1), Erf(), Dense(1))
    x = torch.randn(60, 5, generator=torch.Generator().manual_seed(3), dtype=F64)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = net.kernel(x)
        torch.set_num_threads(2)
        monkeypatch.setattr(tiles, "network_output", recording)
        two = net.kernel(x)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(saved)
    assert not all(ran_in) and any(ran_in[-5:])  # the calling thread, then the workers
    assert torch.equal(one.nngp, two.nngp) and torch.equal(one.ntk, two.ntk)


def test_a_block_nested_in_the_calling_thread_runs_its_jobs_there(monkeypatch) -> None:
    """A kernel evaluated by the calling thread inside a block that looked at the cores
    (e.g. by the first spatial tile) is a one-worker block: its jobs run in that thread,
    not on the outer block's workers."""
    from widelimit import _cpus

    monkeypatch.setattr(_cpus, "_last_look", None)  # no recent look to start from
    monkeypatch.delenv("WIDELIMIT_ENGINE_THREADS", raising=False)
    monkeypatch.setattr(_cpus, "free_cores", lambda ours=0: 2)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with _threads.engine_threads(torch.device("cpu"), None) as outer:
            assert outer == 2
            with _threads.engine_threads(torch.device("cpu"), None) as inner:
                ran = _threads.run_jobs(lambda i: threading.get_ident(), range(4), inner)
            assert inner == 1 and set(ran) == {threading.get_ident()}
    finally:
        torch.set_num_threads(saved)


def test_a_block_starts_from_a_recent_look(monkeypatch) -> None:
    """A look of this process less than RESAMPLE_SECONDS old (e.g. the store's, just before
    the tile) sets the start: one free core → every job in the calling thread, no new look;
    an old look is not used."""
    import time

    from widelimit import _cpus

    monkeypatch.delenv("WIDELIMIT_ENGINE_THREADS", raising=False)
    monkeypatch.setattr(_cpus, "cores", lambda: 2)
    looks: list[int] = []
    monkeypatch.setattr(_cpus, "free_cores", lambda ours=0: looks.append(ours) or 2)
    gauge = _Gauge()
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        monkeypatch.setattr(_cpus, "_last_look", (time.monotonic(), 1))  # one core busy
        with _threads.engine_threads(torch.device("cpu"), None) as w:
            _threads.run_jobs(gauge.job, range(4), w)
        assert looks == [] and gauge.threads == [threading.get_ident()] * 4
        monkeypatch.setattr(_cpus, "_last_look", (time.monotonic() - 10.0, 1))
        with _threads.engine_threads(torch.device("cpu"), None) as w:
            _threads.run_jobs(gauge.job, range(4), w)
        assert looks and max(gauge.peaks[4:]) == 2  # looked: both cores free
    finally:
        torch.set_num_threads(saved)


def test_a_look_is_remembered_for_the_next_block(monkeypatch) -> None:
    """others_running records what it saw; recent_free_cores gives it back while fresh."""
    from widelimit import _cpus

    reads = iter([3] * 8)
    monkeypatch.setattr(_cpus, "_running", lambda: next(reads))
    monkeypatch.setattr(_cpus, "cores", lambda: 2)
    monkeypatch.setattr(_cpus, "INTERVAL", 0.0)
    assert _cpus.free_cores(ours=1) == 1  # reader + our 1 + one other
    free, _ = _cpus.recent_free_cores(1.0)
    assert free == 1 and _cpus.recent_free_cores(-1.0) is None
