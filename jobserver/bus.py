"""In-process fan-out of persisted events to subscribers by user and by job."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Protocol

from .models import Event

log = logging.getLogger(__name__)

Tap = Callable[[Event], None]


class Subscriber(Protocol):
    """Receives events without blocking; it must never wait on the publisher."""

    def deliver(self, event: Event) -> None: ...


class Mailbox:
    """A bounded, coalescing queue of events for one consumer (a socket, a long-poll).

    Below ``coalesce_at`` every event is kept. Past it, a progress event replaces the
    still-unsent progress event of the same job (the newest wins, order by seq is kept).
    Status changes, results and errors are never dropped: if they would push the queue past
    ``maxsize`` the mailbox is marked ``overflowed`` and the consumer should drop the client,
    which resumes from its last seq.

    Args:
        maxsize: most events held before the mailbox overflows.
        coalesce_at: queue length from which progress events of a job coalesce.
    """

    def __init__(self, maxsize: int = 1000, coalesce_at: int | None = None) -> None:
        self.maxsize = maxsize
        self.coalesce_at = maxsize // 2 if coalesce_at is None else coalesce_at
        self.overflowed = False
        self.closed = False
        self.coalesced = 0
        self._items: OrderedDict[tuple[str, int | str], Event] = OrderedDict()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def deliver(self, event: Event) -> None:
        if self.closed or self.overflowed:
            return
        items = self._items
        if event.coalescable and len(items) >= self.coalesce_at:
            key: tuple[str, int | str] = ("p", event.job_id)
            if items.pop(key, None) is not None:
                self.coalesced += 1
        else:
            key = ("e", event.seq)
        if len(items) >= self.maxsize:
            self.overflowed = True
            items.clear()
        else:
            items[key] = event
        self._ready.set()

    def drain(self) -> list[Event]:
        """Everything queued, oldest first, without waiting."""
        events = list(self._items.values())
        self._items.clear()
        self._ready.clear()
        return events

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until something is queued (or the mailbox overflowed or closed)."""
        if self._items or self.overflowed or self.closed:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.closed = True
        self._ready.set()


class EventBus:
    """Routes each event to the subscribers of its user and of its job, each exactly once.

    A subscriber that raises is logged and skipped; it never stops the others.
    """

    def __init__(self) -> None:
        self._by_user: dict[str, set[Subscriber]] = {}
        self._by_job: dict[str, set[Subscriber]] = {}
        self._taps: list[Tap] = []

    def add_tap(self, tap: Tap) -> None:
        """Call ``tap`` for every event (metrics, the worker pool's wake-up, debug logs)."""
        self._taps.append(tap)

    def subscribe(
        self, sub: Subscriber, *, user_id: str | None = None, job_id: str | None = None
    ) -> None:
        if user_id is not None:
            self._by_user.setdefault(user_id, set()).add(sub)
        if job_id is not None:
            self._by_job.setdefault(job_id, set()).add(sub)

    def unsubscribe(
        self, sub: Subscriber, *, user_id: str | None = None, job_id: str | None = None
    ) -> None:
        for index, key in ((self._by_user, user_id), (self._by_job, job_id)):
            if key is None:
                continue
            subs = index.get(key)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del index[key]

    def subscriber_count(self) -> int:
        return len(
            {s for subs in self._by_user.values() for s in subs}
            | {s for subs in self._by_job.values() for s in subs}
        )

    def publish(self, events: Iterable[Event]) -> None:
        """Every event to the taps, in order; then to each subscriber its events, in order,
        in one call of its ``deliver_many`` when it has one (a socket: one write for a
        commit's events rather than a send each), else one ``deliver`` each."""
        events = events if isinstance(events, list) else list(events)
        if len(events) == 1:
            event = events[0]
            self._tap(event)
            for sub in self._targets(event):
                _deliver(sub, event)
            return
        got: dict[Subscriber, list[Event]] = {}
        for event in events:
            self._tap(event)
            for sub in self._targets(event):
                mine = got.get(sub)
                if mine is None:
                    got[sub] = [event]
                else:
                    mine.append(event)
        for sub, mine in got.items():
            many = getattr(sub, "deliver_many", None)
            if many is None or len(mine) == 1:
                for event in mine:
                    _deliver(sub, event)
                continue
            try:
                many(mine)
            except Exception:
                log.exception("subscriber failed on seqs %d-%d", mine[0].seq, mine[-1].seq)

    def _tap(self, event: Event) -> None:
        for tap in self._taps:
            try:
                tap(event)
            except Exception:
                log.exception("event tap failed on seq %d", event.seq)

    def _targets(self, event: Event) -> Iterable[Subscriber]:
        by_user = self._by_user.get(event.user_id)
        by_job = self._by_job.get(event.job_id)
        if by_user and by_job:
            return by_user | by_job
        return tuple(by_user or by_job or ())


def _deliver(sub: Subscriber, event: Event) -> None:
    try:
        sub.deliver(event)
    except Exception:
        log.exception("subscriber failed on seq %d", event.seq)
