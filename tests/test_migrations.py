"""Versioned schema migrations: a database written by release 0.1.0 upgrades in place."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from jobserver.errors import ServiceUnavailable
from jobserver.models import JobStatus
from jobserver.pdf import storage
from jobserver.store.schema import CORE
from jobserver.store.sqlite import SqliteStore

RELEASE_DB = Path(__file__).parent / "fixtures" / "release-0.1.0.db"


def columns(path: Path) -> dict[str, list[tuple[str, str]]]:
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return {t: sorted((r[1], r[2]) for r in conn.execute(f"PRAGMA table_info({t})"))
                for t in tables}  # fmt: skip
    finally:
        conn.close()


def versions(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT key, value FROM meta WHERE key LIKE 'schema:%'"))
    finally:
        conn.close()


async def test_a_release_0_1_0_database_upgrades_in_place(tmp_path: Path) -> None:
    db = tmp_path / "jobserver.db"
    shutil.copy(RELEASE_DB, db)
    assert "label" not in dict(columns(db)["jobs"])
    store = SqliteStore(db, storage=[storage.__name__])
    await store.open()
    try:
        jobs = await store.list_jobs("alice", None, 50, 0)
        assert len(jobs) == 6 and all(job.label == "" for job in jobs)
        assert {job.status for job in jobs} == {JobStatus.COMPLETED, JobStatus.FAILED,
                                                JobStatus.QUEUED}  # fmt: skip
        [pdf] = [job for job in jobs if job.type == "pdf-notes"]
        note = await storage.get_note(store, pdf.id)
        assert note is not None and note.content.title == "Release Fixture Notes"
        old_head = await store.head_seq()
        assert old_head == 31  # every event kept, and seqs go on from there
        events = await store.events_after(0, limit=100)
        assert [e.seq for e in events] == list(range(1, 32))
        [queued] = [job for job in jobs if job.status is JobStatus.QUEUED]
        _, event = await store.cancel(queued.id, "alice")
        assert event.seq == old_head + 1 and b'"label":""' in event.data
    finally:
        await store.close()
    assert versions(db) == {"schema:core": str(CORE.version), "schema:pdf-notes": "1"}
    # Upgraded, the file has exactly the tables and columns a new one gets.
    fresh = tmp_path / "fresh.db"
    store = SqliteStore(fresh, storage=[storage.__name__])
    await store.open()
    await store.close()
    assert columns(db) == columns(fresh)


async def test_opening_again_runs_no_migration_twice(tmp_path: Path) -> None:
    db = tmp_path / "jobserver.db"
    shutil.copy(RELEASE_DB, db)
    for _ in range(2):
        store = SqliteStore(db, storage=[storage.__name__])
        await store.open()
        await store.close()
    assert versions(db)["schema:core"] == str(CORE.version)


async def test_a_database_newer_than_the_code_refuses_to_open(tmp_path: Path) -> None:
    db = tmp_path / "jobserver.db"
    store = SqliteStore(db)
    await store.open()
    await store.close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE meta SET value='99' WHERE key='schema:core'")
    conn.commit()
    conn.close()
    with pytest.raises(ServiceUnavailable, match="version 99"):
        await SqliteStore(db).open()
