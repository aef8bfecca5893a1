"""The PostgreSQL store's cluster-wide parts: its count of live nodes and its duties."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from ..errors import ServiceUnavailable
from .pg_schema import LOCK_SPACE

DUTY_SPACE = LOCK_SPACE + 1  # advisory locks of cluster-wide duties, by name
DUTY_SLACK = 0.9  # a duty done by another node this share of its interval ago is not due
DB_NOW = "extract(epoch from clock_timestamp())"
# The holders of the schema's live lock: pg_locks names an advisory lock of two int4 keys by
# classid and objid (the second key's bits as an oid), objsubid 2.
LIVE_NODES = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND classid = $1::bigint::oid "
    "AND objid = ((hashtext($2)::bigint + 4294967296) % 4294967296)::oid"
)


class PgCluster:
    """Mixed into ``PostgresStore``, which opens and closes ``_pool``."""

    _pool: asyncpg.Pool | None = None
    schema: str
    # How many nodes run on this schema (each holds its live lock shared), as the node's
    # reader last counted them (``PostgresStore._count``); at least this one.
    live_nodes: int = 1

    @contextlib.asynccontextmanager
    async def duty(self, name: str, every: float) -> AsyncIterator[bool]:
        """Cluster-wide work (retention): True for the one node that should do it now. It
        holds the duty's advisory lock (another node doing it now gets False) and finds that
        no node did it in the last ``every`` seconds (by the database's clock); once the
        block ends without an error, it is recorded as done."""
        if self._pool is None:
            raise ServiceUnavailable("the store is closed")
        key = f"duty:{name}"
        async with self._pool.acquire() as conn:
            if not await conn.fetchval(
                "SELECT pg_try_advisory_lock($1, hashtext($2))", DUTY_SPACE, name
            ):  # fmt: skip
                yield False
                return
            try:
                last = await conn.fetchval(
                    f"SELECT {DB_NOW} - value::double precision FROM meta WHERE key=$1", key
                )
                due = last is None or last >= every * DUTY_SLACK
                yield due
                if due:
                    await conn.execute(
                        f"INSERT INTO meta (key, value) VALUES ($1, {DB_NOW}::text) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value", key,
                    )  # fmt: skip
            finally:
                try:
                    await conn.execute(
                        "SELECT pg_advisory_unlock($1, hashtext($2))", DUTY_SPACE, name
                    )
                except BaseException:
                    conn.terminate()  # never back to the pool still holding the lock
                    raise
