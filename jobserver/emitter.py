"""JobEvents, the seed's JobEventEmitterService: persist each change, then publish its event.

This is the only module that connects the store to the bus (``Store.on_commit``), so the
order "durable first, then visible" lives in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from .bus import EventBus
from .models import ErrorDict, Event, Job, ResultDict
from .store import NewJob, ProgressUpdate, Store

log = logging.getLogger(__name__)


class JobEvents:
    """Every state change of a job goes through here.

    The store publishes: each event goes to the bus right after the transaction that wrote
    it commits, in seq order (``Store.on_commit``), so nothing is seen before it is durable
    and no subscriber sees events out of order.

    Args:
        store: where jobs and events are persisted.
        bus: where persisted events are fanned out (``--debug`` logs them from a bus tap).
    """

    def __init__(self, store: Store, bus: EventBus) -> None:
        self.store = store
        self.bus = bus
        self._queued_hooks: list[Callable[[Job], None]] = []
        store.on_commit(bus.publish)

    def on_queued(self, hook: Callable[[Job], None]) -> None:
        """Call ``hook`` with every job just created, before its submitter hears back."""
        self._queued_hooks.append(hook)

    async def emit_queued(self, new: NewJob) -> tuple[Job, bool]:
        """Create a job; returns it and whether it is new (False: idempotency key matched)."""
        job, events = await self.store.enqueue(new)
        if events:
            for hook in self._queued_hooks:
                try:
                    hook(job)
                except Exception:
                    log.exception("a queued-job hook failed for job %s", job.id)
        return job, bool(events)

    async def claim(
        self, limit: int, lease_seconds: float, caps: Mapping[str, int] | None = None
    ) -> list[Job]:
        return [job for job, _ in await self.store.claim(limit, lease_seconds, caps)]

    def emit_progress(
        self,
        job_id: str,
        token: str,
        stage: str,
        progress: float,
        message: str = "",
        metadata: Mapping[str, Any] | None = None,
        *,
        label: str | None = None,
        done: Callable[[Event | None, BaseException | None], None] | None = None,
    ) -> None:
        """Submit a progress event without waiting for it to commit; ``done`` hears the end."""
        update = ProgressUpdate(stage, progress, message, metadata, label)
        self.store.progress(job_id, token, update, done or _ignore)

    async def emit_completed(self, job_id: str, token: str, result: ResultDict) -> Event:
        return await self.store.complete(job_id, token, result)

    async def emit_failed(self, job_id: str, token: str, error: ErrorDict) -> Event:
        return await self.store.fail(job_id, token, error, None)

    async def emit_retrying(
        self, job_id: str, token: str, error: ErrorDict, retry_at: float
    ) -> Event:
        """Fail this attempt and queue the job again at ``retry_at`` (job.retrying)."""
        return await self.store.fail(job_id, token, error, retry_at)

    async def emit_cancelled(self, job_id: str, user_id: str | None) -> Job:
        job, _ = await self.store.cancel(job_id, user_id)
        return job

    async def retry(self, job_id: str, user_id: str | None) -> Job:
        job, _ = await self.store.retry(job_id, user_id)
        return job

    async def requeue(self, job_id: str, token: str, message: str) -> Event:
        return await self.store.requeue(job_id, token, message)

    async def recover(self, *, expired_only: bool) -> list[Event]:
        events = await self.store.recover(expired_only=expired_only)
        if events:
            log.warning("recovered %d job(s) whose worker was lost", len(events))
        return events


def _ignore(event: Event | None, error: BaseException | None) -> None:
    if error is not None:
        log.debug("a progress write was rejected: %s", error)
