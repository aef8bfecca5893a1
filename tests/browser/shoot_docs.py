"""Take the README's screenshots of the page: ``python -m tests.browser.shoot_docs``.

Runs a real server (with the LLM gate, to hold a job mid-way) and Debian's chromium, and
writes docs/screenshot-{uploading,in-progress,notes,failed,polling}.png, then the dashboard's:
docs/screenshot-{dashboard,detail,phone,offline}.png (demo jobs: one failed once, then succeeded).
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, Route, WebSocketRoute, sync_playwright

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.liveserver import ROOT, LiveServer, LlmGate, make_corrupt_pdf, make_pdf

DOCS = ROOT / "docs"
VIEWPORT = {"width": 760, "height": 600}


def shoot(page: Page, name: str, full: bool = False) -> None:
    path = DOCS / f"screenshot-{name}.png"
    page.screenshot(path=str(path), full_page=full)
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KiB)")


def main() -> int:
    DOCS.mkdir(exist_ok=True)
    gate = LlmGate()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        server = LiveServer(tmp / "data", "--llm-url", gate.url, "--demo-jobs").start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
                blocked = False
                sockets: list[WebSocketRoute] = []

                def route_ws(ws: WebSocketRoute) -> None:
                    if blocked:
                        ws.close(code=4500, reason="blocked for the screenshot")
                        return
                    ws.connect_to_server()
                    sockets.append(ws)

                context.route_web_socket(re.compile(r"/ws$"), route_ws)
                page = context.new_page()
                page.goto(server.url + "/")
                page.get_by_label("Your name").fill("ada")
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_selector("#connection[data-state='live']")

                # Uploading: hold the upload request itself.
                held: list[Route] = []
                page.route(
                    "**/api/jobs",
                    lambda route: (
                        held.append(route) if route.request.method == "POST" else route.continue_()
                    ),
                )
                gate.hold()
                page.set_input_files("#file-input", [
                    str(make_pdf(tmp / "lecture-notes.pdf", "Distributed Systems Lecture 4",
                                 pages=5)),
                ])  # fmt: skip
                page.wait_for_selector("li.job[data-status='uploading']")
                shoot(page, "uploading")
                for route in held:
                    route.continue_()
                page.unroute("**/api/jobs")

                # In progress: the job waits at its generating stage.
                page.wait_for_selector("li.job[data-status='active'] >> text=Generating notes")
                page.wait_for_timeout(3000)  # let the elapsed time count up a little
                shoot(page, "in-progress")

                # Polling: the socket drops and is refused; the job goes on over long-poll.
                blocked = True
                for ws in sockets:
                    ws.close(code=4501, reason="dropped for the screenshot")
                page.wait_for_selector("#connection[data-state='polling']")
                shoot(page, "polling")
                gate.release()
                page.wait_for_selector("li.job[data-status='completed']")
                blocked = False
                page.wait_for_selector("#connection[data-state='live']", timeout=60_000)

                # Failed: a damaged upload shows its error (the finished one its links).
                page.set_input_files("#file-input", [str(make_corrupt_pdf(tmp / "scan.pdf"))])
                page.wait_for_selector("li.job[data-status='failed']")
                shoot(page, "failed")

                # Completed with notes.
                page.get_by_role("link", name="View notes of lecture-notes.pdf").click()
                page.wait_for_selector("#notes-points li")
                shoot(page, "notes", full=True)
                dashboard(browser, page, server)
                browser.close()
        finally:
            gate.close()
            server.stop()
    return 0


def dashboard(browser: Any, page: Page, server: LiveServer) -> None:
    """The list with its tabs, a job's detail with its timeline, a phone, the offline banner."""
    token = server.token("ada")
    jobs = [{"type": "demo.sleep", "label": f"chapter-{n}.pdf", "payload": {"seconds": 0}}
            for n in range(1, 4)]
    jobs += [
        {"type": "demo.fail", "label": "flaky-upstream.pdf", "maxAttempts": 2,
         "payload": {"recoverable": True, "failAttempts": 1}},
        {"type": "demo.sleep", "label": "long-report.pdf", "payload": {"seconds": 600,
                                                                      "steps": 600}},
    ]  # fmt: skip
    request = urllib.request.Request(
        server.url + "/api/jobs", data=json.dumps({"jobs": jobs}).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as resp:
        made = json.load(resp)["jobs"]
    page.goto(server.url + "/#/")
    page.wait_for_selector("li.job[data-status='active']")
    page.wait_for_selector(f"li.job[data-job-id='{made[3]['jobId']}'][data-status='completed']")
    page.wait_for_timeout(1500)
    shoot(page, "dashboard", full=True)
    page.goto(server.url + f"/#/jobs/{made[3]['jobId']}")
    page.wait_for_selector("#timeline li[data-type='job.completed']")
    shoot(page, "detail", full=True)
    phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1)
    small = phone.new_page()
    small.goto(server.url + "/")
    small.get_by_label("Your name").fill("ada")
    small.get_by_role("button", name="Sign in").click()
    small.wait_for_selector("li.job[data-status='active']")
    shoot(small, "phone")
    phone.close()
    page.goto(server.url + "/#/")
    page.wait_for_selector("li.job[data-status='active']")
    server.kill()
    page.wait_for_selector("#offline-banner:not([hidden])", timeout=30_000)
    shoot(page, "offline", full=True)


if __name__ == "__main__":
    sys.exit(main())
