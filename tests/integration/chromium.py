"""Debian's headless Chromium, driven over the DevTools protocol (one page, synchronous).

Just what the tracker tests need: open a URL, evaluate JavaScript, and record every request
the page makes and everything it logs. The browser is started with a new, empty profile and
with its own background traffic turned off (it would fail on a closed network anyway).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from tests.integration.harness import poll

__all__ = ["CHROMIUM", "Browser", "BrowserError", "chromium"]

CHROMIUM = os.environ.get("TRACKFLOW_TEST_CHROMIUM", "/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--remote-debugging-port=0",
)


class BrowserError(AssertionError):
    """The page threw, or the protocol answered with an error."""


class Browser:
    def __init__(self, socket: ClientConnection) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self.requests: list[dict[str, Any]] = []  # Network.requestWillBeSent params
        self.console: list[str] = []  # console messages and uncaught exceptions

    def call(self, method: str, timeout: float = 30, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        self._socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv(timeout=timeout))
            if message.get("id") == call_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))
            self._record(message)

    def _record(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requests.append(params)
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.console.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            self.console.append(f"exception: {params['exceptionDetails']}")

    def evaluate(self, expression: str) -> Any:
        """The value of ``expression`` in the page (promises are awaited)."""
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str, ready: str = "document.readyState === 'complete'") -> None:
        """Navigate as if the URL were typed, then wait until ``ready`` is true there."""
        self.call("Page.navigate", url=url)
        poll(lambda: self._is(url, ready), 30, f"{url} to load ({ready})", 0.05)

    def follow(self, url: str, ready: str = "document.readyState === 'complete'") -> None:
        """Navigate from the page itself (as a link does: the page becomes the referrer)."""
        self.evaluate(f"location.assign({json.dumps(url)})")
        poll(lambda: self._is(url, ready), 30, f"{url} to load ({ready})", 0.05)

    def _is(self, url: str, ready: str) -> bool:
        try:
            return bool(self.evaluate(f"location.href === {json.dumps(url)} && ({ready})"))
        except BrowserError:
            return False  # the old document went away between two calls

    def wait_for_console(self, text: str, timeout: float = 30) -> None:
        """Wait until the page has logged a message that contains ``text``."""

        def logged() -> bool:
            self.evaluate("0")  # takes in what the page sent meanwhile
            return any(text in line for line in self.console)

        poll(logged, timeout, f"the page to log {text!r}")

    def urls(self) -> list[str]:
        return [r["request"]["url"] for r in self.requests]


@contextmanager
def chromium(executable: str = CHROMIUM) -> Iterator[Browser]:
    profile = Path(tempfile.mkdtemp(prefix="trackflow-chromium-"))
    log = (profile.parent / f"{profile.name}.log").open("wb")
    process = subprocess.Popen(
        [executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    try:
        port = poll(lambda: _port(process, profile, log.name), 60, "Chromium's DevTools port")
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(t for t in targets if t["type"] == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=None) as socket:
            browser = Browser(socket)
            for domain in ("Page", "Runtime", "Network"):
                browser.call(f"{domain}.enable")
            yield browser
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        Path(log.name).unlink(missing_ok=True)
        shutil.rmtree(profile, ignore_errors=True)


def _port(process: subprocess.Popen[bytes], profile: Path, log: str) -> str | None:
    """The port from ``DevToolsActivePort`` (port, then path), once Chromium has written it."""
    if process.poll() is not None:
        raise AssertionError(f"Chromium exited: {Path(log).read_text(errors='replace')[-3000:]}")
    try:
        lines = (profile / "DevToolsActivePort").read_text().split()
    except FileNotFoundError:
        return None
    return lines[0] if len(lines) == 2 else None
