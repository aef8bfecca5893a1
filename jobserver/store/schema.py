"""The SQLite schema and the mapping between job rows and Job objects."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from ..codegen import make_function
from ..models import JOB_FIELDS, Job, JobStatus
from ..tables import Tables, payload_key

JOB_COLUMNS = ", ".join(f.name for f in JOB_FIELDS)
JOBS_TABLE = "CREATE TABLE IF NOT EXISTS jobs (\n    {}\n)".format(
    ",\n    ".join(f"{f.name} {f.metadata['sql']}" for f in JOB_FIELDS)
)
# The core tables as they are now; a database made by an older release is brought here by
# CORE.migrations (store/migrations.py runs them).
CORE = Tables(
    name="core",
    version=3,
    legacy_table="jobs",  # release 0.1.0 kept no version
    create=f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
{JOBS_TABLE};
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (status, run_at);
CREATE INDEX IF NOT EXISTS jobs_user ON jobs (user_id, created_at);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency
    ON jobs (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    type TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id, seq);
CREATE INDEX IF NOT EXISTS events_user ON events (user_id, seq);
""",
    migrations={
        # 0.1.0 -> 0.2: a job's label (set by its submitter, its type or its handler).
        2: "ALTER TABLE jobs ADD COLUMN label TEXT NOT NULL DEFAULT ''",
        # 0.2 -> 0.3: a finished job its owner removed (soft delete, job.removed).
        3: "ALTER TABLE jobs ADD COLUMN removed_at REAL",
    },
)


def payload_of(key: str) -> str:
    """SQLite's expression for a job's ``payload[key]`` (as its index names it)."""
    return f"json_extract(payload, '$.{payload_key(key)}')"


def payload_index(key: str) -> str:
    """The index of the jobs whose payload has ``key`` (``Tables.payload_index``)."""
    value = payload_of(key)
    return (f"CREATE INDEX IF NOT EXISTS jobs_payload_{key} ON jobs ({value}) "
            f"WHERE {value} IS NOT NULL")  # fmt: skip


# Set once, when the job is made: a batch's row updates leave them alone.
_FIXED = frozenset({"id", "type", "user_id", "payload", "created_at", "idempotency_key"})
_UPDATED = ", ".join(f.name for f in JOB_FIELDS if f.name not in _FIXED)
# What a progress change touches: a job that only progressed in a batch updates these alone,
# which leaves the indexes on status, run_at and finished_at untouched.
_PROGRESSED = "stage, progress, message, metadata, label, last_seq"
MAX_ROWS = 128  # rows per multi-row statement


def _values(width: int, rows: int) -> str:
    one = "(" + ", ".join("?" * width) + ")"
    return ", ".join([one] * rows)


@functools.lru_cache(maxsize=64)
def _statement(kind: str, rows: int) -> str:
    if kind == "events":
        # Columns in the order of Event's first five fields (its row; the rest are hints).
        return f"INSERT INTO events (seq, type, job_id, user_id, data) VALUES {_values(5, rows)}"
    if kind == "insert-jobs":
        return f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES {_values(len(JOB_FIELDS), rows)}"
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


_KIND = {f.name: f.metadata["kind"] for f in JOB_FIELDS}
_NAMESPACE = {"Job": Job, "JobStatus": JobStatus, "_dump": _dump, "_load": _load}


def _to_column(name: str) -> str:
    kind = _KIND[name]
    if kind == "json":
        return f"_dump(job.{name})"
    if kind == "status":
        return f"job.{name}.value"
    return f"job.{name}"


def _from_column(name: str, i: int) -> str:
    kind = _KIND[name]
    if kind == "json":
        return f"_load(row[{i}])"
    if kind == "status":
        return f"JobStatus(row[{i}])"
    return f"row[{i}]"


def _params(name: str, columns: Sequence[str]) -> Callable[[Job], tuple[Any, ...]]:
    values = " ".join(f"{_to_column(c)}," for c in columns)
    function: Callable[[Job], tuple[Any, ...]] = make_function(
        name, "job", [f"return ({values})"], _NAMESPACE
    )
    return function


# Row codecs, written out from the declaration (models.Job); ``row_to_job(row)`` reads the
# columns in JOB_COLUMNS order.
row_to_job: Callable[[Any], Job] = make_function(
    "row_to_job", "row",
    ["return Job(" + ", ".join(_from_column(f.name, i) for i, f in enumerate(JOB_FIELDS)) + ")"],
    _NAMESPACE,
)  # fmt: skip
insert_params = _params("insert_params", JOB_COLUMNS.split(", "))
update_params = _params("update_params", [*_UPDATED.split(", "), "id"])
# update_params for a job whose change in this batch was progress alone.
progress_params = _params("progress_params", [*_PROGRESSED.split(", "), "id"])
