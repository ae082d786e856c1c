"""Helpers shared by the benchmark scripts: timing, peak memory, table/JSON output.

Convention: every ``benchmarks/<name>.py`` defines ``run(quick: bool = False) ->
list[dict]`` (one dict a row) and ``main(argv=None)`` which parses ``--json`` and
``--quick`` and prints the rows with :func:`report`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil


def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    return p.parse_args(argv)


class PeakRSS:
    """Context manager sampling the process RSS in a thread; ``.peak_mb`` above baseline."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRSS:
        self._proc = psutil.Process()
        self._base = self._proc.memory_info().rss
        self._peak = self._base
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._proc.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._proc.memory_info().rss)
        self.peak_mb = (self._peak - self._base) / 2**20


def measure(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, float, Any]:
    """Run ``fn`` ``repeat`` times; return (best seconds, peak extra RSS MiB, last result)."""
    best = float("inf")
    peak = 0.0
    out = None
    for _ in range(repeat):
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t0)
        peak = max(peak, mem.peak_mb)
    return best, peak, out


def max_rss_mb() -> float:
    """Lifetime peak RSS of this process in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report(title: str, rows: list[dict], as_json: bool) -> None:
    """Print rows as JSON or as a Markdown table."""
    if as_json:
        print(json.dumps({"benchmark": title, "rows": rows}, indent=2))
        return
    if not rows:
        print(f"{title}: no rows")
        return
    cols = list(rows[0])
    print(f"## {title}\n")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        cells = [f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        print("| " + " | ".join(cells) + " |")
    print()


# ------------------------------------------------------------------ Neural Tangents workers
def nt_env(*, single_thread: bool) -> dict[str, str]:
    """Environment of a Neural Tangents worker: CPU JAX, quiet TensorFlow, no PYTHONPATH (the
    worker's own venv), thread variables cleared so every run starts from known settings; with
    ``single_thread`` XLA and OpenMP use one thread."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["JAX_PLATFORMS"] = "cpu"
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    for var in ("XLA_FLAGS", "OMP_NUM_THREADS", "WIDELIMIT_NT_CPU"):
        env.pop(var, None)
    if single_thread:
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        env["OMP_NUM_THREADS"] = "1"
    return env


class JsonLinesWorker:
    """A persistent worker subprocess spoken to in JSON lines: :meth:`ask` writes one command
    and reads one answer (``{"error": ...}`` raises); :meth:`close` sends ``quit``."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )

    def ask(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the Neural Tangents worker exited")
        msg = json.loads(line)
        if "error" in msg:
            raise RuntimeError(msg["error"])
        return msg

    def close(self) -> None:
        try:
            self.ask(cmd="quit")
        except (RuntimeError, OSError):
            pass
        self.proc.wait(timeout=30)
