"""``widelimit propagate``: q/c trajectories, fixed points, critical line, finite-width checks."""

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
    @app.command("propagate")
    def propagate_cmd(
        activation: Annotated[
            str, typer.Option(help="Activation name, e.g. tanh, relu, erf.")
        ] = "tanh",
        w_std: Annotated[float, typer.Option(help="Weight standard deviation σw.")] = 1.5,
        b_std: Annotated[float, typer.Option(help="Bias standard deviation σb.")] = 0.3,
        depth: Annotated[int, typer.Option(help="Dense layers of the trajectory.")] = 10,
        q0: Annotated[float, typer.Option(help="Input variance Σ⁰(x,x).")] = 1.0,
        c0: Annotated[float, typer.Option(help="Input correlation of the two inputs.")] = 0.5,
        widths: Annotated[
            str, typer.Option(help="Finite widths, comma-separated ('' skips the finite check).")
        ] = "64,256,1024",
        finite_depth: Annotated[int, typer.Option(help="Dense layers of the finite nets.")] = 3,
        n_seeds: Annotated[int, typer.Option(help="Finite nets per width.")] = 16,
        line_b_std: Annotated[
            str, typer.Option(help="σb values (standard deviations) for the critical-line table.")
        ] = "0,0.2,0.7",
        phase: Annotated[bool, typer.Option(help="Compute the phase diagram (χ₁ grid).")] = True,
        seed: Annotated[int, typer.Option(help="Base seed of the finite nets.")] = 0,
        out: Annotated[Path | None, typer.Option(help="Directory for the plots (PNG).")] = None,
        progress: Annotated[bool, typer.Option(help="Show progress bars (stderr).")] = True,
        json_out: JsonOpt = False,
        fmt: FormatOpt = Format.table,
        sigma_w: Annotated[float | None, deprecated_option("--sigma-w", "--w-std")] = None,
        sigma_b: Annotated[float | None, deprecated_option("--sigma-b", "--b-std")] = None,
        sigma_b2: Annotated[str | None, deprecated_option("--sigma-b2", "--line-b-std")] = None,
        seeds: Annotated[int | None, deprecated_option("--seeds", "--n-seeds")] = None,
    ) -> None:
        """Signal propagation: q/c maps, fixed points, χ₁, critical line, finite-width checks.

        σ are standard deviations (--w-std, --b-std, --line-b-std); tables also show σ².
        """
        fmt = output_format(fmt, json_out)
        import numpy as np

        from widelimit.layers.activations import activation_from_name
        from widelimit.propagation import (
            critical_line,
            finite_width_study,
            fixed_point,
            phase_diagram,
            trajectory,
        )
        from widelimit.propagation.finite import default_inputs

        w_std = resolve_alias(w_std, sigma_w, old="--sigma-w", new="--w-std")
        b_std = resolve_alias(b_std, sigma_b, old="--sigma-b", new="--b-std")
        n_seeds = resolve_alias(n_seeds, seeds, old="--seeds", new="--n-seeds")
        try:
            act = activation_from_name(activation)
        except (ValueError, TypeError) as err:
            raise typer.BadParameter(str(err), param_hint="--activation") from err
        if sigma_b2 is not None:
            b2 = parse_floats(sigma_b2, "--sigma-b2")
            if any(not v >= 0 for v in b2):
                raise typer.BadParameter("variances must be >= 0", param_hint="--sigma-b2")
            line_b = resolve_alias(
                [], b2, old="--sigma-b2", new="--line-b-std (σb, not σb²)", convert=np.sqrt
            )
        else:
            line_b = parse_floats(line_b_std, "--line-b-std")
        ws = parse_ints(widths, "--widths", allow_empty=True)
        progress = progress and fmt != "json"
        try:
            traj = trajectory(act, w_std, b_std, depth, q0=q0, c0=c0)
            fp = fixed_point(act, w_std, b_std, q0=q0)
            line = critical_line(act, line_b, progress=progress)
            pd = phase_diagram(act, progress=progress) if phase else None
            study = None
            if ws:
                x = default_inputs(q0=q0, c0=c0)
                study = finite_width_study(
                    act,
                    w_std,
                    b_std,
                    finite_depth,
                    ws,
                    n_seeds=n_seeds,
                    x=x,
                    seed=seed,
                    progress=progress,
                )
        except ValueError as err:
            raise typer.BadParameter(str(err)) from err
        files: list[str] = []
        if out is not None:
            from widelimit.propagation import plots

            files.append(str(plots.plot_trajectories(traj, out / "trajectories.png")))
            if pd is not None:
                files.append(str(plots.plot_phase_diagram(pd, out / "phase_diagram.png")))
            if study is not None:
                files.append(str(plots.plot_histograms(study, out / "histograms.png")))
                files.append(str(plots.plot_distances(study, out / "distances.png")))
        if fmt == "json":
            summary = {"trajectory": traj, "fixed_point": fp, "critical_line": line, "files": files}
            if pd is not None:
                summary["phase_diagram"] = pd
            if study is not None:
                summary["finite"] = {
                    k: getattr(study, k)
                    for k in (
                        "widths",
                        "n_seeds",
                        "q_theory",
                        "q_bias",
                        "stats",
                        "stats_se",
                        "slopes",
                        "slopes_se",
                        "layer_slopes",
                    )
                }
            emit_json(summary)
            return
        title = f"propagate {traj.activation}, σw={w_std:g}, σb={b_std:g}"
        rows = [[int(l), float(traj.q[l - 1, 0]), float(traj.c[l - 1, 0, 1])] for l in traj.layers]
        emit_table(f"{title}: trajectory", ["layer", "q^l", "c^l"], rows, fmt=fmt)
        emit_table(
            "fixed point",
            ["q*", "χ_q", "ξ_q", "χ₁", "c*", "χ_c", "ξ_c", "phase"],
            [[fp.q_star, fp.chi_q, fp.xi_q, fp.chi1, fp.c_star, fp.chi_c, fp.xi_c, fp.phase]],
            fmt=fmt,
        )
        emit_table(
            "critical line (χ₁ = 1)",
            ["σb", "σw", "σb²", "σw²", "q*", "χ₁ − 1"],
            [
                [float(b), float(w), float(b * b), float(w * w), float(q), float(c - 1)]
                for b, w, q, c in zip(line.b_std, line.w_std, line.q_star, line.chi1, strict=True)
            ],
            fmt=fmt,
        )
        if study is not None:
            rows = []
            for k, s in study.slopes.items():
                y = study.stats[k]
                y = y.mean(1) if y.ndim == 2 else y
                rows.append([k, *[float(v) for v in y], s, study.slopes_se[k]])
            cols = ["statistic", *[f"n={n}" for n in study.widths], "slope", "± se"]
            emit_table(
                f"finite width ({study.n_seeds} seeds; theory slope −0.5)", cols, rows, fmt=fmt
            )
        if files:
            emit_text("wrote " + ", ".join(files), fmt=fmt)
