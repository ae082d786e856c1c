"""NNGP+NTK speed of widelimit against Neural Tangents 0.6.5 and against the arithmetic bound.

Workloads (issue 12), NNGP+NTK of ``x`` with itself, float32 and float64:

* FC ``3×(Dense(512, 1.5, 0.05) → φ) → Dense(1)``, φ ∈ {ReLU, Erf}, x ``(N, 784)``, N = 2000, 4000;
* ``2×(Conv2d(64, 3, padding, 1.5, 0.05) → ReLU) → GlobalAvgPool → Dense(1)``, x ``(64, 3, 8, 8)``,
  padding "same" and "valid";
* ``2×(Conv2d(64, 3, "same") → ReLU) → Flatten → Dense(1)``, x ``(128, 3, 8, 8)``,
  ``(256, 3, 8, 8)``.

Columns: ``widelimit_s`` (best of the pairs), ``nt_s`` and ``ratio`` = widelimit / Neural
Tangents, measured in interleaved pairs A, B, A, B, ... (minimum of each side) so that load
from other processes hits both alike; ``widelimit_cpu_s``, ``nt_cpu_s`` and ``cpu_ratio``: the
same with process CPU times (all threads; robust when the machine is shared, but it adds up
threads in ``--threads default``); ``nt_idle_cpu_s``: CPU time the (idle) Neural Tangents
worker used while widelimit ran (its largest value over the pairs; should be 0);
``bound_s`` (FC nets) = the syrk + passes bound: one symmetric Gram ``x xᵀ`` (half of
``torch.mm(x, x.T)``, i.e. the upper triangle a syrk computes) plus 10 memory-bound passes
per hidden layer over the upper triangle (half of a copy of an ``N × N`` tensor each), timed
in the same run (the same bound as ``benchmarks/scale.py``), and ``ratio_to_bound``
(both in CPU time), ``bound_wall_s``/``ratio_to_bound_wall`` the same in wall time;
``peak_MiB`` = extra resident memory during one widelimit call; ``max_rel_diff`` =
``max|K_wl − K_nt| / max|K_nt|`` over NNGP and NTK;
``load`` = the 1-minute load average after the row.

Neural Tangents runs in a persistent subprocess of a separate Python (``--nt-python PATH`` or
``WIDELIMIT_NT_PYTHON``; build one with ``../shared/peers/neural-tangents.sh``), jitted with
``get`` static, warmed up, ``block_until_ready``, NHWC images, x64 enabled for float64.  Without
it the peer columns are empty.

Threads.  ``--threads 1`` (default) makes both sides single-threaded: widelimit with
``torch.set_num_threads(1)`` and ``torch.set_num_interop_threads(1)``; the worker with
``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`` and
``OMP_NUM_THREADS=1`` set before JAX is imported.  Those flags alone do not stop XLA's CPU
client from running a jitted call on two threads at once (measured with jaxlib 0.4.25: the
caller thread and a pool thread both busy, ~40 % of the CPU time on the caller), so on Linux
both processes are also pinned to the same single CPU (``sched_setaffinity``; the jitted call
then runs inline on one thread).  ``--threads default`` leaves both at their defaults (no
flags, no pinning).  ``--memory`` instead reports the peak RSS of fresh processes computing
FC ReLU float32 at N = 20,000 and conv + GAP ("same", N = 64).

    python -m benchmarks.kernels [--json] [--quick] [--pairs 5] [--threads 1|default]
        [--nt-python PATH] [--only fc|conv|'fc erf'|...] [--dtype float32|float64] [--memory]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._util import JsonLinesWorker, PeakRSS, nt_env, report

_WORKER = Path(__file__).resolve().parent / "_nt_worker.py"
DEPTH = 3  # hidden Dense → φ blocks of the FC nets
PASSES = 10  # memory-bound passes per hidden layer in the bound (as benchmarks/scale.py)


# --------------------------------------------------------------------------
# Workloads: one layer list, built for both libraries
# --------------------------------------------------------------------------


def _fc(act: str) -> list[list]:
    return [*([["dense", 512, 1.5, 0.05], [act]] * DEPTH), ["dense", 1, 1.0, 0.0]]


def _cnn(padding: str, head: str) -> list[list]:
    conv = ["conv", 64, 3, padding, 1.5, 0.05]
    return [conv, ["relu"], conv, ["relu"], [head], ["dense", 1, 1.0, 0.0]]


def workloads(quick: bool) -> list[dict[str, Any]]:
    """``name``, ``layers`` and input ``shape`` of every workload (smaller when ``quick``)."""
    n1, n2, ni, nf = (500, 1000, 16, 64) if quick else (2000, 4000, 64, 256)
    flatten = _cnn("same", "flatten")
    return [
        {"name": "FC ReLU", "layers": _fc("relu"), "shape": (n1, 784)},
        {"name": "FC ReLU", "layers": _fc("relu"), "shape": (n2, 784)},
        {"name": "FC Erf", "layers": _fc("erf"), "shape": (n1, 784)},
        {"name": "FC Erf", "layers": _fc("erf"), "shape": (n2, 784)},
        {"name": "conv+GAP same", "layers": _cnn("same", "gap"), "shape": (ni, 3, 8, 8)},
        {"name": "conv+GAP valid", "layers": _cnn("valid", "gap"), "shape": (ni, 3, 8, 8)},
        {"name": "conv+Flatten same", "layers": flatten, "shape": (nf // 2, 3, 8, 8)},
        {"name": "conv+Flatten same", "layers": flatten, "shape": (nf, 3, 8, 8)},
    ]


def widelimit_net(layers: list[list]):
    """The widelimit network of a layer list (public API only, so that older versions run)."""
    from widelimit.layers import Dense, Erf, ReLU, serial
    from widelimit.layers.conv import Conv2d
    from widelimit.layers.pooling import Flatten, GlobalAvgPool

    out = []
    for spec in layers:
        kind = spec[0]
        if kind == "dense":
            out.append(Dense(spec[1], spec[2], spec[3]))
        elif kind == "conv":
            _, ch, k, padding, w_std, b_std = spec
            out.append(Conv2d(ch, k, padding=padding, w_std=w_std, b_std=b_std))
        else:
            out.append({"relu": ReLU, "erf": Erf, "gap": GlobalAvgPool, "flatten": Flatten}[kind]())
    return serial(*out)


def inputs(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """Seeded standard normal inputs, the same numbers (rounded) in every dtype."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)


# --------------------------------------------------------------------------
# The Neural Tangents peer (optional)
# --------------------------------------------------------------------------


class NeuralTangents(JsonLinesWorker):
    """A persistent ``_nt_worker.py`` subprocess of the Neural Tangents Python.

    ``cpu``: pin the worker to that CPU (it pins itself before importing JAX).
    """

    def __init__(self, python: str, x64: bool, single_thread: bool, cpu: int | None = None):
        env = nt_env(single_thread=single_thread)
        if cpu is not None:
            env["WIDELIMIT_NT_CPU"] = str(cpu)
        super().__init__([python, str(_WORKER), "1" if x64 else "0"], env)

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system, all threads) the worker has used so far (Linux only)."""
        return _proc_cpu_seconds(self.proc.pid)


def _proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` from ``/proc/<pid>/stat`` (None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def nt_python(flag: str | None) -> str | None:
    """The Neural Tangents Python from the flag or ``WIDELIMIT_NT_PYTHON``, if it exists."""
    path = flag or os.environ.get("WIDELIMIT_NT_PYTHON")
    if path and Path(path).exists():
        return path
    if path:
        print(f"[kernels] Neural Tangents python {path!r} not found: peer skipped", file=sys.stderr)
    else:
        print(
            "[kernels] no Neural Tangents python (--nt-python or WIDELIMIT_NT_PYTHON): "
            "peer columns skipped",
            file=sys.stderr,
        )
    return None


# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _time_cpu(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def _bound_parts(x: torch.Tensor) -> tuple[tuple[float, float], tuple[float, float]]:
    """(wall, CPU) seconds of a symmetric Gram ``x xᵀ`` (syrk: half of ``torch.mm`` of the same
    shapes) and of one memory-bound pass over the upper triangle (half a copy of ``N × N``)."""
    n = x.shape[0]
    a = torch.rand(n, n, dtype=x.dtype)
    c = torch.empty_like(a)
    g = torch.empty_like(a)
    gemm = _time_cpu(lambda: torch.mm(x, x.T, out=g))
    one = _time_cpu(lambda: c.copy_(a))
    return (gemm[0] / 2, gemm[1] / 2), (one[0] / 2, one[1] / 2)


def _max_rel_diff(k, nt_nngp: np.ndarray, nt_ntk: np.ndarray) -> float:
    out = 0.0
    for mine, theirs in ((k.nngp, nt_nngp), (k.ntk, nt_ntk)):
        theirs = np.asarray(theirs, dtype=np.float64).reshape(mine.shape)
        diff = np.abs(mine.double().numpy() - theirs).max()
        out = max(out, float(diff / np.abs(theirs).max()))
    return out


def run(
    quick: bool = False,
    *,
    pairs: int = 5,
    threads: str = "1",
    nt: str | None = None,
    only: str | None = None,
    dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float64),
) -> list[dict]:
    """Rows of the workload table (module docstring)."""
    single = threads == "1"
    cpu = None
    saved_threads = torch.get_num_threads()
    saved_affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if single:
        torch.set_num_threads(1)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set, or inter-op work already started: keep it
            pass
        if saved_affinity:
            cpu = max(saved_affinity)  # both sides on the same single CPU
            os.sched_setaffinity(0, {cpu})
    nt = nt_python(nt)
    rows: list[dict] = []
    tmp = Path(tempfile.mkdtemp(prefix="widelimit-bench-"))
    try:
        for dtype in dtypes:
            peer = NeuralTangents(nt, dtype == torch.float64, single, cpu) if nt else None
            try:
                for w in workloads(quick):
                    if only and not w["name"].lower().startswith(only.lower()):
                        continue
                    rows.append(_one(w, dtype, pairs, peer, tmp, threads))
                    print(f"[kernels] {rows[-1]}", file=sys.stderr, flush=True)
            finally:
                if peer is not None:
                    peer.close()
    finally:
        torch.set_num_threads(saved_threads)
        if saved_affinity:
            os.sched_setaffinity(0, saved_affinity)
    return rows


def _one(w, dtype, pairs, peer, tmp: Path, threads: str) -> dict:
    x = inputs(w["shape"], dtype)
    net = widelimit_net(w["layers"])
    fc = w["name"].startswith("FC")
    t_cold = _time(lambda: net.kernel(x))
    with PeakRSS() as mem:
        k = net.kernel(x)
    row: dict[str, Any] = {
        "workload": w["name"],
        "N": int(x.shape[0]),
        "dtype": str(dtype).removeprefix("torch."),
        "threads": threads,
        "widelimit_s": None,
        "nt_s": None,
        "ratio": None,
        "widelimit_cpu_s": None,
        "nt_cpu_s": None,
        "cpu_ratio": None,
        "nt_idle_cpu_s": None,
        "bound_s": None,
        "ratio_to_bound": None,
        "bound_wall_s": None,
        "ratio_to_bound_wall": None,
        "peak_MiB": round(mem.peak_mb, 1),
        "first_call_s": t_cold,
        "max_rel_diff": None,
        "load": None,
    }
    if peer is not None:
        xf = tmp / "x.npy"
        xn = x.numpy()
        np.save(xf, np.ascontiguousarray(xn.transpose(0, 2, 3, 1)) if xn.ndim == 4 else xn)
        try:
            peer.ask(cmd="setup", layers=w["layers"], x=str(xf))
            a, b = str(tmp / "nngp.npy"), str(tmp / "ntk.npy")
            peer.ask(cmd="save", nngp=a, ntk=b)
            row["max_rel_diff"] = _max_rel_diff(k, np.load(a), np.load(b))
        except RuntimeError as err:
            print(f"[kernels] Neural Tangents failed on {w['name']}: {err}", file=sys.stderr)
            peer = None
    del k
    mine, theirs, mine_cpu, theirs_cpu, gemm, one_pass, idle = [], [], [], [], [], [], []
    for _ in range(pairs):
        before = peer.cpu_seconds() if peer is not None else None
        wall, cpu = _time_cpu(lambda: net.kernel(x))
        mine.append(wall)
        mine_cpu.append(cpu)
        if peer is not None:
            after = peer.cpu_seconds()
            if before is not None and after is not None:
                idle.append(after - before)
            reply = peer.ask(cmd="time")
            theirs.append(reply["seconds"])
            theirs_cpu.append(reply["cpu_seconds"])
        if fc:
            g, p = _bound_parts(x)
            gemm.append(g)
            one_pass.append(p)
    row["widelimit_s"] = min(mine)
    row["widelimit_cpu_s"] = min(mine_cpu)
    if theirs:
        row["nt_s"] = min(theirs)
        row["ratio"] = row["widelimit_s"] / row["nt_s"]
        row["nt_cpu_s"] = min(theirs_cpu)
        row["cpu_ratio"] = min(mine_cpu) / min(theirs_cpu)
    if idle:
        row["nt_idle_cpu_s"] = max(idle)
    if fc:
        # CPU times (steadier on a shared machine) and wall times (what a user waits for; at
        # default threads CPU time also counts OpenMP threads spinning between operations)
        bound = [min(t[i] for t in gemm) + DEPTH * PASSES * min(t[i] for t in one_pass)
                 for i in (0, 1)]  # fmt: skip
        row["bound_s"] = bound[1]
        row["ratio_to_bound"] = min(mine_cpu) / bound[1]
        row["bound_wall_s"] = bound[0]
        row["ratio_to_bound_wall"] = min(mine) / bound[0]
    row["load"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return row


# --------------------------------------------------------------------------
# Peak memory in fresh processes
# --------------------------------------------------------------------------

_MEMORY_CHILD = """
import resource, sys, time, torch
from benchmarks.kernels import inputs, widelimit_net, workloads, _fc, _cnn
torch.set_num_threads(1)
kind, n = sys.argv[1], int(sys.argv[2])
if kind == "fc":
    layers, x = _fc("relu"), inputs((n, 784), torch.float32)
else:
    layers, x = _cnn("same", "gap"), inputs((n, 3, 8, 8), torch.float32)
net = widelimit_net(layers)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
k = net.kernel(x)
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
outputs = sum(t.numel() * t.element_size() for t in (k.nngp, k.ntk)) / 2**20
print(before, peak, outputs, seconds)
"""


def memory_rows(quick: bool = False) -> list[dict]:
    """Peak RSS of one ``net.kernel(x)`` in a fresh process (FC ReLU, conv + GAP), float32."""
    rows = []
    cases = [("fc", 2000 if quick else 20000), ("conv", 16 if quick else 64)]
    for kind, n in cases:
        proc = subprocess.run(
            [sys.executable, "-c", _MEMORY_CHILD, kind, str(n)],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        if proc.returncode != 0:
            rows.append({"case": kind, "N": n, "error": proc.stderr.strip()[-300:]})
            continue
        before, peak, outputs, seconds = (float(v) for v in proc.stdout.split())
        rows.append(
            {
                "case": "FC ReLU f32" if kind == "fc" else "conv+GAP same f32",
                "N": n,
                "peak_RSS_MiB": round(peak, 1),
                "RSS_before_call_MiB": round(before, 1),
                "outputs_MiB": round(outputs, 1),
                "extra_over_outputs_MiB": round(peak - before - outputs, 1),
                "seconds": round(seconds, 2),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    p.add_argument("--pairs", type=int, default=5, help="interleaved A,B pairs (min taken)")
    p.add_argument("--threads", choices=("1", "default"), default="1")
    p.add_argument("--nt-python", default=None, help="python of a Neural Tangents 0.6.5 env")
    p.add_argument("--only", default=None,
                   help="workloads whose name starts with this (case-insensitive): fc, conv, "
                        "'fc erf', 'conv+flatten', ...")  # fmt: skip
    p.add_argument("--dtype", choices=("float32", "float64"), default=None, help="one dtype only")
    p.add_argument("--memory", action="store_true", help="peak RSS in fresh processes")
    args = p.parse_args(argv)
    if args.memory:
        report("kernels: peak memory of one call", memory_rows(args.quick), args.json)
        return
    dtypes = (torch.float32, torch.float64)
    if args.dtype:
        dtypes = (getattr(torch, args.dtype),)
    rows = run(
        args.quick,
        pairs=args.pairs,
        threads=args.threads,
        nt=args.nt_python,
        only=args.only,
        dtypes=dtypes,
    )
    report(f"kernels: NNGP+NTK, widelimit vs Neural Tangents ({args.threads} thread)", rows,
           args.json)  # fmt: skip


if __name__ == "__main__":
    main()
