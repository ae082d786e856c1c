"""``widelimit meanfield`` (SGD at several N beside the PDE) and ``widelimit parameterizations``."""

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
    emit_text,
    output_format,
    parse_floats,
    parse_ints,
)
from widelimit._cli.deprecated import deprecated_option, resolve_alias


def register(app: typer.Typer) -> None:
    @app.command("meanfield")
    def meanfield_cmd(
        ns: Annotated[
            str, typer.Option(help="Widths N, comma-separated.")
        ] = "100,200,400,800,1600",
        times: Annotated[str, typer.Option(help="Snapshot times t = kε.")] = "0,0.25,0.5,1",
        d: Annotated[int, typer.Option(help="Input dimension.")] = 40,
        delta: Annotated[float, typer.Option(help="Δ: class scales 1 ± Δ.")] = 0.8,
        t1: Annotated[float, typer.Option(help="σ: start of the ramp.")] = 0.5,
        t2: Annotated[float, typer.Option(help="σ: end of the ramp.")] = 1.5,
        s1: Annotated[float, typer.Option(help="σ: value below t1.")] = -2.5,
        s2: Annotated[float, typer.Option(help="σ: value above t2.")] = 7.5,
        eps: Annotated[float, typer.Option(help="SGD step ε (time per step).")] = 5e-4,
        batch_size: Annotated[int, typer.Option(help="Samples per SGD step.")] = 128,
        n_seeds: Annotated[int, typer.Option(help="Independent nets per N.")] = 2,
        n_particles: Annotated[int, typer.Option(help="PDE quantile particles.")] = 2000,
        seed: Annotated[int, typer.Option(help="Seed (width ns[i] uses seed + i).")] = 0,
        out: Annotated[Path | None, typer.Option(help="Directory for plots.")] = None,
        json_out: JsonOpt = False,
        fmt: FormatOpt = Format.table,
        progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
        seeds: Annotated[int | None, deprecated_option("--seeds", "--n-seeds")] = None,
        particles: Annotated[int | None, deprecated_option("--particles", "--n-particles")] = None,
    ) -> None:
        """Isotropic Gaussians (MMN 2018): SGD at several N beside the radial PDE."""
        fmt = output_format(fmt, json_out)
        from widelimit.meanfield import IsotropicGaussians, PiecewiseLinear, compare_with_pde

        n_seeds = resolve_alias(n_seeds, seeds, old="--seeds", new="--n-seeds")
        n_particles = resolve_alias(n_particles, particles, old="--particles", new="--n-particles")
        import torch

        torch.set_num_threads(1)
        try:
            problem = IsotropicGaussians(
                d=d, delta=delta, activation=PiecewiseLinear(t1=t1, t2=t2, s1=s1, s2=s2)
            )
            comp = compare_with_pde(
                problem,
                ns=parse_ints(ns, "--ns"),
                times=parse_floats(times, "--times"),
                eps=eps,
                batch_size=batch_size,
                n_seeds=n_seeds,
                n_particles=n_particles,
                seed=seed,
                progress=progress,
            )
        except (ValueError, TypeError) as err:
            raise typer.BadParameter(str(err)) from err
        files = []
        if out is not None:
            from widelimit.meanfield import plot_comparison

            files = [str(p) for p in plot_comparison(comp, out)]
        if fmt == "json":
            emit_json(comp)
            return
        rows = [["PDE", *comp.pde_risk]] + [
            [f"SGD N={n}", *r] for n, r in zip(comp.ns, comp.sgd_risk, strict=True)
        ]
        emit_table("risk R(ρ_t)", ["", *[f"t={t:g}" for t in comp.times]], rows, fmt=fmt)
        rows = [[f"N={n}", *w] for n, w in zip(comp.ns, comp.w1, strict=True)]
        emit_table("W1(law of ‖w‖, PDE)", ["", *[f"t={t:g}" for t in comp.times]], rows, fmt=fmt)
        rows = [
            [f"t={t:g}", comp.w1_slope[t], comp.risk_gap_slope.get(t, float("nan"))]
            for t in comp.w1_slope
        ]
        emit_table("fitted slopes vs N", ["time", "W1", "risk gap"], rows, fmt=fmt)
        emit_text(
            f"PDE solve {comp.pde_seconds:.2f} s; SGD at N={comp.ns[-1]}: "
            f"{comp.sgd_seconds[-1]:.2f} s for {comp.n_seeds} seed(s)",
            fmt=fmt,
        )
        if files:
            emit_text(f"wrote {', '.join(files)}", fmt=fmt)

    @app.command("parameterizations")
    def parameterizations_cmd(
        widths: Annotated[
            str, typer.Option(help="Hidden widths.")
        ] = "64,128,256,512,1024,2048,4096,8192",
        depth: Annotated[int, typer.Option(help="Hidden layers (1 = two-layer net).")] = 1,
        steps: Annotated[int, typer.Option(help="GD steps.")] = 3,
        lr: Annotated[float, typer.Option(help="Base learning rate η.")] = 0.02,
        n_seeds: Annotated[int, typer.Option(help="Initialisations per width.")] = 2,
        seed: Annotated[int, typer.Option(help="Seed of the data and initialisations.")] = 0,
        out: Annotated[Path | None, typer.Option(help="Directory for plots.")] = None,
        json_out: JsonOpt = False,
        fmt: FormatOpt = Format.table,
        progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
        seeds: Annotated[int | None, deprecated_option("--seeds", "--n-seeds")] = None,
    ) -> None:
        """SP / NTK / MF / μP across width: weight movement, feature change, coordinate check."""
        fmt = output_format(fmt, json_out)
        from widelimit.meanfield import width_study
        from widelimit.meanfield.parameterizations import METRICS

        n_seeds = resolve_alias(n_seeds, seeds, old="--seeds", new="--n-seeds")
        import torch

        torch.set_num_threads(1)
        try:
            st = width_study(
                widths=parse_ints(widths, "--widths"),
                depth=depth,
                steps=steps,
                lr=lr,
                n_seeds=n_seeds,
                seed=seed,
                progress=progress,
            )
        except (ValueError, TypeError) as err:
            raise typer.BadParameter(str(err)) from err
        files = []
        if out is not None:
            from widelimit.meanfield import plot_width_study

            files = [str(p) for p in plot_width_study(st, out)]
        if fmt == "json":
            emit_json(st)
            return
        rows = [[r[c] for c in ("param", "width", *METRICS)] for r in st.rows()]
        emit_table(
            f"width study (depth {depth}, {steps} steps)",
            ["param", "width", *METRICS],
            rows,
            fmt=fmt,
        )
        rows = [[p, *[st.slopes[p][m] for m in METRICS]] for p in st.params]
        emit_table("log-log slopes vs width", ["param", *METRICS], rows, fmt=fmt)
        if files:
            emit_text(f"wrote {', '.join(files)}", fmt=fmt)
