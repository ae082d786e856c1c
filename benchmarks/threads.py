"""Default threads against one thread: the in-memory kernel engine, interleaved.

Workload: ``net.kernel(x)`` (NNGP and NTK) of the fully connected net of issue 22,
``3×(Dense(512, 1.5, 0.05) → ReLU) → Dense(1)``, ``x`` ``(N, 784)`` float32 (N = 20,000;
4,000 with ``--quick``).  Modes, run one after the other in every pair (same process):

* ``1 thread``: ``torch.set_num_threads(1)``;
* ``default``: the default thread count (the engine's workers, one intra-op thread each);
* ``default, threads in ops`` (``--old``): the default count with
  ``WIDELIMIT_ENGINE_THREADS=1``, i.e. torch's threads inside every tile operation (the
  engine before its workers).

``--busy`` starts ``python -c 'while 1: pass'`` for the whole run (another process keeping
one core busy).  Each row gives the best and median wall seconds, the process CPU seconds
and the median of the per-pair ratios ``1 thread / mode`` (> 1: faster than one thread), the
load average and whether the results were bitwise equal to the one-thread kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from benchmarks._util import report
from widelimit.layers import Dense, ReLU, serial

MODES = ("1 thread", "default", "default, threads in ops")


def _net():
    blocks = [m for _ in range(3) for m in (Dense(512, 1.5, 0.05), ReLU())]
    return serial(*blocks, Dense(1, 1.0, 0.0))


def _set_mode(mode: str, default_threads: int) -> None:
    if mode == "1 thread":
        torch.set_num_threads(1)
        os.environ.pop("WIDELIMIT_ENGINE_THREADS", None)
    elif mode == "default":
        torch.set_num_threads(default_threads)
        os.environ.pop("WIDELIMIT_ENGINE_THREADS", None)
    else:
        torch.set_num_threads(default_threads)
        os.environ["WIDELIMIT_ENGINE_THREADS"] = "1"


def run(n: int = 20_000, pairs: int = 3, busy: bool = False, old: bool = False) -> list[dict]:
    """One row per mode (module docstring)."""
    default_threads = torch.get_num_threads()
    modes = MODES if old else MODES[:2]
    net = _net()
    x = torch.randn(n, 784, generator=torch.Generator().manual_seed(0))
    spinner = subprocess.Popen([sys.executable, "-c", "while 1: pass"]) if busy else None
    try:
        load0 = os.getloadavg()[0]
        _set_mode("default", default_threads)
        net.kernel(x[:2000])  # warm the pool and the heap
        wall: dict[str, list[float]] = {m: [] for m in modes}
        cpu: dict[str, list[float]] = {m: [] for m in modes}
        equal = {m: True for m in modes}
        for _ in range(pairs):
            ref = None
            for mode in modes:
                _set_mode(mode, default_threads)
                c0, t0 = time.process_time(), time.perf_counter()
                k = net.kernel(x)
                wall[mode].append(time.perf_counter() - t0)
                cpu[mode].append(time.process_time() - c0)
                if ref is None:
                    ref = k
                else:
                    equal[mode] &= torch.equal(k.nngp, ref.nngp) and torch.equal(k.ntk, ref.ntk)
                del k
            del ref
        load1 = os.getloadavg()[0]
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
        _set_mode("default", default_threads)
    one = wall["1 thread"]
    return [
        {
            "mode": mode,
            "n": n,
            "threads": 1 if mode == "1 thread" else default_threads,
            "busy_core": busy,
            "best_s": min(wall[mode]),
            "median_s": statistics.median(wall[mode]),
            "cpu_s": statistics.median(cpu[mode]),
            "speedup_vs_1": statistics.median(a / b for a, b in zip(one, wall[mode], strict=True)),
            "bitwise_equal_1": equal[mode],
            "load_before": load0,
            "load_after": load1,
        }
        for mode in modes
    ]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--quick", action="store_true", help="N = 4000, 2 pairs")
    p.add_argument("--n", type=int, default=20_000, help="examples (default 20,000)")
    p.add_argument("--pairs", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--busy", action="store_true", help="a busy-loop process on one core")
    p.add_argument("--old", action="store_true", help="also torch's threads inside ops")
    a = p.parse_args(argv)
    n, pairs = (4000, 2) if a.quick else (a.n, a.pairs)
    rows = run(n, pairs, busy=a.busy, old=a.old)
    if a.json:
        print(json.dumps({"benchmark": "threads", "rows": rows}, indent=2))
    else:
        report("threads", rows, False)


if __name__ == "__main__":
    main()
