"""``widelimit empirical-ntk``: the empirical NTK of a user's torch module on a data file."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from widelimit._cli.common import (
    DTYPES,
    Format,
    FormatOpt,
    JsonOpt,
    check_device,
    console,
    emit_json,
    emit_table,
    emit_text,
    load_array,
    output_format,
    parse_choice,
    reshape_rows,
    save_npy,
    table,
    torch_dtype,
)

if TYPE_CHECKING:
    import torch

DEFAULT_OUT = Path("widelimit-empirical-ntk")
"""Where ``widelimit empirical-ntk`` writes ``ntk.npy`` unless ``--out`` says otherwise."""


def load_model(ref: str) -> torch.nn.Module:
    """``"path/to/file.py:make_model"`` → the module returned by ``make_model()``."""
    path, sep, name = ref.rpartition(":")
    if not sep or not path or not name:
        raise typer.BadParameter(
            f"expected FILE.py:FUNCTION (a function returning an nn.Module); got {ref!r}",
            param_hint="--module",
        )
    file = Path(path)
    if not file.is_file() or file.suffix != ".py":
        raise typer.BadParameter(f"{path!r} is not a .py file", param_hint="--module")
    spec = importlib.util.spec_from_file_location(f"_widelimit_user_{file.stem}", file)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    fn = getattr(mod, name, None)
    if not callable(fn):
        raise typer.BadParameter(f"{path} defines no function {name!r}", param_hint="--module")
    model = fn()
    import torch

    if not isinstance(model, torch.nn.Module):
        raise typer.BadParameter(
            f"{name}() returned {type(model).__name__}, not a torch.nn.Module",
            param_hint="--module",
        )
    return model


def register(app: typer.Typer) -> None:
    @app.command("empirical-ntk")
    def empirical_ntk_cmd(
        module: Annotated[
            str,
            typer.Option(
                "--module", help="FILE.py:FUNCTION, a function returning the nn.Module (k outputs)."
            ),
        ],
        x1: Annotated[str, typer.Option("--x1", help="Inputs x1: .npy or .csv file.")],
        x2: Annotated[str | None, typer.Option("--x2", help="Optional second inputs x2.")] = None,
        n_rows: Annotated[
            int | None, typer.Option(min=1, help="Use only the first K rows of each input.")
        ] = None,
        input_shape: Annotated[
            str | None,
            typer.Option(help="Reshape each row to this per-example shape, e.g. 3,16,16 (NCHW)."),
        ] = None,
        full: Annotated[
            bool, typer.Option(help="Every output channel pair (N1, N2, k, k) instead of traced.")
        ] = False,
        strategy: Annotated[
            str, typer.Option(help="auto | structured | jacobian | ntvp.")
        ] = "auto",
        batch_size: Annotated[
            int | None, typer.Option(min=1, help="Examples per tile (default: planned).")
        ] = None,
        dtype: Annotated[
            str, typer.Option(help="float32 or float64 (module and data).")
        ] = "float32",
        device: Annotated[str, typer.Option(help="torch device, e.g. cpu or cuda.")] = "cpu",
        threads: Annotated[int | None, typer.Option(min=1, help="torch threads.")] = None,
        out: Annotated[
            Path, typer.Option(help="Directory for ntk.npy (written unless --store is given).")
        ] = DEFAULT_OUT,
        store: Annotated[
            Path | None,
            typer.Option(
                help="Write the traced (N1, N2) kernel tile by tile into this store "
                "(resumable; read with widelimit.scale.load_kernel)."
            ),
        ] = None,
        verbose: Annotated[
            bool, typer.Option(help="Show the rule each parameter gets (stderr; in --json).")
        ] = False,
        json_out: JsonOpt = False,
        fmt: FormatOpt = Format.table,
    ) -> None:
        """Empirical NTK of a torch module (structured rules, Jacobian fallback per parameter)."""
        from widelimit.empirical import empirical_ntk, empirical_ntk_full, plan_empirical_ntk

        dtype = parse_choice(dtype, DTYPES, "--dtype")
        fmt = output_format(fmt, json_out)
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        dev = check_device(device)
        model = load_model(module).to(device=dev, dtype=torch_dtype(dtype))
        arrays = [load_array(x1, "--x1", n_rows=n_rows, builtin=False, min_ndim=2)]
        if x2 is not None:
            arrays.append(load_array(x2, "--x2", n_rows=n_rows, builtin=False, min_ndim=2))
        arrays = reshape_rows(arrays, input_shape)
        xs = [torch.as_tensor(a, dtype=torch_dtype(dtype), device=dev) for a in arrays]
        xb = xs[1] if len(xs) > 1 else None
        kw = {"strategy": strategy, "batch_size": batch_size}
        plan = plan_empirical_ntk(model, xs[0], xb, trace=not full, **kw)
        if verbose and plan.rules:
            rows = [[r.param, r.module or "(root)", r.rule, r.route, r.reason] for r in plan.rules]
            cols = ["parameter", "module", "rule", "route", "reason"]
            console.print(table("plan: rule per parameter", cols, rows))
        if verbose:
            console.print(
                f"strategy {plan.strategy}, tile {plan.batch_size}, "
                f"output {plan.output_bytes / 2**20:.1f} MiB"
            )
        t0 = time.perf_counter()
        if store is not None:
            from widelimit.empirical import empirical_ntk_to_store

            if full:
                raise typer.BadParameter("--store holds traced kernels", param_hint="--full")
            stored = empirical_ntk_to_store(model, xs[0], xb, store=store, tile=batch_size)
            info = {"store": str(store), "shape": list(stored.ntk.shape),
                    "seconds": time.perf_counter() - t0}  # fmt: skip
            if fmt == "json":
                emit_json(info)
            else:
                emit_table("widelimit empirical-ntk --store", list(info), [list(info.values())],
                           fmt=fmt)  # fmt: skip
            return
        fn = empirical_ntk_full if full else empirical_ntk
        k = fn(model, xs[0], xb, **kw)
        seconds = time.perf_counter() - t0
        km = k.detach().to(torch.float64).cpu()
        summary: dict[str, object] = {
            "module": module,
            "shape": list(k.shape),
            "strategy": plan.strategy,
            "n_params": plan.n_params,
            "seconds": seconds,
            "max_abs": float(km.abs().max()),
        }
        if xb is None and k.ndim == 2:
            summary["mean_diag"] = float(km.diagonal().mean())
        if verbose:
            summary["rules"] = [
                {"param": r.param, "module": r.module, "rule": r.rule, "route": r.route,
                 "reason": r.reason}
                for r in plan.rules
            ]  # fmt: skip
        out.mkdir(parents=True, exist_ok=True)
        save_npy(out / "ntk.npy", k.detach().cpu().numpy())
        summary["files"] = [str(out / "ntk.npy")]
        if fmt == "json":
            emit_json(summary)
            return
        cols = ["shape", "strategy", "parameters", "seconds", "max |Θ|", "mean diag"]
        row = [str(tuple(k.shape)), plan.strategy, plan.n_params, seconds, summary["max_abs"],
               summary.get("mean_diag", float("nan"))]  # fmt: skip
        emit_table("widelimit empirical-ntk", cols, [row], fmt=fmt)
        emit_text(f"wrote {out / 'ntk.npy'}", fmt=fmt)
