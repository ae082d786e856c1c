"""Cost of the 1/n four-point vertex and of its Monte Carlo counterpart.

Rows: the full four-point tensor (every layer) of a depth-10 fully connected net on 16
inputs for tanh and ReLU (targets: under a minute on 2 cores), with the number of distinct
Gaussian integrals per layer by number of distinct inputs; the 1/n NTK theory
(``ntk_fluctuations``: covariance, cross correlators and mean correction) on the same nets; the
batched Monte Carlo over 10⁴ nets of width 256 (target: minutes), for the outputs and for
the NTK (projection sampler).

    python -m benchmarks.finite_width [--json] [--quick]
"""

from __future__ import annotations

from collections import Counter

import torch

from benchmarks._util import measure, parse_args, report
from widelimit import Dense, ReLU, Tanh, serial
from widelimit.finite_width import (
    four_point_function,
    monte_carlo_four_point,
    monte_carlo_ntk,
    ntk_fluctuations,
)
from widelimit.finite_width.gaussian import sorted_quadruples


def _net(act, depth: int, width: int, w_std: float, b_std: float):
    layers = []
    for _ in range(depth):
        layers += [Dense(width, w_std=w_std, b_std=b_std), act]
    return serial(*layers, Dense(1, w_std=w_std, b_std=b_std))


def run(quick: bool = False) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    rows: list[dict] = []
    n_inputs, depth = (8, 3) if quick else (16, 10)
    x = torch.randn(n_inputs, 32, generator=gen, dtype=torch.float64)
    counts = Counter(len(set(q)) for q in sorted_quadruples(n_inputs).tolist())
    integrals = "/".join(str(counts[k]) for k in (1, 2, 3, 4))
    for name, act, w_std, b_std in (("tanh", Tanh(), 1.0, 0.05), ("relu", ReLU(), 2**0.5, 0.0)):
        net = _net(act, depth, 256, w_std, b_std)
        t, mem, _ = measure(lambda net=net: four_point_function(net, x))
        rows.append(
            {
                "case": f"vertex {name}",
                "size": f"N={n_inputs}, depth={depth}",
                "integrals_k1/k2/k3/k4": integrals,
                "seconds": t,
                "peak_mb": mem,
            }
        )
        t, mem, _ = measure(lambda net=net: ntk_fluctuations(net, x))
        rows.append(
            {
                "case": f"ntk theory {name}",
                "size": f"N={n_inputs}, depth={depth}",
                "integrals_k1/k2/k3/k4": "",
                "seconds": t,
                "peak_mb": mem,
            }
        )
    nets, width = (2000, 64) if quick else (10_000, 256)
    x2 = x[:2]
    for d in (3, 10):
        net = _net(ReLU(), d, width, 2**0.5, 0.0)
        t, mem, _ = measure(lambda net=net: monte_carlo_four_point(net, x2, n_nets=nets, seed=1))
        rows.append(
            {
                "case": "monte carlo relu",
                "size": f"N=2, depth={d}, width={width}, nets={nets}",
                "integrals_k1/k2/k3/k4": "",
                "seconds": t,
                "peak_mb": mem,
            }
        )
    for d in (3, 10):
        net = _net(ReLU(), d, width, 2**0.5, 0.0)
        t, mem, _ = measure(
            lambda net=net: monte_carlo_ntk(
                net, x2, n_nets=nets, seed=1, method="projection", chunk=1000
            )
        )
        rows.append(
            {
                "case": "monte carlo ntk relu",
                "size": f"N=2, depth={d}, width={width}, nets={nets}",
                "integrals_k1/k2/k3/k4": "",
                "seconds": t,
                "peak_mb": mem,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    report("finite_width", run(quick=args.quick), args.json)


if __name__ == "__main__":
    main()
