"""SQLite backend: WAL, synchronous=FULL, one writer process that group-commits every change.

``SqliteStore`` is the ``Store`` over three parts: the data dir's lock (one server per file),
the link to the writer process (``sqlite_link``: every write, as a typed op of ``sqlite_ops``)
and the reads (``sqlite_reads``: a connection of their own). Here each write method builds its
op and says how the writer's result (events as their seq) becomes what the caller gets.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..datadir import private_dir
from ..errors import DataDirUnusable, InvalidPayload, ServiceUnavailable
from ..models import ErrorDict, Event, Job, JobStatus, ResultDict
from . import sqlite_ops
from .claims import PerUser
from .protocol import NewJob, ProgressUpdate, Pruned
from .sqlite_file import try_lock
from .sqlite_link import WriterLink
from .sqlite_reads import SqliteReads

log = logging.getLogger(__name__)

# How long open() waits for the data dir's lock: a killed server's writer process holds it
# until it has read end-of-file (at most one batch later).
LOCK_WAIT_SECONDS = 5.0
# After an unclean stop, the database check at start is cut off after this long by default.
CHECK_SECONDS = 30.0


# -- the writer's results, as the caller gets them (``events`` are the reply's, from ``first``)


def _event(seq: sqlite_ops.Seq, events: list[Event], first: int) -> Event:
    return events[seq - first]


def _job_event(value: sqlite_ops.JobAndSeq, events: list[Event], first: int) -> tuple[Job, Event]:
    return Job(*value[0]), events[value[1] - first]


def _job_events(
    value: sqlite_ops.JobAndSeqs, events: list[Event], first: int
) -> tuple[Job, list[Event]]:
    return Job(*value[0]), [events[seq - first] for seq in value[1]]


def _jobs_events(
    value: list[sqlite_ops.JobAndSeqs], events: list[Event], first: int
) -> list[tuple[Job, list[Event]]]:
    return [_job_events(one, events, first) for one in value]


def _claimed(
    value: list[sqlite_ops.JobAndSeq], events: list[Event], first: int
) -> list[tuple[Job, Event]]:
    return [(Job(*job), events[seq - first]) for job, seq in value]


def _events(value: list[sqlite_ops.Seq], events: list[Event], first: int) -> list[Event]:
    return [events[seq - first] for seq in value]


class SqliteStore:
    """The embedded backend. One process owns the file (a lock in the data dir says so).

    Args:
        path: the SQLite file; created with its schema and a new epoch when missing.
        lock_wait: seconds ``open`` waits for another process to let go of the file.
        storage: plugins' storage modules (``tables.py``): their tables are made or migrated
            at open, their write ops run in the writer's transactions.
        check_seconds: how long ``open`` may spend checking the file after an unclean stop
            (SQLite's ``quick_check``; 0 skips it).
    """

    def __init__(
        self, path: Path, *, lock_wait: float = LOCK_WAIT_SECONDS, storage: Sequence[str] = (),
        check_seconds: float = CHECK_SECONDS,
    ) -> None:  # fmt: skip
        self.path = path
        self.lock_wait = lock_wait
        self.storage = tuple(storage)
        self.check_seconds = check_seconds
        self._reads = SqliteReads(path)
        self._link = WriterLink(
            path, self.storage, self._missed, self._writer_started, check_seconds
        )
        self._pruned = 0
        self._prune_ops = 0  # prune ops submitted and not yet answered
        self._prune_unsure = False  # a prune ended unanswered: the mark may be above _pruned
        self._lock_fd: int | None = None

    def on_commit(self, publish: Callable[[list[Event]], None]) -> None:
        """Give every committed event to ``publish``, in seq order, right after its commit."""
        self._link.publish = publish

    @property
    def epoch(self) -> str:
        return self._link.epoch

    @property
    def writer_pid(self) -> int | None:
        """The writer process's pid while one runs."""
        return self._link.pid

    @property
    def writer_restarts(self) -> int:
        """Writers started after one died."""
        return self._link.writer_restarts

    @property
    def problem(self) -> str | None:
        """Why writes (or reads) cannot be made right now, in words; None when they can."""
        return self._reads.damage or self._link.problem

    # -- life cycle -------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            private_dir(self.path.parent)
            self._lock_fd = await self._take_lock()
        except OSError as exc:
            raise DataDirUnusable(
                f"cannot write to the data folder {self.path.parent} "
                f"({exc.strerror or exc}); give the server a writable folder with --data-dir"
            ) from None
        try:
            await self._link.open(self._lock_fd)
        except BaseException:
            self._release_lock()
            raise
        await self._reads.open()

    async def close(self) -> None:
        await self._link.close()
        await self._reads.close()
        self._release_lock()

    async def _take_lock(self) -> int:
        deadline = time.monotonic() + self.lock_wait
        while (fd := try_lock(self.path)) is None:
            if time.monotonic() >= deadline:
                raise ServiceUnavailable(
                    f"another jobserver process is using {self.path}; give each its own --data-dir"
                )
            await asyncio.sleep(0.05)
        return fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _writer_started(self, pruned: int) -> None:
        """A writer said hello, with the pruned mark as its file has it."""
        self._pruned = max(self._pruned, pruned)
        if not self._prune_ops:
            self._prune_unsure = False

    async def _missed(self, after: int) -> list[Event]:
        return await self._reads.events_after(after, limit=1000)

    # -- heads ------------------------------------------------------------------------------

    async def head_seq(self) -> int:
        return self._link.durable

    async def seq_ceiling(self) -> int:
        # A client's cursor is a seq it was given: published (so at most the durable head)
        # or read from the file by this store (an event, or a job's lastSeq).
        return max(self._link.durable, self._reads.read_up_to)

    async def pruned_through(self) -> int:
        if self._prune_ops or self._prune_unsure:
            # A prune may have committed before its reply came: a reader may already miss
            # its events, so read the mark from the file, where it changed with them.
            return max(self._pruned, await self._reads.pruned_mark())
        return self._pruned

    # -- writes -----------------------------------------------------------------------------

    async def enqueue(self, new: NewJob) -> tuple[Job, list[Event]]:
        op = sqlite_ops.enqueue(new)
        result: tuple[Job, list[Event]] = await self._link.write(op, _job_events)
        return result

    async def enqueue_many(self, news: Sequence[NewJob]) -> list[tuple[Job, list[Event]]]:
        op = sqlite_ops.enqueue_many(news)
        result: list[tuple[Job, list[Event]]] = await self._link.write(op, _jobs_events)
        return result

    async def claim(
        self, limit: int, lease_seconds: float, caps: Mapping[str, int] | None = None,
        per_user: PerUser | None = None,
    ) -> list[tuple[Job, Event]]:
        op: sqlite_ops.Claim = ("claim", limit, lease_seconds,
                                None if caps is None else dict(caps), per_user)  # fmt: skip
        result: list[tuple[Job, Event]] = await self._link.write(op, _claimed)
        return result

    def progress(
        self,
        job_id: str,
        token: str,
        update: ProgressUpdate,
        done: Callable[[Event | None, BaseException | None], None],
    ) -> None:
        try:
            op = sqlite_ops.progress(job_id, token, update)
        except InvalidPayload as exc:
            done(None, exc)
            return
        self._link.submit(op, _event, done=done)

    async def complete(self, job_id: str, token: str, result: ResultDict) -> Event:
        op = sqlite_ops.complete(job_id, token, result)
        event: Event = await self._link.write(op, _event)
        return event

    async def fail(
        self, job_id: str, token: str, error: ErrorDict, retry_at: float | None
    ) -> Event:
        op = sqlite_ops.fail(job_id, token, error, retry_at)
        event: Event = await self._link.write(op, _event)
        return event

    async def requeue(self, job_id: str, token: str, message: str) -> Event:
        event: Event = await self._link.write(("requeue", job_id, token, message), _event)
        return event

    async def cancel(self, job_id: str, user_id: str | None) -> tuple[Job, Event]:
        result: tuple[Job, Event] = await self._link.write(("cancel", job_id, user_id), _job_event)
        return result

    async def retry(self, job_id: str, user_id: str | None) -> tuple[Job, Event]:
        result: tuple[Job, Event] = await self._link.write(("retry", job_id, user_id), _job_event)
        return result

    async def remove(self, job_id: str, user_id: str | None) -> tuple[Job, Event]:
        result: tuple[Job, Event] = await self._link.write(("remove", job_id, user_id), _job_event)
        return result

    async def remove_finished(
        self, user_id: str, statuses: Collection[JobStatus], limit: int
    ) -> list[Event]:
        op: sqlite_ops.RemoveFinished = (
            "remove_finished", user_id, [JobStatus(s).value for s in statuses], limit
        )
        events: list[Event] = await self._link.write(op, _events)
        return events

    async def renew(self, leases: Mapping[str, str], lease_seconds: float) -> set[str]:
        lost: set[str] = await self._link.write(("renew", dict(leases), lease_seconds))
        return lost

    async def recover(self, *, expired_only: bool) -> list[Event]:
        events: list[Event] = await self._link.write(("recover", expired_only), _events)
        return events

    async def settings(self) -> dict[str, int | str]:
        """The write connection's journal mode, synchronous level and busy timeout."""
        values: dict[str, int | str] = await self._link.write(("settings",))
        return values

    # -- plugins' own tables ----------------------------------------------------------------

    async def write(self, op: str, *args: Any) -> Any:
        """Run the plugin write op ``op`` in the next transaction; its result."""
        return await self._link.write(("op", op, args))

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query (``?`` placeholders) on the read connection."""
        return [tuple(row) for row in await self._reads.read(sql, params)]

    # -- reads ------------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job | None:
        return await self._reads.get_job(job_id)

    async def list_jobs(
        self, user_id: str, status: JobStatus | None, limit: int, offset: int,
        *, query: str | None = None,
    ) -> list[Job]:  # fmt: skip
        return await self._reads.list_jobs(user_id, status, limit, offset, query=query)

    async def job_counts(self, user_id: str, query: str | None = None) -> dict[JobStatus, int]:
        return await self._reads.job_counts(user_id, query)

    async def events_after(
        self,
        since: int,
        *,
        user_id: str | None = None,
        job_id: str | None = None,
        limit: int = 1000,
    ) -> list[Event]:
        return await self._reads.events_after(since, user_id=user_id, job_id=job_id, limit=limit)

    async def next_run_at(self, after: float | None = None) -> float | None:
        return await self._reads.next_run_at(after)

    async def count_by_status(self) -> dict[JobStatus, int]:
        return await self._reads.count_by_status()

    async def payload_values(self, key: str) -> set[str]:
        return await self._reads.payload_values(key)

    async def payload_named(self, key: str, values: Collection[str]) -> set[str]:
        return await self._reads.payload_named(key, values)

    async def open_jobs_by_user(self) -> dict[str, int]:
        """Queued and active jobs per user: where ``JobQuota`` starts (a server alone on
        its file counts in memory; on PostgreSQL the writes count, so ``Store`` has no such
        read)."""
        return await self._reads.open_jobs_by_user()

    async def payload_total(self, user_id: str, key: str) -> int:
        return await self._reads.payload_total(user_id, key)

    # -- operations: health, retention, the WAL ---------------------------------------------

    async def ping(self) -> None:
        await self._link.write(("ping",))

    async def prune(self, before: float, *, limit: int = 1000) -> Pruned:
        future: asyncio.Future[Pruned] = asyncio.get_running_loop().create_future()
        queued = False

        def settled(pruned: Pruned | None, error: BaseException | None) -> None:
            # Counted per op, not per caller: a cancelled caller's prune still runs.
            if queued:
                self._prune_ops -= 1
                if pruned is not None:
                    self._pruned = max(self._pruned, pruned.through)
                    if not self._prune_ops:
                        self._prune_unsure = False  # the writer's mark is at least the file's
                else:
                    self._prune_unsure = True  # unanswered, it may still have committed
            if not future.done():
                if error is not None:
                    future.set_exception(error)
                else:
                    assert pruned is not None
                    future.set_result(pruned)

        self._link.submit(("prune", before, limit), done=settled)
        if not future.done():  # refused at once (a closed store) counts as nothing
            queued = True
            self._prune_ops += 1
        return await future

    async def checkpoint(self) -> int:
        result: sqlite_ops.CheckpointResult = await self._link.write(("checkpoint",))
        busy, pages, done, size = result
        if busy:
            log.debug("WAL checkpoint met a reader: %d of %d pages copied", done, pages)
        return size
