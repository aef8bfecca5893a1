"""The page as a job dashboard, in Chromium against a real server with the demo job types:
status tabs with counts, load more, search, bulk retry and removal seen live in a second tab,
a job's detail and timeline after a restart, the offline banner, axe-core and a phone screen."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Session
from tests.liveserver import ROOT, LiveServer, make_pdf

MakeSession = Callable[..., Session]

# axe-core from npm (package.json; scripts/test runs `npm ci`), not vendored.
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("dash") / "data", "--demo-jobs",
                      "--concurrency", "8").start()  # fmt: skip
    yield live
    live.stop()


def call(server: LiveServer, token: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.load(resp)


def wait_counts(server: LiveServer, token: str, want: dict[str, int], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        counts = call(server, token, "GET", "/api/jobs?limit=1")["counts"]
        if all(counts[k] == v for k, v in want.items()):
            return
        assert time.monotonic() < deadline, f"counts {counts}, waiting for {want}"
        time.sleep(0.2)


def tab(page: Page, status: str) -> Any:
    return page.locator(f".tabs .tab[data-status='{status}']")


def no_sideways_scroll(page: Page) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px at {page.url}"


def axe_check(page: Page, what: str) -> None:
    """axe-core (from npm, scripts/test installs it) finds no serious or critical violation."""
    assert AXE.is_file(), "axe-core is missing: run `npm ci` (scripts/test does)"
    if not page.evaluate("Boolean(window.axe)"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate("""async () => {
        const result = await axe.run(document, { resultTypes: ['violations'] });
        return { passes: result.passes.length, found: result.violations
          .filter((v) => ['serious', 'critical'].includes(v.impact))
          .map((v) => ({ id: v.id, impact: v.impact,
                         nodes: v.nodes.map((n) => n.html).slice(0, 3) })) };
    }""")
    assert result["passes"] > 10, f"axe-core checked next to nothing on {what}"
    assert not result["found"], f"axe-core on {what}: {result['found']}"


def test_120_jobs_tabs_load_more_search_bulk_retry_and_removal_seen_live(
    make_session: MakeSession, demo_server: LiveServer
) -> None:
    a = make_session(demo_server).open()
    token = demo_server.token(a.user)
    jobs = (
        [{"type": "demo.sleep", "label": f"report {n}.pdf", "payload": {"seconds": 0}}
         for n in range(100)]
        + [{"type": "demo.sleep", "label": f"later {n}", "delaySeconds": 3600} for n in range(10)]
        + [{"type": "demo.fail", "label": f"flaky {n}",
            "payload": {"recoverable": True, "seconds": 5}} for n in range(10)]
    )  # fmt: skip
    made = call(demo_server, token, "POST", "/api/jobs", {"jobs": jobs})["jobs"]
    flaky = [j["jobId"] for j in made[-10:]]
    wait_counts(demo_server, token, {"completed": 100, "failed": 10, "queued": 10, "all": 120})
    b = make_session(demo_server, user=a.user).open()
    page = a.page
    page.reload()
    a.wait_connection("live")
    for status, n in (("", 120), ("queued", 10), ("active", 0), ("completed", 100),
                      ("failed", 10), ("cancelled", 0)):  # fmt: skip
        expect(tab(page, status)).to_contain_text(f"({n})")
    rows = page.locator("li.job")
    expect(rows).to_have_count(50)
    expect(page.locator("#jobs-shown")).to_have_text("Showing 50 of 120 jobs")
    for shown in (100, 120):
        page.get_by_role("button", name="Load more").click()
        expect(rows).to_have_count(shown)
    expect(page.get_by_role("button", name="Load more")).to_be_hidden()
    # Finished rows are compact: no progress bar; each row says when it ran.
    done = page.locator("li.job[data-status='completed']").first
    expect(done.locator(".job-progress")).to_be_hidden()
    expect(done.locator(".job-times")).to_contain_text(re.compile(r"Started .* Finished "))
    expect(done.get_by_role("button", name=re.compile("^Retry"))).to_be_hidden()
    # Search narrows the list and the counts.
    page.get_by_label("Search jobs by name or type").fill("flaky")
    expect(tab(page, "completed")).to_contain_text("(0)")
    expect(page.locator("#jobs[aria-busy='false']")).to_have_count(1)
    expect(rows).to_have_count(10)
    expect(tab(page, "")).to_contain_text("(10)")
    expect(tab(page, "completed")).to_contain_text("(0)")
    page.get_by_label("Search jobs by name or type").fill("")
    expect(tab(page, "")).to_contain_text("(120)")
    tab(page, "failed").click()
    expect(page.locator("#jobs[aria-busy='false']")).to_have_count(1)
    expect(rows).to_have_count(10)
    failed_row = page.locator("li.job").first
    expect(failed_row.get_by_role("button", name=re.compile("^Retry flaky"))).to_be_visible()
    # Bulk retry of the 10 failed jobs: the other tab sees them run again, live.
    page.get_by_label("Select all shown").check()
    page.get_by_role("button", name="Retry selected").click()
    expect(page.locator("#bulk-status")).to_have_text("Retried 10 jobs.")
    bp = b.page
    for job_id in flaky:
        expect(bp.locator(f"li.job[data-job-id='{job_id}']")).to_have_attribute(
            "data-status", re.compile("queued|active"))
    expect(tab(bp, "failed")).to_contain_text("(0)")
    wait_counts(demo_server, token, {"failed": 10, "queued": 10})
    for job_id in flaky:
        expect(bp.locator(f"li.job[data-job-id='{job_id}']")).to_have_attribute(
            "data-status", "failed")
    # Removing every finished job: the other tab loses their rows and counts, live.
    tab(page, "").click()
    page.get_by_role("button", name="Remove all finished").click()
    expect(page.locator("#bulk-status")).to_have_text("Removed 110 finished jobs.")
    expect(bp.locator("li.job")).to_have_count(10)
    expect(tab(bp, "")).to_contain_text("(10)")
    expect(tab(bp, "completed")).to_contain_text("(0)")
    expect(bp.locator("li.job[data-status='queued']")).to_have_count(10)
    assert call(demo_server, token, "GET", "/api/jobs?limit=1")["counts"]["all"] == 10


def test_views_pass_axe_and_fit_a_phone(
    make_session: MakeSession, demo_server: LiveServer, browser: Any
) -> None:
    # The sign-in view, before anyone signs in, on a phone.
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        signin = context.new_page()
        signin.goto(demo_server.url + "/")
        expect(signin.get_by_label("Your name")).to_be_focused()
        signin.get_by_label("Your name").fill("no spaces please")
        signin.get_by_role("button", name="Sign in").click()
        expect(signin.locator("#signin-error")).to_have_text(
            'That name cannot be used: use 1 to 64 letters, digits, ".", "_", "@" or "-".')
        axe_check(signin, "the sign-in view")
        no_sideways_scroll(signin)
    finally:
        context.close()
    s = make_session(demo_server, phone=True).open()
    page = s.page
    expect(page.locator("#main")).to_be_focused()  # focus follows the sign-in, not the body
    token = demo_server.token(s.user)
    long = "a-rather-long-file-name-that-keeps-going-" * 4 + ".pdf"
    call(demo_server, token, "POST", "/api/jobs", {"jobs": [
        {"type": "demo.sleep", "label": long, "payload": {"seconds": 0}},
        {"type": "demo.fail", "label": "broken", "payload": {"code": "CORRUPT_PDF"}},
        {"type": "demo.fail", "label": "odd",
         "payload": {"code": "WIDGET_JAMMED", "message": "The widget jammed."}},
    ]})  # fmt: skip
    broken = s.row("broken").and_(page.locator("li.job[data-status='failed']"))
    expect(broken).to_have_count(1)
    # A human sentence and what to do, with the code for support; no Retry where it cannot help.
    expect(broken.locator(".job-error")).to_have_text(
        "This PDF is damaged and could not be read. Choose another file. (CORRUPT_PDF)")
    expect(broken.get_by_role("button", name="Retry broken")).to_be_hidden()
    expect(broken.get_by_role("button", name="Remove broken")).to_be_visible()
    s.wait_row(long, "completed")
    axe_check(page, "the job list")
    no_sideways_scroll(page)
    broken.get_by_role("link", name="broken").click()
    expect(page.locator("#detail")).to_be_focused()
    fields = page.locator("#detail-fields")
    expect(fields).to_contain_text("CORRUPT_PDF")
    # The page's sentence, then the server's own words, which differ here.
    expect(fields.locator("dd")).to_contain_text(["This PDF is damaged and could not be read.",
                                                  "This demo job fails on purpose"])  # fmt: skip
    expect(fields.locator("dd", has_text="This demo job fails on purpose")).to_have_count(1)
    expect(page.locator("#timeline li").last).to_have_attribute("data-type", "job.failed")
    axe_check(page, "the detail view")
    no_sideways_scroll(page)
    page.keyboard.press("Escape")
    expect(page.locator("#jobs-panel")).to_be_visible()
    # A code the page has no sentence for: its message is the sentence, shown once.
    s.row("odd").get_by_role("link", name="odd").click()
    expect(fields).to_contain_text("WIDGET_JAMMED")
    expect(fields.locator("dd", has_text="The widget jammed.")).to_have_count(1)
    expect(fields.locator("dt", has_text="Error message")).to_have_count(0)
    page.keyboard.press("Escape")
    expect(page.locator("#jobs-panel")).to_be_visible()
    page.get_by_role("link", name="Notes", exact=True).click()
    expect(page.locator("#notes-list-panel")).to_be_visible()
    axe_check(page, "the notes list")
    no_sideways_scroll(page)
    page.evaluate("location.hash = '#notes/nope'")
    expect(page.locator("#notes-error")).to_have_text(
        "These notes no longer exist. They may have been deleted. (NOTE_NOT_FOUND)")
    axe_check(page, "the notes view")
    no_sideways_scroll(page)
    page.keyboard.press("Escape")
    expect(page.locator("#notes")).to_be_hidden()
    expect(page.locator("#jobs-panel")).to_be_visible()


def test_upload_shows_bytes_can_be_cancelled_and_finished_notes_open_and_list_live(
    make_session: MakeSession, demo_server: LiveServer, tmp_path: Path
) -> None:
    a = make_session(demo_server).open()
    b = make_session(demo_server, user=a.user).open()
    b.page.get_by_role("link", name="Notes", exact=True).click()
    expect(b.page.locator("#notes-list-empty")).to_be_visible()
    page = a.page
    # A slow uplink (Chromium's own throttling) so the upload is seen halfway.
    cdp = a.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 256 * 1024})
    big = tmp_path / "big.pdf"
    small = make_pdf(tmp_path / "small.pdf", "Small Things", pages=2, tag=str(time.time()))
    big.write_bytes(small.read_bytes() + b"%" + b"0" * (3 * 1024 * 1024))
    page.get_by_label("Search jobs by name or type").click()  # a user gesture, for beforeunload
    a.upload(big)
    row = a.row("big.pdf")
    expect(row.locator(".job-message")).to_contain_text(re.compile(r"^[\d.]+ (KB|MB) of 3 MB$"))
    expect(row.locator(".job-stage")).to_have_text("Uploading")
    assert re.match(r"^\(\d+% · 1 running\) jobserver$", page.title()), page.title()
    dialogs: list[str] = []
    page.once("dialog", lambda dialog: (dialogs.append(dialog.type), dialog.dismiss()))
    page.close(run_before_unload=True)  # leaving mid-upload asks first; dismissed: we stay
    deadline = time.monotonic() + 10
    while not dialogs and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert dialogs == ["beforeunload"]
    row.get_by_role("button", name="Cancel upload of big.pdf").click()
    expect(row).to_have_attribute("data-status", "failed")
    expect(row.locator(".job-error")).to_contain_text("The upload was cancelled.")
    expect(row.get_by_role("button", name="Choose another file")).to_be_visible()
    uploads = demo_server.data_dir / "uploads"
    deadline = time.monotonic() + 10
    while [p for p in uploads.glob("*") if p.is_file()] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p.name for p in uploads.glob("*") if p.is_file()] == []  # no partial file kept
    assert " ERROR " not in demo_server.log.read_text()
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    row.get_by_role("button", name="Dismiss big.pdf").click()
    # A refused file is a failed row that says why, in words.
    not_pdf = tmp_path / "notes.txt"
    not_pdf.write_text("hello")
    a.upload(not_pdf)
    refused = a.wait_row("notes.txt", "failed")
    expect(refused.locator(".job-error")).to_have_text(
        "This file is not a PDF. Choose another file. (NOT_A_PDF)")
    refused.get_by_role("button", name="Dismiss notes.txt").click()
    # With the setting on, a file uploaded here opens its notes when done; the other tab's
    # notes list gets them live; the Markdown download is named after the file.
    page.get_by_label("Open the notes when a file I upload here is done").check()
    a.upload(small)
    expect(page.locator("#notes-title")).to_have_text("Small Things", timeout=60_000)
    expect(page.locator("#notes")).to_be_visible()
    expect(b.page.locator("#notes-list li")).to_have_count(1)
    expect(b.page.locator("#notes-list li")).to_contain_text("small.pdf")
    with page.expect_download() as download:
        page.locator("#notes").get_by_role("link", name="Download Markdown").click()
    assert download.value.suggested_filename == "small.md"
    expect(b.page.get_by_role("link", name="Download Markdown of small.pdf")).to_be_visible()


def test_server_stops_and_comes_back_then_a_jobs_whole_timeline(
    make_session: MakeSession, demo_server: LiveServer
) -> None:
    """Runs last in this file: it kills and restarts the module's server."""
    s = make_session(demo_server).open()
    page = s.page
    token = demo_server.token(s.user)
    flaky, _ = call(demo_server, token, "POST", "/api/jobs", {"jobs": [
        {"type": "demo.fail", "label": "flaky once", "maxAttempts": 2,
         "payload": {"recoverable": True, "failAttempts": 1}},
        {"type": "demo.sleep", "label": "long sleep", "maxAttempts": 2,
         "payload": {"seconds": 120, "steps": 120}},
    ]})["jobs"]  # fmt: skip
    s.wait_row("flaky once", "completed")
    sleeping = s.wait_row("long sleep", "active")
    expect(sleeping.locator(".job-progress")).not_to_have_attribute("value", "0")

    demo_server.kill()  # the server stops without a word: a crash, or a pulled plug
    s.wait_connection("offline")
    banner = page.get_by_role("alert").filter(has_text="Offline.")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("keeps trying to reach the server")
    expect(sleeping.locator(".job-stage")).to_have_text("Waiting for the server")
    expect(sleeping.get_by_role("button", name="Cancel long sleep")).to_be_disabled()
    done = s.row("flaky once")
    expect(done.get_by_role("button", name="Remove flaky once")).to_be_disabled()
    expect(page.locator("#file-input")).to_be_disabled()
    expect(page.get_by_role("button", name="Remove all finished")).to_be_disabled()

    demo_server.start()
    s.wait_connection("live", timeout=40_000)  # by itself: nobody reloads the page
    expect(banner).to_be_hidden()
    expect(page.locator("#file-input")).to_be_enabled()
    # The job that ran when the server died starts again, and says why.
    expect(sleeping.locator(".job-message")).to_contain_text("WORKER_LOST", timeout=30_000)
    expect(sleeping).to_have_attribute("data-status", re.compile("queued|active"))
    sleeping.get_by_role("button", name="Cancel long sleep").click()
    s.wait_row("long sleep", "cancelled")

    # The detail of the job that failed once and then succeeded, read after the restart.
    events = call(demo_server, token, "GET", f"/api/jobs/{flaky['jobId']}/events")["events"]
    types = [e["type"] for e in events]
    assert types[0] == "job.queued" and "job.retrying" in types and types[-1] == "job.completed"
    done.get_by_role("link", name="flaky once").click()
    expect(page.locator("#detail-title")).to_have_text("flaky once")
    items = page.locator("#timeline li")
    expect(items).to_have_count(len(events))
    assert items.evaluate_all("(lis) => lis.map((li) => li.dataset.type)") == types
    names = s.meta["stageNames"]
    for n, event in enumerate(events):
        expect(items.nth(n)).to_contain_text(names[event["stage"]])
    expect(items.nth(types.index("job.retrying"))).to_contain_text("DEMO_FAILURE, recoverable")
    expect(page.locator("#detail-fields")).to_contain_text("2 of 2")  # attempts
    expect(page.locator("#detail-stages li").first).to_be_visible()
    # And the timeline stays live: a removal from elsewhere shows up in it.
    call(demo_server, token, "DELETE", f"/api/jobs/{flaky['jobId']}")
    expect(items.last).to_have_attribute("data-type", "job.removed")
    expect(page.locator("#detail-error")).to_have_text("This job was removed.")
    page.get_by_role("link", name="Back to jobs").click()
    expect(s.row("flaky once")).to_have_count(0)
