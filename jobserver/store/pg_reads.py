"""The PostgreSQL store's reads, on its pool (any node's rows: the database is shared)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import asyncpg

from ..errors import ServiceUnavailable
from ..models import Event, EventType, Job, JobStatus
from .pg_schema import payload_has, payload_of, placeholders
from .schema import JOB_COLUMNS, row_to_job


class PgReads:
    """The read half of ``PostgresStore``, which opens and closes ``_pool``."""

    _pool: asyncpg.Pool | None = None

    async def _read(self, sql: str, *params: Any) -> list[Any]:
        if self._pool is None:
            raise ServiceUnavailable("the store is closed")
        try:
            return list(await self._pool.fetch(sql, *params))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise ServiceUnavailable(f"PostgreSQL read failed: {exc}") from None

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await self._read(placeholders(sql), *params)]

    async def get_job(self, job_id: str) -> Job | None:
        rows = await self._read(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id=$1", job_id)
        return row_to_job(tuple(rows[0])) if rows else None

    async def list_jobs(self, user_id: str, status: JobStatus | None, limit: int,
                        offset: int, *, query: str | None = None) -> list[Job]:  # fmt: skip
        where, params = _visible(user_id, query)
        if status is not None:
            params.append(status.value)
            where += f" AND status=${len(params)}"
        rows = await self._read(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE {where} ORDER BY created_at DESC, id DESC "
            f"LIMIT ${len(params) + 1} OFFSET ${len(params) + 2}", *params, limit, offset,
        )  # fmt: skip
        return [row_to_job(tuple(r)) for r in rows]

    async def job_counts(self, user_id: str, query: str | None = None) -> dict[JobStatus, int]:
        where, params = _visible(user_id, query)
        counts = dict.fromkeys(JobStatus, 0)
        sql = f"SELECT status, COUNT(*) FROM jobs WHERE {where} GROUP BY status"
        for status, n in await self._read(sql, *params):
            counts[JobStatus(status)] = int(n)
        return counts

    async def events_after(
        self, since: int, *, user_id: str | None = None, job_id: str | None = None,
        limit: int = 1000,
    ) -> list[Event]:
        sql = "SELECT seq, type, job_id, user_id, data FROM events WHERE seq > $1"
        params: list[Any] = [since]
        if user_id is not None:
            params.append(user_id)
            sql += f" AND user_id = ${len(params)}"
        if job_id is not None:
            params.append(job_id)
            sql += f" AND job_id = ${len(params)}"
        params.append(limit)
        rows = await self._read(sql + f" ORDER BY seq LIMIT ${len(params)}", *params)
        return [Event(r[0], EventType(r[1]), r[2], r[3], bytes(r[4])) for r in rows]

    async def next_run_at(self, after: float | None = None) -> float | None:
        rows = await self._read("SELECT MIN(run_at) FROM jobs WHERE status='queued' AND run_at>$1",
                                float("-inf") if after is None else after)  # fmt: skip
        return None if rows[0][0] is None else float(rows[0][0])

    async def count_by_status(self) -> dict[JobStatus, int]:
        counts = dict.fromkeys(JobStatus, 0)
        rows = await self._read(
            "SELECT status, COUNT(*) FROM jobs WHERE removed_at IS NULL GROUP BY status"
        )
        for status, n in rows:
            counts[JobStatus(status)] = int(n)
        return counts

    async def payload_values(self, key: str) -> set[str]:
        rows = await self._read(
            "SELECT DISTINCT payload::jsonb ->> $1 FROM jobs WHERE payload::jsonb ? $1", key
        )
        return {str(r[0]) for r in rows}

    async def payload_named(self, key: str, values: Collection[str]) -> set[str]:
        value = payload_of(key)
        rows = await self._read(
            f"SELECT DISTINCT {value} FROM jobs WHERE {payload_has(key)} "
            f"AND {value} = ANY($1::text[])", list(values),
        )  # fmt: skip
        return {str(r[0]) for r in rows}

    async def payload_total(self, user_id: str, key: str) -> int:
        rows = await self._read(
            "SELECT COALESCE(SUM((payload::jsonb ->> $1)::numeric), 0) FROM jobs "
            "WHERE user_id = $2 AND jsonb_typeof(payload::jsonb -> $1) = 'number'",
            key, user_id,
        )  # fmt: skip
        return int(rows[0][0])


def _fold(sql: str) -> str:
    """As ``sqlite_reads._fold``: lower case, with the final sigma ς as the plain one (lower()
    keeps a ς as it is, so a label written with one was not found by a query in capitals)."""
    return f"translate(lower({sql}), '\u03c2', '\u03c3')"


def _visible(user_id: str, query: str | None) -> tuple[str, list[Any]]:
    """As ``sqlite_reads._visible``: a user's jobs not removed, matching ``query`` if given."""
    where = "user_id=$1 AND removed_at IS NULL"
    if not query:
        return where, [user_id]
    return (f"{where} AND (strpos({_fold('label')}, {_fold('$2')}) > 0 "
            f"OR strpos({_fold('type')}, {_fold('$2')}) > 0)", [user_id, query])  # fmt: skip
