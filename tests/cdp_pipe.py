"""A tiny Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (no websocket
library, no browser download): headless Chromium opens local HTML files, and we collect
console errors, uncaught exceptions and whether every ``<img>`` decoded.

Chromium reads commands from fd 3 and writes replies/events to fd 4, each message a JSON
object terminated by a NUL byte.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageCheck:
    """What the browser saw on one page."""

    url: str
    images: list[tuple[str, bool, int]] = field(default_factory=list)  # (alt, complete, width)
    errors: list[str] = field(default_factory=list)  # console errors and exceptions
    title: str = ""


class Browser:
    """Headless Chromium driven over the DevTools pipe; use as a context manager."""

    def __init__(self, executable: str, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="widelimit-chromium-")
        r_cmd, w_cmd = os.pipe()  # we write commands -> browser fd 3
        r_out, w_out = os.pipe()  # browser fd 4 -> we read
        # the child gets r_cmd as fd 3 and w_out as fd 4
        self._proc = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=_dup_to_3_4(r_cmd, w_out),
        )
        os.close(r_cmd)
        os.close(w_out)
        self._w = os.fdopen(w_cmd, "wb", buffering=0)
        self._r = os.fdopen(r_out, "rb", buffering=0)
        self._buf = b""
        self._id = 0
        self._events: list[dict] = []

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except Exception:
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()  # the process we started, by its handle
            self._proc.wait()
        for f in (self._w, self._r):
            try:
                f.close()
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)

    # ------------------------------------------------------------------ protocol
    def _read_message(self) -> dict:
        while b"\0" not in self._buf:
            chunk = self._r.read(65536)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        msg: dict = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self._w.write(json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            m = self._read_message()
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self._events.append(m)
        raise TimeoutError(method)

    def _wait_event(self, method: str, session: str) -> dict:
        deadline = time.monotonic() + self.timeout
        for i, e in enumerate(self._events):
            if e.get("method") == method and e.get("sessionId") == session:
                return self._events.pop(i)
        while time.monotonic() < deadline:
            m = self._read_message()
            if m.get("method") == method and m.get("sessionId") == session:
                return m
            self._events.append(m)
        raise TimeoutError(method)

    # ------------------------------------------------------------------ checks
    def check(self, path: Path) -> PageCheck:
        """Open ``path`` in a fresh tab, wait for the load event, inspect it."""
        url = Path(path).resolve().as_uri()
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=session)
        self.send("Page.navigate", {"url": url}, session=session)
        self._wait_event("Page.loadEventFired", session)
        expr = (
            "Promise.all(Array.from(document.images).map(i => i.decode().then(() => 0, () => 0)"
            ".then(() => [i.alt, i.complete, i.naturalWidth])))"
        )
        res = self.send(
            "Runtime.evaluate",
            {"expression": expr, "awaitPromise": True, "returnByValue": True},
            session=session,
        )
        title = self.send(
            "Runtime.evaluate", {"expression": "document.title", "returnByValue": True},
            session=session,
        )["result"].get("value", "")  # fmt: skip
        out = PageCheck(url, [tuple(v) for v in res["result"]["value"]], [], title)
        # drain the events that arrived for this session
        for e in self._events:
            if e.get("sessionId") != session:
                continue
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.errors.append(str(p.get("exceptionDetails", {}).get("text")))
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.errors.append(json.dumps(p.get("args"))[:300])
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.errors.append(str(p["entry"].get("text"))[:300])
        self._events = [e for e in self._events if e.get("sessionId") != session]
        self.send("Target.closeTarget", {"targetId": target})
        return out


def _dup_to_3_4(r_cmd: int, w_out: int):
    def setup() -> None:
        # move the pipe ends to fds 3 and 4 in the child (via temporaries, in case of overlap)
        a, b = os.dup(r_cmd), os.dup(w_out)
        os.dup2(a, 3)
        os.dup2(b, 4)
        os.set_inheritable(3, True)
        os.set_inheritable(4, True)

    return setup
