"""``widelimit sde``: finite shaped networks vs the neural covariance SDE."""

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
    parse_choice,
    parse_floats,
    parse_ints,
)
from widelimit._cli.deprecated import deprecated_option, resolve_alias


def register(app: typer.Typer) -> None:
    @app.command("sde")
    def sde_cmd(
        widths: Annotated[
            str, typer.Option(help="Widths n of the finite nets, e.g. '64,256'.")
        ] = "64,256",
        times: Annotated[str, typer.Option(help="Times T = d/n, e.g. '0.5,1'.")] = "0.5,1",
        c_plus: Annotated[float, typer.Option(help="Shaped ReLU: s₊ = 1 + c₊/√n.")] = 0.0,
        c_minus: Annotated[float, typer.Option(help="Shaped ReLU: s₋ = 1 + c₋/√n.")] = -1.0,
        rho0: Annotated[float, typer.Option(help="Input correlation ρ₀ (unit norms).")] = 0.3,
        n_nets: Annotated[int, typer.Option(help="Finite nets per width (exact sampler).")] = 5000,
        n_paths: Annotated[int, typer.Option(help="SDE paths.")] = 100_000,
        dt: Annotated[float, typer.Option(help="SDE step size.")] = 1 / 512,
        sde: Annotated[
            str, typer.Option(help="'correlation' (scalar ρ SDE) or 'covariance' (2×2).")
        ] = "correlation",
        activations: Annotated[
            str, typer.Option(help="Smooth activations for the norm-stability demo ('' to skip).")
        ] = "tanh,quadratic",
        a: Annotated[
            float, typer.Option(help="Smooth shaping s = a√n for the stability demo.")
        ] = 1.0,
        seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
        out: Annotated[Path | None, typer.Option(help="Directory for the ECDF plots.")] = None,
        progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
        json_out: JsonOpt = False,
        fmt: FormatOpt = Format.table,
        stability: Annotated[str | None, deprecated_option("--stability", "--activations")] = None,
    ) -> None:
        """Finite shaped ReLU nets (d = Tn) vs the covariance SDE: ρ_T and log-norm KS
        distances, quantiles, and the norm-stability verdict b_* checked on finite nets."""
        fmt = output_format(fmt, json_out)
        import torch

        from widelimit.sde import compare_relu, demonstrate_stability

        activations = resolve_alias(activations, stability, old="--stability", new="--activations")
        ws, ts = parse_ints(widths, "--widths"), parse_floats(times, "--times")
        sde = parse_choice(sde, ("correlation", "covariance"), "--sde")
        gen = torch.Generator().manual_seed(seed)  # one stream for both experiments
        try:
            cmp = compare_relu(
                c_plus=c_plus,
                c_minus=c_minus,
                rho0=rho0,
                widths=ws,
                times=ts,
                n_nets=n_nets,
                n_paths=n_paths,
                dt=dt,
                sde=sde,
                seed=gen,
                progress=progress and fmt != "json",
            )
            names = tuple(s.strip() for s in activations.split(",") if s.strip())
            demo = (
                demonstrate_stability(
                    names,
                    a=a,
                    width=min(ws),
                    times=ts,
                    n_nets=n_nets,
                    n_paths=n_paths,
                    seed=gen,
                    progress=progress and fmt != "json",
                )
                if names
                else None
            )
        except (ValueError, TypeError) as err:
            raise typer.BadParameter(str(err)) from err
        files: list[Path] = []
        if out is not None:
            from widelimit.sde.plots import plot_comparison, plot_stability

            files += plot_comparison(cmp, out)
            if demo is not None:
                files += plot_stability(demo, out)
        if fmt == "json":
            emit_json(
                {
                    "c_plus": cmp.c_plus,
                    "c_minus": cmp.c_minus,
                    "rho0": cmp.rho0,
                    "rows": cmp.rows,
                    "stability": None if demo is None else demo.rows,
                    "plots": files,
                }
            )
            return
        rows = [
            [
                r.width,
                r.T,
                r.depth,
                r.ks_rho,
                r.ks_lognorm,
                r.ks_noise,
                f"{r.finite_rho.mean:.4f} / {r.sde_rho.mean:.4f}",
                f"{r.finite_rho.std:.4f} / {r.sde_rho.std:.4f}",
            ]
            for r in cmp.rows
        ]
        emit_table(
            f"shaped ReLU c₊={c_plus:g}, c₋={c_minus:g}, ρ₀={rho0:g}: finite nets vs SDE",
            ["n", "T", "d", "KS ρ", "KS ln Φ", "KS noise", "mean ρ fin/SDE", "std ρ fin/SDE"],
            rows,
            fmt=fmt,
        )
        if demo is not None:
            emit_table(
                f"norm stability (a={a}): fraction with Φ_T > {demo.threshold:g}",
                ["φ", "b_*", "verdict", "n", "T", "finite", "SDE", "± se"],
                [
                    [
                        r.verdict.name,
                        r.verdict.b_star,
                        "stable" if r.verdict.stable else "unstable",
                        r.width,
                        r.T,
                        r.frac_large_finite,
                        r.frac_large_sde,
                        r.se_frac,
                    ]
                    for r in demo.rows
                ],
                fmt=fmt,
            )
        if files:
            emit_text(f"wrote {', '.join(map(str, files))}", fmt=fmt)
