"""The page in a real browser against the real server: the seed's test matrix, and more.

Every upload is a real PDF through the file picker or a real drop; every job is a real
``pdf-notes`` job. Tests that must act in the middle of a job hold it at its generating stage
with the LLM gate (see tests/liveserver.py) instead of racing it.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import Route, WebSocketRoute, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.browser.conftest import Session
from tests.liveserver import ROOT, LiveServer, LlmGate, make_corrupt_pdf, make_pdf

MakeSession = Callable[..., Session]


def _tag() -> str:
    return uuid.uuid4().hex[:10]  # makes each PDF's content (and so its hash) new


def job_history(s: Session, job_id: str) -> list[dict[str, Any]]:
    return [e for e in s.history() if e["id"] == job_id]


def assert_never_backwards(history: list[dict[str, Any]]) -> None:
    """Progress only grows and a finished job stays finished: no event out of order."""
    progress = [e["progress"] for e in history if e["progress"] is not None]
    assert progress == sorted(progress), f"progress went backwards: {progress}"
    statuses = [e["status"] for e in history]
    if "completed" in statuses:
        assert set(statuses[statuses.index("completed") :]) == {"completed"}, statuses


def drop_files(s: Session, *paths: Path) -> None:
    """A real drop on the drop zone, carrying the files' bytes."""
    files = [{"name": p.name, "data": base64.b64encode(p.read_bytes()).decode()} for p in paths]
    s.page.evaluate(
        """(files) => {
          const transfer = new DataTransfer();
          for (const f of files) {
            const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
            transfer.items.add(new File([bytes], f.name, { type: 'application/pdf' }));
          }
          const zone = document.querySelector('#dropzone');
          zone.dispatchEvent(new DragEvent('dragover', { dataTransfer: transfer, bubbles: true,
            cancelable: true }));
          zone.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true,
            cancelable: true }));
        }""",
        files,
    )


def server_job(s: Session, job_id: str) -> dict[str, Any]:
    """The job as the server has it (asked over plain HTTP, not through the page)."""
    job: dict[str, Any] = s.server.get(f"/api/jobs/{job_id}", s.server.token(s.user))
    return job


def test_happy_path_upload_shows_progress_then_notes(
    make_session: MakeSession, server: LiveServer, tmp_path: Path
) -> None:
    s = make_session(server).open()
    page = s.page
    title = "Queueing Theory for Job Servers"
    pdf = make_pdf(tmp_path / "queueing.pdf", title, pages=4, tag=_tag())
    s.upload(pdf)
    row = s.wait_row("queueing.pdf", "completed")
    job_id = s.job_id("queueing.pdf")

    history = job_history(s, job_id)
    shown = {e["stage"] for e in history}
    assert any(e["status"] == "active" and 0 < e["progress"] < 100 for e in history), history
    assert s.stage_name("extracting") in shown and s.stage_name("completed") in shown, shown
    assert shown <= set(s.meta["stageNames"].values()), "a stage shown that the server never named"
    assert_never_backwards(history)
    expect(row.locator(".job-progress")).to_have_attribute("aria-label", "Progress of queueing.pdf")
    expect(row.locator(".job-elapsed")).to_have_text(re.compile(r"^\d+ s$"))
    expect(page.locator("#announcer")).to_contain_text("queueing.pdf: completed, notes ready")

    row.get_by_role("link", name="View notes of queueing.pdf").click()
    notes = page.locator("#notes")
    expect(notes).to_be_visible()
    expect(page.locator("#notes-title")).to_have_text(title)
    expect(page.locator("#notes-source")).to_have_text("queueing.pdf · 4 pages")
    expect(page.locator("#notes-summary")).not_to_be_empty()
    expect(page.locator("#notes-points li").first).to_contain_text(re.compile(r"\(p\. \d+\)"))
    expect(page.locator("#notes-sections li")).to_have_count(4)
    expect(page.locator("#notes-sections li").nth(2)).to_contain_text("3. Results (p. 3)")
    assert page.locator("#notes-keywords li").count() >= 3
    with page.expect_download() as download:
        notes.get_by_role("link", name="Download Markdown").click()
    markdown = Path(download.value.path()).read_text()
    assert markdown.startswith(f"# {title}"), markdown[:200]
    assert "Results" in markdown

    notes.get_by_role("link", name="Back to jobs").click()
    expect(notes).to_be_hidden()
    expect(s.row("queueing.pdf")).to_be_visible()


def test_cache_hit_same_file_again_completes_from_the_cache(
    make_session: MakeSession, server: LiveServer, tmp_path: Path
) -> None:
    s = make_session(server).open()
    first = make_pdf(tmp_path / "first.pdf", "Caching Uploaded Documents", tag=_tag())
    s.upload(first)
    s.wait_row("first.pdf", "completed")
    again = tmp_path / "again.pdf"
    shutil.copy(first, again)

    s.upload(again)
    row = s.wait_row("again.pdf", "completed")
    expect(row.locator(".job-message")).to_contain_text("(from cache)")
    job = server_job(s, s.job_id("again.pdf"))
    assert job["result"]["cacheHit"] is True
    assert job["result"]["title"] == "Caching Uploaded Documents"
    row.get_by_role("link", name="View notes of again.pdf").click()
    expect(s.page.locator("#notes-title")).to_have_text("Caching Uploaded Documents")


def test_failing_job_shows_its_error(
    make_session: MakeSession, server: LiveServer, tmp_path: Path
) -> None:
    s = make_session(server).open()
    # The job fails before the upload's answer reaches the page: its events come first, over
    # the socket, and the row must still end up named by its file, once.
    held: list[Route] = []
    s.page.route("**/api/jobs", lambda route: held.append(route)
                 if route.request.method == "POST" else route.continue_())  # fmt: skip
    broken = make_corrupt_pdf(tmp_path / "broken.pdf", _tag())
    s.upload(broken)
    while not held:
        s.page.wait_for_timeout(50)
    # The browser does not hand an intercepted request's file to the test: send the same form.
    boundary = f"test{uuid.uuid4().hex}"
    form = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="broken.pdf"\r\nContent-Type: application/pdf\r\n\r\n'
    ).encode()
    form += broken.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    headers = {k: v for k, v in held[0].request.headers.items() if k != "content-length"}
    headers["content-type"] = f"multipart/form-data; boundary={boundary}"
    answer = held[0].fetch(headers=headers, post_data=form)  # the job is created and runs now
    assert answer.status == 202, answer.text()
    s.page.locator("li.job[data-status='failed']").wait_for()
    held[0].fulfill(response=answer)
    row = s.wait_row("broken.pdf", "failed")
    expect(s.page.locator("li.job")).to_have_count(1)
    error = server_job(s, s.job_id("broken.pdf"))["error"]
    assert error["code"] == "CORRUPT_PDF"
    shown = row.locator(".job-error")
    expect(shown).to_be_visible()
    expect(shown).to_have_attribute("role", "alert")
    # In words from the page's table, with what to do; the code stays for support.
    expect(shown).to_have_text(
        "This PDF is damaged and could not be read. Choose another file. (CORRUPT_PDF)")
    expect(row.locator(".job-stage")).to_have_text(s.stage_name("failed"))
    assert error["recoverable"] is False  # so trying again cannot help: no Retry
    expect(row.get_by_role("button", name="Retry broken.pdf")).to_be_hidden()
    expect(row.get_by_role("button", name="Cancel broken.pdf")).to_be_hidden()
    expect(row.get_by_role("link", name="View notes of broken.pdf")).to_be_hidden()
    expect(s.page.locator("#announcer")).to_contain_text("broken.pdf failed:")
    expect(s.page.locator("#announcer")).not_to_contain_text("pdf-notes")


def test_several_uploads_at_once_each_tracked(
    make_session: MakeSession, server: LiveServer, tmp_path: Path
) -> None:
    s = make_session(server).open()
    titles = {f"paper{i}.pdf": f"Paper {i} on Scheduling" for i in range(1, 4)}
    pdfs = [make_pdf(tmp_path / name, title, pages=2 + i, tag=_tag())
            for i, (name, title) in enumerate(titles.items())]  # fmt: skip
    drop_files(s, *pdfs)
    ids = set()
    for name in titles:
        s.wait_row(name, "completed")
        ids.add(s.job_id(name))
    assert len(ids) == 3
    expect(s.page.locator("li.job")).to_have_count(3)
    for name, title in titles.items():
        job_id = s.job_id(name)
        history = job_history(s, job_id)
        assert history[-1]["status"] == "completed"
        assert_never_backwards(history)
        assert server_job(s, job_id)["payload"]["filename"] == name
        s.row(name).get_by_role("link", name=f"View notes of {name}").click()
        expect(s.page.locator("#notes-title")).to_have_text(title)
        s.page.get_by_role("link", name="Back to jobs").click()


def test_websocket_drop_switches_to_polling_and_back(
    make_session: MakeSession, gated_server: LiveServer, gate_released: LlmGate, tmp_path: Path
) -> None:
    gate = gate_released
    s = make_session(gated_server)
    blocked = False
    sockets: list[tuple[WebSocketRoute, WebSocketRoute]] = []
    sent: list[dict[str, Any]] = []

    def route(ws: WebSocketRoute) -> None:
        if blocked:
            ws.close(code=4500, reason="test: the WebSocket is blocked")
            return
        upstream = ws.connect_to_server()

        def to_server(message: str | bytes) -> None:
            sent.append(json.loads(message))
            upstream.send(message)

        ws.on_message(to_server)
        sockets.append((ws, upstream))

    s.context.route_web_socket(re.compile(r"/ws$"), route)
    s.open()
    gate.hold()
    s.upload(make_pdf(tmp_path / "dropped.pdf", "Surviving Dropped Sockets", tag=_tag()))
    gate.wait_held()
    s.wait_stage("dropped.pdf", "generating")

    blocked = True
    for page_side, upstream in sockets:
        page_side.close(code=4501, reason="test: the connection dropped")
        upstream.close()
    dropped_at = time.monotonic()
    s.wait_connection("polling")
    gate.release()
    s.wait_row("dropped.pdf", "completed")  # learned by long-polling: the socket is refused
    assert s.polls(after=dropped_at), "no long-poll while the WebSocket was down"
    assert s.page.evaluate("window.jobserver.client.usingPolling()") is True
    assert s.page.evaluate("window.jobserver.client.isConnected()") is False

    last_seq = server_job(s, s.job_id("dropped.pdf"))["lastSeq"]
    blocked = False
    s.wait_connection("live")
    back_at = time.monotonic()
    resumed = [m for m in sent if m.get("type") == "subscribe" and m.get("userId") == s.user]
    assert len(resumed) >= 2, resumed
    assert resumed[-1]["since"] == last_seq, "the socket did not resume where polling left off"
    assert s.page.evaluate("window.jobserver.client.usingPolling()") is False

    # A new job now arrives over the socket alone: polling has stopped.
    s.upload(make_pdf(tmp_path / "after.pdf", "Back On The Socket", tag=_tag()))
    s.wait_row("after.pdf", "completed")
    s.page.wait_for_timeout(1000)
    late = [url for t, url in s.polls(after=back_at + 0.5)]
    assert not late, f"still polling after the WebSocket came back: {late}"
    for name in ("dropped.pdf", "after.pdf"):
        assert_never_backwards(job_history(s, s.job_id(name)))


def test_reload_mid_job_resumes_tracking(
    make_session: MakeSession, gated_server: LiveServer, gate_released: LlmGate, tmp_path: Path
) -> None:
    gate = gate_released
    s = make_session(gated_server)
    frames: list[dict[str, Any]] = []
    s.page.on("websocket", lambda ws: ws.on("framesent", lambda f: frames.append(json.loads(f))))
    s.open()
    gate.hold()
    s.upload(make_pdf(tmp_path / "reload.pdf", "Reloading Mid Job", tag=_tag()))
    gate.wait_held()
    s.wait_stage("reload.pdf", "generating")
    job_id = s.job_id("reload.pdf")
    key = f"jobclient:{s.user}"
    stored = s.page.evaluate(f"JSON.parse(localStorage.getItem({json.dumps(key)}))")
    assert job_id in stored["tracked"]
    cursor = stored["cursors"][f"user:{s.user}"]

    frames.clear()
    s.page.reload()
    s.wait_connection("live")
    s.wait_stage("reload.pdf", "generating")  # the row is back, from the server's state
    subscribes = {(m.get("userId") or m.get("jobId")): m for m in frames
                  if m.get("type") == "subscribe"}  # fmt: skip
    assert subscribes[s.user]["since"] == cursor, "the reloaded page did not resume its cursor"
    assert subscribes[job_id]["since"] >= cursor, "the tracked job was not followed again"
    gate.release()
    row = s.wait_row("reload.pdf", "completed")
    expect(row.get_by_role("link", name="View notes of reload.pdf")).to_be_visible()
    stored = s.page.evaluate(f"JSON.parse(localStorage.getItem({json.dumps(key)}))")
    assert job_id not in stored["tracked"], "a finished job is still tracked"


def test_network_offline_falls_back_and_recovers(
    make_session: MakeSession, gated_server: LiveServer, gate_released: LlmGate, tmp_path: Path
) -> None:
    gate = gate_released
    s = make_session(gated_server).open()
    gate.hold()
    s.upload(make_pdf(tmp_path / "offline.pdf", "Working Offline", tag=_tag()))
    gate.wait_held()
    s.wait_stage("offline.pdf", "generating")
    job_id = s.job_id("offline.pdf")

    s.context.set_offline(True)
    s.wait_connection("offline")
    expect(s.page.locator("#connection")).to_have_attribute("title", re.compile("offline"))
    gate.release()
    deadline = time.monotonic() + 30
    while server_job(s, job_id)["status"] != "completed":
        assert time.monotonic() < deadline, "the job did not finish on the server"
        time.sleep(0.1)
    # The page cannot know yet; it must say so, not pretend, and keep working.
    expect(s.row("offline.pdf")).to_have_attribute("data-status", "active")
    # Offline is a banner with the reason; running rows wait, actions that need the server rest.
    expect(s.page.get_by_role("alert").filter(has_text="Offline.")).to_contain_text("offline")
    expect(s.row("offline.pdf").locator(".job-stage")).to_have_text("Waiting for the server")
    expect(s.page.locator("#file-input")).to_be_disabled()
    s.upload(make_pdf(tmp_path / "unsent.pdf", "Not Sent", tag=_tag()))
    unsent = s.wait_row("unsent.pdf", "failed")
    expect(unsent.locator(".job-error")).to_contain_text("Cannot reach the server")
    unsent.get_by_role("button", name="Dismiss unsent.pdf").click()
    expect(s.row("unsent.pdf")).to_have_count(0)

    s.context.set_offline(False)
    s.wait_connection("live")
    row = s.wait_row("offline.pdf", "completed")  # the missed events, resumed from the cursor
    expect(row.get_by_role("link", name="View notes of offline.pdf")).to_be_visible()
    assert_never_backwards(job_history(s, job_id))


def test_cancel_then_retry_a_running_job(
    make_session: MakeSession, gated_server: LiveServer, gate_released: LlmGate, tmp_path: Path
) -> None:
    gate = gate_released
    s = make_session(gated_server).open()
    gate.hold()
    s.upload(make_pdf(tmp_path / "cancel.pdf", "Changing My Mind", tag=_tag()))
    gate.wait_held()
    row = s.wait_stage("cancel.pdf", "generating")
    row.get_by_role("button", name="Cancel cancel.pdf").click()
    s.wait_row("cancel.pdf", "cancelled")
    expect(row.locator(".job-stage")).to_have_text(s.stage_name("cancelled"))
    retry = row.get_by_role("button", name="Retry cancel.pdf")
    expect(retry).to_be_focused()  # keyboard focus moved from the vanished Cancel button
    gate.release()
    retry.click()
    s.wait_row("cancel.pdf", "completed")
    expect(row.get_by_role("link", name="View notes of cancel.pdf")).to_be_visible()
    expect(s.page.locator("li.job")).to_have_count(1)


def test_phone_screen_and_keyboard_only(
    make_session: MakeSession, server: LiveServer, tmp_path: Path
) -> None:
    s = make_session(server, phone=True)
    page = s.page
    page.goto(server.url + "/")
    expect(page.get_by_label("Your name")).to_be_focused()
    page.keyboard.type(s.user)
    page.keyboard.press("Enter")
    s.wait_connection("live")
    s.meta = page.evaluate("window.jobserver.client.meta")

    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "file-input":
            break
    assert page.evaluate("document.activeElement.id") == "file-input", "file picker not reachable"
    chooser = None
    for _ in range(3):  # headless chromium now and then drops the first key's user activation
        try:
            with page.expect_file_chooser(timeout=5000) as opened:
                page.keyboard.press("Space")
            chooser = opened.value
            break
        except PlaywrightTimeoutError:
            page.focus("#file-input")
    assert chooser is not None, "Space on the focused file picker never opened it"
    chooser.set_files(str(make_pdf(tmp_path / "phone.pdf", "Small Screens", tag=_tag())))
    s.wait_row("phone.pdf", "completed")
    link = s.row("phone.pdf").get_by_role("link", name="View notes of phone.pdf")
    link.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#notes-title")).to_have_text("Small Screens")
    expect(page.locator("#notes")).to_be_focused()

    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways on a phone by {overflow}px"
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('button, input, a[href], progress')]
             .filter((el) => el.offsetParent !== null)
             .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                             && !el.textContent.trim())
             .map((el) => el.outerHTML.slice(0, 80))"""
    )
    assert not unlabelled, f"controls without a name: {unlabelled}"


def test_a_job_submitted_elsewhere_appears_live(
    make_session: MakeSession, server: LiveServer, tmp_path: Path
) -> None:
    """The page follows the user, not only its own uploads: the CLI's job shows up by name."""
    s = make_session(server).open()
    pdf = make_pdf(tmp_path / "from-cli.pdf", "Submitted From A Terminal", tag=_tag())
    done = subprocess.run(
        [sys.executable, str(ROOT / "server.py"), "submit", str(pdf), "--server", server.url,
         "--token", server.token(s.user)],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    row = s.wait_row("from-cli.pdf", "completed")
    expect(row.get_by_role("link", name="View notes of from-cli.pdf")).to_be_visible()
    assert_never_backwards(job_history(s, s.job_id("from-cli.pdf")))
