"""Writer lock of a kernel store: one process writes a store at a time.

The lock is an advisory ``fcntl.flock`` lock on a small file next to the store,
``.NAME.lock`` (a sibling, so it also guards the creation of the store and
survives ``overwrite=True``).  The kernel grants the lock to one process at a
time and drops it when that process exits, however it exits (``kill -9``
included): there is no stale-lock takeover to race on.  The holder writes its
host name, process id and start time into the file; a second writer is refused
with :class:`StoreLockedError` naming that host and pid.  A file left behind
by a crashed writer holds no lock: the next writer takes it, with a notice on
stderr naming the dead process.  The holder deletes the file on release (while
still holding the lock); a process that locked the file just before it was
deleted sees that the path no longer names its file and starts over, so two
processes never hold locks on two different files of the same path.

``flock`` works on local file systems and on NFS (Linux emulates it with NFS
byte-range locks); it is not available on Windows.

Readers (``load_kernel``, ``posterior_mean``) take no lock: a tile counts as
finished only once its completion record is written, after its data.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

__all__ = ["StoreLock", "StoreLockedError", "lock_path"]


class StoreLockedError(RuntimeError):
    """Another live process holds the writer lock of the store."""


def lock_path(store: str | os.PathLike) -> Path:
    """Path of the lock file of ``store`` (``dir/.NAME.lock``)."""
    p = Path(store)
    return p.with_name(f".{p.name}.lock")


class StoreLock:
    """Context manager holding the writer lock of ``store`` (see module docstring)."""

    def __init__(self, store: str | os.PathLike):
        self.store = Path(store)
        self.path = lock_path(store)
        self.fd: int | None = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def _unwritable(self, err: OSError) -> ValueError:
        return ValueError(
            f"`store` {str(self.store)!r} cannot be created ({err.strerror or err}: "
            f"{err.filename}); choose a writable directory"
        )

    def acquire(self) -> StoreLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise self._unwritable(err) from err
        for _ in range(100):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            except OSError as err:
                raise self._unwritable(err) from err
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _parse(os.read(fd, 4096))
                os.close(fd)
                raise self._busy(holder) from None
            except OSError as err:
                os.close(fd)
                raise self._unwritable(err) from err
            # Locked; but the holder before us may have deleted the file between our open
            # and our flock (release deletes it): then our lock guards nothing, start over.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            self._take(fd)
            return self
        raise StoreLockedError(  # pragma: no cover - 100 deletions in a row
            f"could not take the writer lock {str(self.path)!r}: other writers keep "
            "releasing and re-taking it; try again"
        )

    def _take(self, fd: int) -> None:
        """We hold the lock on the file at ``self.path``: report a dead writer, sign it."""
        old = _parse(os.pread(fd, 4096, 0))
        pid, host = old.get("pid"), old.get("host")
        if isinstance(pid, int) and pid != os.getpid():
            print(
                f"widelimit: removed a stale lock on {str(self.store)!r} left by process "
                f"{pid} on {host} (no longer running)",
                file=sys.stderr,
            )
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self.fd = fd

    def _busy(self, holder: dict) -> StoreLockedError:
        pid = holder.get("pid", "?")
        host = holder.get("host", "?")
        return StoreLockedError(
            f"store {str(self.store)!r} is being written by process {pid} on host {host} "
            f"(since {holder.get('started', '?')}); wait for it to finish (the lock "
            f"{str(self.path)!r} is released when that process exits)"
        )

    def release(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            self.path.unlink()  # while still locked: see the module docstring
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)  # drops the lock

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _parse(raw: bytes) -> dict:
    try:
        data = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
