"""PostgreSQL: the same tables as SQLite (one declaration), their DDL translated, migrations run
under an advisory lock so several nodes starting at once migrate once.

The DDL is written once, in SQLite's words (``schema.CORE`` and each plugin's ``Tables``);
``ddl`` turns its few type names into PostgreSQL's. Columns keep their meaning and codecs: a
JSON column is TEXT on both, a timestamp is epoch seconds (DOUBLE PRECISION).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

from ..tables import Tables, payload_key
from .migrations import migrated, steps

# pg_advisory_lock keys (two int4s: a namespace, then what is locked).
LOCK_SPACE = 0x6A6F62  # "job"
MIGRATE_LOCK = 1
SEQ_LOCK = 2  # held by each write transaction: seq order is commit order
PRUNE_LOCK = 3  # cluster-wide duties run on one node at a time
MIGRATE_POLL_SECONDS = 0.1  # how often a starting node asks for the migration lock
# Every live node of a schema holds (LIVE_SPACE, hashtext(schema)) shared; a command that needs
# every node of the schema stopped (``server.py user merge``) takes it alone.
LIVE_SPACE = LOCK_SPACE + 2

# PostgreSQL's own additions to the core tables (made after them, versioned the same way).
PG_CORE = Tables(
    name="core-pg",
    # The job quota counts a user's open jobs in each write that adds some, on every node.
    create="CREATE INDEX IF NOT EXISTS jobs_open_user ON jobs (user_id) "
    "WHERE status IN ('queued', 'active')",
)


def payload_of(key: str) -> str:
    """PostgreSQL's expression for a job's ``payload[key]`` (as its index names it)."""
    return f"(payload::jsonb ->> '{payload_key(key)}')"


def payload_has(key: str) -> str:
    """Whether a job's payload has ``key`` (its index's condition)."""
    return f"payload::jsonb ? '{payload_key(key)}'"


def payload_index(key: str) -> str:
    """The index of the jobs whose payload has ``key`` (``Tables.payload_index``), built
    without holding writes back: a plugin added to a store with a big jobs table would
    otherwise stop every node's writes while its index is built."""
    return (f"CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_payload_{key} ON jobs "
            f"({payload_of(key)}) WHERE {payload_has(key)}")  # fmt: skip


_TYPES = [
    (re.compile(r"\bINTEGER PRIMARY KEY\b"), "BIGINT PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
]


def ddl(sqlite_sql: str) -> str:
    """SQLite DDL (as the tables are declared) in PostgreSQL's words."""
    sql = sqlite_sql
    for pattern, replacement in _TYPES:
        sql = pattern.sub(replacement, sql)
    return sql


def placeholders(sql: str) -> str:
    """``?`` placeholders (the declared SQL's) as PostgreSQL's ``$1, $2, ...``."""
    parts = sql.split("?")
    out = [parts[0]]
    for n, part in enumerate(parts[1:], start=1):
        out.append(f"${n}{part}")
    return "".join(out)


async def _version(conn: Any, tables: Tables) -> int:
    has_meta = await conn.fetchval("SELECT to_regclass('meta') IS NOT NULL")
    if has_meta:
        value = await conn.fetchval(
            "SELECT value FROM meta WHERE key=$1", f"schema:{tables.name}"
        )
        if value is not None:
            return int(value)
    if tables.legacy_table:
        exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", tables.legacy_table)
        if exists:
            return tables.legacy_version
    return 0


async def _build_payload_index(conn: Any, key: str) -> None:
    """Build ``payload_index(key)`` unless it is there and valid. A concurrent build that
    failed (its node killed, the statement cancelled) leaves an invalid index behind, which
    every write keeps up and no read uses: it is dropped and built again."""
    valid = await conn.fetchval(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)",
        f"jobs_payload_{key}",
    )  # fmt: skip
    if valid:
        return
    if valid is not None:
        await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS jobs_payload_{key}")
    await conn.execute(payload_index(key))


async def _lock_migrations(conn: Any) -> None:
    """Take the migration lock, asking again every MIGRATE_POLL_SECONDS. Not
    ``pg_advisory_lock``: a node waiting in it holds a snapshot, which a concurrent index
    build of the node that holds the lock waits for, so PostgreSQL ends one of the two as a
    deadlock."""
    while True:
        if await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", LOCK_SPACE, MIGRATE_LOCK):
            return
        await asyncio.sleep(MIGRATE_POLL_SECONDS)


async def migrate(conn: Any, all_tables: Sequence[Tables]) -> dict[str, int]:
    """Bring every set of tables to its version, holding the migration lock (several nodes
    may start at once: the second waits, then finds nothing to do). A payload index is
    built outside the migration's transaction: a concurrent build cannot run in one."""
    versions: dict[str, int] = {}
    await _lock_migrations(conn)
    try:
        for tables in all_tables:
            current = await _version(conn, tables)
            ddl_steps = steps(tables, current)
            if ddl_steps:
                async with conn.transaction():
                    for step in ddl_steps:
                        await conn.execute(ddl(step))
                    await conn.execute(
                        "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) "
                        "DO UPDATE SET value=excluded.value",
                        f"schema:{tables.name}", str(tables.version),
                    )  # fmt: skip
                migrated(tables, current)
            for key in tables.payload_index:
                await _build_payload_index(conn, key)
            versions[tables.name] = tables.version
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1, $2)", LOCK_SPACE, MIGRATE_LOCK)
    return versions
