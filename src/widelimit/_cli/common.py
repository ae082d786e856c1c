"""Shared helpers for the CLI: output (results on stdout, logs on stderr), options,
choice and list parsers, the array loader and the default net.  Each exists once
(docs/conventions.md); the output convention is stated in docs/cli.md.

Output, in every command::

    fmt = output_format(fmt, json_out)          # --format / --json -> one of FORMATS
    if fmt == "json":
        emit_json(summary)                      # the whole result, machine-readable
    else:
        emit_table("title", columns, rows, fmt=fmt)   # stdout, full width when piped
        emit_text(f"wrote {path}", fmt=fmt)           # a result sentence (stdout)
    log("using the first 200 rows ...")         # anything else: stderr
    with progress(enabled) as bar: ...          # stderr; plain lines when not a TTY
"""

from __future__ import annotations

import math
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from widelimit.progress import activity, progress_bar
from widelimit.serialization import jsonable, print_json, save_npy
from widelimit.spec_text import DEFAULT_NET

if TYPE_CHECKING:
    import torch

__all__ = [
    "BUILTIN",
    "DEFAULT_NET",
    "FORMATS",
    "Format",
    "FormatOpt",
    "JsonOpt",
    "activity",
    "check_device",
    "console",
    "did_you_mean",
    "emit_json",
    "emit_table",
    "emit_text",
    "jsonable",
    "load_array",
    "log",
    "output_format",
    "parse_choice",
    "parse_choices",
    "parse_floats",
    "parse_ints",
    "print_json",
    "progress",
    "reshape_rows",
    "save_npy",
    "stdout_console",
    "table",
    "warn",
]

console = Console(stderr=True)
"""Rich console on stderr, for logs only; results go through :func:`emit_table`,
:func:`emit_text` and :func:`emit_json` (stdout)."""

progress = progress_bar
"""The progress-bar factory (:func:`widelimit.progress.progress_bar`): stderr, rich bars on
a terminal, sparse plain lines otherwise."""

BUILTIN = ("digits", "iris", "wine", "breast_cancer", "diabetes")
"""Built-in scikit-learn data sets accepted wherever a data file is."""

BUILTIN_ROWS = 200
"""Rows of a built-in data set used when no ``--n-rows`` is given (printed when applied)."""


# ------------------------------------------------------------------ output
FORMATS = ("table", "plain", "markdown", "csv", "json")
"""Values of ``--format``: ``table`` (rich box table), ``plain`` (aligned columns, no box),
``markdown`` (GitHub pipe table), ``csv`` (one ``# title`` line, then RFC 4180 rows),
``json`` (the command's whole result, same as ``--json``)."""

_WIDE = 10_000
"""Console width used when stdout is not a terminal: tables keep their natural width."""


class Format(str, Enum):
    """Values of ``--format`` (see :data:`FORMATS`)."""

    table = "table"
    plain = "plain"
    markdown = "markdown"
    csv = "csv"
    json = "json"


FormatOpt = Annotated[
    Format,
    typer.Option(
        "--format",
        case_sensitive=False,
        help="Result format on stdout: table, plain, markdown, csv or json (= --json).",
    ),
]
"""The ``--format`` option every command takes: ``fmt: FormatOpt = Format.table``."""

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON on stdout (= --format json).")
]
"""The ``--json`` flag every command takes: ``json_out: JsonOpt = False``."""


def output_format(fmt: Format | str | None, json_out: bool = False) -> str:
    """The format to write, a plain string: ``json`` if ``--json`` was given, else
    ``--format``'s value."""
    if json_out:
        return "json"
    fmt = "table" if fmt is None else (fmt.value if isinstance(fmt, Format) else fmt.lower())
    if fmt not in FORMATS:  # pragma: no cover - click.Choice checks first
        raise typer.BadParameter(f"expected one of {', '.join(FORMATS)}", param_hint="--format")
    return fmt


def _cell(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    """Build a rich table; floats are shown with 4 significant digits.

    The table is at least as wide as its title (so the title never wraps).  Cells wrap
    (``overflow="fold"``) only on a narrow terminal; piped output is never wrapped
    (:func:`emit_table`).
    """
    t = Table(title=title, min_width=len(title) + 4)
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*[_cell(v) for v in r])
    return t


def stdout_console() -> Console:
    """A rich console on the current stdout: terminal width on a terminal, else wide enough
    that nothing wraps (a table piped to a file keeps its natural width)."""
    tty = sys.stdout.isatty()
    return Console(file=sys.stdout, width=None if tty else _WIDE, soft_wrap=not tty)


def emit_table(
    title: str, columns: list[str], rows: list[list[Any]], *, fmt: str = "table"
) -> None:
    """Write one result table to stdout in ``fmt`` (see :data:`FORMATS`; not ``json``).

    Floats are shown with 4 significant digits except in ``csv``, which keeps ``repr``
    precision.  Several tables of one command are separated by a blank line.
    """
    out = sys.stdout
    if fmt == "table":
        stdout_console().print(table(title, columns, rows))
    elif fmt == "csv":
        import csv

        out.write(f"# {title}\n")
        w = csv.writer(out, lineterminator="\n")
        w.writerow(columns)
        w.writerows([[repr(v) if isinstance(v, float) else v for v in r] for r in rows])
        out.write("\n")
    elif fmt == "markdown":
        cells = [[_cell(v).replace("|", "\\|") for v in r] for r in rows]
        out.write(f"**{title}**\n\n| " + " | ".join(columns) + " |\n")
        out.write("|" + "|".join("---" for _ in columns) + "|\n")
        out.writelines("| " + " | ".join(r) + " |\n" for r in cells)
        out.write("\n")
    elif fmt == "plain":
        cells = [[str(c) for c in columns]] + [[_cell(v) for v in r] for r in rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
        out.write(f"# {title}\n")
        out.writelines(
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n"
            for r in cells
        )
        out.write("\n")
    else:
        raise ValueError(f"emit_table: fmt must be one of {FORMATS[:-1]}; got {fmt!r}")
    out.flush()


def emit_text(text: str, *, fmt: str = "table") -> None:
    """A result sentence (e.g. ``wrote kernels/nngp.npy``): stdout, except with ``csv`` and
    ``json`` output, which must stay parseable, where it goes to stderr."""
    stream = sys.stderr if fmt in ("csv", "json") else sys.stdout
    print(text, file=stream, flush=True)


def emit_json(obj: Any) -> None:
    """The command's result as indented JSON on stdout (:func:`~widelimit.serialization.jsonable`
    converts tensors, arrays, dataclasses and paths)."""
    print_json(obj)
    sys.stdout.flush()


def log(message: str) -> None:
    """A log line on stderr (what is happening, what was assumed): never part of the result."""
    print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """``warning: message`` on stderr."""
    log(f"warning: {message}")


# ------------------------------------------------------------------ choices
def parse_choice(text: str, choices: tuple[str, ...] | list[str], option: str) -> str:
    """``text`` matched case-insensitively (``-``/``_`` alike) to one of ``choices``, else a
    ``BadParameter`` naming ``option``, the choices and the closest one."""
    key = text.strip().lower().replace("_", "-")
    for c in choices:
        if c.lower().replace("_", "-") == key:
            return c
    listed = ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]
    raise typer.BadParameter(
        f"expected {listed} (any case); got {text!r}{did_you_mean(text, choices)}",
        param_hint=option,
    )


def parse_choices(text: str, choices: tuple[str, ...] | list[str], option: str) -> tuple[str, ...]:
    """Comma-separated :func:`parse_choice`: ``"NNGP,ntk"`` -> ``("nngp", "ntk")``."""
    vals = tuple(parse_choice(v, choices, option) for v in text.split(",") if v.strip())
    if not vals:
        raise typer.BadParameter(f"expected one or more of {', '.join(choices)}", param_hint=option)
    return vals


def did_you_mean(name: str, known: Any) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``known`` (case-insensitive), or ``""``."""
    from widelimit.spec_text import closest

    best = closest(name, known)
    return f"; did you mean {best!r}?" if best else ""


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
def reshape_rows(arrays: list[Any], input_shape: str | None) -> list[Any]:
    """Each ``(N, ...)`` array reshaped to ``(N, *input_shape)`` (``--input-shape``, e.g.
    ``1,8,8``); unchanged when ``input_shape`` is ``None``.  A bad shape is a usage error
    naming ``--input-shape``."""
    if input_shape is None:
        return arrays
    try:
        shape = parse_ints(input_shape, "--input-shape")
        return [a.reshape(len(a), *shape) for a in arrays]
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--input-shape") from err


DTYPES = ("float64", "float32")
"""The ``--dtype`` choices (torch dtypes by name: :func:`torch_dtype`)."""


def torch_dtype(name: str) -> torch.dtype:
    """``torch.float32`` for ``"float32"`` and so on (torch is imported here, not on start-up:
    ``widelimit kernel --plan`` can answer from its cache without it)."""
    import torch

    return getattr(torch, name)


def check_device(device: str) -> torch.device:
    """A usable torch device, or a one-line ``BadParameter`` (e.g. cuda on a CPU-only torch)."""
    import torch

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
