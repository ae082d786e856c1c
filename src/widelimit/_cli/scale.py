"""CLI for the scale area: ``widelimit store-info``, ``widelimit bench``, and helpers.

``widelimit kernel --store`` and ``widelimit predict`` (owned by the kernel and
inference areas) call :func:`kernel_to_store` and :func:`predict_from_store`
so the tiled/out-of-core paths print the same way everywhere.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from widelimit._cli.common import console, print_json, table


def kernel_to_store(
    net: Any,
    x1: Any,
    x2: Any,
    store: str | Path,
    tile: int | None,
    scheduler: str | None,
    get: tuple[str, ...],
    json: bool,
    *,
    memory_budget: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Compute a tiled kernel into ``store`` (resuming), print a summary, return it as a dict."""
    from widelimit.scale import compute_kernel

    result = compute_kernel(
        net, x1, x2, store=store, tile=tile, get=get, scheduler=scheduler,
        memory_budget=memory_budget, overwrite=overwrite, progress=not json,
    )  # fmt: skip
    run = result.run
    summary = {
        "store": str(store),
        "shape": list(result.shape),
        "dtype": result.meta.dtype,
        "get": list(result.meta.get),
        "tile": result.meta.tile,
        "tiles_total": run.tiles_total,
        "tiles_skipped": run.tiles_skipped,
        "tiles_computed": run.tiles_computed,
        "seconds": run.seconds,
        "entries_per_second": run.entries_per_second,
        "memory_per_tile_bytes": run.memory.per_tile,
        "scheduler": run.scheduler,
    }
    if json:
        print_json(summary)
    else:
        rows = [[k, v] for k, v in summary.items()]
        console.print(table(f"kernel store {store}", ["field", "value"], rows))
    return summary


def predict_from_store(
    store: str | Path,
    y_train: np.ndarray | str | Path,
    *,
    test_store: str | Path | None = None,
    kernel: str = "nngp",
    diag_reg: float = 1e-4,
    diag_reg_absolute: bool = False,
    tol: float = 1e-8,
    maxiter: int = 500,
    preconditioner: str = "nystrom",
    rank: int = 500,
    method: str = "cg",
    json: bool = False,
    out: Path | None = None,
) -> dict[str, Any]:
    """GP posterior mean from stored kernels (PCG or blocked Cholesky, streaming tiles).

    ``store``: symmetric train-train store; ``test_store``: a store of
    ``compute_kernel(net, x_test, x_train)``; ``y_train``: array or .npy/.csv
    path.  With ``out``, writes ``out/mean.npy`` and ``out/alpha.npy``.
    """
    from widelimit.scale.solve import posterior_mean

    y = _load_targets(y_train)
    res = posterior_mean(
        store, y, test=test_store, kernel=kernel, diag_reg=diag_reg,
        diag_reg_absolute=diag_reg_absolute, tol=tol, maxiter=maxiter,
        preconditioner=preconditioner, rank=rank, method=method,
    )  # fmt: skip
    summary: dict[str, Any] = {
        "store": str(store),
        "test_store": None if test_store is None else str(test_store),
        "kernel": kernel,
        "n_train": int(res.alpha.shape[0]),
        "n_test": None if res.mean is None else int(res.mean.shape[0]),
        "noise": res.noise,
        "preconditioner": res.preconditioner,
        "iterations": res.iterations,
        "max_relative_residual": float(res.residual.max()),
        "converged": res.converged,
        "seconds": res.seconds,
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "alpha.npy", res.alpha)
        if res.mean is not None:
            np.save(out / "mean.npy", res.mean)
        summary["files"] = sorted(str(p) for p in out.glob("*.npy"))
    if json:
        print_json(summary | {"mean": None if res.mean is None else res.mean})
    else:
        rows = [[k, v] for k, v in summary.items()]
        title = f"posterior mean from stored kernel ({method})"
        console.print(table(title, ["field", "value"], rows))
    return summary


def _load_targets(y: np.ndarray | str | Path) -> np.ndarray:
    if isinstance(y, np.ndarray):
        return y
    p = Path(y)
    if not p.exists():
        raise typer.BadParameter(f"targets file {str(p)!r} not found")
    if p.suffix == ".npy":
        return np.load(p)
    return np.loadtxt(p, delimiter=",", ndmin=1)


def _repo_root() -> Path:
    import widelimit

    root = Path(widelimit.__file__).resolve().parents[2]
    if not (root / "benchmarks" / "__main__.py").exists():
        raise typer.BadParameter(
            "benchmarks/ not found next to the installed package; run `widelimit bench` from "
            "a source checkout installed with `pip install -e .`"
        )
    return root


def register(app: typer.Typer) -> None:
    @app.command("store-info")
    def store_info_cmd(
        path: Annotated[Path, typer.Argument(help="Kernel store directory (*.zarr).")],
        verify: Annotated[
            bool, typer.Option(help="Re-hash every finished tile against its record.")
        ] = False,
        json_out: Annotated[bool, typer.Option("--json", help="Print JSON to stdout.")] = False,
    ) -> None:
        """Show what a kernel store holds: shape, dtype, tiles done/total, fingerprints."""
        from widelimit.scale import load_kernel

        try:
            info = load_kernel(path, verify=verify).info()
        except (ValueError, FileNotFoundError) as err:
            raise typer.BadParameter(str(err), param_hint="PATH") from err
        if json_out:
            print_json(info)
        else:
            rows = [[k, v] for k, v in vars(info).items()]
            console.print(table(f"kernel store {path}", ["field", "value"], rows))

    @app.command("bench")
    def bench_cmd(
        quick: Annotated[bool, typer.Option(help="Small sizes (smoke run).")] = False,
        only: Annotated[
            list[str] | None, typer.Option(help="Run only these scripts (repeatable).")
        ] = None,
        out: Annotated[
            Path, typer.Option(help="Directory for benchmarks.md and benchmarks.json.")
        ] = Path("benchmark-results"),
    ) -> None:
        """Run all benchmarks/*.py scripts: one Markdown report + JSON (python -m benchmarks)."""
        root = _repo_root()
        cmd = [sys.executable, "-m", "benchmarks", "--out", str(out.resolve())]
        if quick:
            cmd.append("--quick")
        for name in only or []:
            cmd += ["--only", name]
        raise typer.Exit(subprocess.call(cmd, cwd=root))
