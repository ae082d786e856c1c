"""``widelimit kernel``: NNGP/NTK of a net description on a data file or built-in data."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer

from widelimit._cli.common import (
    BUILTIN,
    DEFAULT_NET,
    check_device,
    console,
    load_array,
    parse_ints,
    print_json,
    table,
)
from widelimit._cli.deprecated import resolve_alias
from widelimit._cli.scale import load_side_inputs

DTYPES = {"float32": torch.float32, "float64": torch.float64}


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
        get: Annotated[str, typer.Option(help="'nngp', 'ntk' or 'nngp,ntk'.")] = "nngp,ntk",
        scale: Annotated[
            str, typer.Option(help="Input scaling: none | standardize | unit-norm (explicit).")
        ] = "none",
        dtype: Annotated[str, typer.Option(help="float64 or float32.")] = "float64",
        device: Annotated[str, typer.Option(help="torch device, e.g. cpu or cuda.")] = "cpu",
        out: Annotated[
            Path | None, typer.Option(help="Directory for nngp.npy / ntk.npy (and a heatmap).")
        ] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Print JSON to stdout.")] = False,
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
        progress: Annotated[bool, typer.Option(help="Progress bar on stderr (--store).")] = True,
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
        try:
            spec = load_net(net)
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--net") from err
        if dtype not in DTYPES:
            raise typer.BadParameter(f"expected one of {list(DTYPES)}", param_hint="--dtype")
        dev = check_device(device)
        gets = tuple(g.strip() for g in get.split(",") if g.strip())
        side = load_side_inputs(
            {"mask": (mask, mask2), "pattern": (pattern, pattern2)}, two=x2 is not None,
            n_rows=n_rows,
        )  # fmt: skip
        if plan:
            from widelimit._cli.scale import print_plan

            print_plan(
                spec, x1, x2, n_rows=n_rows, input_shape=input_shape, dtype=DTYPES[dtype],
                store=store, tile=tile, get=gets, memory_budget=memory_budget, json=json_out,
            )  # fmt: skip
            return
        arrays = [load_array(x1, "--x1", n_rows=n_rows, min_ndim=2)]
        if x2 is not None:
            arrays.append(load_array(x2, "--x2", n_rows=n_rows, min_ndim=2))
        arrays = [_scale(a, scale) for a in arrays]
        if input_shape is not None:
            try:
                shape = parse_ints(input_shape, "--input-shape")
                arrays = [a.reshape(len(a), *shape) for a in arrays]
            except ValueError as err:
                raise typer.BadParameter(str(err), param_hint="--input-shape") from err
        xs = [torch.as_tensor(a, dtype=DTYPES[dtype], device=dev) for a in arrays]
        del arrays  # the float64 copies: the job keeps only xs (peak memory at large N)
        if store is not None:
            from widelimit._cli.scale import kernel_to_store

            kernel_to_store(
                spec, xs[0], xs[1] if len(xs) > 1 else None, store, tile, scheduler, gets,
                json_out, memory_budget=memory_budget, overwrite=overwrite, repair=repair,
                progress=progress, side=side,
            )  # fmt: skip
            return
        t0 = time.perf_counter()
        try:
            k = spec.kernel(xs[0], xs[1] if len(xs) > 1 else None, get=gets, **side)
        except (ValueError, TypeError) as err:
            raise typer.BadParameter(str(err)) from err
        seconds = time.perf_counter() - t0
        summary = {"net": repr(spec), "x1_shape": list(xs[0].shape), "seconds": seconds}
        summary["x2_shape"] = list(xs[1].shape) if len(xs) > 1 else None
        rows = []
        for name in ("nngp", "ntk"):
            mat = getattr(k, name)
            if mat is None:
                continue
            info = _describe(mat, symmetric=k.is_symmetric)
            summary[name] = info
            rows.append([name, str(tuple(mat.shape)), *info.values()])
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                np.save(out / f"{name}.npy", mat.cpu().numpy())
        if out is not None:
            summary["files"] = sorted(str(p) for p in out.glob("*.npy"))
        if json_out:
            print_json(summary)
        else:
            cols = ["kernel", "shape", *next(iter([summary[g] for g in gets if g in summary]))]
            console.print(table(f"widelimit kernel ({seconds:.3g} s)", cols, rows))
            if out is not None:
                console.print(f"wrote {', '.join(summary['files'])}")


def _scale(x: np.ndarray, how: str) -> np.ndarray:
    if how == "none":
        return x
    flat = x.reshape(len(x), -1)
    if how == "standardize":
        sd = flat.std(0)
        flat = (flat - flat.mean(0)) / np.where(sd > 0, sd, 1.0)
    elif how == "unit-norm":
        nrm = np.linalg.norm(flat, axis=1, keepdims=True)
        flat = flat / np.where(nrm > 0, nrm, 1.0) * np.sqrt(flat.shape[1])
    else:
        raise typer.BadParameter("expected none | standardize | unit-norm", param_hint="--scale")
    return flat.reshape(x.shape)


def _describe(mat: torch.Tensor, *, symmetric: bool) -> dict[str, float]:
    m = mat.detach().to(torch.float64).cpu()
    info = {"mean_diag": float("nan"), "min_eig": float("nan"), "cond": float("nan")}
    if m.ndim == 2:
        info["mean_diag"] = float(m.diagonal().mean()) if symmetric else float("nan")
        if symmetric:
            ev = torch.linalg.eigvalsh(m)
            info["min_eig"] = float(ev[0])
            info["cond"] = float(ev[-1] / ev[0]) if ev[0] > 0 else float("inf")
    info["max_abs"] = float(m.abs().max())
    return info
