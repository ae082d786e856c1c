"""``widelimit kernel``: NNGP/NTK of a net description on a data file or built-in data.

The kernels are kept: written to ``--out`` (default :data:`DEFAULT_OUT`) as
``nngp.npy`` / ``ntk.npy`` with ``kernel.json`` (the printed summary), or with
``--out -`` as one ``.npy`` (one kernel) or ``.npz`` (both) on stdout.  ``--json``
carries the file paths and, for kernels of at most :data:`JSON_MATRIX_MAX` entries,
the matrices themselves.  The summary's spectrum: the largest eigenvalue by Lanczos
(``scipy.sparse.linalg.eigsh``), the smallest (and the condition number) by a full
``eigvalsh`` only up to :data:`FULL_SPECTRUM_MAX` rows; its time is printed.
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from widelimit._cli.common import (
    BUILTIN,
    DEFAULT_NET,
    DTYPES,
    Format,
    FormatOpt,
    JsonOpt,
    activity,
    check_device,
    emit_json,
    emit_table,
    emit_text,
    load_array,
    output_format,
    parse_choice,
    parse_choices,
    reshape_rows,
    save_npy,
    torch_dtype,
)
from widelimit._cli.deprecated import resolve_alias
from widelimit._cli.scale import load_side_inputs
from widelimit.scaling import SCALINGS, InputScaling, load_scaling

DEFAULT_OUT = Path("widelimit-kernels")
"""Where ``widelimit kernel`` writes its kernels unless ``--out`` says otherwise."""
JSON_MATRIX_MAX = 10_000
"""``--json`` includes a kernel matrix itself when it has at most this many entries
(e.g. 100 × 100); larger ones are only in their ``.npy`` files."""
FULL_SPECTRUM_MAX = 1500
"""Rows up to which the summary computes every eigenvalue (``eigvalsh``, ~1 s at 1500);
above it only the largest (Lanczos) and ``min_eig``/``cond`` are null."""


def register(app: typer.Typer) -> None:
    @app.command("kernel")
    def kernel_cmd(
        net: Annotated[
            str,
            typer.Option(
                help="Net description, inline or a .txt/.toml file, e.g. "
                "'Dense(512, w_std=1.5, b_std=0.05) -> ReLU -> Dense(1)'."
            ),
        ] = DEFAULT_NET,
        x1: Annotated[
            str,
            typer.Option("--x1", help=f"Inputs x1: .npy/.csv file or one of {', '.join(BUILTIN)}."),
        ] = "digits",
        x2: Annotated[
            str | None, typer.Option("--x2", help="Optional second inputs x2 (same kinds).")
        ] = None,
        n_rows: Annotated[
            int | None,
            typer.Option(
                min=1,
                help="Use only the first K rows of each input (default: a whole file; "
                "200 rows of a built-in data set).",
            ),
        ] = None,
        get: Annotated[
            str, typer.Option(help="'nngp', 'ntk' or 'nngp,ntk' (any case).")
        ] = "nngp,ntk",
        scale: Annotated[
            str,
            typer.Option(
                help="Input scaling: none | standardize | unit-norm. Fitted on --x1 only and "
                "applied to --x1 and --x2 (scikit-learn's fit/transform): standardize uses "
                "x1's per-feature mean and sd; unit-norm sets each row's norm to √d. "
                "Recorded in --store."
            ),
        ] = "none",
        scale_from: Annotated[
            Path | None,
            typer.Option(
                help="Apply the scaling recorded in this store (fitted on its x1) instead of "
                "fitting one: for a test-train store give the train store, "
                "e.g. --x1 test.npy --x2 train.npy --scale-from train.zarr."
            ),
        ] = None,
        dtype: Annotated[str, typer.Option(help="float64 or float32.")] = "float64",
        device: Annotated[str, typer.Option(help="torch device, e.g. cpu or cuda.")] = "cpu",
        out: Annotated[
            str,
            typer.Option(
                help="Directory for nngp.npy / ntk.npy / kernel.json (replaced if present), "
                "or '-' for the kernel as .npy (both: .npz) on stdout."
            ),
        ] = str(DEFAULT_OUT),
        plot: Annotated[
            bool, typer.Option(help="Also write a heatmap per kernel (nngp.png, ntk.png).")
        ] = False,
        summary_on: Annotated[
            bool,
            typer.Option(
                "--summary/--no-summary",
                help=f"Summarise each kernel (diagonal, extreme eigenvalues; every eigenvalue "
                f"only up to N={FULL_SPECTRUM_MAX}).",
            ),
        ] = True,
        json_out: JsonOpt = False,
        fmt: FormatOpt = Format.table,
        input_shape: Annotated[
            str | None,
            typer.Option(help="Reshape each row to this per-example shape, e.g. 1,8,8 (NCHW)."),
        ] = None,
        store: Annotated[
            Path | None,
            typer.Option(
                help="Compute in tiles into this Zarr store (resumable; re-run to resume)."
            ),
        ] = None,
        tile: Annotated[
            int | None, typer.Option(min=1, help="Tile size (rows/cols) for --store.")
        ] = None,
        scheduler: Annotated[
            str | None, typer.Option(help="Dask scheduler address tcp://host:port for --store.")
        ] = None,
        memory_budget: Annotated[
            str | None, typer.Option(help="Refuse tiles above this memory, e.g. 8GB.")
        ] = None,
        overwrite: Annotated[bool, typer.Option(help="Replace an existing --store.")] = False,
        repair: Annotated[
            bool,
            typer.Option(
                help="With --store: recompute only the damaged tiles (bad record, missing, "
                "truncated or altered chunk) instead of refusing."
            ),
        ] = False,
        progress: Annotated[
            bool, typer.Option(help="Progress on stderr (tiles with --store; else after 1 s).")
        ] = True,
        plan: Annotated[
            bool,
            typer.Option(
                "--plan",
                help="Dry run: print the tiles, disk, memory and ETA of the --store job "
                "(stdout) and exit without computing; .npy inputs are memory-mapped.",
            ),
        ] = False,
        mask: Annotated[
            str | None,
            typer.Option(
                help="Side input mask for x1: .npy/.csv of shape (N1, *spatial), true where "
                "a position exists (masking layers)."
            ),
        ] = None,
        mask2: Annotated[
            str | None, typer.Option(help="Mask for x2 (needed with --x2 and --mask).")
        ] = None,
        pattern: Annotated[
            str | None,
            typer.Option(
                help="Side input pattern for x1 (graph Aggregate): .npy of shape "
                "(N1, n, n), or a shared (n, n)."
            ),
        ] = None,
        pattern2: Annotated[
            str | None, typer.Option(help="Pattern for x2 (needed with --x2 and --pattern).")
        ] = None,
        data: Annotated[str | None, typer.Option("--data", hidden=True)] = None,
        data2: Annotated[str | None, typer.Option("--data2", hidden=True)] = None,
        n: Annotated[int | None, typer.Option("--n", hidden=True)] = None,
    ) -> None:
        """Compute infinite-width NNGP/NTK kernels of a network on data (or into a store)."""
        from widelimit.spec_text import load_net

        x1 = resolve_alias(x1, data, old="--data", new="--x1", default="digits")
        x2 = resolve_alias(x2, data2, old="--data2", new="--x2", default=None)
        n_rows = resolve_alias(n_rows, n, old="--n", new="--n-rows", default=None)
        dtype = parse_choice(dtype, DTYPES, "--dtype")
        scale = parse_choice(scale, SCALINGS, "--scale")
        fmt = output_format(fmt, json_out)
        gets = tuple(dict.fromkeys(parse_choices(get, ("nngp", "ntk"), "--get")))
        to_stdout = out == "-"
        if to_stdout and fmt == "json":
            raise typer.BadParameter("--out - writes the kernel itself on stdout; drop --json "
                                     "or give --out a directory", param_hint="--out")  # fmt: skip
        side = load_side_inputs(
            {"mask": (mask, mask2), "pattern": (pattern, pattern2)}, two=x2 is not None,
            n_rows=n_rows,
        )  # fmt: skip
        if plan:
            from widelimit._cli.scale import print_plan

            print_plan(
                net, x1, x2, n_rows=n_rows, input_shape=input_shape, dtype=dtype,
                store=store, tile=tile, get=gets, memory_budget=memory_budget, json=fmt == "json",
            )  # fmt: skip
            return
        dev = check_device(device)
        try:
            spec = load_net(net)
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--net") from err
        arrays = [load_array(x1, "--x1", n_rows=n_rows, min_ndim=2)]
        if x2 is not None:
            arrays.append(load_array(x2, "--x2", n_rows=n_rows, min_ndim=2))
        scaling = _fit_scaling(scale, scale_from, arrays[0])
        try:
            arrays = [scaling.transform(a) for a in arrays]
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--scale-from") from err
        arrays = reshape_rows(arrays, input_shape)
        import torch

        xs = [torch.as_tensor(a, dtype=torch_dtype(dtype), device=dev) for a in arrays]
        del arrays  # the float64 copies: the job keeps only xs (peak memory at large N)
        if store is not None:
            from widelimit._cli.scale import kernel_to_store

            kernel_to_store(
                spec, xs[0], xs[1] if len(xs) > 1 else None, store, tile, scheduler, gets,
                fmt=fmt, memory_budget=memory_budget, overwrite=overwrite, repair=repair,
                progress=progress, scaling=scaling, side=side,
            )  # fmt: skip
            return
        t0 = time.perf_counter()
        try:
            with activity("computing " + " and ".join(g.upper() for g in gets), progress):
                k = spec.kernel(xs[0], xs[1] if len(xs) > 1 else None, get=gets, **side)
        except (ValueError, TypeError) as err:
            raise typer.BadParameter(str(err)) from err
        seconds = time.perf_counter() - t0
        mats = {name: getattr(k, name).detach().cpu().numpy() for name in gets}
        summary: dict[str, Any] = {
            "net": repr(spec),
            "x1_shape": list(xs[0].shape),
            "x2_shape": list(xs[1].shape) if len(xs) > 1 else None,
            "scale": scale,
            "seconds": seconds,
        }
        t1 = time.perf_counter()
        for name, mat in mats.items():
            summary[name] = {"shape": list(mat.shape)}
            if summary_on:
                summary[name] |= describe(mat, symmetric=k.is_symmetric)
        summary["summary_seconds"] = time.perf_counter() - t1
        files = _save(mats, summary, Path(out), plot) if not to_stdout else []
        summary["files"] = files
        if fmt == "json":
            for name, mat in mats.items():
                if mat.size <= JSON_MATRIX_MAX:
                    summary[name]["matrix"] = mat
            emit_json(summary)
            return
        if to_stdout:
            _write_stdout(mats)
            fmt = "log"  # stdout holds the array: the summary goes to stderr
        _print_summary(summary, gets, fmt)


def _save(mats: dict[str, np.ndarray], summary: dict[str, Any], out: Path, plot: bool) -> list[str]:
    """Write ``<out>/<name>.npy``, ``<out>/kernel.json`` (and heatmaps); the paths written."""
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{str(out)!r} is a file, not a directory", param_hint="--out")
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, mat in mats.items():
        save_npy(out / f"{name}.npy", mat)
        files.append(str(out / f"{name}.npy"))
        if plot:
            files.append(str(_heatmap(mat, name, out / f"{name}.png")))
    files.append(str(out / "kernel.json"))
    from widelimit.serialization import jsonable

    (out / "kernel.json").write_text(json.dumps(jsonable(summary | {"files": files}), indent=2))
    return files


def _heatmap(mat: np.ndarray, name: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = mat.reshape(mat.shape[0], mat.shape[1]) if mat.ndim == 2 else mat.reshape(len(mat), -1)
    fig, ax = plt.subplots(figsize=(5, 4.2))
    im = ax.imshow(m, cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax, label=f"{name.upper()} value")
    ax.set(title=f"{name.upper()} kernel ({m.shape[0]}×{m.shape[1]})", xlabel="x2 index",
           ylabel="x1 index")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _write_stdout(mats: dict[str, np.ndarray]) -> None:
    """One kernel as ``.npy``, several as ``.npz`` (names nngp, ntk) on binary stdout."""
    buf = io.BytesIO()
    if len(mats) == 1:
        np.save(buf, next(iter(mats.values())))
    else:
        np.savez(buf, **mats)
    sys.stdout.flush()
    sys.stdout.buffer.write(buf.getvalue())
    sys.stdout.flush()


def _print_summary(summary: dict[str, Any], gets: tuple[str, ...], fmt: str) -> None:
    stats = ("mean_diag", "max_abs", "max_eig", "min_eig", "cond")
    if not any("max_abs" in summary[g] for g in gets):  # --no-summary
        stats = ()
    rows = []
    for name in gets:
        info = summary[name]
        vals = ["-" if info.get(s) is None else info[s] for s in stats]
        rows.append([name, "×".join(map(str, info["shape"])), *vals])
    t_sum = summary["summary_seconds"]
    title = f"widelimit kernel ({summary['seconds']:.3g} s"
    title += f" + summary {t_sum:.2g} s)" if t_sum >= 0.01 else ")"
    if fmt == "log":
        from widelimit._cli.common import table
        from widelimit.progress import stderr_console

        stderr_console.print(table(title, ["kernel", "shape", *stats], rows))
        return
    emit_table(title, ["kernel", "shape", *stats], rows, fmt=fmt)
    n = summary["x1_shape"][0]
    if any(summary[g].get("min_eig", 0) is None for g in gets):
        emit_text(f"min_eig/cond not computed above N={FULL_SPECTRUM_MAX} rows (N={n}): "
                  "every eigenvalue costs N³; see --help", fmt=fmt)  # fmt: skip
    if summary["files"]:
        emit_text(f"wrote {', '.join(summary['files'])}", fmt=fmt)


def _fit_scaling(scale: str, scale_from: Path | None, x1: np.ndarray) -> InputScaling:
    """The ``--scale`` fitted on x1, or the scaling recorded in ``--scale-from``."""
    if scale_from is None:
        return InputScaling.fit(scale, x1)
    if scale != "none":
        raise typer.BadParameter(
            "give either --scale (fitted on --x1) or --scale-from (recorded in a store)",
            param_hint="--scale-from",
        )
    try:
        return load_scaling(scale_from)
    except (OSError, ValueError) as err:
        raise typer.BadParameter(str(err), param_hint="--scale-from") from err


def describe(mat: np.ndarray, *, symmetric: bool) -> dict[str, float | None]:
    """Summary of one kernel matrix: ``mean_diag`` (symmetric only), ``max_abs``,
    ``max_eig`` (Lanczos), ``min_eig`` and ``cond`` (full ``eigvalsh`` up to
    :data:`FULL_SPECTRUM_MAX` rows, else ``None``).  Non-square or higher-rank kernels
    get ``max_abs`` only."""
    m = np.asarray(mat, dtype=np.float64)
    info: dict[str, float | None] = {
        "mean_diag": None, "max_abs": float(np.abs(m).max()),
        "max_eig": None, "min_eig": None, "cond": None,
    }  # fmt: skip
    if m.ndim != 2 or not symmetric or m.shape[0] != m.shape[1]:
        return info
    n = m.shape[0]
    info["mean_diag"] = float(m.diagonal().mean())
    if n <= FULL_SPECTRUM_MAX:
        ev = np.linalg.eigvalsh(m)
        lo, hi = float(ev[0]), float(ev[-1])
        info["min_eig"] = lo
        info["cond"] = hi / lo if lo > 0 else float("inf")
    else:
        from scipy.sparse.linalg import eigsh

        hi = float(eigsh(m, k=1, which="LA", return_eigenvectors=False, tol=1e-8)[0])
    info["max_eig"] = hi
    return info
