"""Old command-line flags kept for one release as hidden aliases (docs/conventions.md).

A renamed flag keeps a hidden option under its old spelling; :func:`resolve_alias` prefers
it when given and prints one line on stderr naming the new flag.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import typer

__all__ = ["deprecated_option", "resolve_alias"]

T = TypeVar("T")


def deprecated_option(old: str, new: str) -> Any:
    """A hidden ``typer.Option`` for the old spelling ``old`` of the flag ``new`` (default None)."""
    return typer.Option(old, hidden=True, help=f"Deprecated spelling of {new}.")


_UNSET: Any = object()


def resolve_alias(
    value: T,
    old_value: Any,
    *,
    old: str,
    new: str,
    convert: Callable[[Any], T] | None = None,
    default: Any = _UNSET,
) -> T:
    """``value`` of the new flag, or the old flag's value (converted) with a notice on stderr.

    With ``default`` (the new flag's default), giving both spellings is an error.
    """
    if old_value is None:
        return value
    if default is not _UNSET and value != default:
        raise typer.BadParameter(f"give {new} or its deprecated spelling {old}, not both")
    typer.echo(f"warning: {old} is deprecated; use {new} instead", err=True)
    return old_value if convert is None else convert(old_value)
