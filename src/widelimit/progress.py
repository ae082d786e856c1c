"""The one progress-bar factory: progress on stderr, so stdout stays clean for results.

Every long computation takes ``progress: bool = True`` and builds its bar here::

    with progress_bar(progress) as bar:
        task = bar.add_task("sampling networks", total=n)
        ...
        bar.advance(task)

On a terminal this is a rich bar (removed when done).  When stderr is not a terminal
(a log file, CI, a pipe) rich bars would leave blank lines and control codes, so the
same calls print sparse plain lines instead: one every :data:`PLAIN_EVERY` seconds
at most while a task runs, and one when it finishes (``name: 40/40 done in 3.2 s``).
:func:`activity` does the same for work without steps (an elapsed-time spinner that
appears after one second).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["PLAIN_EVERY", "activity", "progress_bar", "stderr_console"]

stderr_console = Console(stderr=True)
"""Rich console on stderr shared by all bars (nested bars share one live display)."""

PLAIN_EVERY = 15.0
"""Seconds between two plain progress lines of one task when stderr is not a terminal."""


def _stderr_is_terminal() -> bool:
    """A live display works here: a terminal, or a Jupyter kernel (rich draws a widget)."""
    return stderr_console.is_terminal or stderr_console.is_jupyter


class PlainProgress:
    """The subset of :class:`rich.progress.Progress` used in widelimit, as plain stderr lines.

    ``add_task``, ``advance``, ``update`` (``advance=``, ``completed=``, ``total=``,
    ``description=``, extra fields), ``remove_task``; a context manager.  Prints a line
    at most every :data:`PLAIN_EVERY` seconds per task and one when a task completes.
    """

    def __init__(self, every: float = PLAIN_EVERY) -> None:
        self.every = every
        self._tasks: dict[int, dict[str, Any]] = {}

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc and exc[0] is None:
            for tid in list(self._tasks):
                self._finish(tid)

    def start(self) -> None:
        """No-op (rich API)."""

    def stop(self) -> None:
        """No-op (rich API)."""

    def add_task(
        self, description: str, total: float | None = 100.0, completed: float = 0, **fields: Any
    ) -> int:
        tid = max(self._tasks, default=-1) + 1
        now = time.perf_counter()
        self._tasks[tid] = {
            "description": description, "total": total, "completed": completed,
            "t0": now, "last": now, "done": False, "fields": fields,
        }  # fmt: skip
        return tid

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def update(
        self,
        task_id: int,
        *,
        total: float | None = None,
        completed: float | None = None,
        advance: float | None = None,
        description: str | None = None,
        **fields: Any,
    ) -> None:
        t = self._tasks[task_id]
        if total is not None:
            t["total"] = total
        if description is not None:
            t["description"] = description
        if completed is not None:
            t["completed"] = completed
        if advance is not None:
            t["completed"] += advance
        t["fields"].update(fields)
        now = time.perf_counter()
        if t["total"] is not None and t["completed"] >= t["total"]:
            self._finish(task_id)
        elif now - t["last"] >= self.every:
            t["last"] = now
            self._line(t, now)

    def remove_task(self, task_id: int) -> None:
        self._tasks.pop(task_id, None)

    def _finish(self, task_id: int) -> None:
        t = self._tasks[task_id]
        if not t["done"]:
            t["done"] = True
            self._line(t, time.perf_counter(), done=True)

    @staticmethod
    def _line(t: dict[str, Any], now: float, done: bool = False) -> None:
        el = now - t["t0"]
        total, k = t["total"], t["completed"]
        count = f"{k:g}" if total is None else f"{k:g}/{total:g}"
        if done and total is not None and k < total:  # left before its last step was counted
            count = "finished"
        if done:
            tail = f"done in {el:.1f} s"
        else:
            eta = ""
            if total and k > 0:
                eta = f", ~{el * (total - k) / k:.0f} s left"
            tail = f"{el:.0f} s elapsed{eta}"
        extra = " ".join(str(v) for v in t["fields"].values() if str(v))
        extra = f" ({extra})" if extra else ""
        print(f"{t['description']}: {count} {tail}{extra}", file=sys.stderr, flush=True)


def progress_bar(
    enabled: bool = True,
    *,
    transient: bool = True,
    extra_columns: Sequence[ProgressColumn] = (),
) -> Progress | PlainProgress:
    """A progress display on stderr: a rich bar on a terminal, plain lines otherwise.

    Args:
        enabled: ``False`` gives a bar that draws nothing (same API, no output).
        transient: remove the bar when it finishes (``False`` leaves it on screen).
        extra_columns: columns shown after "done/total", e.g.
            ``TextColumn("{task.fields[rate]}")`` for a throughput field (plain lines show
            the task's extra fields instead).
    Columns: task description, bar, done/total, elapsed, remaining, then ``extra_columns``.
    Use it as a context manager.
    """
    if enabled and not _stderr_is_terminal():
        return PlainProgress()
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


@contextmanager
def activity(description: str, enabled: bool = True, *, after: float = 1.0) -> Iterator[None]:
    """Show that ``description`` is running, for work without steps (one long call).

    Nothing is shown if the work takes less than ``after`` seconds.  Past that, on a
    terminal: a spinner with the elapsed time (removed at the end); otherwise one line
    ``description ...`` and, at the end, ``description: done in 12.3 s`` (stderr).
    """
    if not enabled:
        yield
        return
    t0 = time.perf_counter()
    stop = threading.Event()
    shown = threading.Event()
    tty = _stderr_is_terminal()
    bar = None
    if tty:
        bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=stderr_console,
            transient=True,
        )

    def _show() -> None:
        if stop.wait(after):
            return
        shown.set()
        if bar is not None:
            bar.start()
            bar.add_task(description, total=None)
        else:
            print(f"{description} ...", file=sys.stderr, flush=True)

    th = threading.Thread(target=_show, daemon=True)
    th.start()
    try:
        yield
    finally:
        stop.set()
        th.join()
        if shown.is_set():
            if bar is not None:
                bar.stop()
            else:
                el = time.perf_counter() - t0
                print(f"{description}: done in {el:.1f} s", file=sys.stderr, flush=True)
