"""The server's end of the SQLite writer process: starts it (again, if it dies), sends it ops,
publishes what its replies say committed, then answers each op's caller.

Whatever was submitted during one turn of the event loop goes as one frame (or sooner, once
``SEND_EARLY`` ops wait), and the writer commits every frame that is waiting in one
transaction. Replies come back in order, each naming how many frames it answers, and each is
handled by the callback that reads it from the pipe (``frames.Replies``): a write's caller
resumes in the next turn of the loop. Replies read together go one per turn, so the callers
of one resume before the next is handled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DatabaseDamaged, ServiceUnavailable
from ..models import Event, event_of
from . import frames, sqlite_ops
from .answer import answer
from .hold import FOREGROUND
from .sqlite_writer import BOOT, MAX_BATCH, PLUGIN_PATH

log = logging.getLogger(__name__)

Done = Callable[[Any, BaseException | None], None]
# Turns an op's result as the writer sends it (events as their seq) into what the caller gets.
Decode = Callable[[Any, list[Event], int], Any]
ReadAfter = Callable[[int], Awaitable[list[Event]]]

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
# Ops are sent once per turn of the event loop, or as soon as this many are waiting: the
# writer starts on the first ones while the loop is still making the rest (a closed loop of
# workers otherwise waits for a whole batch, then the writer for a whole turn).
SEND_EARLY = 128
PUBLISH_SLICE = 128  # events published per turn of the loop
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def _ignore(value: Any, error: BaseException | None) -> None:
    pass


@dataclass(slots=True)
class _Pending:
    op: sqlite_ops.Op
    decode: Decode | None
    future: asyncio.Future[Any] | None = None
    done: Done | None = None  # called instead of a future, with (result, None) or (None, error)
    settled: bool = False


@dataclass(slots=True)
class _Feed:
    """One writer process's replies as its pipe brings them: the hello, then each reply,
    handled in order from the callback that read it (``frames.Replies``); a reply that
    publishes a lot goes on in later turns of the loop, and those after it wait, each for a
    turn after the one before it ended."""

    hello: asyncio.Future[Any]
    ended: asyncio.Future[None]  # the pipe ended and every reply before its end is handled
    queue: deque[Any] = field(default_factory=deque)  # replies read, waiting their turn
    handling: Iterator[None] | None = None  # the reply being handled; goes on at each yield
    busy: bool = False  # a reply is being handled, or the next one is due in a later turn
    eof: bool = False
    lost: bool = False  # a reply could not be followed: the writer is killed, the rest ignored
    proc: asyncio.subprocess.Process | None = None


class WriterLink:
    """The writer process, its pipe and the writes in flight.

    Args:
        path: the SQLite file the writer opens.
        storage: plugins' storage modules the writer imports (their tables and write ops).
        read_after: committed events after a seq, read from the file: after a writer dies,
            what it committed but never reported is published from there.
        started: called with the hello's pruned mark whenever a writer has started.
        check_seconds: how long the first writer may spend checking the file after an
            unclean stop (SQLite's ``quick_check``; 0 skips it).
    """

    def __init__(
        self,
        path: Path,
        storage: Sequence[str],
        read_after: ReadAfter,
        started: Callable[[int], None],
        check_seconds: float,
    ) -> None:
        self.path = path
        self.storage = tuple(storage)
        self.check_seconds = check_seconds
        self._read_after = read_after
        self._started = started
        self.epoch = ""
        self.durable = 0  # the last seq committed, as the writer last said
        # The last seq published: events up to it went out, in order. Below durable while a
        # reply is being published, and after one that could not be followed (``_lose``).
        self._published = 0
        self.publish: Callable[[list[Event]], None] = lambda events: None
        self._restarting = False
        self._pending: list[_Pending] = []  # submitted, not yet sent
        self._in_flight: deque[list[_Pending]] = deque()  # sent, one list per frame
        self._send_soon = False
        self._sent_foreground = False  # an op a request waits on was sent this turn
        self._proc: asyncio.subprocess.Process | None = None
        self._feed: _Feed | None = None  # the running writer's replies
        self._replies_task: asyncio.Task[None] | None = None
        self._lock_fd: int | None = None
        self._closing = False
        self._broken: ServiceUnavailable | None = None
        # No writer runs and none could be started for a while: writes fail at once with it.
        self._down: ServiceUnavailable | None = None
        self._down_timer: asyncio.TimerHandle | None = None
        self._writer_lost_at: float | None = None  # monotonic; while no writer runs
        self._start_failure = ""  # why the last start of a writer failed
        self._write_failure = ""  # why the last write failed, until one succeeds
        self.writer_restarts = 0  # writers started after one died
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pid(self) -> int | None:
        """The writer process's pid while one runs."""
        return None if self._proc is None else self._proc.pid

    @property
    def problem(self) -> str | None:
        """Why writes cannot be made right now, in words; None when they can."""
        if self._closing or self._broken is not None:
            return "the store is closed"
        if self._writer_lost_at is not None:
            down = time.monotonic() - self._writer_lost_at
            return f"no writer process for {down:.0f}s, starting one again ({self._start_failure})"
        if self._write_failure:
            return f"writes fail: {self._write_failure}"
        return None

    async def open(self, lock_fd: int) -> None:
        """Start the writer (it inherits ``lock_fd``, the data dir's lock) and serve it."""
        self._lock_fd = lock_fd
        await self._start_writer(first=True)
        self._published = self.durable  # the events before this start are not ours to send
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
        loop = asyncio.get_running_loop()
        feed = _Feed(loop.create_future(), loop.create_future())
        try:
            # Replies come on a pipe of their own, read by frames.Replies.
            read_fd, write_fd = os.pipe()
            try:
                # The writer inherits the lock: the file stays owned until both processes
                # are gone. -P: nothing from the working directory is imported.
                proc = feed.proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-P", "-c", BOOT.format(root=PACKAGE_ROOT), *args,
                    *self.storage, stdin=asyncio.subprocess.PIPE, stdout=write_fd,
                    pass_fds=(self._lock_fd,),
                    env={**os.environ, PLUGIN_PATH: os.pathsep.join(p for p in sys.path if p)},
                )  # fmt: skip
            except BaseException:
                os.close(read_fd)
                raise
            finally:
                os.close(write_fd)
            await loop.connect_read_pipe(
                lambda: frames.Replies(lambda body: self._frame(feed, body),
                                       lambda: self._end(feed)),
                os.fdopen(read_fd, "rb", buffering=0),  # the transport closes it
            )  # fmt: skip
            timeout = OPEN_TIMEOUT_SECONDS + (self.check_seconds if first else 0)
            hello = await asyncio.wait_for(feed.hello, timeout)
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
        _, self.epoch, pruned, self.durable = hello
        self._started(pruned)
        self._proc = proc
        self._feed = feed

    async def close(self) -> None:
        """Let the writer answer what it was sent and stop; fail every write after that."""
        if not self._closing and self._proc is not None:
            # The last write: a writer that stops without it (killed with the server, say)
            # leaves the file to be checked at the next start.
            self.submit(("stopping",), done=_ignore)
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

    # -- sending ----------------------------------------------------------------------------

    def submit(
        self, op: sqlite_ops.Op, decode: Decode | None = None, *, done: Done | None = None
    ) -> asyncio.Future[Any] | None:
        """Queue ``op`` now; ops commit in the order they were submitted, except that an
        enqueue may run ahead of other jobs' changes (``sqlite_ops.enqueues_first``).

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

    async def write(self, op: sqlite_ops.Op, decode: Decode | None = None) -> Any:
        """``op``'s result, once committed (and its events published)."""
        future = self.submit(op, decode)
        assert future is not None
        if op[0] in FOREGROUND and not self._sent_foreground and self._pending:
            # A request waits on it: sent now, not at the end of this turn of the loop (once
            # a turn, so that a burst of them still goes as one frame).
            self._sent_foreground = True
            asyncio.get_running_loop().call_soon(self._end_turn)
            self._send()
        return await future

    def _end_turn(self) -> None:
        self._sent_foreground = False

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

    # -- replies ----------------------------------------------------------------------------

    async def _serve_replies(self) -> None:
        """Hand out the writer's replies; start a new writer if this one dies."""
        while self._proc is not None and self._feed is not None:
            proc, feed = self._proc, self._feed
            try:
                await asyncio.shield(feed.ended)
            except asyncio.CancelledError:  # close gave up waiting: handle no more replies
                self._lose(feed)
                raise
            if self._closing:
                return
            code = await proc.wait()
            self._proc = self._feed = None
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

    def _frame(self, feed: _Feed, body: bytes) -> None:
        """A frame from ``feed``'s writer: its hello, then a reply, handled now unless one
        before it is still being handled or ended in this turn."""
        hello = feed.hello
        if not hello.done():
            try:
                hello.set_result(frames.loads(body))
            except Exception as exc:
                hello.set_exception(exc)
            return
        if feed.lost:
            return
        try:
            feed.queue.append(frames.loads(body))
        except Exception:
            log.exception("a reply from the store's writer could not be read")
            self._lose(feed)
            return
        if not feed.busy:
            self._next_reply(feed)

    def _end(self, feed: _Feed) -> None:
        feed.eof = True
        if not feed.hello.done():
            feed.hello.set_exception(EOFError("the writer process closed its pipe"))
        if not feed.busy and not feed.ended.done():
            feed.ended.set_result(None)

    def _next_reply(self, feed: _Feed) -> None:
        if feed.lost:
            return
        if not feed.queue:
            feed.busy = False
            if feed.eof and not feed.ended.done():
                feed.ended.set_result(None)
            return
        feed.busy = True
        feed.handling = self._reply(feed.queue.popleft())
        self._go_on(feed)

    def _go_on(self, feed: _Feed) -> None:
        """Handle the current reply up to its next pause, which goes on in a later turn."""
        if feed.lost or feed.handling is None:
            return
        assert self._loop is not None
        try:
            next(feed.handling)
        except StopIteration:
            # The next reply waits for a later turn, even one read in this same callback
            # (``busy`` holds it in the queue till then): the callers just answered run first.
            feed.handling = None
            self._loop.call_soon(self._next_reply, feed)
            return
        except Exception:
            log.exception("a reply from the store's writer could not be handled")
            self._lose(feed)
            return
        self._loop.call_soon(self._go_on, feed)

    def _lose(self, feed: _Feed) -> None:
        """A reply this side cannot follow: start over with a writer that has none pending.

        The reply's batches leave ``_in_flight`` only once all of their callers are
        answered, so what was not answered is left where the restart or ``close`` fails it.
        """
        feed.lost = True
        feed.queue.clear()
        feed.handling = None
        feed.busy = False
        if feed.proc is not None and feed.proc.returncode is None:
            feed.proc.kill()
        if feed.eof and not feed.ended.done():
            feed.ended.set_result(None)

    def _reply(self, reply: Any) -> Iterator[None]:
        """Publish a reply's events (durable now), then answer each caller; pauses (yields)
        where the rest goes on in a later turn of the loop."""
        count, outcomes, rows, durable, ahead, lead = reply
        batches = [self._in_flight[i] for i in range(count)]
        self.durable = durable
        if outcomes is None:  # the writer could not read this request
            error = ServiceUnavailable("the store's writer could not read this write")
            for pending in batches[0]:
                self._settle(pending, False, error)
        else:
            yield from self._finish(batches, outcomes, rows, ahead, lead)
        for _ in range(count):
            self._in_flight.popleft()

    async def _restart(self) -> None:
        """A new writer on the same file; events the old one committed but never reported
        are published first, so subscribers still see every seq once, in order: from the
        last one published, not the last one reported (a reply may have been dropped
        half-published, see ``_lose``)."""
        published = self._published
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
        head = self.durable
        self._restarting = True  # nothing new commits until the missed events are out
        try:
            while published < head:
                missed = [e for e in await self._read_after(published) if e.seq <= head]
                if not missed:
                    break
                for _ in self._publish(missed):
                    await asyncio.sleep(0)
                published = missed[-1].seq
        except Exception:
            log.exception("publishing the events of the stopped writer failed")
        finally:
            self._restarting = False
        if self._closing and self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.close()
        self._send()

    def _finish(
        self, batches: list[list[_Pending]], outcomes: list[tuple[bool, Any]], rows: list[Any],
        ahead: list[int], lead: int,
    ) -> Iterator[None]:  # fmt: skip
        """Durable now: publish the events in seq order, a slice per turn of the loop (a big
        batch's fan-out would hold the loop for milliseconds), then answer each caller.

        The ops the writer ran first (``ahead``: enqueues, see ``sqlite_ops.enqueues_first``)
        made the first ``lead`` events: their callers are answered once those are published,
        and get a turn of the loop to reply before the rest of the batch is published.
        """
        events = list(map(event_of, rows))
        first = events[0].seq if events else 0
        if ahead:
            yield from self._publish(events[:lead])
            self._answer_ahead(batches, outcomes, ahead, events, first)
            yield
            yield from self._publish(events[lead:])
        else:
            yield from self._publish(events)
        results = iter(outcomes)
        for batch in batches:
            for pending in batch:
                ok, value = next(results)
                if ok:
                    self._write_failure = ""
                    if pending.decode is not None and not pending.settled:  # not ahead
                        value = pending.decode(value, events, first)
                elif isinstance(value, ServiceUnavailable):  # not a domain error: the file
                    self._write_failure = value.message
                self._settle(pending, ok, value)

    def _answer_ahead(
        self, batches: list[list[_Pending]], outcomes: list[tuple[bool, Any]], ahead: list[int],
        events: list[Event], first: int,
    ) -> None:  # fmt: skip
        """Answer the callers of the ops at ``ahead`` (their events are published)."""
        flat = [pending for batch in batches for pending in batch]
        for i in ahead:
            pending = flat[i]
            ok, value = outcomes[i]
            if ok and pending.decode is not None:
                value = pending.decode(value, events, first)
            self._settle(pending, ok, value)

    def _publish(self, events: list[Event]) -> Iterator[None]:
        """Publish ``events``, pausing between slices (a big batch's fan-out would hold the
        loop for milliseconds)."""
        for start in range(0, len(events), PUBLISH_SLICE):
            if start:
                yield
            part = events[start : start + PUBLISH_SLICE]
            try:
                self.publish(part)
            except Exception:
                log.exception("publishing committed events failed")
            self._published = part[-1].seq

    def _settle(self, pending: _Pending, ok: bool, value: Any) -> None:
        """Answer ``pending``'s caller, once."""
        if pending.settled:
            return
        pending.settled = True
        done = pending.done
        if done is not None and ok:  # the common case (progress), without answer()'s frame
            try:
                done(value, None)
            except Exception:
                log.exception("a write's completion callback failed")
        else:
            answer(done, pending.future, ok, value)

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
