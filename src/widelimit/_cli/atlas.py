"""``widelimit atlas``: write the HTML atlas of infinite-width theory (a thin layer over
:mod:`widelimit.atlas`)."""

from __future__ import annotations

import sys
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
)


def register(app: typer.Typer) -> None:
    @app.command("atlas")
    def atlas_cmd(
        page: Annotated[
            list[str] | None,
            typer.Argument(
                help="Page(s) by name or number 1-13: distributions, limit, nngp, propagation, "
                "ntk, meanfield, sde, ensembles, trainability, conv, learning_curves, lazy, "
                "finite_width. Default: all pages."
            ),
        ] = None,
        out: Annotated[
            Path, typer.Option(help="Directory for index.html, the pages and their JSON.")
        ] = Path("widelimit-atlas"),
        quick: Annotated[
            bool, typer.Option("--quick", help="Small sizes (the whole atlas in a few minutes).")
        ] = False,
        json_out: JsonOpt = False,
        fmt: FormatOpt = Format.table,
        progress: Annotated[bool, typer.Option(help="Show progress bars (stderr).")] = True,
        jobs: Annotated[
            int | None,
            typer.Option(
                min=1,
                help="Pages computed at once, each in its own process with one torch thread "
                "(default: the usable cores; 1: in this process at torch's threads).",
            ),
        ] = None,
    ) -> None:
        """Write the atlas: every classic infinite-width result, finite nets beside the limit."""
        fmt = output_format(fmt, json_out)
        from widelimit.atlas import resolve_page, write_atlas

        pages = None
        if page:
            try:
                pages = [resolve_page(p) for p in page]
            except ValueError as err:
                raise typer.BadParameter(str(err), param_hint="PAGE") from err
        res = write_atlas(out, pages=pages, quick=quick, progress=progress, jobs=jobs)
        rows = [
            {
                "page": p.name,
                "headline": p.headline.name,
                "value": p.headline.value,
                "theory": p.headline.theory,
                "tolerance": p.headline.tolerance,
                "ok": p.headline.ok,
                "sizes": "quick" if p.quick else "full",
                "seconds": p.seconds,
            }
            for p in res.pages
        ]
        if fmt == "json":
            emit_json({"out": res.out, "index": res.index, "seconds": res.seconds, "pages": rows})
        else:
            emit_table(
                    "widelimit atlas",
                    ["page", "sizes", "ours", "theory", "tolerance", "check", "seconds"],
                    [[r["page"], r["sizes"].upper() if r["sizes"] == "quick" else r["sizes"],
                      r["value"], r["theory"], r["tolerance"],
                      "agrees" if r["ok"] else "DISAGREES", r["seconds"]] for r in rows],
                fmt=fmt,
            )  # fmt: skip
            emit_text(f"atlas written to {res.index} ({res.seconds:.1f} s)", fmt=fmt)
        sys.stdout.flush()
