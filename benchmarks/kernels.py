"""NNGP+NTK cost of fully-connected nets against the unavoidable work.

Net: 3 × (Dense(512) → φ) → Dense(1) on N = 4000 inputs of dimension 784,
float32 and float64, φ ∈ {ReLU (closed form), Erf (closed form), Tanh
(quadrature)}.  The *baseline* is the input Gram matrix ``x xᵀ/d`` plus, per
layer, one evaluation of the bare arc-cosine formula on an (N, N) tensor (the
least elementwise work any closed-form recursion must do).  Targets (issue 3):
closed form ≤ 1.5× baseline; quadrature ≤ 3× the closed-form cost.

    python -m benchmarks.kernels [--json] [--quick]
"""

from __future__ import annotations

import math

import torch

from benchmarks._util import measure, parse_args, report
from widelimit.layers import Dense, Erf, ReLU, Tanh, serial


def _baseline(x: torch.Tensor, depth: int) -> None:
    s = x @ x.T / x.shape[1]
    q = s.diagonal()
    for _ in range(depth):
        prod = torch.sqrt(q[:, None] * q[None, :])
        c = (s / prod).clamp(-1, 1)
        th = torch.arccos(c)
        s = prod / (2 * math.pi) * (torch.sqrt(1 - c * c) + (math.pi - th) * c)
        q = s.diagonal()


def run(quick: bool = False) -> list[dict]:
    torch.set_num_threads(2)
    n, d, depth = (1000, 784, 3) if quick else (4000, 784, 3)
    rows = []
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(n, d, generator=torch.Generator().manual_seed(0), dtype=dtype)
        t_base, _m_base, _ = measure(lambda x=x: _baseline(x, depth), repeat=2)
        results = {}
        for name, act in (("relu", ReLU()), ("erf", Erf()), ("tanh", Tanh())):
            layers = []
            for _ in range(depth):
                layers += [Dense(512, 1.4, 0.1), act]
            net = serial(*layers, Dense(1))
            t, mem, _ = measure(lambda net=net, x=x: net.kernel(x), repeat=1 if quick else 2)
            results[name] = t
            rows.append(
                {
                    "activation": name,
                    "dtype": str(dtype).removeprefix("torch."),
                    "N": n,
                    "seconds": t,
                    "peak_MiB": mem,
                    "baseline_s": t_base,
                    "ratio_to_baseline": t / t_base,
                    "ratio_to_relu": t / results["relu"],
                    "kernel_MiB": n * n * x.element_size() / 2**20,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    report("kernels: NNGP+NTK of fully-connected nets", run(args.quick), args.json)


if __name__ == "__main__":
    main()
