"""The SQLite store's reads: a read-only connection of their own, so they never wait behind a
commit of the writer process."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from ..errors import DatabaseDamaged, ServiceUnavailable
from ..models import Event, EventType, Job, JobStatus
from .schema import JOB_COLUMNS, payload_of, row_to_job
from .sqlite_file import is_damage
from .sqlite_writer import BUSY_TIMEOUT_MS

log = logging.getLogger(__name__)


class SqliteReads:
    """Every query of ``SqliteStore``, on one ``aiosqlite`` connection (a thread of its own).

    Args:
        path: the SQLite file (made by the writer process before this opens it).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.read_up_to = 0  # the highest seq a read returned (an event, a job's last_seq)
        self.damage = ""  # a read found the file damaged
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        uri = self.path.resolve().as_uri() + "?mode=rw"
        self._db = await aiosqlite.connect(uri, uri=True, isolation_level=None)
        await self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        await self._db.execute("PRAGMA query_only=ON")
        await self._db.create_function("fold", 1, _fold, deterministic=True)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        if self._db is None:
            raise ServiceUnavailable("the store is closed")
        try:
            return list(await self._db.execute_fetchall(sql, tuple(params)))
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                if not self.damage:
                    log.critical("the database %s is damaged: %s", self.path, exc)
                self.damage = f"the database is damaged ({exc}); restore it from a backup"
                raise DatabaseDamaged(self.damage) from None
            if isinstance(exc, sqlite3.OperationalError):  # I/O, locking: the storage's state
                raise ServiceUnavailable(f"the store could not read: {exc}") from None
            raise

    def _seen(self, job: Job) -> Job:
        """A job read from the file names its last event; a client may resume from it."""
        self.read_up_to = max(self.read_up_to, job.last_seq)
        return job

    async def get_job(self, job_id: str) -> Job | None:
        rows = await self.read(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id=?", (job_id,))
        return self._seen(row_to_job(rows[0])) if rows else None

    async def list_jobs(
        self, user_id: str, status: JobStatus | None, limit: int, offset: int,
        *, query: str | None = None,
    ) -> list[Job]:  # fmt: skip
        where, params = _visible(user_id, query)
        sql = f"SELECT {JOB_COLUMNS} FROM jobs WHERE {where}"
        if status is not None:
            sql += " AND status=?"
            params += (status.value,)
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?"
        return [self._seen(row_to_job(r)) for r in await self.read(sql, (*params, limit, offset))]

    async def job_counts(self, user_id: str, query: str | None = None) -> dict[JobStatus, int]:
        where, params = _visible(user_id, query)
        rows = await self.read(f"SELECT status, COUNT(*) FROM jobs WHERE {where} GROUP BY status",
                               params)  # fmt: skip
        counts = dict.fromkeys(JobStatus, 0)
        counts.update({JobStatus(status): int(n) for status, n in rows})
        return counts

    async def events_after(
        self,
        since: int,
        *,
        user_id: str | None = None,
        job_id: str | None = None,
        limit: int = 1000,
    ) -> list[Event]:
        sql = "SELECT seq, type, job_id, user_id, data FROM events WHERE seq>?"
        params: tuple[Any, ...] = (since,)
        if user_id is not None:
            sql += " AND user_id=?"
            params += (user_id,)
        if job_id is not None:
            sql += " AND job_id=?"
            params += (job_id,)
        rows = await self.read(sql + " ORDER BY seq LIMIT ?", (*params, limit))
        if rows:
            self.read_up_to = max(self.read_up_to, rows[-1][0])
        return [Event(r[0], EventType(r[1]), r[2], r[3], bytes(r[4])) for r in rows]

    async def next_run_at(self, after: float | None = None) -> float | None:
        rows = await self.read("SELECT MIN(run_at) FROM jobs WHERE status='queued' AND run_at>?",
                               (float("-inf") if after is None else after,))  # fmt: skip
        value = rows[0][0]
        return None if value is None else float(value)

    async def count_by_status(self) -> dict[JobStatus, int]:
        rows = await self.read(
            "SELECT status, COUNT(*) FROM jobs WHERE removed_at IS NULL GROUP BY status"
        )
        counts = dict.fromkeys(JobStatus, 0)
        counts.update({JobStatus(status): n for status, n in rows})
        return counts

    async def pruned_mark(self) -> int:
        """The pruned mark as the file has it (it changes in the same commit as the events)."""
        rows = await self.read("SELECT value FROM meta WHERE key='pruned'")
        return int(rows[0][0])

    async def payload_values(self, key: str) -> set[str]:
        path = f"$.{key}"
        rows = await self.read(
            "SELECT DISTINCT json_extract(payload, ?) FROM jobs "
            "WHERE json_extract(payload, ?) IS NOT NULL",
            (path, path),
        )
        return {str(r[0]) for r in rows}

    async def payload_named(self, key: str, values: Collection[str]) -> set[str]:
        value, names = payload_of(key), list(values)
        if not names:
            return set()
        rows = await self.read(
            f"SELECT DISTINCT {value} FROM jobs WHERE {value} IS NOT NULL "
            f"AND {value} IN ({', '.join('?' * len(names))})", names,
        )  # fmt: skip
        return {str(r[0]) for r in rows}

    async def open_jobs_by_user(self) -> dict[str, int]:
        rows = await self.read(
            "SELECT user_id, COUNT(*) FROM jobs WHERE status IN ('queued', 'active') "
            "GROUP BY user_id"
        )
        return {str(user): int(n) for user, n in rows}

    async def payload_total(self, user_id: str, key: str) -> int:
        rows = await self.read(
            "SELECT COALESCE(SUM(json_extract(payload, ?)), 0) FROM jobs WHERE user_id=?",
            (f"$.{key}", user_id),
        )
        return int(rows[0][0])


FINAL_SIGMA, SIGMA = "\u03c2", "\u03c3"


def _fold(text: object) -> object:
    """``fold()`` in SQL, and the query's: Unicode lower case, as PostgreSQL's lower()
    (SQLite's folds ASCII only, so "ÉTÉ" would not find "été"), with the final sigma ς as
    the plain one. Python lowers a word's last Σ to ς, so a query folded alone would not be
    found in the label it is part of ("ΟΔΥΣ" would not find "ΟΔΥΣΣΕΑΣ"); PostgreSQL's
    lower() never makes ς."""
    return text.lower().replace(FINAL_SIGMA, SIGMA) if isinstance(text, str) else text


def _visible(user_id: str, query: str | None) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause of a user's jobs that were not removed, and match ``query`` if given
    (a substring of the label or the type, both sides folded by ``_fold``)."""
    where = "user_id=? AND removed_at IS NULL"
    if not query:
        return where, (user_id,)
    folded = _fold(query)
    return (f"{where} AND (instr(fold(label), ?) > 0 OR instr(fold(type), ?) > 0)",
            (user_id, folded, folded))  # fmt: skip
