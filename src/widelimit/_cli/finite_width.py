"""``widelimit finite-width``: the 1/n four-point vertex and NTK fluctuations against sampled
finite nets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

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
    parse_choice,
    parse_ints,
)

#: What ``--quantity`` compares.
QUANTITIES = ("kurtosis", "ntk")


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
        quantity: Annotated[
            str,
            typer.Option(
                help="kurtosis: excess kurtosis of each output (four-point vertex); ntk: "
                "relative variance and mean of the NTK at initialisation."
            ),
        ] = "kurtosis",
        plot: Annotated[
            Path | None,
            typer.Option(help="Write n·κ4 (or n·NTK relative variance) against n."),
        ] = None,
        progress: Annotated[bool, typer.Option(help="Show progress bars on stderr.")] = True,
        json_out: JsonOpt = False,
        fmt: FormatOpt = Format.table,
    ) -> None:
        """Excess kurtosis of each output (or the NTK's relative variance and mean), predicted
        at order 1/n against Monte Carlo over sampled finite nets with bootstrap errors."""
        import torch

        from widelimit.finite_width import four_point_function, monte_carlo_four_point
        from widelimit.finite_width.plots import plot_kurtosis, plot_ntk_variance
        from widelimit.spec_text import load_net

        fmt = output_format(fmt, json_out)
        what = parse_choice(quantity, QUANTITIES, "--quantity")
        try:
            spec = load_net(net)
        except (ValueError, TypeError, SyntaxError) as err:
            raise typer.BadParameter(str(err), param_hint="--net") from err
        x = torch.as_tensor(load_array(x1, "--x1", n_rows=n_rows, min_ndim=2))
        ws = parse_ints(widths, "--widths")
        if what == "ntk":
            _ntk_command(spec, x, ws, net, n_nets, seed, plot, fmt, plot_ntk_variance)
            return
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


def _ntk_command(
    spec: Any,
    x: Any,
    ws: list[int],
    net: str,
    n_nets: int,
    seed: int,
    plot: Path | None,
    fmt: str,
    plot_fn: Callable[[list[dict], Path], Path],
) -> None:
    """``--quantity ntk``: predicted (:func:`ntk_fluctuations`) against measured
    (:func:`monte_carlo_ntk`, projection sampler) NTK relative variance and mean per input."""
    from widelimit.finite_width import monte_carlo_ntk, ntk_fluctuations

    rows, records = [], []
    try:
        for n in ws:
            pred = ntk_fluctuations(spec, x, widths=n)
            log(f"width {n}: sampling {n_nets} nets")
            mc = monte_carlo_ntk(
                spec, x, n_nets=n_nets, widths=n, seed=seed + n, method="projection"
            )
            rv_p, mean_p = pred.relative_variance(), pred.mean()
            for a in range(x.shape[0]):
                rp, rm = float(rv_p[a]), float(mc.relative_variance[a])
                se = float(mc.relative_variance_se[a])
                rec = {
                    "width": n,
                    "input": a,
                    "relvar_predicted": rp,
                    "relvar_measured": rm,
                    "relvar_se": se,
                    "n_relvar_predicted": n * rp,
                    "n_relvar_measured": n * rm,
                    "n_relvar_se": n * se,
                    "ntk_infinite": float(pred.ntks[-1][a, a]),
                    "ntk_mean_predicted": float(mean_p[a, a]),
                    "ntk_mean_measured": float(mc.mean[a, a]),
                    "ntk_mean_se": float(mc.mean_se[a, a]),
                }
                records.append(rec)
                rows.append(
                    [n, a, rp, rm, se, float(mean_p[a, a]), float(mc.mean[a, a]),
                     float(mc.mean_se[a, a])]
                )  # fmt: skip
    except (ValueError, TypeError) as err:
        raise typer.BadParameter(str(err)) from err
    files = [] if plot is None else [plot_fn(records, plot)]
    if fmt == "json":
        emit_json(
            {"net": net, "quantity": "ntk", "n_nets": n_nets, "rows": records, "plots": files}
        )
        return
    emit_table(
        f"NTK at initialisation: relative variance Var Θ/Θ² and mean, {n_nets} nets per width",
        ["n", "input", "relvar pred", "relvar meas", "± se", "mean pred", "mean meas", "± se"],
        rows,
        fmt=fmt,
    )
    for f in files:
        log(f"wrote {f}")
