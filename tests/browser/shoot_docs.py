"""Take the README's screenshots of the page: ``python -m tests.browser.shoot_docs``.

Runs a real server (with the LLM gate, to hold a job mid-way) and Debian's chromium, and
writes docs/screenshot-{uploading,in-progress,notes,failed,polling}.png.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

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
        server = LiveServer(tmp / "data", "--llm-url", gate.url).start()
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
                browser.close()
        finally:
            gate.close()
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
