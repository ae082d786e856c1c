"""Cost of checking stored tiles on read (size + checksum against the completion record).

For a symmetric N×N NNGP store (tile 2000, or N/4 when smaller), times (best of 3,
alternating) the GP posterior
mean of ``widelimit predict --store`` (``posterior_mean``: Nyström + PCG, every
iteration streams all tiles) twice on a cold-opened store:

* ``checked``: the library as shipped (first read of a tile: stat + BLAKE2 of its data;
  later reads: stat only, re-hash if the file changed);
* ``unchecked``: the same with ``KernelStore.read_tile`` replaced by a plain Zarr read.

Also reports ``hash_pass_s``: one full re-hash of the store (``verify_store``), the only
extra work (later reads of a verified tile cost a ``stat``; measured equal in CPU time), and
``hash_share_pct`` = hash pass / unchecked solve, the overhead free of wall-clock noise on a
shared machine.  The overhead is ``checked / unchecked − 1``; since the hash is paid once
per tile while PCG reads every tile once per iteration, it shrinks with the iteration count.

    python -m benchmarks.store_checks [--json] [--quick] [--n 5000 10000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._util import report
from widelimit.layers import Dense, ReLU, serial
from widelimit.scale import compute_kernel, verify_store
from widelimit.scale.solve import posterior_mean
from widelimit.scale.store import KernelStore


def _unchecked(self: KernelStore, name: str, tile) -> np.ndarray:
    return self.group[name][tile.rows, tile.cols]


def _solve(path: Path, y: np.ndarray) -> tuple[float, int]:
    t0 = time.perf_counter()
    res = posterior_mean(path, y, kernel="nngp", diag_reg=1e-3, tol=1e-6, rank=300)
    return time.perf_counter() - t0, res.iterations


def run_one(n: int, root: str | None = None, repeat: int = 3) -> dict:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 16, generator=g, dtype=torch.float64)
    y = np.sin(x[:, 0].numpy())
    net = serial(Dense(512, 1.4, 0.1), ReLU(), Dense(1, 1.4, 0.1))
    tile = min(2000, max(250, n // 4))
    with tempfile.TemporaryDirectory(prefix="widelimit-checks-", dir=root) as d:
        path = Path(d) / "k.zarr"
        compute_kernel(net, x, store=path, tile=tile, get="nngp", progress=False)
        _solve(path, y)  # warm the page cache so every timed run reads from memory
        original = KernelStore.read_tile
        checked, unchecked = float("inf"), float("inf")
        for _ in range(repeat):  # alternate, keep the best of each: the machine is shared
            t, iters = _solve(path, y)
            checked = min(checked, t)
            KernelStore.read_tile = _unchecked  # type: ignore[method-assign]
            try:
                t, iters2 = _solve(path, y)
            finally:
                KernelStore.read_tile = original  # type: ignore[method-assign]
            unchecked = min(unchecked, t)
        t0 = time.perf_counter()
        assert verify_store(path) == []
        hash_pass = time.perf_counter() - t0
    return {
        "N": n,
        "tile": tile,
        "store_MB": n * n * 8 / 2**20 / 2,  # upper triangle of tiles, roughly
        "repeat": repeat,
        "iterations": iters,
        "checked_s": checked,
        "unchecked_s": unchecked,
        "overhead_pct": 100 * (checked / unchecked - 1),
        "hash_pass_s": hash_pass,
        # the checks' only extra work is one hash pass (later reads: a stat each, measured
        # equal in CPU time), so this is the overhead without the wall-clock noise
        "hash_share_pct": 100 * hash_pass / unchecked,
        "same_iterations": iters == iters2,
    }


def run(quick: bool = False, sizes: list[int] | None = None, repeat: int = 3) -> list[dict]:
    sizes = sizes or ([1500] if quick else [4000, 8000])
    return [run_one(n, repeat=repeat) for n in sizes]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    p.add_argument("--n", type=int, nargs="*", default=None, help="store sizes N")
    p.add_argument("--repeat", type=int, default=3, help="timed runs of each variant")
    p.add_argument("--dir", default=None, help="directory for the temporary store")
    args = p.parse_args(argv)
    rows = [run_one(n, args.dir, args.repeat) for n in args.n] if args.n else run(args.quick)
    report("store checks on read: predict --store", rows, args.json)


if __name__ == "__main__":
    main()
