"""Browser tests: Debian's chromium driven by Playwright against real server processes.

Two servers per run: ``server`` makes notes offline (cache hits work), ``gated_server`` asks an
``LlmGate`` first, so a test can hold a real pdf job in its generating stage. A test that
fails leaves a screenshot and the page's console under ``test-artifacts/``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from tests.liveserver import ROOT, LiveServer, LlmGate

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 30_000
expect.set_options(timeout=15_000)  # two shared cores: generous, the assertions stay exact


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="package")
def gate() -> Iterator[LlmGate]:
    gate = LlmGate()
    yield gate
    gate.close()


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("server") / "data", "--concurrency", "4").start()
    yield live
    live.stop()


@pytest.fixture(scope="package")
def gated_server(tmp_path_factory: pytest.TempPathFactory, gate: LlmGate) -> Iterator[LiveServer]:
    live = LiveServer(
        tmp_path_factory.mktemp("gated") / "data", "--concurrency", "4",
        "--llm-url", gate.url, "--llm-timeout-seconds", "90",
    ).start()  # fmt: skip
    yield live
    live.stop()


@pytest.fixture
def gate_released(gate: LlmGate) -> Iterator[LlmGate]:
    """The gate, opened again after the test whatever happened."""
    yield gate
    gate.release()


class Session:
    """One signed-in browser context on one server, with what the page did recorded."""

    def __init__(self, context: BrowserContext, page: Page, server: LiveServer, user: str) -> None:
        self.context = context
        self.page = page
        self.server = server
        self.user = user
        self.errors: list[str] = []
        self.console: list[str] = []
        self.requests: list[tuple[float, str]] = []
        self.meta: dict[str, Any] = {}
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))
        page.on("request", lambda req: self.requests.append((time.monotonic(), req.url)))

    def open(self) -> Session:
        page = self.page
        page.goto(self.server.url + "/")
        page.get_by_label("Your name").fill(self.user)
        page.get_by_role("button", name="Sign in").click()
        self.wait_connection("live")
        self.meta = page.evaluate("window.jobserver.client.meta")
        return self

    def stage_name(self, stage: str) -> str:
        name: str = self.meta["stageNames"][stage]
        return name

    def wait_connection(self, state: str, timeout: float = TIMEOUT_MS) -> None:
        self.page.wait_for_selector(f"#connection[data-state='{state}']", timeout=timeout)

    def upload(self, *paths: Path) -> None:
        self.page.set_input_files("#file-input", [str(p) for p in paths])

    def row(self, filename: str) -> Any:
        return self.page.locator("li.job", has=self.page.locator(".job-name", has_text=filename))

    def wait_row(self, filename: str, status: str, timeout: float = TIMEOUT_MS) -> Any:
        row = self.row(filename)
        row.and_(self.page.locator(f"li.job[data-status='{status}']")).wait_for(timeout=timeout)
        return row

    def wait_stage(self, filename: str, stage: str, timeout: float = TIMEOUT_MS) -> Any:
        row = self.row(filename)
        row.locator(".job-stage", has_text=self.stage_name(stage)).wait_for(timeout=timeout)
        return row

    def job_id(self, filename: str) -> str:
        value: str = self.row(filename).get_attribute("data-job-id")
        return value

    def polls(self, after: float = 0.0) -> list[tuple[float, str]]:
        return [(t, url) for t, url in self.requests if "/api/events" in url and t >= after]

    def history(self) -> list[dict[str, Any]]:
        """Every state each job row showed, in order (recorded by an init script)."""
        value: list[dict[str, Any]] = self.page.evaluate("window.__rowHistory || []")
        return value


# Records each job row's (status, stage, progress) whenever it changes, so a test can check
# that progress was shown and never went backwards, however fast the job was.
ROW_HISTORY = """
window.__rowHistory = [];
new MutationObserver(() => {
  for (const li of document.querySelectorAll('li.job')) {
    const bar = li.querySelector('.job-progress');
    const entry = { id: li.dataset.jobId, status: li.dataset.status,
      stage: li.querySelector('.job-stage').textContent,
      progress: bar.hasAttribute('value') ? bar.value : null };
    const last = window.__rowHistory.findLast((e) => e.id === entry.id);
    if (!last || last.status !== entry.status || last.stage !== entry.stage
        || last.progress !== entry.progress) window.__rowHistory.push(entry);
  }
}).observe(document, { subtree: true, childList: true, attributes: true,
  characterData: true });
"""


@pytest.fixture
def make_session(
    browser: Browser, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Session]]:
    """Open a signed-in page on a server as a fresh user (phone-sized when asked)."""
    sessions: list[Session] = []

    def make(server: LiveServer, *, phone: bool = False, user: str | None = None) -> Session:
        viewport = {"width": 390, "height": 844} if phone else {"width": 1100, "height": 900}
        context = browser.new_context(viewport=viewport, accept_downloads=True)
        context.set_default_timeout(TIMEOUT_MS)
        context.add_init_script(ROW_HISTORY)
        page = context.new_page()
        name = user or f"{_slug(request.node.name)[:40]}-{uuid.uuid4().hex[:6]}"
        session = Session(context, page, server, name)
        sessions.append(session)
        return session

    yield make
    failed = any(
        getattr(request.node, f"report_{when}", None) is not None
        and getattr(request.node, f"report_{when}").failed
        for when in ("setup", "call")
    )
    for index, session in enumerate(sessions):
        if failed:
            _save_artifacts(request.node.name, index, session)
        session.context.close()
    for session in sessions:
        assert not session.errors, f"uncaught errors in the page: {session.errors}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-").lower() or "test"


def _save_artifacts(test_name: str, index: int, session: Session) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    stem = ARTIFACTS / f"{_slug(test_name)}-{index}"
    try:
        session.page.screenshot(path=f"{stem}.png", full_page=True)
    except Exception as exc:  # a crashed page still gets its log saved
        session.console.append(f"screenshot failed: {exc}")
    Path(f"{stem}.log").write_text(
        json.dumps({"errors": session.errors, "console": session.console}, indent=2)
    )
