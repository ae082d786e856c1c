"""``widelimit`` command-line interface (typer + rich): a thin layer over the API.

Every command prints a rich table for people and accepts ``--json`` for
machines.  Area commands live in ``widelimit._cli.<area>`` and are registered
here.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="widelimit",
    help=(
        "Infinite-width neural networks, computable and checkable: NNGP/NTK kernels of a "
        "network spec, inference, finite-vs-infinite checks, signal propagation, mean-field "
        "dynamics and the neural covariance SDE."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        from widelimit import __version__

        typer.echo(f"widelimit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """widelimit: infinite-width networks, computable and checkable."""


_AREAS = ("kernel", "inference", "propagation", "meanfield", "sde", "scale", "atlas")

for _area in _AREAS:
    try:
        _mod = importlib.import_module(f"widelimit._cli.{_area}")
    except ModuleNotFoundError as _err:  # an area not written yet
        if _err.name != f"widelimit._cli.{_area}":
            raise
        continue
    _mod.register(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
