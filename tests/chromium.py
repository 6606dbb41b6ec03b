"""Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: no port, no extra
package): open a page from disk, read the page's state with JavaScript, take a screenshot, collect console errors.

Chromium reads commands from its fd 3 and writes replies and events to its fd 4, each a JSON message ended by NUL.
Every wait is bounded; the browser is closed over the protocol and, failing that, killed by its PID.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

INSTALL_COMMAND = "apt-get install -y chromium"
EXECUTABLES = ("chromium", "chromium-browser")
WAIT_SECONDS = 60.0


def find_chromium() -> str | None:
    """The Chromium executable on PATH, or None."""
    return next((found for name in EXECUTABLES if (found := shutil.which(name))), None)


class ChromiumError(RuntimeError):
    """The browser did not answer in time, or answered with an error."""


class Chromium:
    """One headless Chromium with its profile in ``profile_dir``; use as a context manager."""

    def __init__(self, executable: str, profile_dir: Path, log_path: Path) -> None:
        commands_read, commands_write = os.pipe()
        replies_read, replies_write = os.pipe()
        # copies at fd 10 and above, so that placing them at 3 and 4 in the child never overwrites one another
        child_read = fcntl.fcntl(commands_read, fcntl.F_DUPFD_CLOEXEC, 10)
        child_write = fcntl.fcntl(replies_write, fcntl.F_DUPFD_CLOEXEC, 10)
        for fd in (commands_read, replies_write):
            os.close(fd)

        def place_pipes() -> None:  # runs in the child before exec: its fd 3 reads commands, fd 4 writes replies
            os.dup2(child_read, 3)
            os.dup2(child_write, 4)

        arguments = [
            executable, "--headless", "--remote-debugging-pipe", f"--user-data-dir={profile_dir}",
            "--no-first-run", "--no-default-browser-check", "--disable-gpu", "--disable-extensions",
            "--disable-background-networking", "--disable-sync", "--hide-scrollbars", "--window-size=1280,1024",
            *(["--no-sandbox"] if os.geteuid() == 0 else []),  # Chromium's sandbox refuses to run as root
            "about:blank",
        ]
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in close()
        try:
            self.process = subprocess.Popen(arguments, stdin=subprocess.DEVNULL, stdout=self._log,
                                            stderr=subprocess.STDOUT, pass_fds=(3, 4), preexec_fn=place_pipes,
                                            start_new_session=True)
        finally:
            os.close(child_read)
            os.close(child_write)
        self._send_fd, self._receive_fd = commands_write, replies_read
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the protocol --------------------------------------------------------------------------------

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """Send one command and wait for its reply (events that arrive meanwhile are kept in ``events``)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._send_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise ChromiumError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for_event(self, method: str, session: str) -> dict[str, Any]:
        """The first event ``method`` of ``session``, kept or still to come."""
        deadline = time.monotonic() + WAIT_SECONDS
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event.get("method") == method and event.get("sessionId") == session:
                    return event
            seen = len(self.events)
            self.events.append(self._receive(deadline))

    def _receive(self, deadline: float) -> dict[str, Any]:
        """The next whole message, or ChromiumError at the deadline or when the browser closes the pipe."""
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._receive_fd], [], [], left)[0]:
                raise ChromiumError(f"no answer from Chromium in {WAIT_SECONDS:.0f} s")
            chunk = os.read(self._receive_fd, 1 << 20)
            if not chunk:
                raise ChromiumError(f"Chromium closed the pipe (exit code {self.process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    # --- a page ------------------------------------------------------------------------------------------

    def open_page(self, url: str) -> str:
        """A new tab showing ``url``, loaded (every image fetched and decoded); its session id."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=session)
        self.call("Page.navigate", {"url": url}, session=session)
        self.wait_for_event("Page.loadEventFired", session)
        return session

    def evaluate(self, session: str, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
        if "exceptionDetails" in result:
            raise ChromiumError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, session: str) -> bytes:
        """A PNG of the viewport."""
        return base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"}, session=session)["data"])

    def errors(self, session: str) -> list[str]:
        """console.error/assert calls, uncaught exceptions and error log entries (failed loads) of the page."""
        found = []
        for event in self.events:
            if event.get("sessionId") != session:
                continue
            params = event.get("params", {})
            if event.get("method") == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(" ".join(str(arg.get("value", arg.get("description"))) for arg in params.get("args", [])))
            elif event.get("method") == "Runtime.exceptionThrown":
                found.append(str(params.get("exceptionDetails", {}).get("text")))
            elif event.get("method") == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                found.append(f"{entry.get('text')} {entry.get('url', '')}".strip())
        return found

    # --- shutting down -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Ask the browser to close; kill it by its PID when it does not exit in time. Closes the pipes."""
        try:
            if self.process.poll() is None:
                try:
                    self.call("Browser.close")
                except (ChromiumError, OSError):
                    pass
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.kill(self.process.pid, signal.SIGKILL)
                    self.process.wait(timeout=10)
        finally:
            for fd in (self._send_fd, self._receive_fd):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._log.close()
