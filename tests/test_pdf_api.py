"""PDF to notes over the real API: upload, stages, notes, hostile files, limits, cache and join."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from jobserver.config import Settings
from jobserver.pdf import upload_store
from jobserver.pdf.files import upload_path
from jobserver.pdf.job import PDF_NOTES, PdfNotes
from jobserver.pdf.language import stopwords
from jobserver.pdf.owners import add_owner
from jobserver.store import NewJob
from jobserver.store.changes import new_job_id
from jobserver.web.keys import QUEUE, REGISTRY, SETTINGS, STORE
from tests import pdfs
from tests.conftest import ApiClient, MakeApi

STAGES = ["initializing", "downloading", "extracting", "generating", "saving", "completed"]


async def upload(api: ApiClient, data: bytes, filename: str = "bees.pdf",
                 **fields: str) -> tuple[int, Any]:  # fmt: skip
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(data), filename=filename, content_type="application/pdf")
    for name, value in fields.items():
        form.add_field(name, value)
    return await api.post("/api/jobs", data=form)


def refused_later(pdf: bytes, release: asyncio.Event) -> tuple[AsyncIterator[bytes], str]:
    """A multipart body (and its content type) whose file part arrives whole, then, once
    ``release`` is set, the value of a bad ``maxAttempts``: the server keeps the file, then
    refuses. A part's reader sees its end only in a read after its first, so ``pdf`` must
    be larger than one (``pdfs.large_pdf``)."""
    boundary = uuid.uuid4().hex

    async def body() -> AsyncIterator[bytes]:
        yield (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
               'filename="held.pdf"\r\nContent-Type: application/pdf\r\n\r\n').encode() + pdf
        yield (f"\r\n--{boundary}\r\n"
               'Content-Disposition: form-data; name="maxAttempts"\r\n\r\n').encode()
        await release.wait()
        yield f"abc\r\n--{boundary}--\r\n".encode()  # fmt: skip

    return body(), f"multipart/form-data; boundary={boundary}"


async def finished(api: ApiClient, job_id: str, timeout: float = 60) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            status, job = await api.get(f"/api/jobs/{job_id}")
            assert status == 200
            if job["status"] in ("completed", "failed", "cancelled"):
                return job
            await asyncio.sleep(0.02)


async def run(api: ApiClient, data: bytes, **fields: str) -> Any:
    status, job = await upload(api, data, **fields)
    assert status == 202, job
    return await finished(api, job["jobId"])


async def events(api: ApiClient, job_id: str) -> list[dict[str, Any]]:
    stored = await api.app[STORE].events_after(0, job_id=job_id, limit=10_000)
    return [orjson.loads(e.data) for e in stored]


def stages_of(evs: list[dict[str, Any]]) -> list[str]:
    """The stages in the order first seen."""
    out: list[str] = []
    for ev in evs:
        if ev["stage"] not in out:
            out.append(ev["stage"])
    return out


def pdf_handler(api: ApiClient) -> PdfNotes:
    handler = api.app[REGISTRY].get(PDF_NOTES).handler
    assert handler is not None
    return handler


async def cancel_once_parsing(
    api: ApiClient, handler: PdfNotes, job_id: str, *, queued: bool = False
) -> None:
    """Cancel the job once a parse has started; return when its parser has been replaced
    (the only way to stop a parse) and no work is in flight any more. A ``queued`` job's
    prefetched read is unlisted before the cancel is answered."""
    async with asyncio.timeout(30):
        while handler.pool.parses == 0:
            await asyncio.sleep(0.01)
    status, _ = await api.post(f"/api/jobs/{job_id}/cancel")
    assert status == 200
    if queued:
        assert handler.flights == {}  # at once: nobody may join work that is being stopped
    async with asyncio.timeout(30):
        while handler.pool.replaced == 0 or handler.flights:
            await asyncio.sleep(0.01)


def upload_files(api: ApiClient) -> list[Path]:
    folder = api.app[SETTINGS].data_dir / "uploads"
    return sorted(folder.iterdir()) if folder.exists() else []


def assert_progress_never_goes_back(evs: list[dict[str, Any]]) -> None:
    values = [ev["progress"] for ev in evs if ev["type"] == "job.progress"]
    assert values == sorted(values), values


async def test_upload_answers_202_then_goes_through_every_stage_to_notes(
    make_api: MakeApi,
) -> None:
    api = await make_api()
    data = pdfs.text_pdf(5)
    status, job = await upload(api, data, filename="Urban bees.pdf")
    assert status == 202
    assert job["status"] == "queued" and job["type"] == PDF_NOTES
    assert set(job["payload"]) == {"sha256", "filename", "size"}  # a hash, never a path
    assert job["payload"]["size"] == len(data) and job["payload"]["filename"] == "Urban bees.pdf"
    sha = job["payload"]["sha256"]
    assert [p.name for p in upload_files(api)] == [f"{sha}.kept", f"{sha}.owners", f"{sha}.pdf"]

    done = await finished(api, job["jobId"])
    assert done["status"] == "completed", done["error"]
    result = done["result"]
    assert result["cacheHit"] is False and result["processingTimeMs"] > 0
    assert result["title"] == "Urban Beekeeping Guide" and result["noteId"]

    evs = await events(api, job["jobId"])
    assert stages_of(evs)[1:] == STAGES  # after "queued"
    assert_progress_never_goes_back(evs)
    pages = [ev["message"] for ev in evs if ev["stage"] == "extracting"]
    assert "Extracting page 5 of 5" in pages
    assert all(m.startswith("Extracting page ") for m in pages)

    status, note = await api.get(f"/api/notes/{result['noteId']}")
    assert status == 200
    assert note["title"] == "Urban Beekeeping Guide" and note["pageCount"] == 5
    assert note["filename"] == "Urban bees.pdf" and note["generator"] == "offline"
    assert note["summary"] and 1 <= len(note["keyPoints"]) <= 8
    assert all(1 <= p["page"] <= 5 and p["text"] for p in note["keyPoints"])
    assert [s["title"] for s in note["sections"]][:5] == [
        "Introduction", "Hive Design", "Colony Health", "Honey Harvest", "Winter Care"]
    words = {w for k in note["keywords"] for w in k.lower().split()}
    assert words and not words & stopwords("en")
    assert {"honey", "hive", "bee"} & words

    status, listed = await api.get("/api/notes")
    assert status == 200 and [n["noteId"] for n in listed["notes"]] == [result["noteId"]]

    async with api.client.get(f"/api/notes/{result['noteId']}.md", headers=api.headers) as resp:
        assert resp.status == 200 and resp.content_type == "text/markdown"
        assert resp.headers["Content-Disposition"].startswith("attachment;")
        disposition = resp.headers["Content-Disposition"]  # named after the file, not the title
        assert 'filename="Urban-bees.md"' in disposition
        assert "filename*=UTF-8''Urban%20bees.md" in disposition
        text = await resp.text()
    assert text.startswith("# Urban Beekeeping Guide\n")
    assert "## Key points" in text and "(p. 1)" in text and "## Keywords" in text
    async with api.client.get(f"/api/notes/{result['noteId']}/markdown",
                              headers=api.headers) as resp:  # fmt: skip
        assert resp.status == 200 and await resp.text() == text

    bob = await api.as_user("bob")
    for path in (f"/api/notes/{result['noteId']}", f"/api/notes/{result['noteId']}.md"):
        async with api.client.get(path, headers=bob.headers) as resp:
            assert resp.status == 404
            assert (await resp.json())["error"]["code"] == "NOTE_NOT_FOUND"
    _, none = await bob.get("/api/notes")
    assert none["notes"] == []


async def test_every_top_level_outline_title_is_among_the_sections(make_api: MakeApi) -> None:
    api = await make_api()
    done = await run(api, pdfs.outline_pdf())
    assert done["status"] == "completed", done["error"]
    _, note = await api.get(f"/api/notes/{done['result']['noteId']}")
    assert note["sectionsFrom"] == "outline"
    titles = [s["title"] for s in note["sections"]]
    for number, (heading, _) in enumerate(pdfs.SECTIONS, start=1):
        assert f"Chapter {number}: {heading}" in titles
    assert {s["level"] for s in note["sections"]} == {1, 2}
    assert note["title"] == "Beekeeping Handbook"


async def test_without_metadata_the_title_is_the_first_heading(make_api: MakeApi) -> None:
    api = await make_api()
    done = await run(api, pdfs.text_pdf(3, title=None, seed=1))
    assert done["status"] == "completed", done["error"]
    assert done["result"]["title"] == "Hive Design"


async def test_hostile_files_fail_with_their_codes_while_other_jobs_finish(
    make_api: MakeApi,
) -> None:
    api = await make_api(pdf_max_pages=50, pdf_memory_mb=300)
    cases = {
        "ENCRYPTED_PDF": pdfs.encrypted_pdf(),
        "NO_TEXT": pdfs.image_only_pdf(),
        "CORRUPT_PDF": pdfs.corrupt_pdf(),
        "PARSE_MEMORY": pdfs.bomb_pdf(),
        "TOO_MANY_PAGES": pdfs.huge_page_tree_pdf(),
    }
    truncated = pdfs.truncated_pdf()
    pages_51 = pdfs.many_pages_pdf(51)
    _, sleeper = await api.post("/api/jobs", json={"type": "demo.sleep",
                                                   "payload": {"seconds": 0.5, "steps": 5}})
    jobs = {}
    for code, data in [*cases.items(), ("CORRUPT_PDF/truncated", truncated),
                       ("TOO_MANY_PAGES/51", pages_51), ("ok", pdfs.text_pdf(4))]:
        status, job = await upload(api, data)
        assert status == 202, (code, job)
        jobs[code] = job["jobId"]
    outcomes = {code: await finished(api, job_id) for code, job_id in jobs.items()}
    for code, job in outcomes.items():
        if code == "ok":
            assert job["status"] == "completed", job["error"]
            continue
        assert job["status"] == "failed", (code, job)
        error = job["error"]
        assert error["code"] == code.split("/")[0], (code, error)
        assert error["message"] and error["recoverable"] is False
        evs = await events(api, job["jobId"])
        assert evs[-1]["type"] == "job.failed" and evs[-1]["error"] == error
        assert_progress_never_goes_back(evs)
    assert "password" in outcomes["ENCRYPTED_PDF"]["error"]["message"]
    assert "scanned" in outcomes["NO_TEXT"]["error"]["message"]
    assert "51 pages" in outcomes["TOO_MANY_PAGES/51"]["error"]["message"]
    assert (await finished(api, sleeper["jobId"]))["status"] == "completed"
    # And the server goes on serving: a new upload completes.
    assert (await run(api, pdfs.text_pdf(2, seed=2)))["status"] == "completed"


async def test_a_refusal_stands_when_removing_its_file_fails(
    make_api: MakeApi, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: object) -> bool:
        raise OSError("the disk went away")

    monkeypatch.setattr(upload_store.FolderUploads, "remove", broken)
    api = await make_api()
    release = asyncio.Event()
    release.set()  # the bad field follows the file at once
    body, content_type = refused_later(pdfs.large_pdf("Refused"), release)
    status, refused = await api.post("/api/jobs", data=body, headers={"Content-Type": content_type})
    assert status == 400 and refused["error"]["code"] == "INVALID_PAYLOAD", refused
    assert "could not remove the refused upload" in caplog.text
    status, _ = await api.get("/api/jobs")
    assert status == 200  # and the server serves on


async def test_a_refused_upload_asks_the_index_which_of_its_files_jobs_name_not_every_job(
    make_api: MakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Removing a refused request's file asks ``payload_named`` for it (an index lookup),
    never ``payload_values`` (every job's payload); a file a job names stays."""
    api = await make_api()
    store = api.app[STORE]
    scans, lookups = [], []
    values, named = store.payload_values, store.payload_named

    async def scan(key: str) -> set[str]:
        scans.append(key)
        return await values(key)

    async def lookup(key: str, shas: Any) -> set[str]:
        lookups.append(sorted(shas))
        return await named(key, shas)

    monkeypatch.setattr(store, "payload_values", scan)
    monkeypatch.setattr(store, "payload_named", lookup)
    data = pdfs.large_pdf("Refused, Looked Up")
    sha = hashlib.sha256(data).hexdigest()
    release = asyncio.Event()
    release.set()
    body, content_type = refused_later(data, release)
    status, refused = await api.post("/api/jobs", data=body, headers={"Content-Type": content_type})
    assert status == 400 and refused["error"]["code"] == "INVALID_PAYLOAD", refused
    assert not upload_path(api.app[SETTINGS].data_dir, sha).exists()
    assert scans == [] and lookups == [[sha]]
    # The same file, now named by a job (sent as JSON by hash, as if uploaded before; not
    # due, so nothing reads the file):
    payload = stored_upload(api, data)
    status, job = await api.post(
        "/api/jobs", json={"type": PDF_NOTES, "payload": payload, "delaySeconds": 3600}
    )
    assert status == 202, job
    upload_path(api.app[SETTINGS].data_dir, sha).unlink()  # kept again by the refusal below
    body, content_type = refused_later(data, release)
    status, refused = await api.post("/api/jobs", data=body, headers={"Content-Type": content_type})
    assert status == 400 and lookups[-1] == [sha] and scans == []
    assert upload_path(api.app[SETTINGS].data_dir, sha).exists()  # the job names it


async def test_not_a_pdf_is_refused_with_415_and_nothing_is_kept(make_api: MakeApi) -> None:
    api = await make_api()
    for data in (pdfs.not_a_pdf(), b"", b"%PD"):
        status, body = await upload(api, data, filename="picture.pdf")
        assert status == 415 and body["error"]["code"] == "NOT_A_PDF", body
        assert body["error"]["message"]
    assert upload_files(api) == []
    _, jobs = await api.get("/api/jobs")
    assert jobs["jobs"] == []


async def test_too_large_upload_is_413_and_leaves_nothing_on_disk(
    make_api: MakeApi, tmp_path: Path
) -> None:
    assert Settings().max_upload_bytes == 50 * 1024 * 1024
    api = await make_api(max_upload_bytes=64 * 1024)
    big = pdfs.many_pages_pdf(200)
    assert len(big) > 64 * 1024
    status, body = await upload(api, big)
    assert status == 413 and body["error"]["code"] == "FILE_TOO_LARGE", body
    # A size as people write it.
    assert "larger than the 64 KB this server accepts" in body["error"]["message"]
    assert upload_files(api) == []
    _, jobs = await api.get("/api/jobs")
    assert jobs["jobs"] == []
    # The JSON body limit does not apply to a streamed upload: 64 KB is far above it here.
    api2 = await make_api(max_upload_bytes=2 * 1024 * 1024, max_body_bytes=2048,
                          data_dir=tmp_path / "other")
    assert (await run(api2, big))["status"] == "completed"


async def test_upload_form_mistakes_are_400(make_api: MakeApi) -> None:
    api = await make_api()
    form = aiohttp.FormData()
    form.add_field("other", "x")
    form.add_field("nothing", b"%PDF-1.4", filename="a.pdf")
    status, body = await api.post("/api/jobs", data=form)
    assert status == 400 and body["error"]["code"] == "INVALID_PAYLOAD"
    assert "file" in body["error"]["message"]
    status, body = await upload(api, pdfs.text_pdf(1), maxAttempts="0")
    assert status == 400 and body["error"]["code"] == "INVALID_PAYLOAD"
    status, body = await api.post("/api/jobs", json={"type": PDF_NOTES,
                                                     "payload": {"sha256": "../../etc/passwd"}})
    assert status == 400 and body["error"]["code"] == "INVALID_PAYLOAD"


async def test_a_job_whose_upload_is_gone_fails_with_upload_missing(make_api: MakeApi) -> None:
    api = await make_api()
    sha = "0" * 64
    add_owner(api.app[SETTINGS].data_dir, sha, api.user)  # uploaded once; the file is gone
    status, job = await api.post("/api/jobs", json={"type": PDF_NOTES, "payload": {"sha256": sha}})
    assert status == 202
    done = await finished(api, job["jobId"])
    assert done["status"] == "failed" and done["error"]["code"] == "UPLOAD_MISSING"


async def test_a_parse_past_its_time_limit_is_killed_and_its_process_replaced(
    make_api: MakeApi,
) -> None:
    api = await make_api(pdf_workers=1, pdf_timeout_seconds=1.5)  # slow_pdf takes about 6 s
    handler = pdf_handler(api)
    before = handler.pool.pids
    done = await run(api, pdfs.slow_pdf())
    assert done["status"] == "failed" and done["error"]["code"] == "PARSE_TIMEOUT"
    assert done["error"]["recoverable"] is True and "1.5 s" in done["error"]["message"]
    assert handler.pool.replaced == 1 and handler.pool.pids != before
    ok = await run(api, pdfs.text_pdf(2))
    assert ok["status"] == "completed", ok["error"]


async def test_a_parse_past_its_memory_cap_fails_and_its_process_is_replaced(
    make_api: MakeApi,
) -> None:
    api = await make_api(pdf_workers=1, pdf_memory_mb=200)
    handler = pdf_handler(api)
    before = handler.pool.pids
    done = await run(api, pdfs.bomb_pdf(70, streams=4))  # 280 MB inflated, over the cap
    assert done["status"] == "failed" and done["error"]["code"] == "PARSE_MEMORY"
    assert "memory" in done["error"]["message"]
    assert handler.pool.replaced == 1 and handler.pool.pids != before
    ok = await run(api, pdfs.text_pdf(2))
    assert ok["status"] == "completed", ok["error"]


async def test_a_native_crash_of_the_engine_is_parse_crashed_and_its_process_replaced(
    make_api: MakeApi,
) -> None:
    api = await make_api(pdf_workers=1)
    handler = pdf_handler(api)
    await all_parsers_ready(api)
    (pid,) = handler.pool.pids
    status, job = await upload(api, pdfs.slow_pdf())
    assert status == 202
    async with asyncio.timeout(30):
        while handler.pool.parses == 0:
            await asyncio.sleep(0.01)
    os.kill(pid, signal.SIGSEGV)  # what a fault inside PDFium's native code does
    done = await finished(api, job["jobId"])
    assert done["status"] == "failed" and done["error"]["code"] == "PARSE_CRASHED"
    assert done["error"]["recoverable"] is True
    assert handler.pool.replaced == 1 and pid not in handler.pool.pids
    ok = await run(api, pdfs.text_pdf(2))
    assert ok["status"] == "completed", ok["error"]


async def test_cancelling_a_job_mid_parse_stops_its_parser(make_api: MakeApi) -> None:
    api = await make_api(pdf_workers=1)
    handler = pdf_handler(api)
    status, job = await upload(api, pdfs.slow_pdf())
    assert status == 202
    await cancel_once_parsing(api, handler, job["jobId"])
    assert (await finished(api, job["jobId"]))["status"] == "cancelled"
    assert handler.flights == {}
    assert (await run(api, pdfs.text_pdf(2)))["status"] == "completed"


async def test_the_same_file_again_completes_from_the_cache_for_any_user(
    make_api: MakeApi,
) -> None:
    api = await make_api()
    data = pdfs.text_pdf(4)
    first = await run(api, data)
    assert first["status"] == "completed" and first["result"]["cacheHit"] is False
    parses = pdf_handler(api).pool.parses

    bob = await api.as_user("bob")
    again = await run(bob, data, filename="copy.pdf")
    assert again["status"] == "completed", again["error"]
    assert again["result"]["cacheHit"] is True
    assert again["result"]["title"] == first["result"]["title"]
    assert again["result"]["noteId"] != first["result"]["noteId"]
    assert again["result"]["processingTimeMs"] < 2000  # the bench measures it properly
    assert pdf_handler(api).pool.parses == parses  # no parse at all
    evs = await events(bob, again["jobId"])
    assert stages_of(evs)[1:] == STAGES
    assert_progress_never_goes_back(evs)

    _, bobs = await bob.get("/api/notes")
    assert [n["noteId"] for n in bobs["notes"]] == [again["result"]["noteId"]]
    assert bobs["notes"][0]["filename"] == "copy.pdf"
    _, note = await bob.get(f"/api/notes/{again['result']['noteId']}")
    _, original = await api.get(f"/api/notes/{first['result']['noteId']}")
    assert note["keyPoints"] == original["keyPoints"] and note["userId"] == "bob"


async def test_a_duplicate_upload_joins_the_work_in_progress(make_api: MakeApi) -> None:
    api = await make_api(pdf_workers=1, pdf_timeout_seconds=2)
    handler = pdf_handler(api)
    # One parser, kept busy (about 6 s of parsing, cut at 2 s), so both copies of the next file
    # are surely in progress together, on a fast machine too.
    status, blocker = await upload(api, pdfs.slow_pdf())
    assert status == 202
    data = pdfs.text_pdf(6)
    (s1, one), (s2, two) = await asyncio.gather(upload(api, data), upload(api, data))
    assert (s1, s2) == (202, 202) and one["jobId"] != two["jobId"]
    done = [await finished(api, one["jobId"]), await finished(api, two["jobId"])]
    assert [d["status"] for d in done] == ["completed", "completed"], done
    assert sorted(d["result"]["joined"] for d in done) == [False, True]
    assert {d["result"]["cacheHit"] for d in done} == {False}
    assert len({d["result"]["noteId"] for d in done}) == 2
    assert handler.pool.parses == 2  # the blocker and one parse of the shared file
    for d in done:
        evs = await events(api, d["jobId"])
        assert "extracting" in stages_of(evs) and stages_of(evs)[-1] == "completed"
        assert any(ev["message"] == "Extracting page 6 of 6" for ev in evs)
        assert_progress_never_goes_back(evs)
    assert (await finished(api, blocker["jobId"]))["error"]["code"] == "PARSE_TIMEOUT"


async def all_parsers_ready(api: ApiClient) -> PdfNotes:
    handler = pdf_handler(api)
    async with asyncio.timeout(60):
        while handler.pool.ready < handler.pool.size:
            await asyncio.sleep(0.02)
    return handler


async def test_a_document_shared_by_two_parsers_gives_the_same_notes_as_one(
    make_api: MakeApi, tmp_path: Path
) -> None:
    data = pdfs.text_pdf(9, outline=True)
    one = await make_api(pdf_workers=1, data_dir=tmp_path / "one")
    two = await make_api(pdf_workers=2, data_dir=tmp_path / "two")
    shared = await all_parsers_ready(two)
    alone, split = await run(one, data), await run(two, data)
    assert alone["status"] == split["status"] == "completed"
    assert shared.pool.shared == 1 and pdf_handler(one).pool.shared == 0
    _, a = await one.get(f"/api/notes/{alone['result']['noteId']}")
    _, b = await two.get(f"/api/notes/{split['result']['noteId']}")
    same = ("title", "summary", "keyPoints", "sections", "keywords", "pageCount")
    assert {k: a[k] for k in same} == {k: b[k] for k in same}
    evs = await events(two, split["jobId"])
    pages = [ev["metadata"]["page"] for ev in evs if ev["stage"] == "extracting"]
    assert pages == sorted(pages) and pages[-1] == 9
    assert_progress_never_goes_back(evs)


async def test_the_text_limit_counts_every_parser_share(make_api: MakeApi) -> None:
    api = await make_api(pdf_workers=2, pdf_max_text_chars=6000)
    await all_parsers_ready(api)
    done = await run(api, pdfs.text_pdf(9))  # ~9000 characters, under 6000 in each share
    assert done["status"] == "failed" and done["error"]["code"] == "TEXT_TOO_LARGE"
    assert "6000 characters" in done["error"]["message"]
    assert (await run(api, pdfs.text_pdf(3)))["status"] == "completed"


async def test_cancelling_one_of_two_joined_jobs_leaves_the_other_to_finish(
    make_api: MakeApi,
) -> None:
    # One parser, held by a slow file (stopped at 2 s), while two jobs share the next one.
    api = await make_api(pdf_workers=1, pdf_timeout_seconds=2)
    handler = pdf_handler(api)
    status, blocker = await upload(api, pdfs.slow_pdf())
    assert status == 202
    data = pdfs.text_pdf(3, seed=3)
    _, first = await upload(api, data)
    _, second = await upload(api, data)
    sha = first["payload"]["sha256"]
    async with asyncio.timeout(30):
        while (flight := handler.flights.get(sha)) is None or flight.followers < 2:
            await asyncio.sleep(0.01)
    status, _ = await api.post(f"/api/jobs/{first['jobId']}/cancel")
    assert status == 200
    done = await finished(api, second["jobId"])
    assert done["status"] == "completed", done["error"]
    assert (await finished(api, first["jobId"]))["status"] == "cancelled"
    assert handler.pool.parses == 2  # the blocker and the shared file, once
    assert (await finished(api, blocker["jobId"]))["error"]["code"] == "PARSE_TIMEOUT"


async def test_a_failing_share_stops_the_whole_parse_with_its_code(make_api: MakeApi) -> None:
    api = await make_api(pdf_workers=2, pdf_memory_mb=300)
    handler = await all_parsers_ready(api)
    done = await run(api, pdfs.text_then_bomb_pdf(400))  # page 2, the helper's, is the bomb
    assert handler.pool.shared == 1
    assert done["status"] == "failed" and done["error"]["code"] == "PARSE_MEMORY", done["error"]
    ok = await run(api, pdfs.text_pdf(4))
    assert ok["status"] == "completed", ok["error"]
    assert handler.pool.shared == 2  # both processes came back to the pool and worked again


def stored_upload(api: ApiClient, data: bytes) -> dict[str, Any]:
    """Put ``data`` where an upload of it by ``api``'s user would be; returns a pdf-notes
    payload naming it."""
    sha = hashlib.sha256(data).hexdigest()
    path = upload_path(api.app[SETTINGS].data_dir, sha)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    add_owner(api.app[SETTINGS].data_dir, sha, api.user)
    return {"sha256": sha, "filename": "early.pdf", "size": len(data)}


async def test_a_job_joins_the_read_its_upload_started_before_the_claim(
    make_api: MakeApi,
) -> None:
    """Prefetch: the parse starts when the job is queued; the job, once claimed, takes the
    notes from that read (one parse, not joined, not a cache hit, every stage reported)."""
    api = await make_api()
    handler = pdf_handler(api)
    payload = stored_upload(api, pdfs.text_pdf(5, seed=11))
    job_id = new_job_id(time.time())
    await handler.prefetch(payload["sha256"], job_id, free_slots=1)
    flight = handler.flights[payload["sha256"]]
    await asyncio.wait_for(asyncio.shield(flight.task), 30)  # read before the job even exists
    assert handler.pool.parses == 1 and handler.flights[payload["sha256"]] is flight

    await api.app[QUEUE].enqueue(
        NewJob(type=PDF_NOTES, user_id="alice", payload=payload, job_id=job_id)
    )
    done = await finished(api, job_id)
    assert done["status"] == "completed", done["error"]
    assert done["result"]["joined"] is False and done["result"]["cacheHit"] is False
    assert handler.pool.parses == 1 and handler.flights == {}
    assert stages_of(await events(api, job_id))[1:] == STAGES


async def test_no_prefetch_without_a_free_worker_slot_or_for_cached_notes(
    make_api: MakeApi,
) -> None:
    api = await make_api()
    handler = pdf_handler(api)
    data = pdfs.text_pdf(2, seed=12)
    payload = stored_upload(api, data)
    await handler.prefetch(payload["sha256"], "j1", free_slots=0)
    assert handler.flights == {}
    assert (await run(api, data))["status"] == "completed"  # now the notes are cached
    parses = handler.pool.parses
    await handler.prefetch(payload["sha256"], "j2", free_slots=1)
    assert handler.flights == {} and handler.pool.parses == parses


async def test_cancelling_a_job_before_it_claims_its_prefetched_read_stops_it(
    make_api: MakeApi,
) -> None:
    api = await make_api(pdf_workers=1)
    handler = pdf_handler(api)
    payload = stored_upload(api, pdfs.slow_pdf())
    job, _ = await api.app[QUEUE].enqueue(
        NewJob(type=PDF_NOTES, user_id="alice", payload=payload, delay_seconds=60)
    )
    await handler.prefetch(payload["sha256"], job.id, free_slots=1)  # as if it were due
    await cancel_once_parsing(api, handler, job.id, queued=True)


async def test_a_prefetched_read_that_failed_is_not_kept_for_anyone(make_api: MakeApi) -> None:
    """Its job may retry, and another job must not inherit the stale error: a failed read
    leaves at once, so the next job of that file reads it again."""
    api = await make_api(pdf_workers=1, pdf_timeout_seconds=1.5)  # slow_pdf takes about 6 s
    handler = pdf_handler(api)
    payload = stored_upload(api, pdfs.slow_pdf())
    await handler.prefetch(payload["sha256"], "gone-job", free_slots=1)
    flight = handler.flights[payload["sha256"]]
    await asyncio.wait_for(asyncio.gather(flight.task, return_exceptions=True), 30)
    assert not flight.succeeded and handler.flights == {}
    parses = handler.pool.parses
    job, _ = await api.app[QUEUE].enqueue(
        NewJob(type=PDF_NOTES, user_id="alice", payload=payload)
    )
    done = await finished(api, job.id)
    assert done["error"]["code"] == "PARSE_TIMEOUT" and handler.pool.parses == parses + 1
    assert (await run(api, pdfs.text_pdf(2)))["status"] == "completed"


async def test_the_jobs_route_prefetches_a_due_pdf_job_and_not_a_delayed_one(
    make_api: MakeApi,
) -> None:
    api = await make_api()
    handler = pdf_handler(api)
    asked: list[tuple[str, str, int]] = []
    prefetch_soon = handler.prefetch_soon

    def recording(sha: str, job_id: str, free_slots: int, user: str = "") -> None:
        asked.append((sha, job_id, free_slots))
        prefetch_soon(sha, job_id, free_slots, user)

    handler.prefetch_soon = recording  # type: ignore[method-assign]
    payload = stored_upload(api, pdfs.text_pdf(2, seed=21))
    status, later = await api.post(
        "/api/jobs", json={"type": PDF_NOTES, "payload": payload, "delaySeconds": 60}
    )
    assert status == 202 and asked == []  # not due: nothing read ahead of time
    status, now = await api.post("/api/jobs", json={"type": PDF_NOTES, "payload": payload})
    assert status == 202 and [(s, j) for s, j, _ in asked] == [(payload["sha256"], now["jobId"])]
    assert asked[0][2] > 0  # the pool had free slots
    done = await finished(api, now["jobId"])
    assert done["status"] == "completed" and done["result"]["joined"] is False
    status, _ = await api.post(f"/api/jobs/{later['jobId']}/cancel")
    assert status == 200
