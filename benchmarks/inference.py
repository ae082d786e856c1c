"""Inference benchmarks: gradient-flow ensemble and empirical NTK, time and peak memory.

* ``gradient_descent_mse_ensemble`` of a 2-hidden-layer ReLU net on 2000 train /
  500 test points of dimension 784 (kernels + float64 eigendecomposition +
  mean/covariance at t = ∞ and at 5 finite times);
* ``empirical_ntk`` of a ~1M-parameter MLP (784 → 1024 → 256 → 1) on 1000
  points, both strategies' planned memory against the measured peak RSS.

* ``posterior_mean`` from an in-memory NNGP (FC ``3×(Dense 512, ReLU)``, 784 inputs) at
  N = 20,000 float64 by Cholesky, against ``torch.linalg.cholesky`` + ``cholesky_solve`` on
  the same matrix (same threads; ``ratio_to_torch``), and at N = 50,000 float32 by PCG with
  the pivoted-Cholesky preconditioner (rank 500) to the relative residual ``1e-4``, with the
  iterations and the final residual (``--solve-only`` runs just these rows).

* ``--store-solve``: the same two solves *from a stored kernel* (``compute_kernel`` into a
  temporary store, ``$TMPDIR``): Cholesky at N = 20,000 float64 (the store read whole into
  memory, then LAPACK) against ``torch.linalg.cholesky`` + ``cholesky_solve`` on the same
  matrix in memory, interleaved, best of two, same threads (``ratio_to_torch``, target ≤ 2);
  and PCG with the Nyström preconditioner (rank 500) *streaming* a float32 store at
  N = 50,000 (``in_memory=False``: every iteration reads the stored tiles) to the relative
  residual 1e-4, with the iterations and the true final residual.

``--quick`` shrinks the sizes (500/100 points; 200 points for the NTK; N = 3000 and 6000 for
the solves).
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


def _solve_kernel(n: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """NNGP ``(n, n)`` of the FC ReLU net on Gaussian inputs and targets ``(n, 1)``."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 784, generator=g, dtype=dtype)
    y = torch.sin(x[:, :1].double() * 2) + 0.1 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    blocks = [m for _ in range(3) for m in (Dense(512, w_std=1.5, b_std=0.05), ReLU())]
    return serial(*blocks, Dense(1)).kernel(x, get=("nngp",)).nngp, y


def _enough_memory(n: int, itemsize: int, copies: float) -> bool:
    """Whether ``copies`` ``n × n`` matrices fit in the available memory (with 2 GiB spare)."""
    import sys

    import psutil

    need = copies * n * n * itemsize + (2 << 30)
    free = psutil.virtual_memory().available
    if need > free:
        print(f"skipped N={n}: needs {need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB available",
              file=sys.stderr)  # fmt: skip
    return need <= free


def _cholesky_row(n: int) -> dict:
    from widelimit.scale.solve import posterior_mean

    k, y = _solve_kernel(n, torch.float64)
    reg = 1e-4 * float(k.diagonal().mean())

    def torch_direct():
        a = k.clone()
        a.diagonal().add_(reg)
        low = torch.linalg.cholesky(a)
        del a
        return torch.cholesky_solve(y, low)

    t_torch, _, ref = measure(torch_direct)
    secs, peak, out = measure(lambda: posterior_mean(k, y, method="cholesky"))
    return {
        "case": f"posterior_mean cholesky in memory N={n} float64",
        "seconds": secs,
        "peak_mb": peak,
        "torch_cholesky_s": t_torch,
        "ratio_to_torch": secs / t_torch,
        "iterations": 0,
        "residual": float(out.residual.max()),
        "max_rel_diff_alpha": float(abs(out.alpha - ref.numpy()).max() / abs(ref.numpy()).max()),
        "threads": torch.get_num_threads(),
    }  # fmt: skip


def _solve_rows(quick: bool, sizes: tuple[int, int] | None = None) -> list[dict]:
    import sys

    from widelimit.scale.solve import posterior_mean

    rows = []
    n_chol, n_cg = sizes or ((3000, 6000) if quick else (20_000, 50_000))
    n = n_chol
    if not _enough_memory(n, 8, 3):  # K, K + σ²I, L
        n = 0
    if n:
        rows.append(_cholesky_row(n))
        print(rows[-1], file=sys.stderr)
    n = n_cg
    if not _enough_memory(n, 4, 1.1):  # K and a few N × rank panels
        return rows

    k, y = _solve_kernel(n, torch.float32)
    print(f"kernel N={n} float32 ready", file=sys.stderr)
    secs, peak, out = measure(
        lambda: posterior_mean(
            k, y, method="cg", preconditioner="pivoted_cholesky", rank=500, tol=1e-4, maxiter=1000
        )
    )
    rows.append({
        "case": f"posterior_mean PCG ({out.preconditioner}) in memory N={n} float32 tol=1e-4",
        "seconds": secs,
        "peak_mb": peak,
        "torch_cholesky_s": float("nan"),
        "ratio_to_torch": float("nan"),
        "iterations": out.iterations,
        "residual": float(out.residual.max()),
        "max_rel_diff_alpha": float("nan"),
        "threads": torch.get_num_threads(),
    })  # fmt: skip
    return rows


def _solve_net_data(n: int, dtype: torch.dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 784, generator=g, dtype=dtype)
    y = torch.sin(x[:, :1].double() * 2) + 0.1 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    blocks = [m for _ in range(3) for m in (Dense(512, w_std=1.5, b_std=0.05), ReLU())]
    return serial(*blocks, Dense(1)), x, y


def _store_rows(quick: bool, sizes: tuple[int, int] | None = None) -> list[dict]:
    """Posterior mean from a stored NNGP (issue 22 item 6): Cholesky at N = 20,000 float64
    against torch's Cholesky + solve on the same matrix in memory (interleaved, best of 2,
    same threads); PCG with the Nyström preconditioner streaming a float32 store at
    N = 50,000 to the relative residual 1e-4."""
    import os
    import tempfile

    env_sizes = os.environ.get("WIDELIMIT_BENCH_SIZES")  # e.g. "0,50000": 0 skips a row
    if sizes is None and env_sizes:
        sizes = tuple(int(v) for v in env_sizes.split(","))  # type: ignore[assignment]
    n_chol, n_cg = sizes or ((3000, 6000) if quick else (20_000, 50_000))
    rows = []
    with tempfile.TemporaryDirectory(prefix="widelimit-solve-", dir=os.environ.get("TMPDIR")) as d:
        if n_chol:
            rows.append(_store_cholesky_row(n_chol, d))
        if n_cg:
            rows.append(_store_pcg_row(n_cg, d))
    return rows


def _store_cholesky_row(n_chol: int, d: str) -> dict:
    import os
    import sys
    import time

    from widelimit.scale import compute_kernel
    from widelimit.scale.solve import load_whole, posterior_mean

    net, x, y = _solve_net_data(n_chol, torch.float64)
    t0 = time.perf_counter()
    store = compute_kernel(net, x, store=f"{d}/k64.zarr", get="nngp", progress=False)
    kernel_s = time.perf_counter() - t0
    print(f"store N={n_chol} float64 in {kernel_s:.1f} s", file=sys.stderr)
    reg = 1e-4

    def torch_direct():
        a = load_whole(store.nngp)  # not timed: the same matrix in memory
        a.diagonal().add_(reg * float(a.diagonal().mean()))
        t = time.perf_counter()
        low = torch.linalg.cholesky(a)
        del a
        torch.cholesky_solve(y, low)
        return time.perf_counter() - t

    t_store, t_torch, peak, out = [], [], 0.0, None
    for _ in range(int(os.environ.get("WIDELIMIT_BENCH_REPS", "2"))):  # interleaved
        secs, pk, out = measure(lambda: posterior_mean(store, y, method="cholesky"))
        t_store.append(secs)
        peak = max(peak, pk)
        t_torch.append(torch_direct())
        print(f"store {secs:.1f} s torch {t_torch[-1]:.1f} s", file=sys.stderr)
    row = {
        "case": f"posterior_mean from store, {out.preconditioner} N={n_chol} float64",
        "seconds": min(t_store), "peak_mb": peak, "torch_cholesky_s": min(t_torch),
        "ratio_to_torch": min(t_store) / min(t_torch), "iterations": 0,
        "residual": float(out.residual.max()), "max_rel_diff_alpha": float("nan"),
        "threads": torch.get_num_threads(), "kernel_s": kernel_s,
        "load": os.getloadavg()[0],
    }  # fmt: skip
    print(row, file=sys.stderr)
    shutil_rm(f"{d}/k64.zarr")
    return row


def _store_pcg_row(n_cg: int, d: str) -> dict:
    import os
    import sys
    import time

    from widelimit.scale import compute_kernel
    from widelimit.scale.solve import posterior_mean

    net, x, y = _solve_net_data(n_cg, torch.float32)
    t0 = time.perf_counter()
    store = compute_kernel(net, x, store=f"{d}/k32.zarr", get="nngp", progress=False)
    kernel_s = time.perf_counter() - t0
    print(f"store N={n_cg} float32 in {kernel_s:.1f} s", file=sys.stderr)
    secs, peak, out = measure(
        lambda: posterior_mean(
            store, y, method="cg", preconditioner="nystrom", rank=500, tol=1e-4,
            maxiter=1000, in_memory=False,
        )
    )  # fmt: skip
    row = {
        "case": f"posterior_mean from store, PCG ({out.preconditioner}) streaming N={n_cg} "
                "float32 tol=1e-4",
        "seconds": secs, "peak_mb": peak, "torch_cholesky_s": float("nan"),
        "ratio_to_torch": float("nan"), "iterations": out.iterations,
        "residual": float(out.residual.max()), "max_rel_diff_alpha": float("nan"),
        "threads": torch.get_num_threads(), "kernel_s": kernel_s,
        "load": os.getloadavg()[0],
    }  # fmt: skip
    print(row, file=sys.stderr)
    return row


def shutil_rm(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def run(quick: bool = False, solve_only: bool = False) -> list[dict]:
    rows = []
    if not solve_only:
        saved = torch.get_num_threads()
        torch.set_num_threads(1)
        rows += _ntk_rows(200 if quick else 1000)  # smallest-memory case first (RSS baseline)
        rows.append(_ensemble_row(500, 100, 784) if quick else _ensemble_row(2000, 500, 784))
        torch.set_num_threads(saved)
    return rows + _solve_rows(quick)  # at the default threads


def main(argv: list[str] | None = None) -> None:
    import sys

    argv = sys.argv[1:] if argv is None else list(argv)
    solve_only = "--solve-only" in argv
    store_solve = "--store-solve" in argv
    flags = ("--solve-only", "--store-solve")
    args = parse_args(__doc__.splitlines()[0], [a for a in argv if a not in flags])
    if store_solve:
        report("inference from a stored kernel", _store_rows(args.quick), args.json)
        return
    report("inference", run(quick=args.quick, solve_only=solve_only), args.json)


if __name__ == "__main__":
    main()
