"""Shared helpers for the CLI: console, JSON output, data loading."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

console = Console(stderr=True)
"""Rich console for human output (stderr, so ``--json`` stdout stays clean)."""


def jsonable(obj: Any) -> Any:
    """Convert dataclasses, tensors, arrays, paths and numpy scalars to JSON types."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, torch.Tensor):
        return jsonable(obj.detach().cpu().numpy())
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.dtype | torch.device):
        return str(obj)
    return obj


def print_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (machine-readable output of ``--json``)."""
    print(json.dumps(jsonable(obj), indent=2))


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    """Build a rich table; floats are shown with 4 significant digits."""
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in r])
    return t
