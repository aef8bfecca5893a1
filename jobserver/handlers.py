"""Job types: async handlers registered by name with their options, and the context they get."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .emitter import JobEvents
from .errors import UnknownJobType
from .models import Event, Job, JobStage
from .store.changes import check_handler_stage

# Progress events a handler may have submitted but not yet seen committed.
MAX_IN_FLIGHT = 32


class JobContext:
    """What a running handler sees: its job, payload, progress reporting and cancellation.

    Args:
        job: the claimed job (this attempt).
        events: the emitter that persists and publishes progress.
        token: the lease token that fences this attempt's writes.
    """

    def __init__(self, job: Job, events: JobEvents, token: str) -> None:
        self.job = job
        self.payload: dict[str, Any] = job.payload
        self.attempt = job.attempts
        self._cancelled: asyncio.Event | None = None  # made when first asked for
        self._events = events
        self._token = token
        self._last = 0.0
        self._in_flight = 0
        self._settled: asyncio.Event | None = None  # made when a handler first has to wait
        self._failure: BaseException | None = None

    @property
    def cancelled(self) -> asyncio.Event:
        """Set when this attempt is being stopped (cancelled, timed out, lease lost, shutdown)."""
        if self._cancelled is None:  # most handlers never look: no Event for every job
            self._cancelled = asyncio.Event()
        return self._cancelled

    async def progress(
        self,
        stage: JobStage,
        percent: float,
        message: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Report progress; never goes backwards within an attempt.

        The event is submitted at once and published as soon as it is durable. The handler
        does not wait for that commit unless ``MAX_IN_FLIGHT`` of its events are still
        pending, so a burst of progress shares one commit with the job's completion (the
        store commits a job's writes in the order they were submitted). A write that was
        rejected (the lease was lost, the job was cancelled) raises here on the next call.
        """
        if self._failure is not None:
            raise self._failure
        check_handler_stage(stage)  # at once, not when the write is rejected later
        self._last = max(self._last, float(percent))
        self._in_flight += 1
        self._events.emit_progress(
            self.job.id, self._token, stage, self._last, message, metadata, done=self._done
        )
        while self._in_flight > MAX_IN_FLIGHT:
            if self._settled is None:
                self._settled = asyncio.Event()
            self._settled.clear()
            await self._settled.wait()
        if self._failure is not None:
            raise self._failure

    def _done(self, event: Event | None, error: BaseException | None) -> None:
        self._in_flight -= 1
        if error is not None and self._failure is None:
            self._failure = error
        if self._settled is not None:
            self._settled.set()


class Handler(Protocol):
    """A job type's work: returns the job's result (a JSON-able mapping) or raises JobError."""

    async def __call__(self, ctx: JobContext) -> Mapping[str, Any] | None: ...


PayloadCheck = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class HandlerOptions:
    """How a job type runs.

    Args:
        timeout: seconds one attempt may take (None: no limit).
        max_attempts: default attempts for a new job of this type.
        backoff_base: seconds before the first retry; doubles each attempt, with jitter.
        backoff_max: longest wait between attempts.
        check_payload: validates (and may normalise) a payload at enqueue time; raises
            InvalidPayload.
    """

    timeout: float | None = 300.0
    max_attempts: int = 3
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    check_payload: PayloadCheck | None = None


@dataclass(frozen=True, slots=True)
class JobType:
    name: str
    handler: Handler
    options: HandlerOptions


class Registry:
    """The job types this server runs."""

    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}

    def register(self, name: str, handler: Handler, options: HandlerOptions | None = None) -> None:
        if name in self._types:
            raise ValueError(f"job type {name!r} is already registered")
        self._types[name] = JobType(name, handler, options or HandlerOptions())

    def get(self, name: str) -> JobType:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownJobType(f"unknown job type {name!r}") from None

    def names(self) -> list[str]:
        return sorted(self._types)
