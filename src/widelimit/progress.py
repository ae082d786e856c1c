"""The one progress-bar factory: rich bars on stderr, so stdout stays clean for ``--json``.

Every long computation takes ``progress: bool = True`` and builds its bar here::

    with progress_bar(progress) as bar:
        task = bar.add_task("sampling networks", total=n)
        ...
        bar.advance(task)
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["progress_bar", "stderr_console"]

stderr_console = Console(stderr=True)
"""Rich console on stderr shared by all bars (nested bars share one live display)."""


def progress_bar(
    enabled: bool = True,
    *,
    transient: bool = True,
    extra_columns: Sequence[ProgressColumn] = (),
) -> Progress:
    """A rich :class:`~rich.progress.Progress` writing to stderr.

    Args:
        enabled: ``False`` gives a bar that draws nothing (same API, no output).
        transient: remove the bar when it finishes (``False`` leaves it on screen).
        extra_columns: columns shown after "done/total", e.g.
            ``TextColumn("{task.fields[rate]}")`` for a throughput field.
    Columns: task description, bar, done/total, elapsed, remaining, then ``extra_columns``.
    Use it as a context manager.
    """
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra_columns,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr_console,
        transient=transient,
        disable=not enabled,
    )
