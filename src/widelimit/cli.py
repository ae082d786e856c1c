"""``widelimit`` command-line interface (typer + rich): a thin layer over the API.

Every command writes its result to stdout (a table, ``--format`` plain/markdown/csv,
or ``--json``) and progress/logs to stderr (docs/cli.md).  Area commands live in
``widelimit._cli.<area>`` and are registered here.

Failures: a mistake (bad option, unreadable file, damaged or locked store, an
error raised by the library) prints one line ``error: ...`` on stderr and exits
with status 2; an unexpected internal error prints one line and exits with 1;
Ctrl-C exits with 130.  ``--debug`` (anywhere on the command line) shows the
full traceback instead.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup, TyperOption

#: Exceptions that mean "the input or the environment is wrong", not "widelimit is broken".
USER_ERRORS = (ValueError, TypeError, OSError, RuntimeError, LookupError, ImportError)


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _drop_hidden_suggestions(err: Exception, ctx: Any) -> None:
    """``No such option`` suggests only options shown in ``--help`` (not the hidden deprecated
    spellings such as ``--n`` for ``--n-rows``)."""
    possible = getattr(err, "possibilities", None)
    if not possible or ctx is None:
        return
    hidden = {o for p in ctx.command.params if getattr(p, "hidden", False) for o in p.opts}
    err.possibilities = [o for o in possible if o not in hidden]  # type: ignore[attr-defined]


class _OneLineErrors(TyperGroup):
    """Root command group: every failure becomes one line on stderr (see module docstring)."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any):
        argv = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in argv
        argv = [a for a in argv if a != "--debug"]
        extra.pop("standalone_mode", None)
        try:
            rv = super().main(args=argv, prog_name=prog_name, standalone_mode=False, **extra)
        except typer.Exit as err:  # pragma: no cover - typer returns the code
            sys.exit(err.exit_code)
        except typer.Abort:
            print("interrupted", file=sys.stderr)
            sys.exit(130)
        except typer.TyperException as err:  # click's usage errors (typer vendors click)
            if debug:
                raise
            ctx = getattr(err, "ctx", None)
            hint = "" if ctx is None else f" (see '{ctx.command_path} --help')"
            _drop_hidden_suggestions(err, ctx)
            message = err.format_message() if hasattr(err, "format_message") else str(err)
            if _one_line(message):  # empty for "no arguments: show the help"
                print(f"error: {_one_line(message)}{hint}", file=sys.stderr)
            sys.exit(2)
        except USER_ERRORS as err:
            if debug:
                raise
            print(f"error: {_one_line(str(err)) or type(err).__name__}", file=sys.stderr)
            sys.exit(2)
        except Exception as err:
            if debug:
                raise
            print(
                f"error: internal error {type(err).__name__}: {_one_line(str(err))} "
                "(rerun with --debug for the traceback and report it)",
                file=sys.stderr,
            )
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


def _flag_type(self: TyperOption, ctx: Any) -> str | None:
    """Help shows ``--json`` / ``--progress/--no-progress`` without a ``<bool>`` type: a flag
    takes no value (typer's rich help prints one)."""
    if self.is_flag:
        return None
    return _typer_display_type_rich(self, ctx)


_typer_display_type_rich = TyperOption.display_type_rich
TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign]


app = typer.Typer(
    cls=_OneLineErrors,
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
    debug: bool = typer.Option(
        False, "--debug", help="Show the full traceback of a failure (any position)."
    ),
) -> None:
    """widelimit: infinite-width networks, computable and checkable."""


_AREAS = (
    "kernel",
    "inference",
    "propagation",
    "meanfield",
    "sde",
    "scale",
    "atlas",
    "finite_width",
    "empirical",
)

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
