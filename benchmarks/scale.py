"""Tiled kernels on Dask + Zarr, and large-N inference from a stored kernel.

Rows (``section`` column):

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
import shutil
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


def run(quick: bool = False) -> list[dict]:
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="widelimit-bench-") as d:
        tmp = Path(d)
        for part in (_throughput, _overhead, _cluster, _inference):
            rows += part(quick, tmp)
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


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    p.add_argument("--large", type=int, default=None, help="only the N×N closing-note run")
    p.add_argument("--tile", type=int, default=2000, help="tile for --large")
    args = p.parse_args(argv)
    if args.large:
        report("scale: large kernel", [run_large(args.large, args.tile)], args.json)
    else:
        report("scale: tiled kernels, clusters, large-N inference", run(args.quick), args.json)


if __name__ == "__main__":
    main()
