"""The job queue: every change of a job goes through here, and here it is published.

The one job API over every store backend: enqueue, claim, progress, complete, fail, retry,
cancel, requeue, recover. The worker pool and the web layer write only through it. The order
"persist, then publish, in seq order, before the caller hears back" lives here, once:

- a backend hands each batch of committed events to ``_deliver`` in seq order (the contract
  of ``Store.on_commit``), which publishes them on the bus, refusing any seq it already
  published (a duplicate or an out-of-order delivery would be a backend bug);
- a write answers its caller only once its own event's seq is published, so nobody hears
  "done" about an event a subscriber could still miss. (SQLite delivers before it answers,
  so this never waits there; a backend whose events reach this node by another path, such as
  a table read after a notification, makes its writers wait for that path.)
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import operator
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import partial
from typing import Any

from .bus import EventBus
from .models import ErrorDict, Event, Job, JobStatus, ResultDict
from .store import NewJob, ProgressUpdate, Store
from .store.claims import PerUser

log = logging.getLogger(__name__)
_SEQ = operator.itemgetter(0)  # Event.seq

ProgressDone = Callable[[Event | None, BaseException | None], None]


class JobQueue:
    """Every state change of a job, persisted by the store and then published on the bus.

    Args:
        store: where jobs and events are persisted.
        bus: where persisted events are fanned out (subscribers, taps).
    """

    def __init__(self, store: Store, bus: EventBus) -> None:
        self.store = store
        self.bus = bus
        self.published = 0  # the highest seq published
        # Callers whose event is committed but not yet published: (seq, n, wake-up).
        self._waiting: list[tuple[int, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._queued_hooks: list[Callable[[Job], None]] = []
        store.on_commit(self._deliver)

    # -- publishing ---------------------------------------------------------------------------

    def _deliver(self, events: list[Event]) -> None:
        """The store's commit listener: publish ``events`` (committed, in seq order)."""
        if events and events[0].seq <= self.published:
            fresh = [e for e in events if e.seq > self.published]
            log.error("the store delivered %d event(s) already published (up to seq %d)",
                      len(events) - len(fresh), self.published)  # fmt: skip
            events = fresh
        if not events:
            return
        seqs = list(map(_SEQ, events))  # checked in C: this runs for every event
        if not all(map(operator.lt, seqs, itertools.islice(seqs, 1, None))):
            raise AssertionError(f"events out of seq order: {seqs}")
        self.bus.publish(events)
        self.published = events[-1].seq
        while self._waiting and self._waiting[0][0] <= self.published:
            heapq.heappop(self._waiting)[2]()

    async def _answer(self, seq: int) -> None:
        """Return once event ``seq`` is published (at once, when it already is)."""
        if seq <= self.published:
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (seq, next(self._order), lambda: _resolve(future)))
        await future

    def _progress_done(self, done: ProgressDone, event: Event | None,
                       error: BaseException | None) -> None:  # fmt: skip
        if event is None or event.seq <= self.published:
            done(event, error)
        else:
            heapq.heappush(self._waiting, (event.seq, next(self._order), lambda: done(event, None)))

    # -- the job API ----------------------------------------------------------------------------

    def on_queued(self, hook: Callable[[Job], None]) -> None:
        """Call ``hook`` with every job just created, before its submitter hears back."""
        self._queued_hooks.append(hook)

    async def enqueue(self, new: NewJob) -> tuple[Job, bool]:
        """Create a job; returns it and whether it is new (False: idempotency key matched)."""
        job, events = await self.store.enqueue(new)
        if events:
            await self._answer(events[-1].seq)
            self._queued(job)
        return job, bool(events)

    async def enqueue_many(self, news: Sequence[NewJob]) -> list[tuple[Job, bool]]:
        """Create every job of ``news`` in one commit, all or nothing (no two may share an
        idempotency key); each job with whether it is new."""
        made = await self.store.enqueue_many(news)
        last = max((events[-1].seq for _, events in made if events), default=0)
        if last:
            await self._answer(last)
            for job, events in made:
                if events:
                    self._queued(job)
        return [(job, bool(events)) for job, events in made]

    def _queued(self, job: Job) -> None:
        for hook in self._queued_hooks:
            try:
                hook(job)
            except Exception:
                log.exception("a queued-job hook failed for job %s", job.id)

    async def claim(
        self,
        limit: int,
        lease_seconds: float,
        caps: Mapping[str, int] | None = None,
        per_user: PerUser | None = None,
    ) -> list[Job]:
        claimed = await self.store.claim(limit, lease_seconds, caps, per_user)
        if claimed:
            await self._answer(claimed[-1][1].seq)
        return [job for job, _ in claimed]

    def progress(
        self,
        job_id: str,
        token: str,
        update: ProgressUpdate,
        done: ProgressDone | None = None,
    ) -> None:
        """Submit a progress change without waiting for it; ``done`` hears how it ended, once
        its event is published (or with the error that refused it)."""
        # A partial, not a lambda: one Python frame less per progress event.
        self.store.progress(
            job_id, token, update, partial(self._progress_done, _ignore if done is None else done)
        )

    async def complete(self, job_id: str, token: str, result: ResultDict) -> Event:
        event = await self.store.complete(job_id, token, result)
        await self._answer(event.seq)
        return event

    async def fail(
        self, job_id: str, token: str, error: ErrorDict, retry_at: float | None = None
    ) -> Event:
        """Fail this attempt: queued again at ``retry_at`` (job.retrying), else failed."""
        event = await self.store.fail(job_id, token, error, retry_at)
        await self._answer(event.seq)
        return event

    async def cancel(self, job_id: str, user_id: str | None) -> Job:
        job, event = await self.store.cancel(job_id, user_id)
        await self._answer(event.seq)
        return job

    async def retry(self, job_id: str, user_id: str | None) -> Job:
        job, event = await self.store.retry(job_id, user_id)
        await self._answer(event.seq)
        return job

    async def remove(self, job_id: str, user_id: str | None) -> Job:
        """Soft-delete a finished job (``job.removed``)."""
        job, event = await self.store.remove(job_id, user_id)
        await self._answer(event.seq)
        return job

    async def remove_finished(
        self, user_id: str, statuses: Collection[JobStatus], *, batch: int = 500,
        most: int = 100_000,
    ) -> int:  # fmt: skip
        """Remove ``user_id``'s jobs in ``statuses`` (finished ones), ``batch`` per commit,
        at most ``most``; how many went."""
        removed = 0
        while removed < most:
            events = await self.store.remove_finished(user_id, statuses, min(batch, most - removed))
            if events:
                await self._answer(events[-1].seq)
            removed += len(events)
            if len(events) < batch:
                break
        return removed

    async def requeue(self, job_id: str, token: str, message: str) -> Event:
        event = await self.store.requeue(job_id, token, message)
        await self._answer(event.seq)
        return event

    async def renew(self, leases: Mapping[str, str], lease_seconds: float) -> set[str]:
        return await self.store.renew(leases, lease_seconds)

    async def recover(self, *, expired_only: bool) -> list[Event]:
        events = await self.store.recover(expired_only=expired_only)
        if events:
            await self._answer(events[-1].seq)
            log.warning("recovered %d job(s) whose worker was lost", len(events))
        return events


def _resolve(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(None)


def _ignore(event: Event | None, error: BaseException | None) -> None:
    if error is not None:
        log.debug("a progress write was rejected: %s", error)
