"""Security regression tests: the real server as a process, attacked the way issue 13 found.

``live`` is one server (with the demo job types) shared by a module's tests; ``evil_site``
serves pages from another port of 127.0.0.1, as a page an attacker controls would be.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, sync_playwright

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.liveserver import LiveServer


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("live") / "data", "--demo-jobs").start()
    yield server
    server.stop()


def call(
    server: LiveServer, method: str, path: str, body: Any = None, token: str = ""
) -> tuple[int, Any]:
    """One request as a program sends it (no Origin); status and JSON body, errors included."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(server.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


class EvilSite:
    """Serves whatever a test puts at a path, from its own port of 127.0.0.1: HTML given as a
    string, anything else as ``(content type, bytes)``. (Also the other origin of an app.)"""

    def __init__(self) -> None:
        self.pages: dict[str, str | tuple[str, bytes]] = {}
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                page = site.pages.get(self.path, "not here")
                kind, body = page if isinstance(page, tuple) else ("text/html", page.encode())
                self.send_response(200 if self.path in site.pages else 404)
                self.send_header("Content-Type", f"{kind}; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium, for the tests that attack (or use) the server from a page."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context()
    context.set_default_timeout(20_000)
    yield context
    context.close()


@pytest.fixture(scope="module")
def evil_site() -> Iterator[EvilSite]:
    site = EvilSite()
    yield site
    site.close()
