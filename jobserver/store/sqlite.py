"""SQLite backend: WAL, synchronous=FULL, and one writer that group-commits every change."""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import logging
import os
import secrets
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from ..errors import JobServerError, ServiceUnavailable
from ..models import ErrorDict, Event, EventType, Job, JobStatus, ResultDict, encode_event, iso
from ..notes import Note, NotesContent
from . import changes
from .protocol import NewJob, ProgressUpdate, Pruned
from .schema import (
    INSERT_CACHED_NOTES,
    INSERT_NOTE,
    JOB_COLUMNS,
    NOTE_COLUMNS,
    SCHEMA,
    cached_notes_params,
    insert_params,
    note_params,
    row_to_content,
    row_to_job,
    row_to_note,
    update_params,
    write_rows,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]

MAX_BATCH = 512  # ops per transaction; bounds the work of handing out one batch
PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA busy_timeout=5000")
# After a checkpoint resets the WAL, SQLite cuts the file back to this size.
WAL_SIZE_LIMIT = 64 * 1024 * 1024
# A scheduled checkpoint waits at most this long (ms) for readers, so writes barely stall.
CHECKPOINT_BUSY_MS = 50
TERMINAL_SQL = "('completed', 'failed', 'cancelled')"


Done = Callable[[Any, BaseException | None], None]


@dataclass(slots=True)
class _Pending:
    op: Op
    reads: bool  # the op runs SQL of its own, so rows this batch changed must be written first
    future: asyncio.Future[Any] | None = None
    done: Done | None = None  # called instead of a future, with (result, None) or (None, error)


class SqliteStore:
    """The embedded backend. One process owns the file (a lock in the data dir says so).

    Every change is a small function run on the writer's thread; the writer takes all that
    are waiting and runs them in one transaction, so concurrent writers share one fsync.
    While this process owns the file, it keeps running jobs in memory to skip re-reading them.

    Args:
        path: the SQLite file; created with its schema and a new epoch when missing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._epoch = ""
        self._seq = 0  # the last seq handed out, on the writer's thread
        # Set on the writer's thread around each COMMIT: the ceiling as it starts (no reader
        # can see a row above it), the durable head once it returned (nothing at or below it
        # can be rolled back). A failed batch puts both back.
        self._ceiling = 0
        self._durable = 0
        self._pruned = 0
        self._active: dict[str, Job] = {}
        # Rows changed by the batch being run, written at its end (or before an op's own SQL):
        # ten progress updates of one job in one batch cost one UPDATE, not ten.
        self._dirty: dict[str, Job] = {}
        self._new: set[str] = set()
        # This batch's events, for on_commit; an Event is also its own row in the events
        # table, and the first ``_written`` of them are in it already.
        self._committed: list[Event] = []
        self._written = 0
        self._stamp = ""  # this batch's timestamp, ISO 8601
        self._publish: Callable[[list[Event]], None] = lambda events: None
        self._pending: list[_Pending] = []
        self._wake = asyncio.Event()
        self._writer_task: asyncio.Task[None] | None = None
        self._wdb: aiosqlite.Connection | None = None
        self._rdb: aiosqlite.Connection | None = None
        self._lock_fd: int | None = None
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # Lease tokens only need to be unique: a random prefix per open, then a counter.
        self._token_prefix = secrets.token_hex(8) + "-"
        self._tokens = itertools.count(1)

    def on_commit(self, publish: Callable[[list[Event]], None]) -> None:
        """Give every committed event to ``publish``, in seq order, right after its commit."""
        self._publish = publish

    @property
    def epoch(self) -> str:
        return self._epoch

    # -- life cycle -------------------------------------------------------------------------

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        self._wdb = await aiosqlite.connect(self.path, isolation_level=None)
        for pragma in PRAGMAS:
            await self._wdb.execute(pragma)
        await self._wdb.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        await self._wdb.executescript(SCHEMA)
        await self._wdb.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?)", (uuid.uuid4().hex,)
        )
        await self._wdb.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('pruned', '0')")
        rows = await self._wdb.execute_fetchall("SELECT key, value FROM meta")
        meta: dict[str, str] = {str(r[0]): str(r[1]) for r in rows}
        self._epoch = str(meta["epoch"])
        self._pruned = int(meta["pruned"])
        head = list(await self._wdb.execute_fetchall("SELECT MAX(seq) FROM events"))
        self._seq = self._ceiling = self._durable = max(self._pruned, head[0][0] or 0)
        self._rdb = await aiosqlite.connect(self.path, isolation_level=None)
        await self._rdb.execute("PRAGMA busy_timeout=5000")
        await self._rdb.execute("PRAGMA query_only=ON")
        self._loop = asyncio.get_running_loop()
        self._writer_task = asyncio.create_task(self._writer(), name="sqlite-writer")

    async def close(self) -> None:
        self._closing = True
        if self._writer_task is not None:
            self._wake.set()
            await self._writer_task
            self._writer_task = None
        for db in (self._rdb, self._wdb):
            if db is not None:
                await db.close()
        self._rdb = self._wdb = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _take_lock(self) -> None:
        fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ServiceUnavailable(
                f"another jobserver process is using {self.path}; give each its own --data-dir"
            ) from None
        self._lock_fd = fd

    # -- the writer -------------------------------------------------------------------------

    def _submit(
        self,
        op: Callable[[sqlite3.Connection], T],
        *,
        reads: bool = True,
        done: Done | None = None,
    ) -> asyncio.Future[T] | None:
        """Queue ``op`` now; ops commit in the order they were submitted.

        ``reads=False`` marks an op that touches jobs only through ``_load``/``_save``. With
        ``done``, no future is made: ``done`` is called once the op committed or failed.
        """
        loop = self._loop
        if self._closing or loop is None:
            error = ServiceUnavailable("the store is closed")
            if done is not None:
                done(None, error)
                return None
            closed: asyncio.Future[T] = asyncio.get_running_loop().create_future()
            closed.set_exception(error)
            return closed
        future: asyncio.Future[T] | None = None if done is not None else loop.create_future()
        self._pending.append(_Pending(op, reads, future, done))
        self._wake.set()
        return future

    async def _write(self, op: Callable[[sqlite3.Connection], T], *, reads: bool = True) -> T:
        future = self._submit(op, reads=reads)
        assert future is not None
        return await future

    async def _writer(self) -> None:
        """Run batches on the writer's thread, one after another, and hand out their outcome.

        Pipelined: the next batch goes to the thread before this loop publishes the last
        one's events and answers its callers, so SQLite works while Python fans out.
        """
        running: tuple[list[_Pending], asyncio.Future[Any]] | None = None
        while True:
            if running is None:
                if not self._pending:
                    if self._closing:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                running = self._start_batch()
            batch, outcome = running
            results, committed = await outcome
            running = self._start_batch() if self._pending else None
            self._finish_batch(batch, results, committed)

    def _start_batch(self) -> tuple[list[_Pending], asyncio.Future[Any]]:
        assert self._wdb is not None
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        # aiosqlite runs one callable per hop on its thread; the whole batch is one hop.
        hop = self._wdb._execute(self._run_batch, [(p.op, p.reads) for p in batch])  # type: ignore[no-untyped-call]
        return batch, asyncio.ensure_future(hop)

    def _finish_batch(
        self, batch: list[_Pending], results: list[tuple[bool, Any]], committed: list[Event]
    ) -> None:
        """Durable now: publish first, in seq order, then tell each caller."""
        if committed:
            try:
                self._publish(committed)
            except Exception:
                log.exception("publishing committed events failed")
        for pending, (ok, value) in zip(batch, results, strict=True):
            if pending.done is not None:
                try:
                    pending.done(value, None) if ok else pending.done(None, value)
                except Exception:
                    log.exception("a write's completion callback failed")
            elif pending.future is not None and not pending.future.done():
                if ok:
                    pending.future.set_result(value)
                else:
                    pending.future.set_exception(value)

    def _run_batch(self, ops: list[tuple[Op, bool]]) -> tuple[list[tuple[bool, Any]], list[Event]]:
        """On the writer thread: all ops in one transaction; one op's domain error is its own.

        Returns each op's outcome and the events committed, in seq order.
        """
        assert self._wdb is not None
        conn: sqlite3.Connection = self._wdb._conn
        seq = self._seq
        self._stamp = iso(time.time()) or ""
        results: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op, reads in ops:
                if reads:
                    self._flush(conn)
                try:
                    results.append((True, op(conn)))
                except JobServerError as exc:  # raised before the op wrote anything
                    results.append((False, exc))
            self._flush(conn)
            self._ceiling = self._seq  # readers see the rows the moment the COMMIT lands
            conn.execute("COMMIT")
            self._durable = self._seq
            committed, self._committed, self._written = self._committed, [], 0
            return results, committed
        except Exception as exc:
            if conn.in_transaction:
                conn.rollback()
            # The database is the truth again: forget what this batch changed in memory.
            self._seq = self._ceiling = self._durable = seq
            self._active.clear()
            self._dirty.clear()
            self._new.clear()
            self._committed, self._written = [], 0
            if len(ops) == 1:
                log.exception("store write failed")
                return [(False, exc)], []
        # Something unexpected broke the batch: run each op alone so only its own caller fails.
        outcomes: list[tuple[bool, Any]] = []
        published: list[Event] = []
        for single in ops:
            result, events = self._run_batch([single])
            outcomes += result
            published += events
        return outcomes, published

    # -- helpers that run on the writer thread ----------------------------------------------

    def _flush(self, conn: sqlite3.Connection) -> None:
        """Write the job rows and events this batch changed so far."""
        if self._dirty:
            new = self._new
            dirty = self._dirty.values()
            write_rows(conn, "insert-jobs", [insert_params(j) for j in dirty if j.id in new])
            write_rows(conn, "update-jobs", [update_params(j) for j in dirty if j.id not in new])
            self._dirty = {}
            self._new = set()
        if self._written < len(self._committed):
            write_rows(conn, "events", self._committed[self._written :])
            self._written = len(self._committed)

    def _load(self, conn: sqlite3.Connection, job_id: str) -> Job | None:
        job = self._dirty.get(job_id) or self._active.get(job_id)
        if job is not None:
            return job
        row = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return None if row is None else row_to_job(row)

    def _save(
        self, conn: sqlite3.Connection, change: changes.Change, *, insert: bool = False
    ) -> Event:
        job, type_ = change
        self._seq += 1
        job.last_seq = self._seq
        event = encode_event(self._seq, type_, job, self._stamp)
        self._committed.append(event)
        self._dirty[job.id] = job
        if insert:
            self._new.add(job.id)
        if job.status is JobStatus.ACTIVE:
            self._active[job.id] = job
        else:
            self._active.pop(job.id, None)
        return event

    # -- writes -----------------------------------------------------------------------------

    async def head_seq(self) -> int:
        return self._durable

    async def seq_ceiling(self) -> int:
        return self._ceiling

    async def pruned_through(self) -> int:
        return self._pruned

    async def enqueue(self, new: NewJob) -> tuple[Job, list[Event]]:
        def op(conn: sqlite3.Connection) -> tuple[Job, list[Event]]:
            if new.idempotency_key is not None:
                row = conn.execute(
                    f"SELECT {JOB_COLUMNS} FROM jobs WHERE user_id=? AND idempotency_key=?",
                    (new.user_id, new.idempotency_key),
                ).fetchone()
                if row is not None:
                    return row_to_job(row), []
            change = changes.new_job(new, time.time())
            return change[0], [self._save(conn, change, insert=True)]

        # Only an idempotency key needs SQL of its own (so the rows before it are written
        # first); without one, a burst of enqueues goes out in a few multi-row statements.
        return await self._write(op, reads=new.idempotency_key is not None)

    async def claim(self, limit: int, lease_seconds: float) -> list[tuple[Job, Event]]:
        def op(conn: sqlite3.Connection) -> list[tuple[Job, Event]]:
            now = time.time()
            rows = conn.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE status='queued' AND run_at<=? "
                "ORDER BY run_at, rowid LIMIT ?",
                (now, limit),
            ).fetchall()
            out = []
            for row in rows:
                token = f"{self._token_prefix}{next(self._tokens):x}"
                change = changes.claimed(row_to_job(row), token, lease_seconds, now)
                out.append((change[0], self._save(conn, change)))
            return out

        return await self._write(op)

    def _leased_write(self, job_id: str, token: str, apply: Callable[[Job], changes.Change]) -> Op:
        def op(conn: sqlite3.Connection) -> Event:
            return self._save(conn, apply(changes.leased(self._load(conn, job_id), job_id, token)))

        return op

    def progress(
        self,
        job_id: str,
        token: str,
        update: ProgressUpdate,
        done: Callable[[Event | None, BaseException | None], None],
    ) -> None:
        self._submit(
            self._leased_write(job_id, token, lambda job: changes.progressed(job, update)),
            reads=False,
            done=done,
        )

    async def complete(self, job_id: str, token: str, result: ResultDict) -> Event:
        return await self._write(
            self._leased_write(
                job_id, token, lambda job: changes.completed(job, result, time.time())
            ),
            reads=False,
        )

    async def fail(
        self, job_id: str, token: str, error: ErrorDict, retry_at: float | None
    ) -> Event:
        return await self._write(
            self._leased_write(
                job_id, token, lambda job: changes.failed(job, error, retry_at, time.time())
            ),
            reads=False,
        )

    async def requeue(self, job_id: str, token: str, message: str) -> Event:
        return await self._write(
            self._leased_write(
                job_id, token, lambda job: changes.requeued(job, message, time.time())
            ),
            reads=False,
        )

    def _owned_write(
        self, job_id: str, user_id: str | None, apply: Callable[[Job, float], changes.Change]
    ) -> Op:
        def op(conn: sqlite3.Connection) -> tuple[Job, Event]:
            job = changes.owned(self._load(conn, job_id), job_id, user_id)
            change = apply(job, time.time())
            return change[0], self._save(conn, change)

        return op

    async def cancel(self, job_id: str, user_id: str | None) -> tuple[Job, Event]:
        return await self._write(self._owned_write(job_id, user_id, changes.cancelled), reads=False)

    async def retry(self, job_id: str, user_id: str | None) -> tuple[Job, Event]:
        return await self._write(self._owned_write(job_id, user_id, changes.retried), reads=False)

    async def renew(self, leases: Mapping[str, str], lease_seconds: float) -> set[str]:
        def op(conn: sqlite3.Connection) -> set[str]:
            expires = time.time() + lease_seconds
            lost = set()
            for job_id, token in leases.items():
                cursor = conn.execute(
                    "UPDATE jobs SET lease_expires_at=? "
                    "WHERE id=? AND status='active' AND lease_token=?",
                    (expires, job_id, token),
                )
                if cursor.rowcount == 0:
                    lost.add(job_id)
                elif job_id in self._active:
                    self._active[job_id].lease_expires_at = expires
            return lost

        return await self._write(op)

    async def recover(self, *, expired_only: bool) -> list[Event]:
        def op(conn: sqlite3.Connection) -> list[Event]:
            now = time.time()
            sql = f"SELECT {JOB_COLUMNS} FROM jobs WHERE status='active'"
            params: tuple[Any, ...] = ()
            if expired_only:
                sql += " AND lease_expires_at < ?"
                params = (now,)
            rows = conn.execute(sql, params).fetchall()
            return [self._save(conn, changes.worker_lost(row_to_job(row), now)) for row in rows]

        return await self._write(op)

    # -- notes ------------------------------------------------------------------------------

    async def save_note(self, note: Note) -> None:
        params = note_params(note)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(INSERT_NOTE, params)

        await self._write(op)

    async def cache_notes(self, content_hash: str, content: NotesContent) -> None:
        params = cached_notes_params(content_hash, content, time.time())

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(INSERT_CACHED_NOTES, params)

        await self._write(op)

    async def prune_cached_notes(self, before: float, *, limit: int = 1000) -> int:
        def op(conn: sqlite3.Connection) -> int:
            return int(
                conn.execute(
                    "DELETE FROM notes_cache WHERE rowid IN "
                    "(SELECT rowid FROM notes_cache WHERE created_at < ? LIMIT ?)",
                    (before, limit),
                ).rowcount
            )

        return await self._write(op)

    async def get_note(self, note_id: str) -> Note | None:
        rows = await self._read(f"SELECT {NOTE_COLUMNS} FROM notes WHERE id=?", (note_id,))
        return row_to_note(rows[0]) if rows else None

    async def list_notes(self, user_id: str, limit: int, offset: int) -> list[Note]:
        rows = await self._read(
            f"SELECT {NOTE_COLUMNS} FROM notes WHERE user_id=? "
            "ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
            (user_id, limit, offset),
        )
        return [row_to_note(r) for r in rows]

    async def cached_notes(self, content_hash: str, generator: str) -> NotesContent | None:
        rows = await self._read(
            "SELECT content FROM notes_cache WHERE content_hash=? AND generator=?",
            (content_hash, generator),
        )
        return row_to_content(rows[0]) if rows else None

    # -- reads (a second connection, so they never wait behind a commit) --------------------

    async def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        if self._rdb is None:
            raise ServiceUnavailable("the store is closed")
        return list(await self._rdb.execute_fetchall(sql, params))

    async def get_job(self, job_id: str) -> Job | None:
        rows = await self._read(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id=?", (job_id,))
        return row_to_job(rows[0]) if rows else None

    async def list_jobs(
        self, user_id: str, status: JobStatus | None, limit: int, offset: int
    ) -> list[Job]:
        sql = f"SELECT {JOB_COLUMNS} FROM jobs WHERE user_id=?"
        params: tuple[Any, ...] = (user_id,)
        if status is not None:
            sql += " AND status=?"
            params += (status.value,)
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?"
        return [row_to_job(r) for r in await self._read(sql, (*params, limit, offset))]

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
        rows = await self._read(sql + " ORDER BY seq LIMIT ?", (*params, limit))
        return [Event(r[0], EventType(r[1]), r[2], r[3], bytes(r[4])) for r in rows]

    async def next_run_at(self) -> float | None:
        rows = await self._read("SELECT MIN(run_at) FROM jobs WHERE status='queued'")
        value = rows[0][0]
        return None if value is None else float(value)

    async def count_by_status(self) -> dict[JobStatus, int]:
        rows = await self._read("SELECT status, COUNT(*) FROM jobs GROUP BY status")
        counts = dict.fromkeys(JobStatus, 0)
        counts.update({JobStatus(status): n for status, n in rows})
        return counts

    # -- operations: health, retention, the WAL ---------------------------------------------

    async def ping(self) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('ping', ?)", (repr(time.time()),)
            )

        await self._write(op)

    async def prune(self, before: float, *, limit: int = 1000) -> Pruned:
        def op(conn: sqlite3.Connection) -> Pruned:
            ids = [
                str(r[0])
                for r in conn.execute(
                    f"SELECT id FROM jobs WHERE status IN {TERMINAL_SQL} AND finished_at < ? "
                    "ORDER BY finished_at LIMIT ?",
                    (before, limit),
                )
            ]
            if not ids:
                return Pruned(0, 0, self._pruned)
            marks = ",".join("?" * len(ids))
            row = conn.execute(f"SELECT MAX(seq) FROM events WHERE job_id IN ({marks})", ids)
            through = int(row.fetchone()[0] or 0)
            events = conn.execute(f"DELETE FROM events WHERE job_id IN ({marks})", ids).rowcount
            conn.execute(f"DELETE FROM jobs WHERE id IN ({marks})", ids)
            if through > self._pruned:
                # Raised before the commit: a rolled-back batch leaves it too high, which only
                # costs a client an unneeded resync, never a silent gap.
                self._pruned = through
                conn.execute("UPDATE meta SET value=? WHERE key='pruned'", (str(through),))
            return Pruned(len(ids), events, self._pruned, tuple(ids))

        return await self._write(op)

    async def payload_values(self, key: str) -> set[str]:
        path = f"$.{key}"
        rows = await self._read(
            "SELECT DISTINCT json_extract(payload, ?) FROM jobs "
            "WHERE json_extract(payload, ?) IS NOT NULL",
            (path, path),
        )
        return {str(r[0]) for r in rows}

    async def checkpoint(self) -> int:
        if self._closing or self._wdb is None:
            raise ServiceUnavailable("the store is closed")
        wdb = self._wdb

        def run() -> tuple[int, int, int]:
            # On the writer's thread between two batches, so never inside a transaction.
            conn: sqlite3.Connection = wdb._conn
            conn.execute(f"PRAGMA busy_timeout={CHECKPOINT_BUSY_MS}")
            try:
                busy, frames, done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                conn.execute("PRAGMA busy_timeout=5000")
            return int(busy), int(frames), int(done)

        busy, frames, done = await wdb._execute(run)  # type: ignore[no-untyped-call]
        if busy:
            log.debug("WAL checkpoint met a reader: %d of %d frames copied", done, frames)
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            return wal.stat().st_size
        except FileNotFoundError:
            return 0
