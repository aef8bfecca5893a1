"""Stored user ids on PostgreSQL: the report of those normalisation left apart, and
``server.py user merge|rename``, as ``userdata`` does them on SQLite.

A move needs every node of the schema stopped (each live node holds the schema's live lock
shared: the move takes it alone, so no node runs meanwhile and none starts until it ends), and
runs in one transaction with the account's rename and the end of the old id's sessions.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from .authpg import USER_TABLES, PgAuthDb
from .authpg import connect as auth_connect
from .errors import Refused
from .store.pg_schema import LIVE_SPACE
from .userdata import SKIP_SCAN, ServerRunning, unreachable

EVENT_BATCH = 1000  # events rewritten at a time


class NoSuchData(Refused):
    """The move's old id has nothing stored (NO_USER_DATA), or (a rename) its new id has
    (USER_HAS_DATA), as on SQLite."""


async def user_tables(conn: Any) -> list[str]:
    """The schema's tables with a ``user_id`` column, the auth tables left out."""
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = "
        "current_schema() AND column_name = 'user_id' AND NOT table_name = ANY($1::text[]) "
        "ORDER BY table_name", list(USER_TABLES),
    )  # fmt: skip
    return [str(r[0]) for r in rows]


async def stored_ids(conn: Any) -> set[str]:
    ids: set[str] = set()
    for table in await user_tables(conn):
        if table not in SKIP_SCAN:
            rows = await conn.fetch(f'SELECT DISTINCT user_id FROM "{table}"')
            ids.update(str(r[0]) for r in rows)
    return ids


async def has_data(conn: Any, user_id: str, tables: list[str]) -> bool:
    for table in tables:
        if await conn.fetchval(f'SELECT EXISTS (SELECT 1 FROM "{table}" WHERE user_id=$1)',
                               user_id):  # fmt: skip
            return True
    return False


async def unreachable_in(url: str, schema: str) -> dict[str, list[str]]:
    """``userdata.unreachable`` for the stored ids of ``schema``."""
    conn = await asyncpg.connect(url, server_settings={"search_path": schema})
    try:
        if not await conn.fetchval("SELECT to_regclass('jobs') IS NOT NULL"):
            return {}
        return unreachable(await stored_ids(conn))
    finally:
        await conn.close()


async def move_user(url: str, schema: str, old: str, new: str, *, rename: bool) -> dict[str, int]:
    """Give everything of ``old`` (rows, account) to ``new``; rows moved per table.

    ``rename``: ``new`` must have nothing stored yet. Raises ServerRunning while a node of the
    schema runs, NoSuchData when there is nothing to move (or a rename's target has data).
    """
    conn = await auth_connect(url, schema)
    try:
        async with conn.transaction():
            live = await conn.fetchval(
                "SELECT pg_try_advisory_xact_lock($1, hashtext($2))", LIVE_SPACE, schema
            )
            if not live:
                raise ServerRunning(f"a node is running on the schema {schema!r}: stop every "
                                    "node first")  # fmt: skip
            tables = await user_tables(conn)
            if not await has_data(conn, old, tables):
                raise NoSuchData(f"no jobs or notes belong to {old!r}", "NO_USER_DATA")
            if rename and await has_data(conn, new, tables):
                raise NoSuchData(f"{new} has jobs or notes already: merge {old!r} into it instead",
                                 "USER_HAS_DATA")  # fmt: skip
            moved = await _move_rows(conn, old, new, tables)
            await PgAuthDb(conn).rename_account(old, new)
        return moved
    finally:
        await conn.close()


async def _move_rows(conn: Any, old: str, new: str, tables: list[str]) -> dict[str, int]:
    """As ``userdata.move``: an idempotency key both used is dropped from ``old``'s job, and
    a row both have under another unique key with ``user_id`` in it is kept as ``new``'s."""
    if "jobs" in tables:
        await conn.execute(
            "UPDATE jobs SET idempotency_key=NULL WHERE user_id=$1 AND idempotency_key IN "
            "(SELECT idempotency_key FROM jobs WHERE user_id=$2 AND idempotency_key IS NOT NULL)",
            old, new,
        )  # fmt: skip
    moved: dict[str, int] = {}
    keys = await _user_keys(conn, [t for t in tables if t not in ("jobs", "events")])
    for table in tables:
        if table == "events":
            moved[table] = await _move_events(conn, old, new)
        else:
            for columns in keys.get(table, []):  # a row both have (an upload both own): new's
                same = "".join(f' AND n."{c}" = o."{c}"' for c in columns)
                await conn.execute(
                    f'DELETE FROM "{table}" AS o WHERE o.user_id=$1 AND EXISTS '
                    f'(SELECT 1 FROM "{table}" AS n WHERE n.user_id=$2{same})', old, new,
                )  # fmt: skip
            status = await conn.execute(f'UPDATE "{table}" SET user_id=$1 WHERE user_id=$2',
                                        new, old)  # fmt: skip
            moved[table] = int(status.split()[-1])
    return moved


async def _user_keys(conn: Any, tables: list[str]) -> dict[str, list[list[str]]]:
    """The unique keys (of plain columns) with ``user_id`` in them, by table: each as its
    other columns. Moving a row of ``old`` onto one ``new`` has with the same values there
    would break the key."""
    rows = await conn.fetch(
        "SELECT c.relname, array_agg(a.attname::text ORDER BY k.n) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indrelid "
        "JOIN pg_namespace s ON s.oid = c.relnamespace AND s.nspname = current_schema() "
        "CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum "
        "WHERE i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL "
        "AND c.relname = ANY($1::text[]) GROUP BY i.indexrelid, c.relname", tables,
    )  # fmt: skip
    keys: dict[str, list[list[str]]] = {}
    for table, columns in rows:
        if "user_id" in columns:
            keys.setdefault(str(table), []).append([c for c in columns if c != "user_id"])
    return keys


async def _move_events(conn: Any, old: str, new: str) -> int:
    """Each stored event names its user in its JSON too (what clients are sent): rewritten
    with the same encoder that wrote it, so only ``userId`` changes."""
    count = 0
    rows = []
    async for seq, data in conn.cursor("SELECT seq, data FROM events WHERE user_id=$1", old):
        body = orjson.loads(data)
        body["userId"] = new
        rows.append((new, orjson.dumps(body), seq))
        if len(rows) >= EVENT_BATCH:
            count += await _write_events(conn, rows)
            rows = []
    return count + await _write_events(conn, rows)


async def _write_events(conn: Any, rows: list[tuple[str, bytes, int]]) -> int:
    if rows:
        await conn.executemany("UPDATE events SET user_id=$1, data=$2 WHERE seq=$3", rows)
    return len(rows)
