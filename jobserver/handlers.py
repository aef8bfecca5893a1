"""The registry of job types and the context a running handler gets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import ServiceUnavailable, UnknownJobType
from .jobtypes import (
    Handler,
    HandlerOptions,
    JobType,
    Stage,
    check_label,
    merged_stage_names,
    stage_id,
)
from .models import Event, Job
from .queue import JobQueue
from .store import ProgressUpdate

__all__ = ["Handler", "HandlerOptions", "JobContext", "JobType", "Registry"]

# Progress events a handler may have submitted but not yet seen committed.
MAX_IN_FLIGHT = 32


class JobContext:
    """What a running handler sees: its job, payload, progress reporting and cancellation.

    Args:
        job: the claimed job (this attempt).
        queue: the job queue, which persists and publishes progress.
        token: the lease token that fences this attempt's writes.
        stages: the stages its type may report, by id (``Registry.stages_of``).
    """

    def __init__(
        self, job: Job, queue: JobQueue, token: str, stages: Mapping[str, str]
    ) -> None:
        self.job = job
        self.payload: dict[str, Any] = job.payload
        self.attempt = job.attempts
        self.max_attempts = job.max_attempts
        self._stages = stages
        self._log: logging.LoggerAdapter[logging.Logger] | None = None
        self._cancelled: asyncio.Event | None = None  # made when first asked for
        self._queue = queue
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

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger for this job (``jobserver.jobs.<type>``), with its id on every line."""
        if self._log is None:
            logger = logging.getLogger(f"jobserver.jobs.{self.job.type}")
            self._log = logging.LoggerAdapter(logger, {"job_id": self.job.id})
        return self._log

    async def progress(
        self,
        stage: Stage | str,
        percent: float,
        message: str = "",
        metadata: Mapping[str, Any] | None = None,
        *,
        label: str | None = None,
    ) -> None:
        """Report progress; never goes backwards within an attempt.

        ``stage`` is one of the job type's declared stages (or ``initializing`` or
        ``processing``); ``label``, when given, becomes the job's label.

        The event is submitted at once and published as soon as it is durable. The handler
        does not wait for that commit unless ``MAX_IN_FLIGHT`` of its events are still
        pending, so a burst of progress shares one commit with the job's completion (the
        store commits a job's writes in the order they were submitted). A write that was
        rejected (the lease was lost, the job was cancelled) raises here on the next call.
        """
        if self._failure is not None:
            raise self._failure
        # Checked at once, not when the write is rejected later.
        found = self._stages.get(stage) if isinstance(stage, str) else None
        stage = found if found is not None else stage_id(stage, self._stages, self.job.type)
        if label is not None:
            label = check_label(label)
        self._last = max(self._last, float(percent))
        self._in_flight += 1
        update = ProgressUpdate(stage, self._last, message, metadata, label)
        self._queue.progress(self.job.id, self._token, update, self._done)
        while self._in_flight > MAX_IN_FLIGHT:
            if self._settled is None:
                self._settled = asyncio.Event()
            self._settled.clear()
            await self._settled.wait()
        if self._failure is not None:
            raise self._failure

    def _done(self, event: Event | None, error: BaseException | None) -> None:
        self._in_flight -= 1
        # A store that cannot write for now only loses this progress: the handler goes on and
        # its outcome is written once the store is back (the worker retries it).
        if self._failure is None and not isinstance(error, ServiceUnavailable | None):
            self._failure = error
        if self._settled is not None:
            self._settled.set()


class Registry:
    """The job types this server runs, and every stage's display name.

    Args:
        types: job types to start with.
    """

    def __init__(self, types: Sequence[JobType] = ()) -> None:
        self._types: dict[str, JobType] = {}
        self._stages: dict[str, dict[str, str]] = {}
        for jt in types:
            self.add(jt)

    def add(self, job_type: JobType) -> None:
        """Register ``job_type``; a second type of the same name is refused, naming both."""
        known = self._types.get(job_type.name)
        if known is not None:
            if known is job_type:
                return
            raise ValueError(
                f"job type {job_type.name!r} is declared twice: in {known.module or '?'} "
                f"and in {job_type.module or '?'}"
            )
        merged_stage_names([*self._types.values(), job_type])  # raises on a clash
        self._types[job_type.name] = job_type
        self._stages[job_type.name] = job_type.stage_ids()

    def register(self, name: str, handler: Handler, options: HandlerOptions | None = None) -> None:
        """``add`` a type made of its parts (for code that builds a registry by hand)."""
        self.add(JobType(name, handler, options or HandlerOptions(),
                         module=getattr(handler, "__module__", "")))  # fmt: skip

    def remove(self, name: str) -> None:
        self._types.pop(name, None)
        self._stages.pop(name, None)

    def get(self, name: str) -> JobType:
        try:
            return self._types[name]
        except KeyError:
            names = self.names()
            message = (f"unknown job type {name!r}" if name else 'no job type: send "type"'
                       ) + f"; this server runs: {', '.join(names)}"  # fmt: skip
            if not any(n.startswith("demo.") for n in names):
                message += " (start it with --demo-jobs for demo.sleep and demo.fail)"
            raise UnknownJobType(message) from None

    def stages_of(self, name: str) -> Mapping[str, str]:
        """The stages a handler of type ``name`` may report, by id."""
        return self._stages[name]

    def names(self) -> list[str]:
        return sorted(self._types)

    def types(self) -> list[JobType]:
        return [self._types[name] for name in self.names()]

    def stage_names(self) -> dict[str, str]:
        """Every stage's display name: the server's own, then each type's."""
        return merged_stage_names(self.types())
