"""JSON-ready conversion of results: what ``--json`` prints and ``results.json`` stores."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["jsonable", "print_json", "save_npy"]


def jsonable(obj: Any) -> Any:
    """Convert ``obj`` recursively to JSON types.

    Dataclasses become dicts of their fields, tensors and arrays nested lists, numpy
    scalars Python scalars, paths/dtypes/devices strings, dict keys strings (tuple keys
    joined by ``,``), tuples lists; non-finite floats become ``None`` (JSON has no
    NaN/inf).  Other objects are returned unchanged.
    """
    torch = sys.modules.get("torch")  # no torch imported: obj holds no torch object
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if torch is not None and isinstance(obj, torch.Tensor):
        return jsonable(obj.detach().cpu().numpy())
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {_key(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if torch is not None and isinstance(obj, torch.dtype | torch.device):
        return str(obj)
    return obj


def _key(k: object) -> str:
    """A JSON object key: tuples joined by ``,`` (``(64, 0)`` → ``"64,0"``), else ``str``."""
    if isinstance(k, tuple):
        return ",".join(str(v) for v in k)
    return str(k)


def print_json(obj: Any) -> None:
    """Print ``jsonable(obj)`` as indented JSON on stdout (the output of ``--json``)."""
    print(json.dumps(jsonable(obj), indent=2))


def save_npy(path: str | os.PathLike, array: Any) -> None:
    """Write ``array`` to the ``.npy`` file ``path`` atomically.

    The data go to a temporary file in the same directory, which is flushed to disk and
    then renamed over ``path`` (``os.replace``): a reader sees the old file or the
    complete new one, never a truncated one.  If the write fails (full disk, no
    permission) the temporary file is removed, an older ``path`` is left unchanged,
    and an ``OSError`` names the file and the cause.
    """
    p = Path(path)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, np.asarray(array), allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException as err:  # full disk, no permission, Ctrl-C: leave no partial file
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if not isinstance(err, OSError):
            raise
        raise OSError(
            err.errno,
            f"cannot write {str(p)!r} ({err.strerror or err}); nothing was written there "
            "(an older file is left unchanged): free some space or choose another directory",
        ) from err
