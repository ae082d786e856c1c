"""NNGP+NTK cost of small CNNs: padding "same" vs "valid", GlobalAvgPool vs Flatten.

Net (issue 5): Conv2d(64, 3×3) → ReLU → Conv2d(64, 3×3) → ReLU → readout → Dense(1),
readout ∈ {GlobalAvgPool (full spatial layout, (HW)² entries per pair of
images), Flatten (diagonal layout, HW entries per pair)}, on 64 images of
8×8×3, padding "same" and "valid"; and a CIFAR-sized case, 16 images of
32×32×3 with padding "same" (GAP computed in row tiles of one image to bound
memory).  ``entries`` counts kernel entries produced per kernel tensor over
the conv/activation layers (the unavoidable work grows with it: "same" keeps
8×8 outputs while "valid" shrinks them to 6×6 and 4×4).  ``same/valid`` is
the ratio of CPU times (robust to other processes sharing the machine).  The ``padding
overhead`` rows time one conv layer with identical output size, "same" on 8×8
versus "valid" on 10×10, isolating the cost of handling the padded border.

    python -m benchmarks.conv [--json] [--quick]
"""

from __future__ import annotations

import math
import time

import torch

from benchmarks._util import measure, parse_args, report
from widelimit.layers import Dense, ReLU, serial
from widelimit.layers.conv import Conv2d
from widelimit.layers.dense import input_kernel
from widelimit.layers.pooling import Flatten, GlobalAvgPool


def _net(padding: str, readout: str):
    head = GlobalAvgPool() if readout == "gap" else Flatten()
    return serial(
        Conv2d(64, 3, padding=padding, w_std=1.4, b_std=0.1),
        ReLU(),
        Conv2d(64, 3, padding=padding, w_std=1.4, b_std=0.1),
        ReLU(),
        head,
        Dense(1),
    )


def _entries(net, x: torch.Tensor, full: bool) -> int:
    """Kernel entries per tensor summed over the conv/ReLU outputs (one pair of batches)."""
    n = x.shape[0] ** 2
    shape, total = tuple(x.shape[1:]), 0
    for layer in net.layers[:4]:
        shape = layer.out_shape(shape)
        p = math.prod(shape[1:])
        total += n * (p * p if full else p)
    return total


def _timed(fn, repeat: int) -> tuple[float, float, float]:
    """(best wall seconds, best CPU seconds of this process, peak extra RSS MiB).

    CPU time is reported too because the benchmark machine may be shared: it
    is insensitive to other processes competing for the cores.
    """
    cpu: list[float] = []

    def run_once():
        t0 = time.process_time()
        out = fn()
        cpu.append(time.process_time() - t0)
        return out

    wall, peak, _ = measure(run_once, repeat=repeat)
    return wall, min(cpu), peak


def _tiled_kernel(net, x: torch.Tensor, rows: int):
    """Rows of the kernel, ``rows`` images of ``x1`` at a time (bounds peak memory)."""
    return torch.cat([net.kernel(x[i : i + rows], x).ntk for i in range(0, x.shape[0], rows)])


def run(quick: bool = False) -> list[dict]:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    rows: list[dict] = []
    n = 16 if quick else 64
    repeat = 1 if quick else 3
    for dtype in (torch.float64, torch.float32):
        x = torch.randn(n, 3, 8, 8, generator=g, dtype=dtype)
        for readout in ("gap", "flatten"):
            times = {}
            for padding in ("valid", "same"):
                net = _net(padding, readout)
                t, cpu, mem = _timed(lambda net=net, x=x: net.kernel(x), repeat)
                times[padding] = cpu
                entries = _entries(net, x, readout == "gap")
                rows.append(
                    {
                        "case": f"8x8x3 {readout}",
                        "padding": padding,
                        "N": n,
                        "dtype": str(dtype).removeprefix("torch."),
                        "wall_s": t,
                        "cpu_s": cpu,
                        "peak_MiB": mem,
                        "entries_M": entries / 1e6,
                        "cpu_ns_per_entry": 1e9 * cpu / entries,
                        "same/valid": times["same"] / times["valid"] if padding == "same" else "",
                    }
                )
        # padding overhead at equal output size: one conv layer, full layout
        k_same = input_kernel(x, None, full_spatial=True, ntk=True)
        xv = torch.randn(n, 3, 10, 10, generator=g, dtype=dtype)
        k_valid = input_kernel(xv, None, full_spatial=True, ntk=True)
        times = {}
        for padding, k0 in (("valid", k_valid), ("same", k_same)):
            conv = Conv2d(64, 3, padding=padding)
            t, cpu, mem = _timed(lambda conv=conv, k0=k0: conv.transform_kernel(k0), repeat)
            times[padding] = cpu
            entries = n * n * 64 * 64
            rows.append(
                {
                    "case": "padding overhead: 1 conv, 8x8 out",
                    "padding": padding,
                    "N": n,
                    "dtype": str(dtype).removeprefix("torch."),
                    "wall_s": t,
                    "cpu_s": cpu,
                    "peak_MiB": mem,
                    "entries_M": entries / 1e6,
                    "cpu_ns_per_entry": 1e9 * cpu / entries,
                    "same/valid": times["same"] / times["valid"] if padding == "same" else "",
                }
            )
    # CIFAR-sized case
    nc = 4 if quick else 16
    for readout, dtype in (("flatten", torch.float64), ("gap", torch.float32)):
        x = torch.randn(nc, 3, 32, 32, generator=g, dtype=dtype)
        net = _net("same", readout)
        if readout == "gap":
            t, cpu, mem = _timed(lambda net=net, x=x: _tiled_kernel(net, x, 1), 1)
        else:
            t, cpu, mem = _timed(lambda net=net, x=x: net.kernel(x), repeat)
        entries = _entries(net, x, readout == "gap")
        rows.append(
            {
                "case": f"CIFAR 32x32x3 {readout}"
                + (" (row tiles of 1)" if readout == "gap" else ""),
                "padding": "same",
                "N": nc,
                "dtype": str(dtype).removeprefix("torch."),
                "wall_s": t,
                "cpu_s": cpu,
                "peak_MiB": mem,
                "entries_M": entries / 1e6,
                "cpu_ns_per_entry": 1e9 * cpu / entries,
                "same/valid": "",
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    report("conv: NNGP+NTK of CNNs (1 thread)", run(args.quick), args.json)


if __name__ == "__main__":
    main()
