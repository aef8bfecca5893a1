"""The offline notes generator, text extraction limits, Markdown, and the loop-lag probe."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobserver.errors import JobError
from jobserver.pdf.extract import Document, Limits, extract
from jobserver.pdf.language import stopwords
from jobserver.pdf.markdown import download_name, to_markdown
from jobserver.pdf.notes import KeyPoint, Note, NotesContent, Section
from jobserver.pdf.offline import build_notes
from tests import pdfs
from tests.conftest import MakeApi

PAGES = (
    "CHAPTER ONE\nThe Event Loop\n"
    "The event loop runs every coroutine of the server in one thread. A blocked event loop "
    "delays every request and every progress event. Parsing PDF files therefore happens in "
    "separate worker processes.\n7",
    "2. Worker Processes\n"
    "Each worker process parses one PDF file at a time and reports every page. A worker "
    "process that breaks a limit is killed and replaced by a fresh worker process.\n8",
    "3. Progress Events\n"
    "Progress events flow from the worker process to the event loop and on to the browser. "
    "The PDF parser never shares memory with the event loop of the server.\n9",
)


def test_notes_are_deterministic_and_cover_title_points_sections_keywords() -> None:
    doc = Document(PAGES, meta_title=None)
    notes = build_notes(doc)
    assert build_notes(doc) == notes
    assert notes.title == "CHAPTER ONE"  # no metadata title: the first heading
    assert [s.title for s in notes.sections] == [
        "CHAPTER ONE", "The Event Loop", "2. Worker Processes", "3. Progress Events"]
    assert notes.sections_from == "headings" and notes.page_count == 3
    assert notes.summary and len(notes.summary) <= 700
    assert all(1 <= p.page <= 3 and p.text.endswith(".") for p in notes.key_points)
    assert {p.page for p in notes.key_points} == {1, 2, 3}
    words = [w for k in notes.keywords for w in k.lower().split()]
    assert not set(words) & stopwords("en")
    assert {"event", "worker", "process"} <= set(words) or "event loop" in notes.keywords
    assert "PDF" in notes.keywords or any("PDF" in k for k in notes.keywords)
    assert "7" not in " ".join(s.title for s in notes.sections)  # page numbers are not headings


def test_metadata_title_wins_unless_it_is_junk() -> None:
    assert build_notes(Document(PAGES, meta_title="Server Internals")).title == "Server Internals"
    assert build_notes(Document(PAGES, meta_title="Microsoft Word")).title == "CHAPTER ONE"
    assert build_notes(Document(PAGES, meta_title="draft.docx")).title == "CHAPTER ONE"


def test_an_outline_replaces_detected_headings() -> None:
    outline = (Section("Part A", 1, 1), Section("Part A.1", 1, 2), Section("Part B", 3, 1))
    notes = build_notes(Document(PAGES, outline=outline))
    assert notes.sections == outline and notes.sections_from == "outline"


def test_running_headers_are_not_headings(tmp_path: Path) -> None:
    pages = tuple(f"Annual Report 2024\nSection {n} Results\nThe hives grew by {n} percent "
                  f"this year across the region.\nPage {n}" for n in range(1, 7))  # fmt: skip
    notes = build_notes(Document(pages))
    assert all("Annual Report" not in s.title for s in notes.sections)
    assert [s.title for s in notes.sections][:2] == ["Section 1 Results", "Section 2 Results"]


def _write(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "doc.pdf"
    path.write_bytes(data)
    return str(path)


def test_extract_reports_every_page_and_enforces_its_limits(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    path = _write(tmp_path, pdfs.text_pdf(4))
    doc = extract(path, Limits(500, 10**6), lambda page, pages: seen.append((page, pages)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)] and len(doc.pages) == 4
    assert doc.meta_title == "Urban Beekeeping Guide"
    with pytest.raises(JobError) as pages:
        extract(path, Limits(3, 10**6), lambda page, pages: None)
    assert pages.value.code == "TOO_MANY_PAGES" and "4 pages" in pages.value.message
    with pytest.raises(JobError) as text:
        extract(path, Limits(500, 1000), lambda page, pages: None)
    assert text.value.code == "TEXT_TOO_LARGE" and not text.value.recoverable


def test_markdown_lists_everything_and_escapes_markup() -> None:
    content = NotesContent(
        title="Bees *and* #hives", summary="Short.",
        key_points=(KeyPoint("First [point]", 2),),
        sections=(Section("Top", 1, 1), Section("Child", 2, 2)),
        keywords=("bee", "hive"), page_count=2,
    )  # fmt: skip
    note = Note("n1", "alice", "n1", "ab" * 32, "bees.pdf", content)
    text = to_markdown(note)
    assert text.startswith("# Bees \\*and\\* \\#hives\n")
    assert "- First \\[point\\] (p. 2)" in text
    assert "- Top (p. 1)\n  - Child (p. 2)" in text and "bee, hive" in text
    assert download_name(note) == ("bees.md", "bees.md")  # after the file, not the title
    other = Note("n2", "alice", "n2", "cd" * 32, "Über Bienen.PDF", content)
    assert download_name(other) == ("Über Bienen.md", "ber-Bienen.md")


async def test_loop_lag_probe_samples_on_demand(make_api: MakeApi) -> None:
    api = await make_api()
    status, idle = await api.get("/api/debug/loop-lag")
    assert status == 200 and idle["samples"] == 0 and idle["running"] is False
    status, started = await api.post("/api/debug/loop-lag",
                                     json={"seconds": 0.3, "intervalMs": 5})  # fmt: skip
    assert status == 202 and started["running"] is True
    await _sleep(0.5)
    _, stats = await api.get("/api/debug/loop-lag")
    assert stats["running"] is False and 10 <= stats["samples"] <= 60
    assert 0 <= stats["p50Ms"] <= stats["p99Ms"] <= stats["maxMs"]
    status, bad = await api.post("/api/debug/loop-lag", json={"seconds": 0})
    assert status == 400 and bad["error"]["code"] == "INVALID_PAYLOAD"


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)
