"""``widelimit finite-width``: the 1/n four-point vertex against sampled finite nets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from widelimit._cli.common import (
    Format,
    FormatOpt,
    JsonOpt,
    emit_json,
    emit_table,
    load_array,
    log,
    output_format,
    parse_ints,
)


def register(app: typer.Typer) -> None:
    @app.command("finite-width")
    def finite_width_cmd(
        net: Annotated[
            str,
            typer.Option(
                help="Fully connected net, e.g. 'Dense(64) -> ReLU -> Dense(16)', or a file."
            ),
        ] = "Dense(64, w_std=1.4142) -> ReLU -> Dense(64, w_std=1.4142) -> ReLU -> Dense(16)",
        x1: Annotated[
            str, typer.Option("--x1", help="Inputs: .npy/.csv file or a built-in data name.")
        ] = "iris",
        n_rows: Annotated[int, typer.Option(help="Inputs used (first rows of --x1).")] = 2,
        widths: Annotated[
            str, typer.Option(help="Hidden widths to sample, e.g. '8,16,32,64'.")
        ] = "16,32,64,128",
        n_nets: Annotated[int, typer.Option(help="Finite nets sampled per width.")] = 10_000,
        seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
        plot: Annotated[
            Path | None, typer.Option(help="Write n·κ4 against n (measured and predicted).")
        ] = None,
        progress: Annotated[bool, typer.Option(help="Show progress bars on stderr.")] = True,
        json_out: JsonOpt = False,
        fmt: FormatOpt = Format.table,
    ) -> None:
        """Excess kurtosis of each output, predicted at order 1/n (four-point vertex
        recursion) against Monte Carlo over sampled finite nets with bootstrap errors."""
        import torch

        from widelimit.finite_width import four_point_function, monte_carlo_four_point
        from widelimit.finite_width.plots import plot_kurtosis
        from widelimit.spec_text import load_net

        fmt = output_format(fmt, json_out)
        try:
            spec = load_net(net)
        except (ValueError, TypeError, SyntaxError) as err:
            raise typer.BadParameter(str(err), param_hint="--net") from err
        x = torch.as_tensor(load_array(x1, "--x1", n_rows=n_rows, min_ndim=2))
        ws = parse_ints(widths, "--widths")
        rows, records = [], []
        try:
            for n in ws:
                pred = four_point_function(spec, x, widths=n)
                mc = monte_carlo_four_point(
                    spec, x, n_nets=n_nets, widths=n, seed=seed + n, progress=progress
                )
                q = torch.diagonal(mc.kernel)
                for a in range(x.shape[0]):
                    kp = float(pred.excess_kurtosis()[a])
                    km = float(mc.cumulant[a, a, a, a] / q[a] ** 2)
                    se = float(mc.cumulant_se[a, a, a, a] / q[a] ** 2)
                    rec = {
                        "width": n,
                        "input": a,
                        "kurtosis_predicted": kp,
                        "kurtosis_measured": km,
                        "kurtosis_se": se,
                        "n_kurtosis_predicted": n * kp,
                        "n_kurtosis_measured": n * km,
                        "n_kurtosis_se": n * se,
                        "nngp_predicted": float(pred.kernels[-1][a, a]),
                        "nngp_measured": float(mc.kernel[a, a]),
                        "nngp_se": float(mc.kernel_se[a, a]),
                    }
                    records.append(rec)
                    rows.append([n, a, kp, km, se, n * kp, n * km, n * se])
        except (ValueError, TypeError) as err:
            raise typer.BadParameter(str(err)) from err
        files = []
        if plot is not None:
            files.append(plot_kurtosis(records, plot))
        if fmt == "json":
            emit_json({"net": net, "n_nets": n_nets, "rows": records, "plots": files})
            return
        emit_table(
            f"excess kurtosis κ4/K² of one output, {n_nets} nets per width",
            ["n", "input", "predicted", "measured", "± se", "n·pred", "n·meas", "± se"],
            rows,
            fmt=fmt,
        )
        for f in files:
            log(f"wrote {f}")
