"""Shared helpers for the CLI: console, JSON output, list parsers, the array loader,
deprecated flag aliases and the default net.  Each exists once (docs/conventions.md)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import typer
from rich.console import Console
from rich.table import Table

from widelimit.serialization import jsonable, print_json, save_npy
from widelimit.spec_text import DEFAULT_NET

__all__ = [
    "BUILTIN",
    "DEFAULT_NET",
    "check_device",
    "console",
    "jsonable",
    "load_array",
    "parse_floats",
    "parse_ints",
    "print_json",
    "save_npy",
    "table",
]

console = Console(stderr=True)
"""Rich console for human output (stderr, so ``--json`` stdout stays clean)."""

BUILTIN = ("digits", "iris", "wine", "breast_cancer", "diabetes")
"""Built-in scikit-learn data sets accepted wherever a data file is."""

BUILTIN_ROWS = 200
"""Rows of a built-in data set used when no ``--n-rows`` is given (printed when applied)."""


# ------------------------------------------------------------------ output
def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    """Build a rich table; floats are shown with 4 significant digits.

    Cells wrap (``overflow="fold"``) instead of being cut with an ellipsis, so long
    values (paths, hashes, net descriptions) stay complete in an 80-column terminal.
    """
    t = Table(title=title)
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in r])
    return t


# ------------------------------------------------------------------ parsers
def parse_floats(text: str, option: str) -> tuple[float, ...]:
    """``"0.5,1"`` -> ``(0.5, 1.0)``; at least one finite number, else ``BadParameter``."""
    try:
        vals = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise typer.BadParameter(
            f"expected comma-separated numbers; got {text!r}", param_hint=option
        ) from err
    if not vals:
        raise typer.BadParameter(f"expected at least one number; got {text!r}", param_hint=option)
    if not all(math.isfinite(v) for v in vals):
        raise typer.BadParameter(f"expected finite numbers; got {text!r}", param_hint=option)
    return vals


def parse_ints(text: str, option: str, *, allow_empty: bool = False) -> tuple[int, ...]:
    """``"64,256"`` -> ``(64, 256)``; all positive and (unless ``allow_empty``) at least one,
    else ``BadParameter``."""
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise typer.BadParameter(
            f"expected comma-separated positive integers; got {text!r}", param_hint=option
        ) from err
    if (not vals and not allow_empty) or (vals and min(vals) <= 0):
        raise typer.BadParameter(
            f"expected comma-separated positive integers; got {text!r}", param_hint=option
        )
    return vals


# ------------------------------------------------------------------ options
def check_device(device: str) -> torch.device:
    """A usable torch device, or a one-line ``BadParameter`` (e.g. cuda on a CPU-only torch)."""
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise typer.BadParameter(
            f"{device!r} is not a torch device (e.g. cpu, cuda, cuda:1, mps)", param_hint="--device"
        ) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise typer.BadParameter(
            "CUDA is not available in this torch build or machine; use --device cpu",
            param_hint="--device",
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise typer.BadParameter(
            f"{device!r}: only {torch.cuda.device_count()} CUDA device(s)", param_hint="--device"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise typer.BadParameter("MPS is not available; use --device cpu", param_hint="--device")
    return dev


# ------------------------------------------------------------------ data
def load_array(
    source: str | Path,
    option: str,
    *,
    n_rows: int | None = None,
    builtin: bool = True,
    min_ndim: int = 1,
) -> np.ndarray:
    """Float64 array from a ``.npy``/``.csv`` file or (``builtin``) a built-in data set.

    A user's file is used whole unless ``n_rows`` is given; a built-in data set
    uses its first ``n_rows`` rows, or the first :data:`BUILTIN_ROWS` with a
    notice on stderr.  ``.npy`` files are read with ``allow_pickle=False``.
    The result is float64 (integer and boolean data are converted, as scikit-learn does).
    Every failure is a ``typer.BadParameter`` naming ``option``.
    """
    src = str(source)
    if builtin and src in BUILTIN:
        import sklearn.datasets as skd

        x = np.asarray(getattr(skd, f"load_{src}")().data, dtype=np.float64)
        if n_rows is None and len(x) > BUILTIN_ROWS:
            print(
                f"widelimit: using the first {BUILTIN_ROWS} of {len(x)} rows of the built-in "
                f"'{src}' data ({option}); pass --n-rows to change",
                file=sys.stderr,
            )
            n_rows = BUILTIN_ROWS
    else:
        x = _read_file(Path(src), option, builtin, min_ndim)
    if n_rows is not None:
        if n_rows <= 0:
            raise typer.BadParameter(f"must be positive; got {n_rows}", param_hint="--n-rows")
        x = x[:n_rows]
    return x


def _read_file(p: Path, option: str, builtin: bool, min_ndim: int) -> np.ndarray:
    if not p.exists():
        extra = f" nor a built-in data set ({', '.join(BUILTIN)})" if builtin else ""
        raise typer.BadParameter(f"{str(p)!r} is not a file{extra}", param_hint=option)
    if p.is_dir():
        raise typer.BadParameter(f"{str(p)!r} is a directory, not a data file", param_hint=option)
    if p.suffix == ".npy":
        try:
            x = np.load(p, allow_pickle=False)
        except ValueError as err:  # object arrays need pickle: refused
            raise typer.BadParameter(
                f"{p}: holds Python objects (dtype object); save a numeric array",
                param_hint=option,
            ) from err
        except (OSError, EOFError) as err:
            msg = f"{p}: not a readable .npy file ({err})"
            raise typer.BadParameter(msg, param_hint=option) from err
        if not isinstance(x, np.ndarray):  # pragma: no cover - np.load of .npy gives arrays
            raise typer.BadParameter(f"{p}: expected one array", param_hint=option)
    elif p.suffix in (".csv", ".txt"):
        try:
            x = np.loadtxt(p, delimiter=",", ndmin=min_ndim)
        except ValueError as err:
            detail = str(err).splitlines()[0] if str(err) else "not numeric"
            raise typer.BadParameter(
                f"{p}: every cell must be a number, without a header row ({detail})",
                param_hint=option,
            ) from err
    else:
        raise typer.BadParameter(f"{p}: expected a .npy or .csv file", param_hint=option)
    if x.dtype.kind not in "biuf":
        raise typer.BadParameter(
            f"{p}: expected numbers, got dtype {x.dtype} ({_kind(x.dtype)}); save a numeric array",
            param_hint=option,
        )
    if x.ndim < min_ndim or x.size == 0:
        raise typer.BadParameter(
            f"{p}: expected a non-empty array with at least {min_ndim} dimension(s); "
            f"got shape {x.shape}",
            param_hint=option,
        )
    return x.astype(np.float64)


def _kind(dtype: np.dtype) -> str:
    return {"U": "strings", "S": "bytes", "O": "objects", "c": "complex numbers"}.get(
        dtype.kind, "not real numbers"
    )
