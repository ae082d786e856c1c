"""Inference benchmarks: gradient-flow ensemble and empirical NTK, time and peak memory.

* ``gradient_descent_mse_ensemble`` of a 2-hidden-layer ReLU net on 2000 train /
  500 test points of dimension 784 (kernels + float64 eigendecomposition +
  mean/covariance at t = ∞ and at 5 finite times);
* ``empirical_ntk`` of a ~1M-parameter MLP (784 → 1024 → 256 → 1) on 1000
  points, both strategies' planned memory against the measured peak RSS.

``--quick`` shrinks the sizes (500/100 points; 200 points for the NTK).
"""

from __future__ import annotations

import torch

from benchmarks._util import measure, parse_args, report
from widelimit import Dense, ReLU, serial
from widelimit.empirical import empirical_ntk, plan_empirical_ntk
from widelimit.predict import gradient_descent_mse_ensemble


def _ensemble_row(n_train: int, n_test: int, dim: int) -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_train + n_test, dim, generator=g, dtype=torch.float64)
    y = torch.randn(n_train, 10, generator=g, dtype=torch.float64)
    net = serial(Dense(512, w_std=1.4, b_std=0.1), ReLU(), Dense(512, w_std=1.4, b_std=0.1),
                 ReLU(), Dense(10, w_std=1.4, b_std=0.1))  # fmt: skip

    def run():
        ens = gradient_descent_mse_ensemble(net, x[:n_train], y, diag_reg=1e-4)
        ens(x[n_train:], None, kernel="ntk")
        ts = torch.logspace(0, 4, 5, dtype=torch.float64)
        return ens(x[n_train:], ts, kernel="ntk")

    secs, peak, out = measure(run)
    # dominant arrays (float64): 2 train-train kernels + eigenvectors + Vᵀ K V (4 N²),
    # test-train kernels (2 M N), per-time (M, N) factors (T M N), test-test covariances (T M²)
    t = 5
    formula = 8 * (4 * n_train**2 + (2 + t) * n_test * n_train + (t + 1) * n_test**2) / 2**20
    return {
        "case": f"gradient_descent_mse_ensemble {n_train}/{n_test} d={dim}",
        "seconds": secs,
        "peak_mb": peak,
        "formula_mb": formula,
        "cond": out.conditioning.cond,
    }


def _ntk_rows(n_points: int) -> list[dict]:
    torch.manual_seed(0)
    net = serial(Dense(1024, w_std=1.4, b_std=0.1), ReLU(), Dense(256, w_std=1.4, b_std=0.1),
                 ReLU(), Dense(1, w_std=1.4, b_std=0.1))  # fmt: skip
    module = net.module(None, input_shape=(784,), seed=0, dtype=torch.float32)
    x = torch.randn(n_points, 784)
    rows = []
    n_small = min(n_points, 40)  # NTK-vector products: N2·k vjp/jvp pairs, so fewer points
    xs = x[:n_small]
    plan = plan_empirical_ntk(module, xs, strategy="ntvp")
    secs, peak, _ = measure(lambda: empirical_ntk(module, xs, strategy="ntvp"))
    rows.append({
        "case": f"empirical_ntk ntvp P={plan.n_params} N={n_small}",
        "seconds": secs,
        "peak_mb": peak,
        "formula_mb": (plan.bytes_estimate + plan.output_bytes) / 2**20,
        "cond": float("nan"),
    })  # fmt: skip
    budget = 2**29  # 512 MiB for Jacobian blocks
    plan = plan_empirical_ntk(module, x, memory_budget=budget)
    secs, peak, _ = measure(lambda: empirical_ntk(module, x, memory_budget=budget))
    rows.append({
        "case": f"empirical_ntk {plan.strategy} b={plan.batch_size} P={plan.n_params} N={n_points}",
        "seconds": secs,
        "peak_mb": peak,
        "formula_mb": (plan.bytes_estimate + plan.output_bytes) / 2**20,
        "cond": float("nan"),
    })  # fmt: skip
    return rows


def run(quick: bool = False) -> list[dict]:
    torch.set_num_threads(1)
    rows = _ntk_rows(200 if quick else 1000)  # smallest-memory case first (RSS baseline)
    rows.append(_ensemble_row(500, 100, 784) if quick else _ensemble_row(2000, 500, 784))
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    report("inference", run(quick=args.quick), args.json)


if __name__ == "__main__":
    main()
