"""Tiled kernels into Zarr stores (local or Dask) at real sizes; large-N inference from a store.

Default table (issue 22): FC ``3×(Dense(512, 1.4, 0.1) → ReLU) → Dense(1)``, x ``(N, 784)``
float32, NNGP+NTK of x with itself, N ∈ {2k, 5k, 20k, 50k, 100k} × {``memory`` (``net.kernel``,
where the two N×N outputs fit in a quarter of RAM), ``store`` (``compute_kernel`` with default
options into a temporary store)} × {``1`` thread (torch 1 thread; store: one tile at a time),
``default`` threads (torch's default; store: one tile per core)}.  Every row runs in a fresh
process, warmed up on 256 rows (the store path's warm-up also runs one store job of 256
rows, so the timed call pays no first-use cost of the store code).  Columns: ``seconds``
(wall), ``cpu_s`` (all threads), ``entries_per_s`` (upper triangle, ``N(N+1)/2`` entries
per kernel, over wall time), ``ns_per_entry`` (wall, per
thread: ``seconds · threads / entries``), ``peak_MiB`` (peak RSS of the process, imports and
inputs included), ``disk_GiB`` (store size), ``bound_s`` and ``ratio_to_bound``: the
syrk + passes bound — one symmetric Gram ``x xᵀ`` (half a GEMM) plus 10 elementwise passes
per hidden layer over the upper triangle, timed at N = 4000 in the same process (per entry,
1 thread) and scaled to the row's entries and threads — and the row's wall time over it;
``cpu_ratio_to_bound``: the row's CPU time over the bound's CPU time (steadier on a shared
machine; at default threads it also counts OpenMP threads spinning);
``load`` = 1-minute load average when the row ended.

    python -m benchmarks.scale [--json] [--quick] [--max-n 20000] [--dir /big/disk]
    python -m benchmarks.scale --competing          # with a busy loop on one core
    python -m benchmarks.scale --n 50000,100000 --modes store --threads default
    python -m benchmarks.scale --flat [--n 2000,20000]   # item 4: store CPU/entry, one process
    python -m benchmarks.scale --sections throughput,overhead,cluster,inference   # older rows

Older sections (``--sections``):

* ``throughput``: NNGP+NTK entries/s of ``compute_kernel`` vs N, FC net
  (3 × Dense(512) → ReLU, d = 784) and CNNs (Conv → ReLU → Conv → ReLU →
  Flatten/GlobalAvgPool → Dense), local threads.
* ``overhead``: tiled vs in-memory ``net.kernel`` on one core for the same
  (N, N) cross kernel (x1 ≠ x2, so both compute every entry; target ≤ 15 %)
  and for the symmetric kernel (tiles compute only the upper triangle).
* ``cluster``: ``dask.distributed.LocalCluster`` with 1 and 2 worker processes
  (1 thread each, torch 1 thread): wall time and speed-up.
* ``inference``: GP posterior mean by Nyström-preconditioned CG from the store.

    python -m benchmarks.scale [--json] [--quick]
    python -m benchmarks.scale --large 20000      # closing-note run: N=20k FC kernel
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._util import PeakRSS, measure, report
from widelimit.layers import Dense, ReLU, serial
from widelimit.scale import compute_kernel
from widelimit.scale.solve import posterior_mean


def fc_net() -> object:
    layers = []
    for _ in range(3):
        layers += [Dense(512, 1.4, 0.1), ReLU()]
    return serial(*layers, Dense(1))


def cnn_net(readout: str) -> object:
    from widelimit.layers.conv import Conv2d
    from widelimit.layers.pooling import Flatten, GlobalAvgPool

    pool = GlobalAvgPool() if readout == "gap" else Flatten()
    conv = dict(kernel_size=3, padding="same", w_std=1.4, b_std=0.1)
    return serial(Conv2d(64, **conv), ReLU(), Conv2d(64, **conv), ReLU(), pool, Dense(1))


def _data(n: int, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g, dtype=torch.float64)


def _row(section: str, case: str, seconds: float, entries_per_s: float | None,
         peak_mib: float | None, *, ref_s: float | None = None, ratio: float | None = None,
         note: str = "") -> dict:  # fmt: skip
    """One row; every row has the same columns (``ratio``: tiled/in-memory or speed-up)."""
    return {"section": section, "case": case, "seconds": seconds, "entries_per_s": entries_per_s,
            "peak_MiB": peak_mib, "ref_s": ref_s, "ratio": ratio, "note": note}  # fmt: skip


def _tiled(net, x1, x2, tmp: Path, tile: int, **kw) -> tuple[float, float, object]:
    path = tmp / f"k{time.perf_counter_ns()}.zarr"
    t, mem, out = measure(
        lambda: compute_kernel(net, x1, x2, store=path, tile=tile, progress=False, **kw)
    )
    shutil.rmtree(path, ignore_errors=True)
    return t, mem, out


def _throughput(quick: bool, tmp: Path) -> list[dict]:
    rows = []
    torch.set_num_threads(1)
    cases = [
        ("fc", fc_net(), (784,), n, 1000) for n in ((500, 1000) if quick else (1000, 2000, 4000))
    ]
    cases += [
        ("cnn-flatten 3x8x8", cnn_net("flatten"), (3, 8, 8), 200 if quick else 600, 100),
        ("cnn-gap 3x6x6", cnn_net("gap"), (3, 6, 6), 40 if quick else 120, 20),
    ]
    for name, net, shape, n, tile in cases:
        x = _data(n, shape)
        t, mem, out = _tiled(net, x, None, tmp, tile, num_workers=2)
        est = out.run.memory.per_tile / 2**20
        rows.append(_row("throughput", f"{name} N={n} tile={tile} 2 threads", t, n * n / t, mem,
                         note=f"estimate {est:.0f} MiB/tile"))  # fmt: skip
    return rows


def _overhead(quick: bool, tmp: Path) -> list[dict]:
    torch.set_num_threads(1)
    n, tile = (1000, 400) if quick else (4000, 1000)
    net = fc_net()
    x1, x2 = _data(n, (784,), 0), _data(n, (784,), 1)
    rows = []
    for kind, b in (("cross", x2), ("symmetric", None)):
        t_mem, m_mem, _ = measure(lambda b=b: net.kernel(x1, b))
        t_tile, m_tile, out = _tiled(net, x1, b, tmp, tile, num_workers=1)
        frac = out.store.plan.entries / (n * n)
        pct = 100 * (t_tile / frac / t_mem - 1)
        rows.append(
            _row(
                "overhead",
                f"FC {kind} N={n} tile={tile} 1 core",
                t_tile,
                n * n / t_tile,
                m_tile,
                ref_s=t_mem,
                ratio=t_tile / t_mem,
                note=f"per-entry overhead {pct:+.1f}%; in-memory peak {m_mem:.0f} MiB",
            )
        )
    return rows


def _warm_worker() -> None:
    import widelimit.scale.compute  # noqa: F401

    torch.set_num_threads(1)


def _cluster(quick: bool, tmp: Path) -> list[dict]:
    from distributed import Client, LocalCluster

    n, tile = (800, 200) if quick else (3000, 500)
    net, x = fc_net(), _data(n, (784,))
    rows, base = [], None
    for workers in (1, 2):
        with (
            LocalCluster(n_workers=workers, processes=True, threads_per_worker=1,
                         dashboard_address=None, env={"OMP_NUM_THREADS": "1"}) as cluster,
            Client(cluster) as client,
        ):  # fmt: skip
            client.run(_warm_worker)  # imports and thread setting outside the timing
            t, _, _ = _tiled(net, x, None, tmp, tile, scheduler=client)
        base = base or t
        rows.append(
            _row(
                "cluster",
                f"LocalCluster {workers} worker(s) FC N={n} tile={tile}",
                t,
                n * n / t,
                None,
                ref_s=base,
                ratio=base / t,
                note="ratio = speed-up",
            )
        )
    return rows


def _inference(quick: bool, tmp: Path) -> list[dict]:
    torch.set_num_threads(1)
    rows = []
    net = fc_net()
    for n in (500, 1000) if quick else (1000, 2000, 4000):
        x = _data(n, (784,))
        y = np.sin(x[:, 0].numpy())
        path = tmp / f"inf{n}.zarr"
        compute_kernel(net, x, store=path, tile=500, progress=False, get="nngp", num_workers=2)
        t, mem, res = measure(
            lambda path=path, y=y: posterior_mean(path, y, diag_reg=1e-3, tol=1e-6, rank=300)
        )
        rows.append(
            _row(
                "inference",
                f"posterior mean N={n} nystrom(300) tol=1e-6",
                t,
                None,
                mem,
                note=f"{res.iterations} iterations, converged={res.converged}",
            )
        )
        shutil.rmtree(path, ignore_errors=True)
    return rows


GRID_N = (2000, 5000, 20000, 50000, 100000)
QUICK_N = (2000, 5000)
DEPTH, PASSES, BOUND_N = 3, 10, 4000


def _bound_per_entry() -> tuple[float, float]:
    """(wall, CPU) seconds per upper-triangle entry (one thread) of the syrk + passes bound
    at BOUND_N (best of three)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x = _data(BOUND_N, (784,)).float()
        a, b = torch.rand(BOUND_N, BOUND_N), torch.rand(BOUND_N, BOUND_N)
        c = torch.empty_like(a)
        gemm = [_timed(lambda: x @ x.T) for _ in range(3)]
        one = [_timed(lambda: torch.mul(a, b, out=c)) for _ in range(3)]
    finally:
        torch.set_num_threads(threads)
    # syrk = half a GEMM; a pass over the upper triangle = half a full pass
    per = BOUND_N * (BOUND_N + 1) / 2
    return tuple(  # type: ignore[return-value]
        (min(g[i] for g in gemm) / 2 + DEPTH * PASSES * min(o[i] for o in one) / 2) / per
        for i in (0, 1)
    )


def _timed(fn) -> tuple[float, float]:
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def grid_row(n: int, mode: str, threads: str, tmp: Path) -> dict:
    """One row of the default table, measured in this process (called in a fresh one)."""
    if threads == "1":
        torch.set_num_threads(1)
    n_threads = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    x = _data(n, (784,)).float()
    net = fc_net()
    net.kernel(x[:256])  # warm-up outside the timing
    if mode == "store":  # and the store path's one-time costs (its code paths, first files)
        compute_kernel(net, x[:256], store=tmp / "warm.zarr", progress=False, num_workers=1)
    entries = n * (n + 1) / 2
    disk = None
    c0, t0 = time.process_time(), time.perf_counter()
    if mode == "memory":
        k = net.kernel(x)
        del k
        used = n_threads
    else:
        path = tmp / f"k{n}.zarr"
        workers = 1 if threads == "1" else None
        out = compute_kernel(net, x, store=path, progress=False, num_workers=workers)
        used = 1 if threads == "1" else (cores or 1)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the bound's arrays
    if mode == "store":
        disk = out.info().bytes_on_disk / 2**30
        shutil.rmtree(path, ignore_errors=True)
    wall_per, cpu_per = _bound_per_entry()
    bound = wall_per * entries / used
    return {
        "N": n, "mode": mode, "threads": threads if threads == "1" else f"default ({used})",
        "seconds": seconds, "cpu_s": cpu, "entries_per_s": entries / seconds,
        "ns_per_entry": 1e9 * seconds * used / entries,
        "peak_MiB": peak,
        "disk_GiB": disk, "bound_s": bound, "ratio_to_bound": seconds / bound,
        "cpu_ratio_to_bound": cpu / (cpu_per * entries),
        "load": os.getloadavg()[0],
    }  # fmt: skip


def fits_in_memory(n: int) -> bool:
    """Whether two N×N float32 outputs fit in a quarter of the machine's RAM."""
    import psutil

    return 2 * n * n * 4 <= psutil.virtual_memory().total / 4


class Competing:
    """A busy loop pinned to one core (``--competing``): another process keeping a core busy,
    as on a shared machine.  Started before a row and stopped (by its pid) after it."""

    def __init__(self, enabled: bool):
        self.enabled, self.proc = enabled, None

    def __enter__(self) -> Competing:
        if self.enabled:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "while True: pass"],
                preexec_fn=lambda: os.sched_setaffinity(0, {0}),
            )  # fmt: skip
            time.sleep(0.5)  # let it start spinning
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


def run(
    quick: bool = False, *, max_n: int | None = None, tmp_dir: str | None = None,
    sizes: list[int] | None = None, modes: tuple[str, ...] = ("memory", "store"),
    threads_list: tuple[str, ...] = ("1", "default"), competing: bool = False,
) -> list[dict]:  # fmt: skip
    """The default table; each row in a fresh ``python -m benchmarks.scale --row ...``;
    ``competing``: a busy loop on one core during every row."""
    rows: list[dict] = []
    sizes = sizes or [n for n in (QUICK_N if quick else GRID_N) if max_n is None or n <= max_n]
    for n in sizes:
        for mode in modes:
            if mode == "memory" and not fits_in_memory(n):
                continue
            for threads in threads_list:
                cmd = [sys.executable, "-m", "benchmarks.scale", "--row", f"{n},{mode},{threads}"]
                if tmp_dir:
                    cmd += ["--dir", tmp_dir]
                env = dict(os.environ)
                if threads != "1":
                    env.pop("OMP_NUM_THREADS", None)
                with Competing(competing):
                    res = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                         cwd=Path(__file__).resolve().parents[1])  # fmt: skip
                if res.returncode != 0:
                    rows.append({"N": n, "mode": mode, "threads": threads,
                                 "error": res.stderr.strip().splitlines()[-1:]})  # fmt: skip
                    continue
                rows.append(json.loads(res.stdout) | {"competing": competing})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def run_sections(quick: bool, names: list[str]) -> list[dict]:
    """The older sections (throughput, overhead, cluster, inference)."""
    parts = {"throughput": _throughput, "overhead": _overhead, "cluster": _cluster,
             "inference": _inference}  # fmt: skip
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="widelimit-bench-") as d:
        for name in names:
            rows += parts[name](quick, Path(d))
    return rows


def run_large(n: int, tile: int = 2000, workers: int = 2, store: str | None = None) -> dict:
    """The closing-note run: symmetric N×N FC NNGP+NTK into a store, wall time and peak RSS."""
    torch.set_num_threads(1)
    x = _data(n, (784,))
    with tempfile.TemporaryDirectory(prefix="widelimit-large-", dir=store) as d:
        with PeakRSS(interval=0.05) as mem:
            t0 = time.perf_counter()
            out = compute_kernel(fc_net(), x, store=Path(d) / "k.zarr", tile=tile,
                                 num_workers=workers, progress=True)  # fmt: skip
            seconds = time.perf_counter() - t0
        y = np.sin(x[:, 0].numpy())
        with PeakRSS(interval=0.05) as mem_solve:
            res = posterior_mean(out, y, diag_reg=1e-3, tol=1e-6, rank=500)
        return {
            "section": "large", "case": f"FC N={n} tile={tile} {workers} threads",
            "seconds": seconds, "entries_per_s": n * n / seconds, "peak_MiB": mem.peak_mb,
            "est_MiB": out.run.memory.total / 2**20, "store_GiB": out.info().bytes_on_disk / 2**30,
            "solve_s": res.seconds, "solve_iterations": res.iterations,
            "solve_converged": res.converged, "solve_peak_MiB": mem_solve.peak_mb,
        }  # fmt: skip


def run_flat(small: int = 2000, large: int = 20000, reps: int = 3, small_reps: int = 5,
             tmp_dir: str | None = None) -> list[dict]:  # fmt: skip
    """Issue 22 item 4 in one process: CPU ns per upper-triangle entry of the store path
    (``compute_kernel`` with default options) at ``small`` and ``large`` N and of the
    in-memory kernel at ``small``, interleaved (``small_reps`` small jobs between large
    ones, after warm-up), so that both sizes see the same load; the median, min and max
    of each, and the first store call of the process (after torch warm-up: what a CLI
    user pays for the imports Zarr, Dask ... the store path needs)."""
    import statistics

    x = _data(large, (784,)).float()
    net = fc_net()
    net.kernel(x[:256])  # torch warm-up
    per: dict[str, list[float]] = {"store small": [], "memory small": [], "store large": []}
    with tempfile.TemporaryDirectory(prefix="widelimit-flat-", dir=tmp_dir) as d:
        count = iter(range(10**6))

        def cpu_ns(n: int, mode: str) -> float:
            path = Path(d) / f"k{next(count)}.zarr"
            c0 = time.process_time()
            if mode == "store":
                compute_kernel(net, x[:n], store=path, progress=False)
            else:
                net.kernel(x[:n])
            cpu = time.process_time() - c0
            shutil.rmtree(path, ignore_errors=True)
            return 1e9 * cpu / (n * (n + 1) / 2)

        first = cpu_ns(small, "store")
        for _ in range(2):
            cpu_ns(small, "store"), cpu_ns(small, "memory")
        for r in range(reps + 1):
            for _ in range(small_reps):
                per["store small"].append(cpu_ns(small, "store"))
                per["memory small"].append(cpu_ns(small, "memory"))
            if r < reps:
                per["store large"].append(cpu_ns(large, "store"))
    sizes = {"store small": small, "memory small": small, "store large": large}
    rows = [
        {"case": f"{k.split()[0]} N={sizes[k]}", "median_ns": statistics.median(v),
         "min_ns": min(v), "max_ns": max(v), "runs": len(v)}
        for k, v in per.items()
    ]  # fmt: skip
    rows.append({"case": f"store N={small}, first call in the process", "median_ns": first,
                 "min_ns": first, "max_ns": first, "runs": 1})  # fmt: skip
    ratio = rows[0]["median_ns"] / rows[2]["median_ns"]
    for row in rows:
        row["ratio_to_store_large"] = row["median_ns"] / rows[2]["median_ns"]
        row["load"] = os.getloadavg()[0]
    print(f"store N={small} / store N={large} (medians): {ratio:.2f}", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--quick", action="store_true", help="N = 2k, 5k only (smoke run)")
    p.add_argument("--max-n", type=int, default=None, help="skip rows with larger N")
    p.add_argument("--dir", default=None, help="directory for the temporary stores")
    p.add_argument("--sections", default=None, help="older sections, comma-separated")
    p.add_argument("--row", default=None, help=argparse.SUPPRESS)  # N,mode,threads (child)
    p.add_argument("--large", type=int, default=None, help="only the N×N closing-note run")
    p.add_argument("--tile", type=int, default=2000, help="tile for --large")
    p.add_argument("--n", default=None, help="only these N, comma-separated (e.g. 50000,100000)")
    p.add_argument("--modes", default="memory,store", help="memory, store or both")
    p.add_argument("--threads", default="1,default", help="1, default or both")
    p.add_argument(
        "--competing", action="store_true", help="a busy loop on one core during every row"
    )
    p.add_argument(
        "--flat", action="store_true",
        help="issue 22 item 4: store CPU per entry at N = 2,000 vs 20,000 (and in memory at "
        "2,000), interleaved in one process",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.row:
        n, mode, threads = args.row.split(",")
        with tempfile.TemporaryDirectory(prefix="widelimit-scale-", dir=args.dir) as d:
            print(json.dumps(grid_row(int(n), mode, threads, Path(d))))
    elif args.flat:
        small, large = (int(v) for v in (args.n or "2000,20000").split(","))
        rows = run_flat(small, large, tmp_dir=args.dir)
        report("scale: CPU ns per upper-triangle entry, one process (FC float32)", rows, args.json)
    elif args.large:
        report("scale: large kernel", [run_large(args.large, args.tile)], args.json)
    elif args.sections:
        rows = run_sections(args.quick, args.sections.split(","))
        report("scale: tiled kernels, clusters, large-N inference", rows, args.json)
    else:
        rows = run(
            args.quick, max_n=args.max_n, tmp_dir=args.dir,
            sizes=[int(v) for v in args.n.split(",")] if args.n else None,
            modes=tuple(args.modes.split(",")), threads_list=tuple(args.threads.split(",")),
            competing=args.competing,
        )  # fmt: skip
        title = "scale: in memory vs store, 1 and default threads (FC float32)"
        report(title + (", one core busy" if args.competing else ""), rows, args.json)


if __name__ == "__main__":
    main()
