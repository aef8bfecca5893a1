"""Per-user quotas at the enqueue entry point: unfinished jobs, and upload bytes kept.

On SQLite (one server) the count of each user's queued and active jobs is kept in memory from
the bus (a job is counted from its ``job.queued`` event to its completion, failure or
cancellation), loaded from the store at start. On PostgreSQL several nodes take jobs for the
same user, so the count is the database's, read at each check (``count``). An enqueue in
flight holds a reservation, so concurrent requests to one node cannot overshoot the limit
between the check and the event; requests in flight at once on other nodes can, by at most
their number.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from .config import Settings
from .errors import TooManyRequests
from .models import Event, EventType
from .store import Store

FINISHED = frozenset({EventType.COMPLETED, EventType.FAILED, EventType.CANCELLED})
JOBS_RETRY_AFTER = 5.0  # seconds a client is told to wait when it has too many jobs
BYTES_RETRY_AFTER = 3600.0  # kept bytes are freed by pruning, not soon


class JobQuota:
    """At most ``max_jobs`` queued or running jobs per user.

    Args:
        max_jobs: the limit per user.
        count: a user's open jobs as the database counts them (several nodes share it);
            None: counted here, from the bus.
    """

    def __init__(
        self, max_jobs: int, count: Callable[[str], Awaitable[int]] | None = None
    ) -> None:
        self.max_jobs = max_jobs
        self.count = count
        self._open: dict[str, int] = {}
        self._pending: dict[str, int] = {}

    async def load(self, store: Store) -> None:
        """Start from the store's counts; call before anything is published."""
        self._open = await store.open_jobs_by_user()

    def on_event(self, event: Event) -> None:
        """A bus tap."""
        if event.type is EventType.QUEUED:
            self._open[event.user_id] = self._open.get(event.user_id, 0) + 1
        elif event.type in FINISHED:
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

        A job's ``job.queued`` event is published before its enqueue returns, so it is
        counted by the time the reservation ends.
        """
        counted = self.open_jobs(user_id) if self.count is None else await self.count(user_id)
        pending = self._pending.get(user_id, 0)
        if counted + pending + count > self.max_jobs:
            raise TooManyRequests(
                f"you have {self.max_jobs} jobs queued or running, the most allowed: "
                "wait for some to finish",
                code="QUOTA_JOBS", retry_after=JOBS_RETRY_AFTER,
            )  # fmt: skip
        self._pending[user_id] = pending + count
        try:
            yield
        finally:
            left = self._pending[user_id] - count
            if left:
                self._pending[user_id] = left
            else:
                del self._pending[user_id]


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
