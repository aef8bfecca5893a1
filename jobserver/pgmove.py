"""``server.py migrate-to-postgres``: move a SQLite data dir into PostgreSQL (issue 17).

Everything a node would otherwise miss goes: jobs and the event log with their seqs, the
epoch and how far the log was pruned (so clients resume with the cursors they hold), every
plugin table the two share (the PDF notes and the notes cache), accounts, sessions and
revoked tokens (``auth.db``: tokens already issued stay valid if the nodes are given the
same ``JOBSERVER_SECRET``), and what plugins keep beside the store (their move steps: the
PDF plugin's uploads and owners go into the database, or into ``upload_dir`` when set).

The tables are made first by the same code a node runs (the store's migrations, the auth
tables). The rows go in one transaction that holds the seq lock, so a failure leaves the
schema as it was and no node writes meanwhile; the plugins' steps follow. The SQLite data is
only read, with its server stopped (its lock taken).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import asyncpg

from .authdb import FILENAME as AUTH_FILE
from .authpg import connect as auth_connect
from .config import Settings
from .errors import JobServerError, Refused, error_line
from .plugins import load
from .store.pg_schema import LOCK_SPACE, SEQ_LOCK
from .store.postgres import PostgresStore
from .userdata import owned, table_columns

log = logging.getLogger(__name__)

BATCH = 1000  # rows read from SQLite and copied at a time
# Kept from SQLite: the epoch and the pruned mark (a client's cursor stays valid).
META_KEYS = ("epoch", "pruned")
# What makes a schema "not empty": any of these has a row.
DATA_TABLES = ("jobs", "events", "accounts", "sessions", "upload_files")


async def migrate(settings: Settings, *, replace: bool, out: TextIO) -> None:
    """Move ``settings.data_dir``'s SQLite data into ``settings.database_url``'s schema."""
    if not settings.database_url:
        raise Refused("set JOBSERVER_DATABASE_URL in the environment first", "NO_DATABASE_URL")
    if not settings.db_path.exists():
        raise Refused(f"there is no job store at {settings.db_path}", "NO_JOB_STORE")
    plugins = load(settings)
    store = PostgresStore(settings.database_url, node_id=f"migrate-{uuid.uuid4().hex[:8]}",
                          storage=plugins.storage_modules,
                          schema=settings.database_schema)  # fmt: skip
    await store.open()  # the core's and the plugins' tables, migrated as a node would
    await store.close()
    auth = await auth_connect(settings.database_url, settings.database_schema)
    await auth.close()
    with owned(settings.db_path) as jobs_db, _auth_db(settings.data_dir) as auth_db:
        conn = await asyncpg.connect(
            settings.database_url, server_settings={"search_path": settings.database_schema}
        )
        try:
            counts = await _copy_rows(conn, [jobs_db, auth_db], replace=replace)
        finally:
            await conn.close()
        for table, n in counts.items():
            print(f"{table}: {n} row(s)", file=out)
        for name, step in plugins.move_steps:  # what plugins keep beside the store (uploads)
            print(f"{name}: {await step(settings)}", file=out)


@contextlib.contextmanager
def _auth_db(data_dir: Path) -> Iterator[sqlite3.Connection | None]:
    path = data_dir / AUTH_FILE
    if not path.exists():
        yield None
        return
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        yield conn
    finally:
        conn.close()


async def _copy_rows(conn: Any, sources: list[sqlite3.Connection | None], *,
                     replace: bool) -> dict[str, int]:  # fmt: skip
    """Every table both sides have, in one transaction under the seq lock (no node writes
    meanwhile); refused when the schema holds data already, unless ``replace``."""
    target = await _columns(conn)
    counts: dict[str, int] = {}
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", LOCK_SPACE, SEQ_LOCK)
        busy = [t for t in DATA_TABLES if t in target
                and await conn.fetchval(f'SELECT EXISTS (SELECT 1 FROM "{t}")')]  # fmt: skip
        if busy and not replace:
            raise Refused(
                f"the schema has data already ({', '.join(busy)}); --replace empties it first "
                "(everything in it is lost)", "SCHEMA_NOT_EMPTY",
            )
        if replace:
            emptied = ", ".join(f'"{t}"' for t in target if t != "meta")
            await conn.execute(f"TRUNCATE {emptied} CASCADE")
        for db in sources:
            if db is None:
                continue
            for table, columns in table_columns(db).items():
                if table == "meta" or table not in target:
                    continue
                shared = [c for c in columns if c in target[table]]
                counts[table] = await _copy_table(conn, db, table, shared)
        for key in META_KEYS:
            row = sources[0].execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone() \
                if sources[0] is not None else None  # fmt: skip
            if row is not None:
                await conn.execute(
                    "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) "
                    "DO UPDATE SET value = excluded.value", key, str(row[0]),
                )  # fmt: skip
    return counts


async def _columns(conn: Any) -> dict[str, set[str]]:
    rows = await conn.fetch(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema()"
    )
    found: dict[str, set[str]] = {}
    for table, column in rows:
        found.setdefault(str(table), set()).add(str(column))
    return found


async def _copy_table(conn: Any, db: sqlite3.Connection, table: str, columns: list[str]) -> int:
    quoted = ", ".join(f'"{c}"' for c in columns)
    cursor = db.execute(f'SELECT {quoted} FROM "{table}"')
    total = 0
    while rows := cursor.fetchmany(BATCH):
        await conn.copy_records_to_table(table, records=rows, columns=columns)
        total += len(rows)
    return total


def run(settings: Settings, replace: bool, out: TextIO, err: TextIO) -> int:
    """The command: 0 when done, 1 (with the reason on ``err``) when refused or failed."""
    import asyncio

    try:
        asyncio.run(migrate(settings, replace=replace, out=out))
    except JobServerError as exc:  # refused (a running server too), or the store failed
        print(error_line(exc), file=err)
        return 1
    print(f"moved {settings.data_dir} into PostgreSQL schema {settings.database_schema}",
          file=out)  # fmt: skip
    return 0
