"""Per-user quotas at the enqueue entry point: unfinished jobs, and upload bytes kept.

On SQLite (one server) the count of each user's queued and active jobs is kept in memory from
the bus (a job is counted from its ``job.queued`` event to its completion, failure or
cancellation), loaded from the store at start; an enqueue in flight holds a reservation, so
concurrent requests cannot overshoot the limit between the check and the event. On
PostgreSQL several nodes take jobs for the same user: the store refuses a job past the limit
itself, in the write transaction, under the lock every node's writes take
(``PostgresStore``'s ``max_open_jobs``), and ``JobQuota`` checks nothing (``in_store``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from .config import Settings
from .errors import TooManyJobs, TooManyRequests
from .models import FINISHED_EVENTS, Event, EventType
from .store import Store

BYTES_RETRY_AFTER = 3600.0  # kept bytes are freed by pruning, not soon


class OpenJobCounts(Protocol):
    """Where the in-memory count starts (``SqliteStore``; not the shared ``Store``: on
    PostgreSQL the store counts in its writes)."""

    async def open_jobs_by_user(self) -> dict[str, int]:
        """Queued and active jobs per user."""
        ...


class JobQuota:
    """At most ``max_jobs`` queued or running jobs per user.

    Args:
        max_jobs: the limit per user.
        in_store: the store refuses jobs past the limit itself (PostgreSQL, where several
            nodes share the count); this then checks nothing.
    """

    def __init__(self, max_jobs: int, in_store: bool = False) -> None:
        self.max_jobs = max_jobs
        self.in_store = in_store
        self._open: dict[str, int] = {}
        self._pending: dict[str, int] = {}  # places held by enqueues in flight
        # Of those, how many a job.queued event has already counted in _open: an enqueue's
        # event is published before its caller resumes and ends its reservation, and a place
        # must not count twice in between.
        self._counted: dict[str, int] = {}

    async def load(self, store: OpenJobCounts) -> None:
        """Start from the store's counts; call before anything is published."""
        self._open = await store.open_jobs_by_user()

    def on_event(self, event: Event) -> None:
        """A bus tap."""
        if event.type is EventType.QUEUED:
            user = event.user_id
            self._open[user] = self._open.get(user, 0) + 1
            pending = self._pending.get(user, 0)
            if pending:  # most likely one of the places held: it is counted in _open now
                self._pending[user] = pending - 1
                self._counted[user] = self._counted.get(user, 0) + 1
        elif event.type in FINISHED_EVENTS:
            left = self._open.get(event.user_id, 0) - 1
            if left > 0:
                self._open[event.user_id] = left
            else:
                self._open.pop(event.user_id, None)

    def open_jobs(self, user_id: str) -> int:
        return self._open.get(user_id, 0)

    @asynccontextmanager
    async def reserve(self, user_id: str, count: int = 1) -> AsyncIterator[None]:
        """Hold places for ``count`` more jobs of ``user_id`` while they are enqueued (a batch
        takes all or none); 429 when they do not fit.

        A job's ``job.queued`` event is published before its enqueue returns: from then the
        job counts in the open jobs, and its place no longer as held.
        """
        if self.in_store:
            yield
            return
        pending = self._pending.get(user_id, 0)
        if self.open_jobs(user_id) + pending + count > self.max_jobs:
            raise TooManyJobs(self.max_jobs)
        self._pending[user_id] = pending + count
        try:
            yield
        finally:
            counted = min(count, self._counted.get(user_id, 0))
            if counted:
                if self._counted[user_id] == counted:
                    del self._counted[user_id]
                else:
                    self._counted[user_id] -= counted
            left = self._pending.get(user_id, 0) - (count - counted)
            if left > 0:
                self._pending[user_id] = left
            else:
                self._pending.pop(user_id, None)


async def check_bytes(
    store: Store, settings: Settings, user_id: str, content_length: int | None
) -> None:
    """Refuse (429 QUOTA_BYTES) a file upload that would take ``user_id``'s kept uploads
    past ``max_stored_bytes_per_user``, before it is read. Its size is bounded by its
    ``Content-Length`` and the upload limit; the bytes kept are the ``size`` of the files
    the user's kept jobs name."""
    incoming = min(content_length or 0, settings.max_upload_bytes)
    limit = settings.max_stored_bytes_per_user
    used = await store.payload_total(user_id, "size")
    if used + incoming > limit:
        raise TooManyRequests(
            f"your jobs keep {used} bytes of uploads; this upload would pass the "
            f"{limit} allowed (old jobs are pruned after the retention period)",
            code="QUOTA_BYTES", retry_after=BYTES_RETRY_AFTER,
        )  # fmt: skip
