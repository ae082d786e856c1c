"""Empirical NTK against its Gram-matrix bound and Neural Tangents' ``empirical_ntk_fn``.

Workloads (float32, one thread each, issue 25):

* MLP 784→1024→ReLU→256→ReLU→1 (1.07M parameters), N = 300, 1000, 4000;
* CNN: three 3×3 'same' convs with 32 channels and ReLU on 3×16×16 inputs, global average
  pool, Linear 32→1; N = 300, 1000.

Columns, timed interleaved in one run (best of ``--repeat``):

* ``bound_s`` — the bound written out by hand for that network: one forward, one backward
  for the per-example cotangents Δ of every layer output, and the Gram products
  (MLP: ``Σ_l (Δ_l Δ_lᵀ) ⊙ (A_l A_lᵀ + 1)``; CNN: per-example conv weight gradients by
  one grouped weight-gradient call per layer — 5× faster than unfold + bmm here — then
  their Gram);
* ``widelimit_s`` — ``widelimit.empirical_ntk`` (strategy ``"auto"``: structured rules);
* ``nt_<impl>_s`` — Neural Tangents 0.6.5 ``empirical_ntk_fn`` on the same weights with
  implementation 1 (Jacobian contraction), 2 (NTK-vector products), 3 (structured
  derivatives), compiled ahead of time (compile time excluded).  Rows with
  ``N > --nt-max-n`` time NT on the first ``--nt-max-n`` examples and scale by ``(N/n)²``
  (``nt_extrapolated``: a lower bound on NT's time, since its cost grows at least as N²).

Targets: ``widelimit_s / bound_s`` ≤ 3 at N ≥ 1000 and ≤ 5 at N = 300;
``widelimit_s / min(nt_*_s)`` ≤ 0.2.  ``--memory`` adds the peak RSS of the MLP at N = 4000
measured in a fresh process, against ``2 × output + activations``.

Run: ``PYTHONPATH=src python -m benchmarks.empirical_ntk [--json] [--quick]
[--nt-python ~/.cache/nt-venv/bin/python] [--memory]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks._util import JsonLinesWorker, PeakRSS, nt_env, report

_WORKER = Path(__file__).resolve().parent / "_nt_entk_worker.py"
_NT_DEFAULT = Path.home() / ".cache/nt-venv/bin/python"


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 256), nn.ReLU(), nn.Linear(256, 1)
    )


def cnn() -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for c in (3, 32, 32):
        layers += [nn.Conv2d(c, 32, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 1))


def inputs(arch: str, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    shape = (784,) if arch == "mlp" else (3, 16, 16)
    return torch.randn(n, *shape, generator=g)


# ------------------------------------------------------------------ the bound, by hand
def bound_mlp(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    lins = [m[0], m[2], m[4]]
    acts, outs, h = [], [], x
    for i, lin in enumerate(lins):
        acts.append(h)
        z = F.linear(h, lin.weight.detach(), lin.bias.detach())
        if not z.requires_grad:
            z.requires_grad_()
        outs.append(z)
        h = z.relu() if i < 2 else z
    ds = torch.autograd.grad(h.sum(), outs)
    with torch.no_grad():
        k = torch.zeros(len(x), len(x))
        for a, d in zip(acts, ds, strict=True):
            k += (d @ d.T) * (a @ a.T + 1)
    return k


def bound_cnn(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    convs = [m[0], m[2], m[4]]
    acts, outs, h = [], [], x
    for conv in convs:
        acts.append(h.detach())
        z = F.conv2d(h, conv.weight.detach(), conv.bias.detach(), padding=1)
        if not z.requires_grad:
            z.requires_grad_()
        outs.append(z)
        h = z.relu()
    pooled = h.mean((2, 3))
    head = m[-1]
    y = pooled @ head.weight.detach().T + head.bias.detach()
    ds = torch.autograd.grad(y.sum(), outs)
    n = len(x)
    with torch.no_grad():
        g = pooled.detach()  # the head's weight gradient; its bias adds 1
        k = g @ g.T + 1
        for a, d, conv in zip(acts, ds, convs, strict=True):
            # every example's weight gradient in one grouped weight-gradient call
            gw = torch.ops.aten.convolution_backward(
                d.reshape(1, -1, *d.shape[2:]), a.reshape(1, -1, *a.shape[2:]),
                a.new_empty(n * 32, *conv.weight.shape[1:]), None, [1, 1], [1, 1], [1, 1],
                False, [0, 0], n, [False, True, False],
            )[1].reshape(n, -1)  # fmt: skip
            gb = d.sum((2, 3))
            k += gw @ gw.T + gb @ gb.T
    return k


# ------------------------------------------------------------------ Neural Tangents peer
class NT(JsonLinesWorker):
    """The ``_nt_entk_worker.py`` subprocess of the Neural Tangents Python, single-threaded."""

    def __init__(self, python: str) -> None:
        super().__init__([python, str(_WORKER)], nt_env(single_thread=True))


def _weights(m: nn.Module, path: Path) -> None:
    mods = [x for x in m if isinstance(x, nn.Linear | nn.Conv2d)]
    arrays = {}
    for i, mod in enumerate(mods):
        arrays[f"w{i}"] = mod.weight.detach().numpy()
        arrays[f"b{i}"] = mod.bias.detach().numpy()
    np.savez(path, **arrays)


# ------------------------------------------------------------------ timing
def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


def run_row(arch, n, repeat, nt_python, nt_max_n, impls, tmp: Path) -> dict[str, Any]:
    from widelimit.empirical import empirical_ntk

    m = mlp() if arch == "mlp" else cnn()
    x = inputs(arch, n)
    bound = bound_mlp if arch == "mlp" else bound_cnn
    row: dict[str, Any] = {"arch": arch, "N": n, "load_1min": os.getloadavg()[0]}
    nt_n = min(n, nt_max_n)
    workers = {}
    if nt_python:
        _weights(m, tmp / "w.npz")
        np.save(tmp / "x.npy", x[:nt_n].numpy())
        for impl in impls:
            try:
                w = NT(nt_python)
                w.ask(cmd="setup", arch=arch, weights=str(tmp / "w.npz"), x=str(tmp / "x.npy"),
                      impl=impl)  # fmt: skip
                workers[impl] = w
            except RuntimeError as err:
                row[f"nt_{impl}_error"] = str(err)[:200]
    best: dict[str, float] = {}
    k_bound = k_ours = None
    for _ in range(repeat):  # interleaved: bound, widelimit, each NT implementation
        t, k_bound = _timed(lambda: bound(m, x))
        best["bound_s"] = min(best.get("bound_s", np.inf), t)
        t, k_ours = _timed(lambda: empirical_ntk(m, x))
        best["widelimit_s"] = min(best.get("widelimit_s", np.inf), t)
        for impl, w in list(workers.items()):
            try:
                t = w.ask(cmd="time")["seconds"] * (n / nt_n) ** 2
                best[f"nt_{impl}_s"] = min(best.get(f"nt_{impl}_s", np.inf), t)
            except RuntimeError as err:
                row[f"nt_{impl}_error"] = str(err)[:200]
                w.close()
                del workers[impl]
    row.update(best)
    row["rel_diff_bound"] = _rel(k_ours, k_bound)
    for impl, w in workers.items():
        w.ask(cmd="save", out=str(tmp / "k.npy"))
        k_nt = torch.from_numpy(np.load(tmp / "k.npy"))
        row[f"rel_diff_nt_{impl}"] = _rel(k_ours[:nt_n, :nt_n], k_nt)
        w.close()
    row["ratio_to_bound"] = row["widelimit_s"] / row["bound_s"]
    nts = [v for k, v in best.items() if k.startswith("nt_")]
    if nts:
        row["nt_best_s"] = min(nts)
        row["ratio_to_nt_best"] = row["widelimit_s"] / row["nt_best_s"]
        row["nt_extrapolated"] = nt_n < n
    row["target_bound"] = 5.0 if n < 1000 else 3.0
    return row


# ------------------------------------------------------------------ memory (fresh process)
def memory_child(n: int) -> dict[str, Any]:
    from widelimit.empirical import empirical_ntk, plan_empirical_ntk

    torch.set_num_threads(1)
    m = mlp()
    x = inputs("mlp", n)
    plan = plan_empirical_ntk(m, x)
    with PeakRSS() as mem:
        k = empirical_ntk(m, x)
    out_mb = k.numel() * k.element_size() / 2**20
    widths = 784 + 2 * 1024 + 2 * 256 + 1  # input, pre- and post-activations
    act_mb = n * widths * 4 / 2**20
    return {
        "case": f"MLP N={n} float32 peak RSS above baseline",
        "peak_mb": mem.peak_mb,
        "output_mb": out_mb,
        "activations_mb": act_mb,
        "target_mb": 2 * out_mb + act_mb,
        "tile": plan.batch_size,
    }


def run(quick: bool = False, **kw: Any) -> list[dict]:
    torch.set_num_threads(1)
    nt_python = kw.get("nt_python")
    if nt_python is None and _NT_DEFAULT.exists():
        nt_python = str(_NT_DEFAULT)
    rows_spec = [("mlp", 100), ("cnn", 100)] if quick else [
        ("mlp", 300), ("mlp", 1000), ("mlp", 4000), ("cnn", 300), ("cnn", 1000)
    ]  # fmt: skip
    if kw.get("only"):
        rows_spec = [(a, n) for a, n in rows_spec if a == kw["only"]]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch, n in rows_spec:
            impls = kw.get("impls") or ((1, 2, 3) if n <= 300 else (2, 3))
            repeat = kw.get("repeat") or (3 if n <= 300 else 1)
            print(f"[empirical_ntk] {arch} N={n} …", file=sys.stderr, flush=True)
            rows.append(
                run_row(arch, n, repeat, nt_python, kw.get("nt_max_n", 1000), impls, Path(tmp))
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # nothing lost on a kill
    keys = list(dict.fromkeys(k for r in rows for k in r))  # one set of columns for the table
    return [{k: r.get(k) for k in keys} for r in rows]


def run_memory(quick: bool = False) -> list[dict]:
    """Peak RSS of the MLP (N = 4000; 500 with ``quick``) in a fresh process."""
    n = 500 if quick else 4000
    cmd = [sys.executable, "-m", "benchmarks.empirical_ntk", "--memory-child", str(n)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return [json.loads(res.stdout)]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--nt-python", default=None, help="Neural Tangents python (default: peer env)")
    p.add_argument("--no-nt", action="store_true", help="skip Neural Tangents")
    p.add_argument("--nt-max-n", type=int, default=1000, help="largest N NT runs at")
    p.add_argument("--impls", default=None, help="NT implementations, e.g. 2,3")
    p.add_argument("--only", choices=("mlp", "cnn"), default=None, help="one network only")
    p.add_argument("--repeat", type=int, default=None, help="interleaved repeats per row")
    p.add_argument("--memory", action="store_true", help="also peak RSS at N=4000 (fresh process)")
    p.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.memory_child is not None:
        print(json.dumps(memory_child(a.memory_child)))
        return
    impls = tuple(int(i) for i in a.impls.split(",")) if a.impls else None
    rows = run(
        a.quick,
        nt_python="" if a.no_nt else a.nt_python,
        nt_max_n=a.nt_max_n,
        impls=impls,
        repeat=a.repeat,
        only=a.only,
    )
    report("empirical NTK vs its Gram bound and Neural Tangents", rows, a.json)
    if a.memory:
        report("empirical NTK peak memory (fresh process)", run_memory(a.quick), a.json)


if __name__ == "__main__":
    main()
