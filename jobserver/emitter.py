"""JobEvents, the seed's JobEventEmitterService: persist each change, then publish its event.

This is the only module that both writes the store and publishes to the bus, so the order
"durable first, then visible" lives in one place.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from .bus import EventBus
from .models import ErrorDict, Event, Job, JobStage, ResultDict
from .store import NewJob, ProgressUpdate, Store

log = logging.getLogger(__name__)


class JobEvents:
    """Every state change of a job goes through here.

    Args:
        store: where jobs and events are persisted.
        bus: where persisted events are fanned out.
        debug: log every event emitted.
    """

    def __init__(self, store: Store, bus: EventBus, *, debug: bool = False) -> None:
        self.store = store
        self.bus = bus
        self.debug = debug

    def _publish(self, events: list[Event]) -> None:
        if self.debug:
            for event in events:
                log.info("event %s", event.data.decode())
        self.bus.publish(events)

    async def emit_queued(self, new: NewJob) -> tuple[Job, bool]:
        """Create a job; returns it and whether it is new (False: idempotency key matched)."""
        job, events = await self.store.enqueue(new)
        self._publish(events)
        return job, bool(events)

    async def claim(self, limit: int, lease_seconds: float) -> list[Job]:
        claimed = await self.store.claim(limit, lease_seconds)
        self._publish([event for _, event in claimed])
        return [job for job, _ in claimed]

    def emit_progress(
        self,
        job_id: str,
        token: str,
        stage: JobStage,
        progress: float,
        message: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> asyncio.Future[Event]:
        """Submit a progress event; it is published once committed. Await it to wait for that."""
        future = self.store.progress(
            job_id, token, ProgressUpdate(stage, progress, message, metadata)
        )
        future.add_done_callback(self._published)
        return future

    def _published(self, future: asyncio.Future[Event]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._publish([future.result()])

    async def emit_completed(self, job_id: str, token: str, result: ResultDict) -> Event:
        event = await self.store.complete(job_id, token, result)
        self._publish([event])
        return event

    async def emit_failed(self, job_id: str, token: str, error: ErrorDict) -> Event:
        event = await self.store.fail(job_id, token, error, None)
        self._publish([event])
        return event

    async def emit_retrying(
        self, job_id: str, token: str, error: ErrorDict, retry_at: float
    ) -> Event:
        """Fail this attempt and queue the job again at ``retry_at`` (job.retrying)."""
        event = await self.store.fail(job_id, token, error, retry_at)
        self._publish([event])
        return event

    async def emit_cancelled(self, job_id: str, user_id: str | None) -> Job:
        job, event = await self.store.cancel(job_id, user_id)
        self._publish([event])
        return job

    async def retry(self, job_id: str, user_id: str | None) -> Job:
        job, event = await self.store.retry(job_id, user_id)
        self._publish([event])
        return job

    async def requeue(self, job_id: str, token: str, message: str) -> Event:
        event = await self.store.requeue(job_id, token, message)
        self._publish([event])
        return event

    async def recover(self, *, expired_only: bool) -> list[Event]:
        events = await self.store.recover(expired_only=expired_only)
        if events:
            log.warning("recovered %d job(s) whose worker was lost", len(events))
        self._publish(events)
        return events
