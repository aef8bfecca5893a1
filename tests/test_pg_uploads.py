"""Uploads in PostgreSQL (issue 17), on the real server: kept once however many nodes receive
them, copied out for the parser, pruned when no job names them, and one parse per file."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from jobserver.config import Settings
from jobserver.models import Event, EventType, Job
from jobserver.pdf import job as pdf_job
from jobserver.pdf import pg_uploads, storage
from jobserver.pdf.job import PdfNotes
from jobserver.pdf.notes import NotesContent
from jobserver.pdf.pg_uploads import PgUploads
from jobserver.store import NewJob
from jobserver.store.pg_schema import ddl
from jobserver.store.postgres import PostgresStore
from tests.conftest import PG_URL
from tests.pgcluster import schema

__all__ = ["schema"]  # the fixture: a schema of its own, dropped afterwards


@pytest.fixture
async def store(schema: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(PG_URL, node_id=f"{schema}-n", schema=schema,
                          storage=[storage.__name__])  # fmt: skip
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def nodes(store: PostgresStore, schema: str,
                tmp_path: Path) -> AsyncIterator[tuple[PgUploads, PgUploads]]:  # fmt: skip
    made = (PgUploads(PG_URL, schema, tmp_path / "a" / "uploads"),
            PgUploads(PG_URL, schema, tmp_path / "b" / "uploads"))  # fmt: skip
    for uploads in made:
        await uploads.open()
    yield made
    for uploads in made:
        await uploads.close()


def arriving(uploads: PgUploads, data: bytes) -> Path:
    temp = uploads.folder / f".incoming-{uuid.uuid4().hex}"
    temp.write_bytes(data)
    return temp


async def test_two_nodes_keep_one_content_once_and_either_reads_it(
    nodes: tuple[PgUploads, PgUploads],
) -> None:
    a, b = nodes
    data = os.urandom(pg_uploads.CHUNK * 2 + 123)  # three chunks
    sha = hashlib.sha256(data).hexdigest()
    temps = [arriving(a, data), arriving(b, data)]
    kept = await asyncio.gather(a.keep(temps[0], sha), b.keep(temps[1], sha))
    assert sorted(k.created for k in kept) == [False, True]
    assert not any(t.exists() for t in temps)
    async with b.local_copy(sha) as copy:
        assert copy.read_bytes() == data and copy.parent == b.folder
    assert not copy.exists()
    with pytest.raises(FileNotFoundError):
        async with a.local_copy("0" * 64):
            pass
    await a.add_owner(sha, "ann")
    assert await b.owns(sha, "ann") and not await b.owns(sha, "bob")


async def test_a_refused_keep_removes_the_content_only_if_no_keep_came_since_nor_a_job(
    nodes: tuple[PgUploads, PgUploads], store: PostgresStore,
) -> None:
    """Two keeps of one content interleave (the second waits in ``keep`` for the first's
    commit); the first's request is refused: its removal must leave the second's file."""
    a, b = nodes
    data = os.urandom(pg_uploads.CHUNK + 5)
    sha = hashlib.sha256(data).hexdigest()
    first, second = await asyncio.gather(a.keep(arriving(a, data), sha),
                                         b.keep(arriving(b, data), sha))  # fmt: skip
    creator, other = (first, second) if first.created else (second, first)
    assert creator.created and not other.created and creator.stamp != other.stamp
    assert not await a.remove(store, sha, creator.stamp)
    async with b.local_copy(sha) as copy:
        assert copy.read_bytes() == data
    assert await b.remove(store, sha, other.stamp)  # no keep since, no job: it goes
    with pytest.raises(FileNotFoundError):
        async with a.local_copy(sha):
            pass
    again = await a.keep(arriving(a, data), sha)
    assert again.created
    await store.enqueue(NewJob(type="t", user_id="ann", payload={"sha256": sha}))
    assert not await a.remove(store, sha, again.stamp)  # a job names it


async def test_upload_tables_of_version_1_gain_the_stamp(
    store: PostgresStore, schema: str, tmp_path: Path,
) -> None:
    data = b"%PDF- kept by the release before stamps"
    sha = hashlib.sha256(data).hexdigest()
    v1 = pg_uploads.TABLES.create.replace(",\n    stamp TEXT NOT NULL DEFAULT ''", "")
    assert v1 != pg_uploads.TABLES.create
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    try:
        await conn.execute(ddl(v1))
        await conn.execute("INSERT INTO meta (key, value) VALUES ('schema:pdf-uploads', '1')")
        await conn.execute("INSERT INTO upload_files VALUES ($1, 1, 0)", sha)
    finally:
        await conn.close()
    uploads = PgUploads(PG_URL, schema, tmp_path / "uploads")
    await uploads.open()
    try:
        kept = await uploads.keep(arriving(uploads, data), sha)
        assert not kept.created and await uploads.remove(store, sha, kept.stamp)
    finally:
        await uploads.close()


async def test_old_uploads_no_job_names_are_pruned(
    nodes: tuple[PgUploads, PgUploads], store: PostgresStore,
) -> None:
    a, _ = nodes
    kept = {}
    for name in ("named", "orphan", "fresh"):
        data = name.encode() * 100
        sha = hashlib.sha256(data).hexdigest()
        await a.keep(arriving(a, data), sha)
        await a.add_owner(sha, "ann")
        kept[name] = sha
    await store.enqueue(NewJob(type="t", user_id="ann", payload={"sha256": kept["named"]}))
    cutoff = time.time()
    data = b"fresh" * 100
    await a.keep(arriving(a, data), kept["fresh"])  # kept again: fresh again
    await a.add_owner(kept["fresh"], "ann")
    assert await a.prune(store, cutoff) == 1
    with pytest.raises(FileNotFoundError):
        async with a.local_copy(kept["orphan"]):
            pass
    assert not await a.owns(kept["orphan"], "ann")
    for name in ("named", "fresh"):
        async with a.local_copy(kept[name]) as copy:
            assert copy.stat().st_size == 500 if name == "fresh" else copy.exists()


async def test_one_node_parses_a_file_and_a_silent_one_is_taken_over(
    nodes: tuple[PgUploads, PgUploads], monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = nodes
    sha = "a" * 64
    assert await a.claim_parse(sha) and await a.claim_parse(sha)  # its own again: yes
    assert not await b.claim_parse(sha) and await b.parsing_elsewhere(sha)
    assert not await a.parsing_elsewhere(sha)
    await a.end_parse(sha)
    assert await b.claim_parse(sha) and await a.parsing_elsewhere(sha)
    await b.beat_parse(sha)
    monkeypatch.setattr(pg_uploads, "PARSE_STALE_SECONDS", 0.05)
    await asyncio.sleep(0.1)  # b went quiet
    assert not await a.parsing_elsewhere(sha) and await a.claim_parse(sha)
    assert not await b.claim_parse(sha)


class Waiting:
    """As much of a job's context as waiting for another node's notes uses: the job, and
    the messages of its progress."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.messages: list[str] = []

    async def progress(self, stage: str, percent: float, message: str = "",
                       metadata: object = None) -> None:  # fmt: skip
        self.messages.append(message)


async def test_a_job_waiting_for_another_nodes_parse_is_woken_by_a_job_end_and_claims_once_stale(
    nodes: tuple[PgUploads, PgUploads], store: PostgresStore, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """B's job for a file A parses looks for A's notes, but tries to take the parse only
    once A's claim is stale (before, it tried at every look); a job's end wakes it at once."""
    a, b = nodes
    handler = PdfNotes(Settings(data_dir=tmp_path))
    handler.start(store, None, b)
    claims: list[str] = []
    claim = b.claim_parse

    async def counted(sha: str) -> bool:
        claims.append(sha)
        return await claim(sha)

    monkeypatch.setattr(b, "claim_parse", counted)
    monkeypatch.setattr(pdf_job, "ELSEWHERE_POLL_SECONDS", 0.05)
    sha = "b" * 64
    assert await a.claim_parse(sha)
    job, _ = await store.enqueue(NewJob(type="pdf-notes", user_id="ann", payload={"sha256": sha}))
    ctx = Waiting(job)
    waiting = asyncio.create_task(handler._parsed_elsewhere(ctx, sha))  # type: ignore[arg-type]
    await asyncio.sleep(1.0)  # a look every 0.2 s (ELSEWHERE_MIN_GAP_SECONDS)
    assert claims == [sha] and not waiting.done()  # A's claim is alive: never tried again
    assert "another server" in ctx.messages[-1]
    monkeypatch.setattr(pdf_job, "ELSEWHERE_POLL_SECONDS", 3600.0)
    await asyncio.sleep(0.2)  # now in a wait only an end can cut short
    looks: list[str] = []
    look = storage.notes_made_since

    async def counted_look(*args: object) -> NotesContent | None:
        looks.append("look")
        return await look(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(storage, "notes_made_since", counted_look)
    for n in range(50):  # a busy cluster: 100 job ends a second, none of them A's parse
        handler.on_event(Event(100 + n, EventType.COMPLETED, f"other-{n}", "bob", b"{}"))
        await asyncio.sleep(0.01)
    assert 1 <= len(looks) <= 4, looks  # at most one look per ELSEWHERE_MIN_GAP_SECONDS
    notes = NotesContent(title="Made On A", summary="A parsed it.", page_count=1)
    await storage.cache_notes(store, sha, notes)
    handler.on_event(Event(1, EventType.COMPLETED, "a-job", "ann", b"{}"))  # A's job ended
    async with asyncio.timeout(10):
        assert await waiting == notes

    monkeypatch.setattr(pdf_job, "ELSEWHERE_POLL_SECONDS", 0.05)
    monkeypatch.setattr(pg_uploads, "PARSE_STALE_SECONDS", 0.5)
    other = "c" * 64
    assert await a.claim_parse(other)  # and then A goes quiet: no notes, no beat
    claims.clear()
    async with asyncio.timeout(10):
        assert await handler._parsed_elsewhere(ctx, other) is None  # type: ignore[arg-type]
    assert claims == [other, other]  # at first, and once A's claim was stale
    assert await a.parsing_elsewhere(other)  # B holds the parse now
    await handler.stop()
