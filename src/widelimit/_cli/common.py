"""Shared helpers for the CLI: console, JSON output, data loading."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from widelimit.serialization import jsonable, print_json  # noqa: F401 - used by the commands

console = Console(stderr=True)
"""Rich console for human output (stderr, so ``--json`` stdout stays clean)."""


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    """Build a rich table; floats are shown with 4 significant digits."""
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in r])
    return t
