"""The SQLite writer: every write of ``SqliteStore`` runs here, in a process of its own.

The server is one Python process and its event loop and a writer thread would share one GIL:
per event, the writer's Python (apply the change, encode the event, bind the rows) cost as
much as everything the loop does. In a process of its own the writer runs on the other core.

``Writer`` runs lists of ops, each list in one transaction (group commit), and keeps what
it needs to skip re-reading: the running jobs, the rows a batch changed. ``main`` serves a
``SqliteStore`` over stdin/stdout with ``frames``; the parent holds the data dir's lock and
this process inherits it, so it outlives a killed server only until it reads end-of-file.

An op is a tuple ``(kind, *fields)`` of a type in ``sqlite_ops``; its result goes back with each
event as its ``seq`` (the events themselves go back once, as rows), so nothing is pickled twice.
"""

from __future__ import annotations

import importlib
import itertools
import logging
import os
import secrets
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import orjson

from .. import gctune
from ..errors import JobServerError, ServiceUnavailable, StorageFull
from ..models import ErrorDict, EventRow, Job, JobStatus, ResultDict, encode_event_row, iso
from ..tables import Tables, WriteOp, declared_in
from . import changes, frames, sqlite_file
from . import sqlite_ops as ops
from .claims import ClaimBudget
from .hold import FOREGROUND, Hold
from .migrations import migrate
from .protocol import Pruned
from .schema import (
    CORE,
    JOB_COLUMNS,
    insert_params,
    progress_params,
    row_to_job,
    update_params,
    write_rows,
)
from .sqlite_file import CLEAN_STOP

log = logging.getLogger(__name__)

Outcome = tuple[bool, Any]  # (True, result) or (False, the error)

MAX_BATCH = 512  # ops per transaction; bounds the work of one commit and one reply
BUSY_TIMEOUT_MS = 5000  # how long a statement waits for a lock, on either connection
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
)
# After a checkpoint resets the WAL, SQLite cuts the file back to this size.
WAL_SIZE_LIMIT = 64 * 1024 * 1024
# A checkpoint waits at most this long (ms) for readers, so writes barely stall.
CHECKPOINT_BUSY_MS = 50
TERMINAL_SQL = "('completed', 'failed', 'cancelled')"
# Ops that run SQL of their own over jobs or events: rows the batch changed are written first.
READING = frozenset({"claim", "renew", "recover", "prune", "op", "remove_finished"})


class Writer:
    """Runs ops on one write connection; ``run`` commits a list of them at once.

    Args:
        conn: an autocommit connection (``isolation_level=None``) to the store's file.
        storage: the plugins' storage modules (their tables and write ops).
    """

    def __init__(self, conn: sqlite3.Connection, storage: Sequence[str] = ()) -> None:
        self.conn = conn
        self._tables: list[Tables] = [CORE]
        self._plugin_ops: dict[str, WriteOp] = {}
        for name in storage:
            tables, writes = declared_in(importlib.import_module(name))
            self._tables += tables
            self._plugin_ops.update(writes)
        self.seq = 0  # the last seq handed out
        self.durable = 0  # the last seq committed
        self.pruned = 0
        self._active: dict[str, Job] = {}
        # Rows changed by the batch being run, written at its end (or before an op's own SQL):
        # ten progress updates of one job in one batch cost one UPDATE, not ten.
        self._dirty: dict[str, Job] = {}
        self._new: set[str] = set()
        self._moved: set[str] = set()  # dirty jobs changed by more than progress
        self._events: list[EventRow] = []  # this batch's events; the first _written are rows
        self._written = 0
        self._stamp = ""  # this batch's timestamp, ISO 8601
        # Lease tokens only need to be unique: a random prefix per writer, then a counter.
        self._token_prefix = secrets.token_hex(8) + "-"
        self._tokens = itertools.count(1)
        handlers: ops.Handlers = {
            "enqueue": self.enqueue,
            "enqueue_many": self.enqueue_many,
            "claim": self.claim,
            "progress": self.progress,
            "complete": self.complete,
            "fail": self.fail,
            "requeue": self.requeue,
            "cancel": self.cancel,
            "retry": self.retry,
            "remove": self.remove,
            "remove_finished": self.remove_finished,
            "renew": self.renew,
            "recover": self.recover,
            "op": self.plugin_op,
            "ping": self.ping,
            "prune": self.prune,
            "settings": self.settings,
            "stopping": self.stopping,
        }
        # The same table, looked up by an op's kind at run time.
        self._ops = cast(dict[str, Callable[[Any], Any]], handlers)

    def open(self) -> tuple[str, int, int]:
        """Set the file up (schema, a new epoch when new); returns (epoch, pruned, head)."""
        conn = self.conn
        for pragma in PRAGMAS:
            conn.execute(pragma)
        conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        migrate(conn, self._tables)
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?)", (uuid.uuid4().hex,)
        )
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('pruned', '0')")
        # Until the writer stops cleanly, the next first start checks the file.
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, '0')", (CLEAN_STOP,))
        meta = {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM meta")}
        self.pruned = int(meta["pruned"])
        head = conn.execute("SELECT MAX(seq) FROM events").fetchone()[0] or 0
        self.seq = self.durable = max(self.pruned, head)
        return meta["epoch"], self.pruned, self.durable

    # -- batches ----------------------------------------------------------------------------

    def run(
        self, batch: list[ops.Op], ahead: Sequence[int] = ()
    ) -> tuple[list[Outcome], list[EventRow]]:
        """Run ``batch`` in order, except the ops at ``ahead`` first: one transaction, except
        that a checkpoint runs between two.

        Returns each op's outcome, in ``batch``'s order, and the events committed, in seq order.
        """
        if ahead:
            skip = set(ahead)
            order = [*ahead, *(i for i in range(len(batch)) if i not in skip)]
            ran, events = self.run([batch[i] for i in order])
            placed: list[Outcome] = [(False, None)] * len(batch)
            for i, outcome in zip(order, ran, strict=True):
                placed[i] = outcome
            return placed, events
        outcomes: list[Outcome] = []
        committed: list[EventRow] = []
        start = 0
        for i, op in enumerate(batch):
            if op[0] == "checkpoint":
                self._run_part(batch[start:i], outcomes, committed)
                outcomes.append(self._checkpoint())
                start = i + 1
        self._run_part(batch[start:], outcomes, committed)
        return outcomes, committed

    def _run_part(
        self, part: list[ops.Op], outcomes: list[Outcome], committed: list[EventRow]
    ) -> None:
        if part:
            results, events = self.run_batch(part)
            outcomes += results
            committed += events

    def run_batch(self, batch: list[ops.Op]) -> tuple[list[Outcome], list[EventRow]]:
        """All of ``batch`` in one transaction; one op's domain error is its own."""
        conn = self.conn
        seq = self.seq
        self._stamp = iso(time.time()) or ""
        results: list[Outcome] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                kind = op[0]
                if kind in READING or _keyed(op):
                    self._flush()
                try:
                    results.append((True, self._ops[kind](op)))
                except JobServerError as exc:  # raised before the op wrote anything
                    results.append((False, exc))
            self._flush()
            conn.execute("COMMIT")
            self.durable = self.seq
            committed, self._events, self._written = self._events, [], 0
            return results, committed
        except Exception as exc:
            if conn.in_transaction:
                conn.rollback()
            # The database is the truth again: forget what this batch changed in memory.
            self.seq = self.durable = seq
            self._active.clear()
            self._dirty.clear()
            self._new.clear()
            self._moved.clear()
            self._events, self._written = [], 0
            if len(batch) == 1:
                log.exception("store write failed")
                return [(False, write_failed(exc))], []
        # Something unexpected broke the batch: run each op alone so only its own caller fails.
        outcomes: list[Outcome] = []
        published: list[EventRow] = []
        for single in batch:
            result, events = self.run_batch([single])
            outcomes += result
            published += events
        return outcomes, published

    def _flush(self) -> None:
        """Write the job rows and events this batch changed so far."""
        conn = self.conn
        if self._dirty:
            inserts, updates, progressed = [], [], []
            new, moved = self._new, self._moved
            for job in self._dirty.values():
                if job.id in new:
                    inserts.append(insert_params(job))
                elif job.id in moved:
                    updates.append(update_params(job))
                else:
                    progressed.append(progress_params(job))
            write_rows(conn, "insert-jobs", inserts)
            write_rows(conn, "update-jobs", updates)
            write_rows(conn, "progress-jobs", progressed)
            self._dirty = {}
            self._new = set()
            self._moved = set()
        if self._written < len(self._events):
            # An event's row is its first five fields; the hints go to the server only.
            write_rows(conn, "events", [e[:5] for e in self._events[self._written :]])
            self._written = len(self._events)

    def _load(self, job_id: str) -> Job | None:
        job = self._dirty.get(job_id) or self._active.get(job_id)
        if job is not None:
            return job
        row = self.conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return None if row is None else row_to_job(row)

    def _save(
        self, change: changes.Change, *, insert: bool = False, progressed: bool = False
    ) -> int:
        """Stage ``change``'s row and event; returns the event's seq.

        ``progressed``: the change set only the progress columns (stage, progress, message,
        metadata), so unless something else changed the job in this batch, only those and
        ``last_seq`` are written.
        """
        job, type_ = change
        self.seq += 1
        job.last_seq = self.seq
        self._events.append(encode_event_row(self.seq, type_, job, self._stamp))
        self._dirty[job.id] = job
        if insert:
            self._new.add(job.id)
        elif not progressed:
            self._moved.add(job.id)
        if job.status is JobStatus.ACTIVE:
            self._active[job.id] = job
        else:
            self._active.pop(job.id, None)
        return self.seq

    # -- ops: each returns what the store hands back, with events as their seq --------------

    def enqueue(self, op: ops.Enqueue) -> ops.JobAndSeqs:
        return self.enqueue_many(("enqueue_many", [op[1]]))[0]

    def enqueue_many(self, op: ops.EnqueueMany) -> list[ops.JobAndSeqs]:
        """Every job made (or found by its idempotency key) before any is staged, so a job
        that cannot be made leaves the batch's transaction as it was."""
        now = time.time()
        made: list[changes.Change | Job] = []
        for fields in op[1]:
            new = frames.new_job(fields)
            if new.idempotency_key is not None:
                row = self.conn.execute(
                    f"SELECT {JOB_COLUMNS} FROM jobs WHERE user_id=? AND idempotency_key=?",
                    (new.user_id, new.idempotency_key),
                ).fetchone()
                if row is not None:
                    made.append(row_to_job(row))
                    continue
            made.append(changes.new_job(new, now))
        out: list[ops.JobAndSeqs] = []
        for item in made:
            if isinstance(item, Job):
                out.append((frames.job_fields(item), []))
            else:
                seq = self._save(item, insert=True)  # first: it sets the job's last_seq
                out.append((frames.job_fields(item[0]), [seq]))
        return out

    def claim(self, op: ops.Claim) -> list[ops.JobAndSeq]:
        _, limit, lease_seconds, caps, per_user = op
        now = time.time()
        budget = ClaimBudget(limit, caps, per_user)
        out: list[ops.JobAndSeq] = []
        while budget.more:
            types, users = budget.full_types(), budget.full_users()
            skip = f" AND type NOT IN ({','.join('?' * len(types))})" if types else ""
            skip += f" AND user_id NOT IN ({','.join('?' * len(users))})" if users else ""
            rows = self.conn.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE status='queued' AND run_at<=?{skip} "
                "ORDER BY run_at, rowid LIMIT ?",
                (now, *types, *users, budget.want),
            ).fetchall()
            for job in budget.page([row_to_job(row) for row in rows]):
                token = f"{self._token_prefix}{next(self._tokens):x}"
                change = changes.claimed(job, token, lease_seconds, now)
                seq = self._save(change)  # first: it sets the job's last_seq
                out.append((frames.job_fields(change[0]), seq))
            if budget.more:
                self._flush()  # the next page must not see these as queued
        return out

    def _leased(self, job_id: str, token: str) -> Job:
        return changes.leased(self._load(job_id), job_id, token)

    def progress(self, op: ops.Progress) -> ops.Seq:
        _, job_id, token, stage, progress, message, metadata, label = op
        data = None if metadata is None else orjson.loads(metadata)
        job = self._leased(job_id, token)
        return self._save(
            changes.progressed(job, (stage, progress, message, data, label)), progressed=True
        )

    def complete(self, op: ops.Complete) -> ops.Seq:
        _, job_id, token, result = op
        done: ResultDict = orjson.loads(result)
        return self._save(changes.completed(self._leased(job_id, token), done, time.time()))

    def fail(self, op: ops.Fail) -> ops.Seq:
        _, job_id, token, error, retry_at = op
        job = self._leased(job_id, token)
        failure: ErrorDict = orjson.loads(error)
        return self._save(changes.failed(job, failure, retry_at, time.time()))

    def requeue(self, op: ops.Requeue) -> ops.Seq:
        _, job_id, token, message = op
        return self._save(changes.requeued(self._leased(job_id, token), message, time.time()))

    def _owned(
        self, job_id: str, user_id: str | None, apply: Callable[[Job, float], changes.Change]
    ) -> ops.JobAndSeq:
        change = apply(changes.owned(self._load(job_id), job_id, user_id), time.time())
        seq = self._save(change)
        return frames.job_fields(change[0]), seq

    def cancel(self, op: ops.Cancel) -> ops.JobAndSeq:
        return self._owned(op[1], op[2], changes.cancelled)

    def retry(self, op: ops.Retry) -> ops.JobAndSeq:
        return self._owned(op[1], op[2], changes.retried)

    def remove(self, op: ops.Remove) -> ops.JobAndSeq:
        return self._owned(op[1], op[2], changes.removed)

    def remove_finished(self, op: ops.RemoveFinished) -> list[ops.Seq]:
        _, user_id, statuses, limit = op
        now = time.time()
        rows = self.conn.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE user_id=? AND removed_at IS NULL "
            f"AND status IN ({','.join('?' * len(statuses))}) ORDER BY created_at, rowid LIMIT ?",
            (user_id, *statuses, limit),
        ).fetchall()
        return [self._save(changes.removed(row_to_job(row), now)) for row in rows]

    def renew(self, op: ops.Renew) -> set[str]:
        _, leases, lease_seconds = op
        expires = time.time() + lease_seconds
        lost = set()
        for job_id, token in leases.items():
            cursor = self.conn.execute(
                "UPDATE jobs SET lease_expires_at=? "
                "WHERE id=? AND status='active' AND lease_token=?",
                (expires, job_id, token),
            )
            if cursor.rowcount == 0:
                lost.add(job_id)
            elif job_id in self._active:
                self._active[job_id].lease_expires_at = expires
        return lost

    def recover(self, op: ops.Recover) -> list[ops.Seq]:
        expired_only = op[1]
        now = time.time()
        sql = f"SELECT {JOB_COLUMNS} FROM jobs WHERE status='active'"
        params: tuple[Any, ...] = ()
        if expired_only:
            sql += " AND lease_expires_at < ?"
            params = (now,)
        rows = self.conn.execute(sql, params).fetchall()
        return [self._save(changes.worker_lost(row_to_job(row), now)) for row in rows]

    def plugin_op(self, op: ops.PluginOp) -> Any:
        """A plugin's write op, in this batch's transaction. It may read and write its own
        tables; the jobs and events this batch changed are written first (see READING)."""
        _, name, args = op
        try:
            run = self._plugin_ops[name]
        except KeyError:
            raise JobServerError(f"no write op {name!r}") from None
        return run(self.conn, *args)

    def ping(self, op: ops.Ping) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('ping', ?)", (repr(time.time()),)
        )

    def prune(self, op: ops.Prune) -> Pruned:
        _, before, limit = op
        conn = self.conn
        ids = [
            str(r[0])
            for r in conn.execute(
                f"SELECT id FROM jobs WHERE status IN {TERMINAL_SQL} AND finished_at < ? "
                "ORDER BY finished_at LIMIT ?",
                (before, limit),
            )
        ]
        if not ids:
            return Pruned(0, 0, self.pruned)
        marks = ",".join("?" * len(ids))
        row = conn.execute(f"SELECT MAX(seq) FROM events WHERE job_id IN ({marks})", ids)
        through = int(row.fetchone()[0] or 0)
        events = conn.execute(f"DELETE FROM events WHERE job_id IN ({marks})", ids).rowcount
        conn.execute(f"DELETE FROM jobs WHERE id IN ({marks})", ids)
        if through > self.pruned:
            # Raised before the commit: a rolled-back batch leaves it too high, which only
            # costs a client an unneeded resync, never a silent gap.
            self.pruned = through
            conn.execute("UPDATE meta SET value=? WHERE key='pruned'", (str(through),))
        return Pruned(len(ids), events, self.pruned, tuple(ids))

    def stopping(self, op: ops.Stopping) -> None:
        """The server is closing the store (its last write): the next start need not check."""
        self.conn.execute("UPDATE meta SET value='1' WHERE key=?", (CLEAN_STOP,))

    def settings(self, op: ops.Settings) -> dict[str, int | str]:
        """The connection's durability settings, for tests and diagnostics."""
        conn = self.conn
        return {
            "journal_mode": str(conn.execute("PRAGMA journal_mode").fetchone()[0]),
            "synchronous": int(conn.execute("PRAGMA synchronous").fetchone()[0]),
            "busy_timeout": int(conn.execute("PRAGMA busy_timeout").fetchone()[0]),
        }

    def _checkpoint(self) -> Outcome:
        """Copy the WAL into the file and truncate it; between two transactions."""
        conn = self.conn
        try:
            conn.execute(f"PRAGMA busy_timeout={CHECKPOINT_BUSY_MS}")
            try:
                busy, pages, done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        except sqlite3.Error as exc:
            return False, ServiceUnavailable(f"the WAL checkpoint failed: {exc}")
        # Measured here, before the next batch appends to the WAL again.
        file = conn.execute("PRAGMA database_list").fetchone()[2]
        try:
            size = os.stat(file + "-wal").st_size
        except FileNotFoundError:
            size = 0
        return True, (int(busy), int(pages), int(done), size)


def serve(
    path: Path, link: frames.Link, storage: Sequence[str] = (), *, first: bool = True,
    check_seconds: float = 0,
) -> None:  # fmt: skip
    """Answer ``link`` until it closes: a hello, then one reply per run of requests.

    ``first``: the server is starting, so the file may be made, and is checked (see
    ``sqlite_file.connect``); a writer started again after one died only opens it.
    """
    try:
        conn = sqlite_file.connect(path, first=first, check_seconds=check_seconds)
    except JobServerError as exc:
        link.send(("error", exc.message, exc.code))
        return
    except Exception as exc:
        link.send(("error", f"cannot open {path}: {exc}"))
        return
    try:
        writer = Writer(conn, storage)
        link.send(("hello", *writer.open()))
    except Exception as exc:
        conn.close()
        if isinstance(exc, sqlite3.DatabaseError) and sqlite_file.is_damage(exc):
            error = sqlite_file.damaged(path, str(exc))
            link.send(("error", error.message, error.code))
        else:
            link.send(("error", f"cannot open {path}: {exc}"))
        return
    try:
        hold = Hold()
        while True:
            requests = link.receive_many(MAX_BATCH)
            if requests is None:
                return
            started = time.monotonic()
            count = sum(map(len, requests))
            wait = hold.seconds(started, any(map(_foreground, requests)), count)
            if wait:
                more = link.receive_until(MAX_BATCH - count, started + wait, _foreground)
                requests += more
                if more and _foreground(more[-1]):
                    hold.last_foreground = time.monotonic()
            began = time.monotonic()
            # Requests run in order; one that could not be read is answered on its own.
            start = 0
            for i, request in enumerate(requests):
                if request is frames.UNREADABLE:
                    _answer(writer, link, requests[start:i])
                    log.error("a request from the server could not be read")
                    link.send((1, None, [], writer.durable, [], 0))
                    start = i + 1
            _answer(writer, link, requests[start:])
            hold.took = time.monotonic() - began
    finally:
        conn.close()


def _keyed(op: ops.Op) -> bool:
    """An enqueue that looks up an idempotency key: the rows staged so far are written first."""
    if op[0] == "enqueue":
        return op[1][frames.IDEMPOTENCY_KEY] is not None
    return op[0] == "enqueue_many" and any(f[frames.IDEMPOTENCY_KEY] is not None for f in op[1])


def write_failed(exc: Exception) -> ServiceUnavailable:
    """What a write that SQLite refused answers: 507 STORAGE_FULL for a full disk."""
    if getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite_file.SQLITE_FULL:
        return StorageFull(f"the store could not write: the disk is full ({exc})")
    return ServiceUnavailable(f"the store could not write: {exc}")


def _foreground(request: list[ops.Op]) -> bool:
    return request is not frames.UNREADABLE and any(op[0] in FOREGROUND for op in request)


def _answer(writer: Writer, link: frames.Link, requests: list[list[ops.Op]]) -> None:
    """Run ``requests`` and send one reply: (how many requests it answers, each op's
    outcome, the events, the durable seq, the ops that ran first, how many events they made)."""
    if requests:
        batch = [op for request in requests for op in request]
        ahead = ops.enqueues_first(batch)
        outcomes, events = writer.run(batch, ahead)
        lead = ops.first_events(batch, ahead, outcomes)
        link.send((len(requests), outcomes, events, writer.durable, ahead, lead))


def main(
    path: str, protocol_fd: int, storage: Sequence[str], first: str = "first",
    check_seconds: str = "0",
) -> None:  # fmt: skip
    """The process's entry point, called by ``BOOT``."""
    os.umask(0o077)  # whatever SQLite creates here is this user's alone
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    gctune.tune()  # the same collector settings as the server, for the same reason
    link = frames.Link(0, protocol_fd)
    serve(Path(path), link, storage, first=first == "first", check_seconds=float(check_seconds))


# How the server starts this process (``python -P -c BOOT path``). First, signals are the
# server's business: Ctrl-C and service managers signal the whole group, and graceful
# shutdown still needs this process, which ends when the server closes the pipe (or dies).
# Then the protocol moves to a descriptor of its own and stdout goes to stderr. Then the
# package: the copy the server runs, from ``root``, looked up after the standard library,
# and put first only if another copy would be found before it. Last, the server's own module
# path (``PLUGIN_PATH``), after everything else, so plugins' storage modules import here too.
PLUGIN_PATH = "JOBSERVER_PLUGIN_PATH"
BOOT = """
import os, signal, sys
for name in ("SIGINT", "SIGTERM", "SIGHUP"):
    signal.signal(getattr(signal, name), signal.SIG_IGN)
fd = os.dup(1)
os.dup2(2, 1)
root = os.path.realpath({root!r})
sys.path.append(root)
import jobserver
if os.path.dirname(os.path.dirname(os.path.realpath(jobserver.__file__))) != root:
    del sys.modules["jobserver"]
    sys.path.insert(0, root)
sys.path += [p for p in os.environ.get("JOBSERVER_PLUGIN_PATH", "").split(os.pathsep) if p]
from jobserver.store.sqlite_writer import main
main(sys.argv[1], fd, sys.argv[4:], *sys.argv[2:4])
"""
