"""The SQLite schema and the mapping between job rows and Job objects."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from ..models import Job, JobStage, JobStatus
from ..notes import Note, NotesContent

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    stage TEXT NOT NULL,
    progress REAL NOT NULL,
    message TEXT NOT NULL,
    metadata TEXT NOT NULL,
    result TEXT,
    error TEXT,
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    run_at REAL NOT NULL,
    last_seq INTEGER NOT NULL,
    idempotency_key TEXT,
    lease_token TEXT,
    lease_expires_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (status, run_at);
CREATE INDEX IF NOT EXISTS jobs_user ON jobs (user_id, created_at);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency
    ON jobs (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    type TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id, seq);
CREATE INDEX IF NOT EXISTS events_user ON events (user_id, seq);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS notes (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    filename TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS notes_user ON notes (user_id, created_at);
CREATE TABLE IF NOT EXISTS notes_cache (
    content_hash TEXT NOT NULL,
    generator TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (content_hash, generator)
);
CREATE INDEX IF NOT EXISTS notes_cache_age ON notes_cache (created_at);
"""

JOB_COLUMNS = (
    "id, type, user_id, payload, status, stage, progress, message, metadata, result, error, "
    "attempts, max_attempts, created_at, started_at, finished_at, run_at, last_seq, "
    "idempotency_key, lease_token, lease_expires_at"
)

_UPDATED = (
    "status, stage, progress, message, metadata, result, error, attempts, max_attempts, "
    "started_at, finished_at, run_at, last_seq, lease_token, lease_expires_at"
)
# What a progress change touches: a job that only progressed in a batch updates these alone,
# which leaves the indexes on status, run_at and finished_at untouched.
_PROGRESSED = "stage, progress, message, metadata, last_seq"
MAX_ROWS = 128  # rows per multi-row statement


def _values(width: int, rows: int) -> str:
    one = "(" + ", ".join("?" * width) + ")"
    return ", ".join([one] * rows)


@functools.lru_cache(maxsize=64)
def _statement(kind: str, rows: int) -> str:
    if kind == "events":
        # Columns in the order of Event's fields, so an Event is its own row.
        return f"INSERT INTO events (seq, type, job_id, user_id, data) VALUES {_values(5, rows)}"
    if kind == "insert-jobs":
        return f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES {_values(21, rows)}"
    columns = _PROGRESSED if kind == "progress-jobs" else _UPDATED
    names = columns.split(", ")
    sets = ", ".join(f"{c}=v.{c}" for c in names)
    return (f"WITH v({columns}, id) AS (VALUES {_values(len(names) + 1, rows)}) "
            f"UPDATE jobs SET {sets} FROM v WHERE jobs.id = v.id")  # fmt: skip


def write_rows(conn: sqlite3.Connection, kind: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Write ``rows`` with a few multi-row statements instead of one statement per row.

    Each statement costs the writer a round of Python (bind, step, reset) besides SQLite's
    own work; fewer, larger statements cut that. Chunk sizes are powers of two, so only a
    handful of statements are ever prepared (and cached).
    """
    i = 0
    while i < len(rows):
        n = min(MAX_ROWS, 1 << ((len(rows) - i).bit_length() - 1))
        chunk = rows[i : i + n]
        conn.execute(_statement(kind, n), [value for row in chunk for value in row])
        i += n


def _dump(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _load(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def row_to_job(row: sqlite3.Row | tuple[Any, ...]) -> Job:
    return Job(
        id=row[0],
        type=row[1],
        user_id=row[2],
        payload=_load(row[3]),
        status=JobStatus(row[4]),
        stage=JobStage(row[5]),
        progress=row[6],
        message=row[7],
        metadata=_load(row[8]),
        result=_load(row[9]),
        error=_load(row[10]),
        attempts=row[11],
        max_attempts=row[12],
        created_at=row[13],
        started_at=row[14],
        finished_at=row[15],
        run_at=row[16],
        last_seq=row[17],
        idempotency_key=row[18],
        lease_token=row[19],
        lease_expires_at=row[20],
    )


def insert_params(job: Job) -> tuple[Any, ...]:
    return (
        job.id, job.type, job.user_id, _dump(job.payload), job.status.value, job.stage.value,
        job.progress, job.message, _dump(job.metadata), _dump(job.result), _dump(job.error),
        job.attempts, job.max_attempts, job.created_at, job.started_at, job.finished_at,
        job.run_at, job.last_seq, job.idempotency_key, job.lease_token, job.lease_expires_at,
    )  # fmt: skip


def update_params(job: Job) -> tuple[Any, ...]:
    return (
        job.status.value, job.stage.value, job.progress, job.message, _dump(job.metadata),
        _dump(job.result), _dump(job.error), job.attempts, job.max_attempts, job.started_at,
        job.finished_at, job.run_at, job.last_seq, job.lease_token, job.lease_expires_at, job.id,
    )  # fmt: skip


def progress_params(job: Job) -> tuple[Any, ...]:
    """``update_params`` for a job whose change in this batch was progress alone."""
    return (
        job.stage.value, job.progress, job.message, _dump(job.metadata), job.last_seq, job.id
    )  # fmt: skip


NOTE_COLUMNS = "id, user_id, job_id, content_hash, filename, content, created_at"

INSERT_NOTE = f"INSERT OR REPLACE INTO notes ({NOTE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"

INSERT_CACHED_NOTES = (
    "INSERT OR REPLACE INTO notes_cache (content_hash, generator, content, created_at) "
    "VALUES (?, ?, ?, ?)"
)


def note_params(note: Note) -> tuple[Any, ...]:
    return (
        note.id, note.user_id, note.job_id, note.content_hash, note.filename,
        _dump(note.content.to_wire()), note.created_at,
    )  # fmt: skip


def row_to_note(row: sqlite3.Row | tuple[Any, ...]) -> Note:
    return Note(
        id=row[0],
        user_id=row[1],
        job_id=row[2],
        content_hash=row[3],
        filename=row[4],
        content=NotesContent.from_wire(_load(row[5])),
        created_at=row[6],
    )


def cached_notes_params(content_hash: str, content: NotesContent, now: float) -> tuple[Any, ...]:
    return (content_hash, content.generator, _dump(content.to_wire()), now)


def row_to_content(row: sqlite3.Row | tuple[Any, ...]) -> NotesContent:
    return NotesContent.from_wire(_load(row[0]))
