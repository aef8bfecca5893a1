"""Flights: the work of turning one file into notes, shared by every job that asks meanwhile.

A second upload of a file still being processed joins the first one's flight instead of
parsing again. Each job follows the flight's progress at its own pace: updates waiting to be
reported coalesce to the latest of each stage, so a slow follower never holds up the parse,
and never skips a stage. Pages are reported at most every PROGRESS_INTERVAL: a document
parsed in a tenth of a second does not cost the server twenty writes and deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import PARSE_CRASHED, JobError
from ..jobtypes import Stage
from .notes import NotesContent


@dataclass(frozen=True, slots=True)
class Update:
    stage: Stage
    percent: float
    message: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


class Follower:
    """One job's view of a flight: the updates it has yet to report, at most one per stage.

    ``urgent`` is set by a new stage or the end: those are reported at once, while further
    updates of the same stage (pages) wait for PROGRESS_INTERVAL since the last report.
    """

    def __init__(self) -> None:
        self.pending: list[Update] = []
        self.finished = False
        self.stage: Stage | None = None
        self.wake = asyncio.Event()
        self.urgent = asyncio.Event()

    def push(self, update: Update) -> None:
        if self.pending and self.pending[-1].stage is update.stage:
            self.pending[-1] = update
        else:
            self.pending.append(update)
        if update.stage is not self.stage:
            self.stage = update.stage
            self.urgent.set()
        self.wake.set()

    def finish(self) -> None:
        self.finished = True
        self.urgent.set()
        self.wake.set()

    async def ready(self, since: float) -> None:
        """Wait for something to report, then (unless urgent) until the interval has passed."""
        await self.wake.wait()
        wait = since + PROGRESS_INTERVAL - asyncio.get_running_loop().time()
        if wait > 0 and not self.urgent.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self.urgent.wait()
        self.wake.clear()
        self.urgent.clear()

    def take(self) -> list[Update]:
        taken, self.pending = self.pending, []
        return taken


# Pages of one stage are reported at most this often per job; stages always at once.
PROGRESS_INTERVAL = 0.05

Reporter = Callable[[Update], Awaitable[None]]
Work = Callable[["Flight"], Awaitable[None]]


class Flight:
    """One file's work in progress; its result is set as soon as the notes exist.

    Args:
        work: fills in ``result`` (and may go on, e.g. to write the cache) reporting via
            ``report``; it runs in its own task, owned by no job.
    """

    def __init__(self, work: Work, owner: str | None = None) -> None:
        # The job this flight was started for ahead of its claim (see PdfNotes.prefetch);
        # None once that job has come for it, or for a flight a running job started.
        self.owner = owner
        # Called when the last follower leaves before the notes exist, just before the work
        # is cancelled: whoever lists this flight must stop handing it out.
        self.abandoned: Callable[[], None] | None = None
        self.result: asyncio.Future[NotesContent] = asyncio.get_running_loop().create_future()
        self._latest: dict[Stage, Update] = {}
        self._followers: set[Follower] = set()
        self.task = asyncio.create_task(self._run(work), name="pdf-flight")
        self.task.add_done_callback(self._ended)

    async def _run(self, work: Work) -> None:
        try:
            await work(self)
        except Exception as exc:
            if not self.result.done():
                self.result.set_exception(exc)
                self.result.exception()  # followers that left need not read it
            return
        if not self.result.done():
            self.result.set_exception(RuntimeError("the flight ended without notes"))

    def _ended(self, task: asyncio.Task[None]) -> None:
        """However the work ended (cancelled, even before its first step): settle the result
        and release every follower, so none waits for ever."""
        if not self.result.done():
            self.result.cancel()
        for follower in self._followers:
            follower.finish()

    def report(self, update: Update) -> None:
        self._latest[update.stage] = update
        for follower in self._followers:
            follower.push(update)

    def notes_ready(self, notes: NotesContent) -> None:
        """The notes exist: followers go on while the flight finishes its own chores."""
        if not self.result.done():
            self.result.set_result(notes)
        for follower in self._followers:
            follower.finish()

    @property
    def followers(self) -> int:
        return len(self._followers)

    def join(self) -> Follower:
        """Become a follower now (before any wait), starting from where the flight stands."""
        follower = Follower()
        for update in self._latest.values():
            follower.push(update)
        if self.result.done() or self.task.done():
            follower.finish()
        self._followers.add(follower)
        return follower

    async def follow(self, follower: Follower, report: Reporter) -> NotesContent:
        """Report the flight's progress until its notes are ready; they are returned.

        A follower that leaves (its job cancelled) stops the flight if it was the last one.
        """
        loop = asyncio.get_running_loop()
        last = 0.0
        try:
            while True:
                await follower.ready(last)
                for update in follower.take():
                    await report(update)
                last = loop.time()
                if follower.finished and not follower.pending:
                    break
            if self.result.cancelled():  # stopped under us (the server is stopping)
                raise JobError(PARSE_CRASHED, "The work on this file was stopped",
                               recoverable=True)  # fmt: skip
            return await asyncio.shield(self.result)
        finally:
            self.leave(follower)

    @property
    def succeeded(self) -> bool:
        """The notes exist (the work may still be writing the cache)."""
        result = self.result
        return result.done() and not result.cancelled() and result.exception() is None

    def leave(self, follower: Follower) -> None:
        self._followers.discard(follower)
        if not self._followers and not self.result.done():
            if self.abandoned is not None:
                self.abandoned()
            self.task.cancel()

    async def cancel(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
