"""CLI for the scale area: ``widelimit store-info``, ``widelimit bench``, and helpers.

``widelimit kernel --store`` and ``widelimit predict`` (owned by the kernel and
inference areas) call :func:`kernel_to_store` and :func:`predict_from_store`
so the tiled/out-of-core paths print the same way everywhere.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from widelimit._cli.common import (
    Format,
    FormatOpt,
    JsonOpt,
    did_you_mean,
    emit_json,
    emit_table,
    load_array,
    output_format,
    reshape_rows,
    save_npy,
    warn,
)


def load_side_inputs(
    files: dict[str, tuple[str | None, str | None]], *, two: bool, n_rows: int | None
) -> dict[str, Any]:
    """Side inputs from ``--mask``/``--mask2``, ``--pattern``/``--pattern2`` files.

    ``files``: name → (file for x1, file for x2).  Returns keyword arguments for
    ``net.kernel``/``compute_kernel``: ``{name: a1}``, or ``{name: (a1, a2)}`` when
    ``two`` (x2 given; then both files are needed).  ``n_rows`` keeps the first rows of
    per-example arrays (a shared ``(n, n)`` pattern is kept whole).
    """
    side: dict[str, Any] = {}
    for name, (f1, f2) in files.items():
        if f1 is None and f2 is None:
            continue
        if f1 is None:
            raise typer.BadParameter(f"--{name}2 needs --{name} (for x1)", param_hint=f"--{name}2")
        if two and f2 is None:
            raise typer.BadParameter(
                f"with --x2, give --{name}2 for x2 as well (the same file for a shared one)",
                param_hint=f"--{name}2",
            )
        if not two and f2 is not None:
            raise typer.BadParameter(f"--{name}2 needs --x2", param_hint=f"--{name}2")
        arrays = []
        for f, opt in ((f1, f"--{name}"), (f2, f"--{name}2")):
            if f is None:
                continue
            a = load_array(f, opt, builtin=False)
            shared = name == "pattern" and a.ndim == 2  # one graph for the whole batch
            arrays.append(a if shared or n_rows is None else a[:n_rows])
        side[name] = tuple(arrays) if two else arrays[0]
    return side


def _open_rows(source: str, option: str, n_rows: int | None) -> np.ndarray:
    """Rows of a data source without reading them: ``.npy`` files are memory-mapped."""
    p = Path(source)
    if p.suffix == ".npy" and p.is_file():
        try:
            x = np.load(p, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as err:
            raise typer.BadParameter(f"{p}: not a readable .npy file ({err})", option) from err
        if x.dtype.kind not in "biuf" or x.ndim < 2:
            raise typer.BadParameter(f"{p}: expected a numeric (N, ...) array", option)
    else:
        x = load_array(source, option, n_rows=n_rows, min_ndim=2)
    return x if n_rows is None else x[:n_rows]


def print_plan(
    net: str,
    x1: str,
    x2: str | None,
    *,
    n_rows: int | None,
    input_shape: str | None,
    dtype: str,
    store: str | Path | None,
    tile: int | None,
    get: tuple[str, ...],
    memory_budget: str | None,
    json: bool,
) -> dict[str, Any]:
    """``widelimit kernel --plan``: the job's tiles, disk, memory and ETA on stdout.

    ``net`` is the ``--net`` text or file; a net planned before (same text, input shape,
    dtype, kernels) is answered from the probe cache without importing torch
    (:func:`widelimit.scale.plan.plan_from_text`)."""
    from widelimit.scale.plan import plan_from_text

    xs = [_open_rows(x1, "--x1", n_rows)]
    if x2 is not None:
        xs.append(_open_rows(x2, "--x2", n_rows))
    xs = reshape_rows(xs, input_shape)

    def parse(text: str) -> Any:
        from widelimit.spec_text import load_net

        try:
            return load_net(text)
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--net") from err

    try:
        plan = plan_from_text(
            net, xs[0], xs[1] if len(xs) > 1 else None, store=store, tile=tile, get=get,
            memory_budget=memory_budget, dtype=dtype, load_net=parse,
        )  # fmt: skip
    except (ValueError, TypeError) as err:
        raise typer.BadParameter(str(err)) from err
    summary = plan.to_dict() | {"store": None if store is None else str(store)}
    if json:
        emit_json(summary)
    else:
        title = f"plan for kernel store {store}" if store else "plan for a kernel store"
        emit_table(title, ["field", "value"], plan.rows())
        if not plan.fits_disk:
            warn(
                f"the store does not fit: {plan.rows()[6][1]}; compute_kernel would refuse to start"
            )
    return summary


def kernel_to_store(
    net: Any,
    x1: Any,
    x2: Any,
    store: str | Path,
    tile: int | None,
    scheduler: str | None,
    get: tuple[str, ...],
    *,
    fmt: str = "table",
    memory_budget: str | None = None,
    overwrite: bool = False,
    repair: bool = False,
    progress: bool = True,
    scaling: Any = None,
    side: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Compute a tiled kernel into ``store`` (resuming), print a summary, return it as a dict.

    ``fmt``: the summary's output format (``"json"``, ``"table"``, ``"plain"``, ...).

    ``scaling`` (a :class:`widelimit.scaling.InputScaling`) is recorded in the store, so a
    test-train store can reuse the training statistics (``kernel --scale-from``).
    On Ctrl-C prints ``interrupted: k/m tiles saved in STORE; run the same command
    again to resume`` and exits with status 130.
    """
    from widelimit.scale import compute_kernel

    try:
        result = compute_kernel(
            net, x1, x2, store=store, tile=tile, get=get, scheduler=scheduler,
            memory_budget=memory_budget, overwrite=overwrite, repair=repair,
            progress=progress and fmt != "json", **(side or {}),
        )  # fmt: skip
    except KeyboardInterrupt:
        _exit_on_second_interrupt(store)
        print(f"interrupted: {_saved(store)} tiles saved in {store}; run the same command "
              "again to resume", file=sys.stderr)  # fmt: skip
        # Exit now rather than through the interpreter's teardown: that teardown resets the
        # SIGINT handler to the system default, so a second Ctrl-C arriving during it killed
        # the process by the signal (status -2 instead of 130).  The lock was released on the
        # way here; the store is valid (see _exit_on_second_interrupt).
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(130)
    if scaling is not None:
        from widelimit.scaling import save_scaling

        save_scaling(store, scaling)
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
    if fmt == "json":
        emit_json(summary)
    else:
        rows = [[k, v] for k, v in summary.items()]
        emit_table(f"kernel store {store}", ["field", "value"], rows, fmt=fmt)
    return summary


def _exit_on_second_interrupt(store: str | Path) -> None:
    """After a first Ctrl-C, make a second one exit at once (status 130), cleanly.

    Between the first interrupt and the end of the process, Python waits for the tiles
    still being computed in worker threads; a second ``KeyboardInterrupt`` raised in that
    shutdown (or in torch's teardown) printed tracebacks or aborted with a C++
    "terminate called".  ``os._exit`` skips that teardown; the store stays valid (a tile
    without its completion record is recomputed on resume; the lock dies with the process).
    """

    def exit_now(signum: int, frame: object) -> None:
        print(f"interrupted again: exiting now; {store} stays valid (unfinished tiles are "
              "recomputed when you run the same command again)", file=sys.stderr)  # fmt: skip
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(130)

    try:
        signal.signal(signal.SIGINT, exit_now)
    except ValueError:  # not the main thread: leave the handler alone
        pass


def _recorded_scaling(store: str | Path) -> str | None:
    """``--scale`` recorded in a store by ``kernel --store`` (None: not recorded)."""
    from widelimit.scaling import load_scaling

    try:
        return load_scaling(store).method
    except ValueError:
        return None


def _saved(store: str | Path) -> str:
    """``k/m`` finished tiles of a store (``0/?`` if it was not created yet)."""
    from widelimit.scale.store import KernelStore

    try:
        ks = KernelStore.open(store)
        return f"{len(ks.scan()[0])}/{len(ks.plan)}"
    except (OSError, ValueError):
        return "0/?"


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
    out: Path | None = None,
    fmt: str = "table",
) -> dict[str, Any]:
    """GP posterior mean from stored kernels (PCG or blocked Cholesky, streaming tiles).

    ``store``: symmetric train-train store; ``test_store``: a store of
    ``compute_kernel(net, x_test, x_train)``; ``y_train``: array or .npy/.csv
    path.  With ``out``, writes ``out/mean.npy`` and ``out/alpha.npy``.
    """
    from widelimit.scale.solve import posterior_mean

    y = (
        y_train
        if isinstance(y_train, np.ndarray)
        else load_array(y_train, "--y-train", builtin=False)
    )
    res = posterior_mean(
        store, y, test_store=test_store, kernel=kernel, diag_reg=diag_reg,
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
        save_npy(out / "alpha.npy", res.alpha)
        if res.mean is not None:
            save_npy(out / "mean.npy", res.mean)
        summary["files"] = sorted(str(p) for p in out.glob("*.npy"))
    if fmt == "json":
        emit_json(summary | {"mean": None if res.mean is None else res.mean})
    else:
        rows = [[k, v] for k, v in summary.items()]
        title = f"posterior mean from stored kernel ({method})"
        emit_table(title, ["field", "value"], rows, fmt=fmt)
    return summary


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
            bool,
            typer.Option(help="Re-hash every finished tile and list every damaged one."),
        ] = False,
        json_out: JsonOpt = False,
        fmt: FormatOpt = Format.table,
    ) -> None:
        """Show what a kernel store holds: shape, dtype, tiles done/total, fingerprints.

        A damaged store (bad record, missing or truncated chunk; with --verify also
        altered data) exits with status 2; --verify lists every damaged tile first.
        """
        fmt = output_format(fmt, json_out)
        from widelimit.scale import StoreCorruptError, load_kernel, verify_store
        from widelimit.scale.store import REPAIR_HINT

        if verify:
            try:
                bad = verify_store(path)
            except FileNotFoundError as err:
                raise typer.BadParameter(str(err), param_hint="PATH") from err
            if bad:
                if fmt == "json":
                    emit_json({"path": str(path), "damaged": bad})
                else:
                    rows = [[b.split(":")[0], b.split(":", 1)[1].strip()] for b in bad]
                    emit_table(f"damaged tiles in {path}", ["tile", "problem"], rows, fmt=fmt)
                raise StoreCorruptError(
                    f"store {str(path)!r} is damaged: {len(bad)} bad tile(s) listed above; "
                    + REPAIR_HINT
                )
        try:
            info = load_kernel(path).info()
        except FileNotFoundError as err:
            raise typer.BadParameter(str(err), param_hint="PATH") from err
        fields = {**vars(info), "scaling": _recorded_scaling(path)}
        if fmt == "json":
            emit_json(fields)
        else:
            rows = [[k, v] for k, v in fields.items()]
            emit_table(f"kernel store {path}", ["field", "value"], rows, fmt=fmt)

    @app.command("bench")
    def bench_cmd(
        quick: Annotated[bool, typer.Option(help="Small sizes (smoke run).")] = False,
        only: Annotated[
            list[str] | None, typer.Option(help="Run only these scripts (repeatable).")
        ] = None,
        out: Annotated[
            Path, typer.Option(help="Directory for benchmarks.md and benchmarks.json.")
        ] = Path("benchmark-results"),
        json_out: JsonOpt = False,
    ) -> None:
        """Run all benchmarks/*.py scripts: one Markdown report + JSON (python -m benchmarks).

        The Markdown table is the result on stdout (--json: the JSON instead); each script's
        progress is on stderr.
        """
        root = _repo_root()
        available = sorted(
            f.stem
            for f in (root / "benchmarks").glob("*.py")
            if not f.name.startswith("_") and "def run(" in f.read_text(errors="replace")
        )  # fmt: skip (benchmarks.__main__.discover, without importing the scripts' package)
        for name in only or []:
            if name not in available:
                raise typer.BadParameter(
                    f"no benchmark {name!r}{did_you_mean(name, available)} "
                    f"(available: {', '.join(available)})",
                    param_hint="--only",
                )
        cmd = [sys.executable, "-m", "benchmarks", "--out", str(out.resolve())]
        if quick:
            cmd.append("--quick")
        for name in only or []:
            cmd += ["--only", name]
        if not json_out:
            raise typer.Exit(subprocess.call(cmd, cwd=root))
        rc = subprocess.call(cmd, cwd=root, stdout=subprocess.DEVNULL)
        if rc == 0:
            import json

            emit_json(json.loads((out.resolve() / "benchmarks.json").read_text()))
        raise typer.Exit(rc)
