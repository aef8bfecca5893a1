"""SQLite backend: WAL, synchronous=FULL, one writer process that group-commits every change.

Reads run here, on a connection of their own. Writes go to ``sqlite_writer`` in a process of
its own (so the writer's Python runs on another core than the event loop) as op tuples;
whatever was submitted during one turn of the event loop goes as one frame, and the writer
commits every frame that is waiting in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import random
import sqlite3
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from ..datadir import private_dir, tighten
from ..errors import DatabaseDamaged, DataDirUnusable, InvalidPayload, ServiceUnavailable
from ..models import ErrorDict, Event, EventType, Job, JobStage, JobStatus, ResultDict
from . import frames
from .protocol import NewJob, ProgressUpdate, Pruned
from .schema import JOB_COLUMNS, row_to_job
from .sqlite_file import is_damage
from .sqlite_writer import BOOT, BUSY_TIMEOUT_MS, MAX_BATCH, PLUGIN_PATH, Op

log = logging.getLogger(__name__)

Done = Callable[[Any, BaseException | None], None]
# Turns an op's result as the writer sends it (events as their seq) into what the caller gets.
Decode = Callable[[Any, list[Event], int], Any]

# How long open() waits for the data dir's lock: a killed server's writer process holds it
# until it has read end-of-file (at most one batch later).
LOCK_WAIT_SECONDS = 5.0
OPEN_TIMEOUT_SECONDS = 60.0
CLOSE_TIMEOUT_SECONDS = 30.0
# A writer that dies is started again forever: first at once, then after pauses that double
# from RESTART_PAUSE_SECONDS up to RESTART_MAX_PAUSE_SECONDS (half jittered), so writes come
# back within about that long once the storage does.
RESTART_PAUSE_SECONDS = 0.1
RESTART_MAX_PAUSE_SECONDS = 2.0
# Writes submitted while a writer is being started again wait for it this long at most; then
# they, and every write until a writer runs, fail at once with UNAVAILABLE.
RESTART_QUEUE_SECONDS = 2.0
RESTART_LOG_EVERY_SECONDS = 30.0  # a writer that keeps failing to start is logged this often
# After an unclean stop, the database check at start is cut off after this long by default.
CHECK_SECONDS = 30.0
# Ops are sent once per turn of the event loop, or as soon as this many are waiting: the
# writer starts on the first ones while the loop is still making the rest (a closed loop of
# workers otherwise waits for a whole batch, then the writer for a whole turn).
SEND_EARLY = 128
PUBLISH_SLICE = 128  # events published per turn of the loop
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def _event(seq: int, events: list[Event], first: int) -> Event:
    return events[seq - first]


def _job_event(
    value: tuple[frames.JobFields, int], events: list[Event], first: int
) -> tuple[Job, Event]:
    return Job(*value[0]), events[value[1] - first]


def _job_events(
    value: tuple[frames.JobFields, list[int]], events: list[Event], first: int
) -> tuple[Job, list[Event]]:
    return Job(*value[0]), [events[seq - first] for seq in value[1]]


def _jobs_events(
    value: list[tuple[frames.JobFields, list[int]]], events: list[Event], first: int
) -> list[tuple[Job, list[Event]]]:
    return [_job_events(one, events, first) for one in value]


def _claimed(
    value: list[tuple[frames.JobFields, int]], events: list[Event], first: int
) -> list[tuple[Job, Event]]:
    return [(Job(*job), events[seq - first]) for job, seq in value]


def _events(value: list[int], events: list[Event], first: int) -> list[Event]:
    return [events[seq - first] for seq in value]


def _ignore(value: Any, error: BaseException | None) -> None:
    pass


@dataclass(slots=True)
class _Pending:
    op: Op
    decode: Decode | None
    future: asyncio.Future[Any] | None = None
    done: Done | None = None  # called instead of a future, with (result, None) or (None, error)
    settled: bool = False


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
        self._epoch = ""
        self._durable = 0  # the last seq committed, as the writer last said
        self._read_up_to = 0  # the highest seq a read returned (an event, a job's last_seq)
        self._pruned = 0
        self._prune_ops = 0  # prune ops submitted and not yet answered
        self._prune_unsure = False  # a prune ended unanswered: the mark may be above _pruned
        self._restarting = False
        self._publish: Callable[[list[Event]], None] = lambda events: None
        self._pending: list[_Pending] = []  # submitted, not yet sent
        self._in_flight: deque[list[_Pending]] = deque()  # sent, one list per frame
        self._send_soon = False
        self._proc: asyncio.subprocess.Process | None = None
        self._replies_task: asyncio.Task[None] | None = None
        self._rdb: aiosqlite.Connection | None = None
        self._lock_fd: int | None = None
        self._closing = False
        self._broken: ServiceUnavailable | None = None
        # No writer runs and none could be started for a while: writes fail at once with it.
        self._down: ServiceUnavailable | None = None
        self._down_timer: asyncio.TimerHandle | None = None
        self._writer_lost_at: float | None = None  # monotonic; while no writer runs
        self._start_failure = ""  # why the last start of a writer failed
        self._write_failure = ""  # why the last write failed, until one succeeds
        self._damage = ""  # a read found the file damaged
        self.writer_restarts = 0  # writers started after one died
        self._loop: asyncio.AbstractEventLoop | None = None

    def on_commit(self, publish: Callable[[list[Event]], None]) -> None:
        """Give every committed event to ``publish``, in seq order, right after its commit."""
        self._publish = publish

    @property
    def epoch(self) -> str:
        return self._epoch

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
            await self._start_writer(first=True)
        except BaseException:
            self._release_lock()
            raise
        uri = self.path.resolve().as_uri() + "?mode=rw"
        self._rdb = await aiosqlite.connect(uri, uri=True, isolation_level=None)
        await self._rdb.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        await self._rdb.execute("PRAGMA query_only=ON")
        self._loop = asyncio.get_running_loop()
        self._replies_task = asyncio.create_task(self._serve_replies(), name="sqlite-replies")

    async def _start_writer(self, *, first: bool = False) -> None:
        """Start the writer process and wait for its hello (the file's epoch and heads);
        ServiceUnavailable (DatabaseDamaged for a bad file) if it cannot be had.

        ``first``: the server is starting: the writer may make the file and checks it.
        """
        assert self._lock_fd is not None
        proc: asyncio.subprocess.Process | None = None
        args = (str(self.path), "first" if first else "again", repr(self.check_seconds))
        try:
            # The writer inherits the lock: the file stays owned until both processes are
            # gone. -P: nothing from the working directory is imported.
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-P", "-c", BOOT.format(root=PACKAGE_ROOT), *args,
                *self.storage, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                pass_fds=(self._lock_fd,),
                env={**os.environ, PLUGIN_PATH: os.pathsep.join(p for p in sys.path if p)},
            )  # fmt: skip
            assert proc.stdout is not None
            timeout = OPEN_TIMEOUT_SECONDS + (self.check_seconds if first else 0)
            hello = await asyncio.wait_for(frames.read(proc.stdout), timeout)
        except Exception as exc:
            hello = ("error", f"the writer process did not start: {exc!r}")
        except BaseException:  # cancelled: leave no writer holding the lock
            if proc is not None and proc.returncode is None:
                proc.kill()
            raise
        if not (isinstance(hello, tuple) and hello[0] == "hello"):
            if proc is not None:
                if proc.returncode is None:
                    proc.kill()
                await proc.wait()
            if not isinstance(hello, tuple):
                raise ServiceUnavailable("the writer process did not say hello")
            if hello[2:] == (DatabaseDamaged.code,):
                raise DatabaseDamaged(str(hello[1]))
            raise ServiceUnavailable(str(hello[1]))
        _, self._epoch, pruned, self._durable = hello
        self._pruned = max(self._pruned, pruned)
        self._proc = proc

    @property
    def writer_pid(self) -> int | None:
        """The writer process's pid while one runs."""
        return None if self._proc is None else self._proc.pid

    @property
    def problem(self) -> str | None:
        """Why writes (or reads) cannot be made right now, in words; None when they can."""
        if self._damage:
            return self._damage
        if self._closing or self._broken is not None:
            return "the store is closed"
        if self._writer_lost_at is not None:
            down = time.monotonic() - self._writer_lost_at
            return (
                f"no writer process for {down:.0f}s, starting one again "
                f"({self._start_failure})"
            )
        if self._write_failure:
            return f"writes fail: {self._write_failure}"
        return None

    async def close(self) -> None:
        if not self._closing and self._proc is not None:
            # The last write: a writer that stops without it (killed with the server, say)
            # leaves the file to be checked at the next start.
            self._submit(("stopping",), done=_ignore)
        self._closing = True
        self._send()
        proc = self._proc
        if proc is not None and proc.stdin is not None:
            proc.stdin.close()  # the writer answers what it has, then sees the end
        elif self._replies_task is not None:
            self._replies_task.cancel()  # no writer: stop trying to start one
            with contextlib.suppress(asyncio.CancelledError):
                await self._replies_task
            self._replies_task = None
        if self._down_timer is not None:
            self._down_timer.cancel()
        try:
            if self._replies_task is not None:
                await asyncio.wait_for(self._replies_task, CLOSE_TIMEOUT_SECONDS)
            if self._proc is not None:
                await asyncio.wait_for(self._proc.wait(), CLOSE_TIMEOUT_SECONDS)
        except TimeoutError:
            log.error("the store's writer process did not stop; killing it")
            if self._proc is not None and self._proc.returncode is None:
                self._proc.kill()
                await self._proc.wait()
        self._proc = self._replies_task = None
        self._fail_all(ServiceUnavailable("the store is closed"))
        if self._rdb is not None:
            await self._rdb.close()
            self._rdb = None
        self._release_lock()

    async def _take_lock(self) -> int:
        lock = self.path.with_suffix(".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        tighten(lock)
        deadline = time.monotonic() + self.lock_wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise ServiceUnavailable(
                        f"another jobserver process is using {self.path}; "
                        "give each its own --data-dir"
                    ) from None
                await asyncio.sleep(0.05)

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- talking to the writer --------------------------------------------------------------

    def _submit(
        self, op: Op, decode: Decode | None = None, *, done: Done | None = None
    ) -> asyncio.Future[Any] | None:
        """Queue ``op`` now; ops commit in the order they were submitted.

        With ``done``, no future is made: ``done`` is called once the op committed or failed.
        """
        loop = self._loop
        if self._closing or self._broken or self._down or loop is None:
            error = self._broken or self._down or ServiceUnavailable("the store is closed")
            if done is not None:
                done(None, error)
                return None
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(error)
            return failed
        future: asyncio.Future[Any] | None = None if done is not None else loop.create_future()
        self._pending.append(_Pending(op, decode, future, done))
        if len(self._pending) >= SEND_EARLY:
            self._send()
        elif not self._send_soon:
            self._send_soon = True
            loop.call_soon(self._send)
        return future

    async def _write(self, op: Op, decode: Decode | None = None) -> Any:
        future = self._submit(op, decode)
        assert future is not None
        return await future

    def _send(self) -> None:
        """Send what this turn of the loop submitted, as frames of at most MAX_BATCH ops."""
        self._send_soon = False
        proc = self._proc
        if self._restarting or proc is None or proc.stdin is None or proc.stdin.is_closing():
            return
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                frame = frames.pack([p.op for p in batch])
            except Exception as exc:  # ops hold plain data; this would be a bug, not input
                log.exception("a batch of writes could not be encoded")
                error = ServiceUnavailable(f"the write could not be encoded: {exc}")
                for pending in batch:  # later, so no caller's callback runs inside _send
                    asyncio.get_running_loop().call_soon(self._settle, pending, False, error)
                continue
            proc.stdin.write(frame)
            self._in_flight.append(batch)

    async def _serve_replies(self) -> None:
        """Hand out the writer's replies; start a new writer if this one dies."""
        while self._proc is not None:
            proc = self._proc
            assert proc.stdout is not None
            await self._replies(proc)
            if self._closing:
                return
            code = await proc.wait()
            self._proc = None
            log.critical("the store's writer process stopped (exit code %s); starting anew", code)
            self._writer_lost(f"the last one stopped with exit code {code}")
            # Its last batch may or may not have committed: those callers cannot be told.
            self._fail_in_flight(ServiceUnavailable("the store's writer stopped"))
            await self._restart()

    def _writer_lost(self, why: str) -> None:
        """No writer runs: writes wait for the next one, RESTART_QUEUE_SECONDS at most."""
        self._writer_lost_at = time.monotonic()
        self._start_failure = why
        assert self._loop is not None
        self._down_timer = self._loop.call_later(RESTART_QUEUE_SECONDS, self._refuse_writes)

    def _refuse_writes(self) -> None:
        """Still no writer: fail the writes waiting for one, and every write until one runs."""
        self._down_timer = None
        if self._proc is not None or self._closing:
            return
        self._down = ServiceUnavailable(
            "the store cannot write at the moment (its writer process is being started "
            "again); try again shortly"
        )
        waiting, self._pending = self._pending, []
        for pending in waiting:
            self._settle(pending, False, self._down)

    def _writer_back(self, failures: int) -> None:
        if self._down_timer is not None:
            self._down_timer.cancel()
            self._down_timer = None
        if failures and self._writer_lost_at is not None:
            log.warning(
                "the store's writer runs again, after %.1fs and %d failed starts",
                time.monotonic() - self._writer_lost_at, failures,
            )  # fmt: skip
        self._down = None
        self._writer_lost_at = None
        self._start_failure = ""

    async def _replies(self, proc: asyncio.subprocess.Process) -> None:
        """Publish each reply's events (durable now), then answer each caller; until EOF.

        A reply's batches leave ``_in_flight`` only once all of their callers are answered,
        so whatever ends this early (a writer that died, a cancel at close) leaves the rest
        where the restart or ``close`` answers them.
        """
        assert proc.stdout is not None
        try:
            while True:
                count, outcomes, rows, durable = await frames.read(proc.stdout)
                batches = [self._in_flight[i] for i in range(count)]
                self._durable = durable
                if outcomes is None:  # the writer could not read this request
                    error = ServiceUnavailable("the store's writer could not read this write")
                    for pending in batches[0]:
                        self._settle(pending, False, error)
                else:
                    await self._finish(batches, outcomes, rows)
                for _ in range(count):
                    self._in_flight.popleft()
                # Replies already buffered would otherwise be handled in one go: let the
                # callers just answered (and everything else) run in between.
                await asyncio.sleep(0)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        except Exception:
            # A reply this side cannot follow: start over with a writer that has none pending.
            log.exception("a reply from the store's writer could not be handled")
            if proc.returncode is None:
                proc.kill()

    async def _restart(self) -> None:
        """A new writer on the same file; events the old one committed but never reported
        are published first, so subscribers still see every seq once, in order."""
        published = self._durable
        pause = RESTART_PAUSE_SECONDS
        failures = 0
        logged = 0.0
        while True:  # for as long as it takes: a storage outage ends, a restart of us may not
            if self._closing:
                self._fail_all(ServiceUnavailable("the store is closed"))
                return
            try:
                await self._start_writer()
                break
            except ServiceUnavailable as exc:
                failures += 1
                self._start_failure = exc.message
                if time.monotonic() - logged >= RESTART_LOG_EVERY_SECONDS:
                    logged = time.monotonic()
                    log.error("starting the store's writer again failed (%d times so far; "
                              "trying on): %s", failures, exc.message)  # fmt: skip
            await asyncio.sleep(random.uniform(pause / 2, pause))
            pause = min(RESTART_MAX_PAUSE_SECONDS, pause * 2)
        self.writer_restarts += 1
        self._writer_back(failures)
        if not self._prune_ops:
            self._prune_unsure = False  # the hello brought the mark from the file
        head = self._durable
        self._restarting = True  # nothing new commits until the missed events are out
        try:
            while published < head:
                missed = [
                    e for e in await self.events_after(published, limit=1000) if e.seq <= head
                ]
                if not missed:
                    break
                await self._publish_sliced(missed)
                published = missed[-1].seq
        except Exception:
            log.exception("publishing the events of the stopped writer failed")
        finally:
            self._restarting = False
        if self._closing and self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.close()
        self._send()

    async def _finish(
        self, batches: list[list[_Pending]], outcomes: list[tuple[bool, Any]], rows: list[Any]
    ) -> None:
        """Durable now: publish the events in seq order, a slice per turn of the loop (a big
        batch's fan-out would hold the loop for milliseconds), then answer each caller."""
        events = [Event(*row) for row in rows]
        await self._publish_sliced(events)
        first = events[0].seq if events else 0
        results = iter(outcomes)
        for batch in batches:
            for pending in batch:
                ok, value = next(results)
                if ok:
                    self._write_failure = ""
                    if pending.decode is not None:
                        value = pending.decode(value, events, first)
                elif isinstance(value, ServiceUnavailable):  # not a domain error: the file
                    self._write_failure = value.message
                self._settle(pending, ok, value)

    async def _publish_sliced(self, events: list[Event]) -> None:
        for start in range(0, len(events), PUBLISH_SLICE):
            if start:
                await asyncio.sleep(0)
            try:
                self._publish(events[start : start + PUBLISH_SLICE])
            except Exception:
                log.exception("publishing committed events failed")

    def _settle(self, pending: _Pending, ok: bool, value: Any) -> None:
        """Answer ``pending``'s caller, once."""
        if pending.settled:
            return
        pending.settled = True
        if pending.op[0] == "prune":
            self._prune_ops -= 1
            if ok:
                self._pruned = max(self._pruned, value.through)
                if not self._prune_ops:
                    self._prune_unsure = False  # the writer's mark is at least the file's
            else:
                self._prune_unsure = True  # unanswered, it may still have committed
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

    def _fail_in_flight(self, error: ServiceUnavailable) -> None:
        lost = [p for batch in self._in_flight for p in batch]
        self._in_flight.clear()
        for pending in lost:
            self._settle(pending, False, error)

    def _fail_all(self, error: ServiceUnavailable) -> None:
        """No more writes: fail every one sent or waiting, and every later one."""
        self._broken = error
        self._fail_in_flight(error)
        waiting, self._pending = self._pending, []
        for pending in waiting:
            self._settle(pending, False, error)

    # -- writes -----------------------------------------------------------------------------

    async def head_seq(self) -> int:
        return self._durable

    async def seq_ceiling(self) -> int:
        # A client's cursor is a seq it was given: published (so at most the durable head)
        # or read from the file by this store (an event, or a job's lastSeq).
        return max(self._durable, self._read_up_to)

    async def pruned_through(self) -> int:
        if self._prune_ops or self._prune_unsure:
            # A prune may have committed before its reply came: a reader may already miss
            # its events, so read the mark from the file, where it changed with them.
            rows = await self._read("SELECT value FROM meta WHERE key='pruned'")
            return max(self._pruned, int(rows[0][0]))
        return self._pruned

    async def enqueue(self, new: NewJob) -> tuple[Job, list[Event]]:
        result: tuple[Job, list[Event]] = await self._write(
            ("enqueue", frames.new_job_fields(new)), _job_events
        )
        return result

    async def enqueue_many(self, news: Sequence[NewJob]) -> list[tuple[Job, list[Event]]]:
        fields = [frames.new_job_fields(new) for new in news]
        result: list[tuple[Job, list[Event]]] = await self._write(
            ("enqueue_many", fields), _jobs_events
        )
        return result

    async def claim(
        self, limit: int, lease_seconds: float, caps: Mapping[str, int] | None = None
    ) -> list[tuple[Job, Event]]:
        op = ("claim", limit, lease_seconds, None if caps is None else dict(caps))
        result: list[tuple[Job, Event]] = await self._write(op, _claimed)
        return result

    def progress(
        self,
        job_id: str,
        token: str,
        update: ProgressUpdate,
        done: Callable[[Event | None, BaseException | None], None],
    ) -> None:
        stage, progress, message, metadata, label = update
        try:
            data = None if metadata is None else frames.json_bytes(dict(metadata), "metadata")
        except InvalidPayload as exc:
            done(None, exc)
            return
        # Plain values only: nothing of the caller's own types crosses the pipe.
        if type(stage) is not str and type(stage) is not JobStage:
            stage = str(stage)
        label = None if label is None else str(label)
        op = ("progress", job_id, token, stage, float(progress), str(message), data, label)
        self._submit(op, _event, done=done)

    async def complete(self, job_id: str, token: str, result: ResultDict) -> Event:
        data = frames.json_bytes(result, "the result")
        event: Event = await self._write(("complete", job_id, token, data), _event)
        return event

    async def fail(
        self, job_id: str, token: str, error: ErrorDict, retry_at: float | None
    ) -> Event:
        data = frames.json_bytes(error, "the error")
        event: Event = await self._write(("fail", job_id, token, data, retry_at), _event)
        return event

    async def requeue(self, job_id: str, token: str, message: str) -> Event:
        event: Event = await self._write(("requeue", job_id, token, message), _event)
        return event

    async def cancel(self, job_id: str, user_id: str | None) -> tuple[Job, Event]:
        result: tuple[Job, Event] = await self._write(("cancel", job_id, user_id), _job_event)
        return result

    async def retry(self, job_id: str, user_id: str | None) -> tuple[Job, Event]:
        result: tuple[Job, Event] = await self._write(("retry", job_id, user_id), _job_event)
        return result

    async def renew(self, leases: Mapping[str, str], lease_seconds: float) -> set[str]:
        lost: set[str] = await self._write(("renew", dict(leases), lease_seconds))
        return lost

    async def recover(self, *, expired_only: bool) -> list[Event]:
        events: list[Event] = await self._write(("recover", expired_only), _events)
        return events

    async def settings(self) -> dict[str, int | str]:
        """The write connection's journal mode, synchronous level and busy timeout."""
        values: dict[str, int | str] = await self._write(("settings",))
        return values

    # -- plugins' own tables ----------------------------------------------------------------

    async def write(self, op: str, *args: Any) -> Any:
        """Run the plugin write op ``op`` in the next transaction; its result."""
        return await self._write(("op", op, args))

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query (``?`` placeholders) on the read connection."""
        return [tuple(row) for row in await self._read(sql, tuple(params))]

    # -- reads (a second connection, so they never wait behind a commit) --------------------

    async def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        if self._rdb is None:
            raise ServiceUnavailable("the store is closed")
        try:
            return list(await self._rdb.execute_fetchall(sql, params))
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                if not self._damage:
                    log.critical("the database %s is damaged: %s", self.path, exc)
                self._damage = f"the database is damaged ({exc}); restore it from a backup"
                raise DatabaseDamaged(self._damage) from None
            if isinstance(exc, sqlite3.OperationalError):  # I/O, locking: the storage's state
                raise ServiceUnavailable(f"the store could not read: {exc}") from None
            raise

    async def get_job(self, job_id: str) -> Job | None:
        rows = await self._read(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id=?", (job_id,))
        return self._seen(row_to_job(rows[0])) if rows else None

    def _seen(self, job: Job) -> Job:
        """A job read from the file names its last event; a client may resume from it."""
        self._read_up_to = max(self._read_up_to, job.last_seq)
        return job

    async def list_jobs(
        self, user_id: str, status: JobStatus | None, limit: int, offset: int
    ) -> list[Job]:
        sql = f"SELECT {JOB_COLUMNS} FROM jobs WHERE user_id=?"
        params: tuple[Any, ...] = (user_id,)
        if status is not None:
            sql += " AND status=?"
            params += (status.value,)
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?"
        return [self._seen(row_to_job(r)) for r in await self._read(sql, (*params, limit, offset))]

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
        if rows:
            self._read_up_to = max(self._read_up_to, rows[-1][0])
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
        await self._write(("ping",))

    async def prune(self, before: float, *, limit: int = 1000) -> Pruned:
        future = self._submit(("prune", before, limit))
        assert future is not None
        if not future.done():  # queued: counted per op, as a cancelled caller's prune still runs
            self._prune_ops += 1
        pruned: Pruned = await future
        return pruned

    async def payload_values(self, key: str) -> set[str]:
        path = f"$.{key}"
        rows = await self._read(
            "SELECT DISTINCT json_extract(payload, ?) FROM jobs "
            "WHERE json_extract(payload, ?) IS NOT NULL",
            (path, path),
        )
        return {str(r[0]) for r in rows}

    async def checkpoint(self) -> int:
        busy, pages, done = await self._write(("checkpoint",))
        if busy:
            log.debug("WAL checkpoint met a reader: %d of %d pages copied", done, pages)
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            return wal.stat().st_size
        except FileNotFoundError:
            return 0
