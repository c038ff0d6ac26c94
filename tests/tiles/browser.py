"""Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``).

Chromium reads NUL-terminated JSON commands on fd 3 and writes replies and events on fd 4; no port, no
extra package. Only what the preview tests need: open a page, wait for its load, evaluate, click, screenshot.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-unsafe-swiftshader",  # WebGL on the CPU: MapLibre needs WebGL and there is no GPU
    "--window-size=1200,800",
    "--remote-debugging-pipe",
]


class BrowserError(Exception):
    pass


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise BrowserError("chromium is not installed: ./dev.sh up installs the Debian package")
    return path


class Chromium:
    """One headless browser with one page."""

    def __init__(self, profile_dir: Path, timeout: float = 60.0) -> None:
        self.timeout = timeout
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()
        # Chromium expects its command pipe on fd 3 and its answers on fd 4: park our ends above both first.
        command_fd = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD, 100)
        reply_fd = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD, 100)
        self.process = subprocess.Popen(
            [chromium_path(), *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=lambda: (os.dup2(command_fd, 3), os.dup2(reply_fd, 4)),
        )
        for fd in (to_browser_read, from_browser_write, command_fd, reply_fd):
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)
        for fd in (self._to_browser, self._from_browser):
            os.close(fd)

    def send(self, method: str, params: dict[str, Any] | None = None, *, page: bool = True) -> dict[str, Any]:
        """Send a command and wait for its reply; page commands go to the attached page's session."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if page and self.session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        reply = self._wait(lambda item: item.get("id") == message["id"])
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def open(self, url: str) -> None:
        """Open a page, attach to it and navigate to ``url``, returning after its load event."""
        target = self.send("Target.createTarget", {"url": "about:blank"}, page=False)["targetId"]
        attached = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, page=False)
        self.session = attached["sessionId"]
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Page.navigate", {"url": url})
        self._wait(lambda item: item.get("method") == "Page.loadEventFired", consume_events=True)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises are awaited)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(details.get("exception", {}).get("description") or details.get("text"))
        return result["result"].get("value")

    def click(self, x: float, y: float) -> None:
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))

    def console_messages(self) -> list[str]:
        return [
            " ".join(str(arg.get("value", arg.get("description", ""))) for arg in event["params"]["args"])
            for event in self.events
            if event.get("method") == "Runtime.consoleAPICalled"
        ]

    def _wait(self, matches: Any, consume_events: bool = False) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        for index, event in enumerate(self.events):
            if consume_events and matches(event):
                return self.events.pop(index)
        while True:
            for message in self._read_messages(deadline):
                if matches(message):
                    return message
                if "method" in message:
                    self.events.append(message)

    def _read_messages(self, deadline: float) -> list[dict[str, Any]]:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or self.process.poll() is not None:
            raise BrowserError("chromium did not answer in time" if remaining <= 0 else "chromium exited")
        readable, _, _ = select.select([self._from_browser], [], [], min(remaining, 1.0))
        if not readable:
            return []
        chunk = os.read(self._from_browser, 1 << 20)
        if not chunk:
            raise BrowserError("chromium closed the DevTools pipe")
        self._buffer += chunk
        *complete, self._buffer = self._buffer.split(b"\0")
        return [json.loads(item) for item in complete]
