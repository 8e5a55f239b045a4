"""Open a page in headless Chromium and ask it what it shows (tests and docs screenshots).

Talks the DevTools protocol over ``--remote-debugging-pipe`` (fd 3: commands
to the browser, fd 4: its replies, each message JSON ended by a NUL byte), so
it needs no Python package beyond the standard library, only a ``chromium``
binary (Debian's ``chromium`` package).  ``find_chromium()`` is None where
there is none, and tests skip.

``inspect_page(path, expression)`` loads a file, waits until
``expression`` (JavaScript) is truthy (an object: until its ``done`` is true)
or the timeout passes, and returns its
value, the console errors and uncaught exceptions the page produced, and
optionally a PNG screenshot.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_BINARIES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The first Chromium-like browser on PATH, or None."""
    return next((p for p in map(shutil.which, _BINARIES) if p), None)


@dataclass
class PageReport:
    value: Any = None  # the expression's last value
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions, one line each
    screenshot: bytes | None = None  # PNG
    waited_s: float = 0.0


class _Pipe:
    """One browser and its DevTools pipe."""

    def __init__(self, binary: str, width: int, height: int) -> None:
        cmd_r, cmd_w = os.pipe()  # we write commands, the browser reads them on fd 3
        out_r, out_w = os.pipe()  # the browser writes replies on fd 4
        self._profile = tempfile.mkdtemp(prefix="servesim-chromium-")

        def child() -> None:  # runs in the forked child before exec: put the pipe ends on fds 3 and 4
            high_r = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10)  # copies above 3 and 4, whatever cmd_r and out_w are
            high_w = fcntl.fcntl(out_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--remote-debugging-pipe", f"--user-data-dir={self._profile}", f"--window-size={width},{height}",
                "--hide-scrollbars", "about:blank"]
        # close_fds=False keeps the dup2'ed fds 3 and 4 (inheritable); Python's own fds are not inheritable.
        self.proc = subprocess.Popen(args, close_fds=False, preexec_fn=child, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(cmd_r)
        os.close(out_w)
        self._w, self._r = cmd_w, out_r
        self._buf = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30.0) -> dict:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self.receive(timeout)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def receive(self, timeout: float) -> dict:
        end = time.monotonic() + timeout
        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._r], [], [], max(0.0, end - time.monotonic()))
            if not ready:
                raise TimeoutError("no reply from the browser")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise EOFError("the browser closed its DevTools pipe")
            self._buf += chunk
        message, self._buf = self._buf.split(b"\0", 1)
        return json.loads(message)

    def drain(self) -> None:
        """Collect events already sent without blocking."""
        while True:
            try:
                self.events.append(self.receive(0.0))
            except TimeoutError:
                return

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5.0)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)
        shutil.rmtree(self._profile, ignore_errors=True)


def inspect_page(path: str | Path, expression: str, *, timeout_s: float = 60.0, width: int = 1280,
                 height: int = 900, screenshot_height: int | None = None, binary: str | None = None) -> PageReport:
    """Load ``path`` and evaluate ``expression`` until it is truthy (or ``timeout_s``); see the module doc.

    ``screenshot_height``: also capture the page's top ``screenshot_height`` pixels (CSS px) as PNG.
    """
    binary = binary or find_chromium()
    if binary is None:
        raise FileNotFoundError("no chromium on PATH")
    pipe = _Pipe(binary, width, height)
    report = PageReport()
    started = time.monotonic()
    try:
        target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            pipe.call(domain, session=session)
        pipe.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        pipe.call("Page.navigate", {"url": Path(path).resolve().as_uri()}, session=session)
        while True:
            result = pipe.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
            report.value = result.get("result", {}).get("value")
            if _ready(report.value) or time.monotonic() - started > timeout_s:
                break
            time.sleep(0.2)
        report.waited_s = time.monotonic() - started
        if screenshot_height is not None:
            shot = pipe.call("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": screenshot_height, "scale": 1}}, session=session)
            report.screenshot = base64.b64decode(shot["data"])
        pipe.drain()
    finally:
        pipe.close()
    report.errors = _errors(pipe.events)
    return report


def _ready(value: Any) -> bool:
    """A truthy value, and for an object one whose ``done`` (when present) is true."""
    return bool(value) and (not isinstance(value, dict) or bool(value.get("done", True)))


def _errors(events: list[dict[str, Any]]) -> list[str]:
    """Console errors, failed assertions, error log entries and uncaught exceptions, one line each."""
    out = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = (details.get("exception") or {}).get("description") or details.get("text", "")
            out.append(f"exception: {text.splitlines()[0] if text else '?'}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            out.append(f"console.{params['type']}: {args}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            out.append(f"log: {params['entry'].get('text', '')}")
    return out
