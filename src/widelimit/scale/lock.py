"""Writer lock of a kernel store: one process writes a store at a time.

The lock is a small JSON file next to the store, ``.NAME.lock`` (a sibling, so it
also guards the creation of the store and survives ``overwrite=True``), made with
``O_CREAT | O_EXCL`` and holding the writer's host name, process id and start
time.  A second writer is refused with :class:`StoreLockedError` naming that
host and pid.  A lock left by a crashed process (same host, pid no longer
alive) is stale: it is replaced, with a notice on stderr.  A lock from another
host cannot be checked from here; the message says how to remove it by hand.

Readers (``load_kernel``, ``posterior_mean``) take no lock: a tile counts as
finished only once its completion record is written, after its data.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path

__all__ = ["StoreLock", "StoreLockedError", "lock_path"]


class StoreLockedError(RuntimeError):
    """Another live process holds the writer lock of the store."""


def lock_path(store: str | os.PathLike) -> Path:
    """Path of the lock file of ``store`` (``dir/.NAME.lock``)."""
    p = Path(store)
    return p.with_name(f".{p.name}.lock")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class StoreLock:
    """Context manager holding the writer lock of ``store`` (see module docstring)."""

    def __init__(self, store: str | os.PathLike):
        self.store = Path(store)
        self.path = lock_path(store)
        self.token = uuid.uuid4().hex
        self.held = False

    def _try_create(self) -> bool:
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "token": self.token,
        }
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            json.dump(info, fh)
        return True

    def acquire(self) -> StoreLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ValueError(
                f"`store` {str(self.store)!r} cannot be created ({err.strerror or err}: "
                f"{err.filename}); choose a writable directory"
            ) from err
        for _ in range(200):
            try:
                if self._try_create():
                    self.held = True
                    return self
            except OSError as err:
                raise ValueError(
                    f"`store` {str(self.store)!r} cannot be created ({err.strerror or err}: "
                    f"{err.filename}); choose a writable directory"
                ) from err
            holder = self._read()
            host, pid = holder.get("host"), holder.get("pid")
            if host == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid):
                # stale: the writer crashed; move the lock aside atomically, then retry
                self._remove_aside()
                print(
                    f"widelimit: removed a stale lock on {str(self.store)!r} left by process "
                    f"{pid} on {host} (no longer running)",
                    file=sys.stderr,
                )
                continue
            if not holder:  # being written right now, or left empty by a crash
                if self._age() > 5.0:
                    self._remove_aside()
                else:
                    time.sleep(0.05)
                continue
            raise StoreLockedError(
                f"store {str(self.store)!r} is being written by process {pid} on host {host} "
                f"(since {holder.get('started', '?')}); wait for it to finish, or if that "
                f"process is gone delete {str(self.path)!r}"
            )
        raise StoreLockedError(
            f"could not take the writer lock {str(self.path)!r}; delete it if no job is "
            "writing the store"
        )

    def _age(self) -> float:
        try:
            return time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def _remove_aside(self) -> None:
        """Move a stale lock aside atomically (one process wins), then delete it."""
        aside = self.path.with_name(f"{self.path.name}.stale.{self.token}")
        try:
            os.replace(self.path, aside)
            aside.unlink()
        except FileNotFoundError:
            pass  # another process took it over first; the caller retries

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        if self._read().get("token") == self.token:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
