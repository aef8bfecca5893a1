"""The job model: statuses, stages, event types, allowed transitions, and the wire format."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, NamedTuple

import orjson

from .errors import IllegalTransition


class JobStatus(StrEnum):
    QUEUED = "queued"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL: Final = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

# The one table of allowed status changes. ACTIVE -> QUEUED is a retry (later run time), a
# requeue at graceful shutdown, or the recovery of a job whose worker was lost.
TRANSITIONS: Final[dict[JobStatus, frozenset[JobStatus]]] = {
    JobStatus.QUEUED: frozenset({JobStatus.ACTIVE, JobStatus.CANCELLED}),
    JobStatus.ACTIVE: frozenset(
        {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUEUED}
    ),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset({JobStatus.QUEUED}),
    JobStatus.CANCELLED: frozenset({JobStatus.QUEUED}),
}


def check_transition(current: JobStatus, new: JobStatus) -> None:
    """Raise IllegalTransition unless the job model allows ``current -> new``."""
    if new not in TRANSITIONS[current]:
        raise IllegalTransition(f"a {current.value} job cannot become {new.value}")


class JobStage(StrEnum):
    QUEUED = "queued"
    INITIALIZING = "initializing"
    DOWNLOADING = "downloading"
    EXTRACTING = "extracting"
    GENERATING = "generating"
    SAVING = "saving"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


# Display names live here only; clients read them from GET /api/meta.
STAGE_DISPLAY_NAMES: Final[dict[JobStage, str]] = {
    JobStage.QUEUED: "Waiting in queue",
    JobStage.INITIALIZING: "Starting",
    JobStage.DOWNLOADING: "Reading file",
    JobStage.EXTRACTING: "Extracting text",
    JobStage.GENERATING: "Generating notes",
    JobStage.SAVING: "Saving notes",
    JobStage.PROCESSING: "Processing",
    JobStage.COMPLETED: "Completed",
    JobStage.FAILED: "Failed",
    JobStage.CANCELLED: "Cancelled",
}


class EventType(StrEnum):
    QUEUED = "job.queued"
    PROGRESS = "job.progress"
    COMPLETED = "job.completed"
    FAILED = "job.failed"
    RETRYING = "job.retrying"
    CANCELLED = "job.cancelled"


# Status changes, results and errors: a slow client may never lose these (progress may coalesce).
STATUS_EVENT_TYPES: Final = frozenset(
    {
        EventType.QUEUED,
        EventType.COMPLETED,
        EventType.FAILED,
        EventType.RETRYING,
        EventType.CANCELLED,
    }
)

ErrorDict = dict[str, Any]
ResultDict = dict[str, Any]


@functools.lru_cache(maxsize=8)
def _iso_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def iso(ts: float | None) -> str | None:
    """Epoch seconds to ISO 8601 UTC with milliseconds, as on the wire."""
    if ts is None:
        return None
    second = int(ts)
    return f"{_iso_second(second)}.{int((ts - second) * 1000):03d}Z"


def error_dict(code: str, message: str, recoverable: bool) -> ErrorDict:
    return {"message": message, "code": code, "recoverable": recoverable}


@dataclass(slots=True)
class Job:
    """One job's row: what it is, whose it is, and where it stands."""

    id: str
    type: str
    user_id: str
    payload: dict[str, Any]
    status: JobStatus = JobStatus.QUEUED
    stage: JobStage = JobStage.QUEUED
    progress: float = 0.0
    message: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    result: ResultDict | None = None
    error: ErrorDict | None = None
    attempts: int = 0
    max_attempts: int = 1
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    run_at: float = field(default_factory=time.time)
    last_seq: int = 0
    idempotency_key: str | None = None
    lease_token: str | None = None
    lease_expires_at: float | None = None

    def evolve(self, **changes: Any) -> Job:
        """A copy with ``changes`` applied; dataclasses.replace costs several times more, and
        the store runs this for every event."""
        copy = object.__new__(Job)
        copy.id = self.id
        copy.type = self.type
        copy.user_id = self.user_id
        copy.payload = self.payload
        copy.status = self.status
        copy.stage = self.stage
        copy.progress = self.progress
        copy.message = self.message
        copy.metadata = self.metadata
        copy.result = self.result
        copy.error = self.error
        copy.attempts = self.attempts
        copy.max_attempts = self.max_attempts
        copy.created_at = self.created_at
        copy.started_at = self.started_at
        copy.finished_at = self.finished_at
        copy.run_at = self.run_at
        copy.last_seq = self.last_seq
        copy.idempotency_key = self.idempotency_key
        copy.lease_token = self.lease_token
        copy.lease_expires_at = self.lease_expires_at
        for name, value in changes.items():
            setattr(copy, name, value)
        return copy

    def to_wire(self) -> dict[str, Any]:
        """The job as clients see it: the event's field names plus the job's own."""
        return {
            "jobId": self.id,
            "userId": self.user_id,
            "type": self.type,
            "status": self.status.value,
            "stage": self.stage.value,
            "progress": self.progress,
            "message": self.message,
            "metadata": self.metadata,
            "result": self.result,
            "error": self.error,
            "payload": self.payload,
            "attempts": self.attempts,
            "maxAttempts": self.max_attempts,
            "createdAt": iso(self.created_at),
            "startedAt": iso(self.started_at),
            "finishedAt": iso(self.finished_at),
            "runAt": iso(self.run_at),
            "lastSeq": self.last_seq,
            "idempotencyKey": self.idempotency_key,
        }


class Event(NamedTuple):
    """One persisted job event; ``data`` is its wire JSON, encoded once and shared by all.

    A named tuple: immutable like a frozen dataclass, but made several times faster, and the
    store makes one for every event.
    """

    seq: int
    type: EventType
    job_id: str
    user_id: str
    data: bytes

    @property
    def coalescable(self) -> bool:
        return self.type is EventType.PROGRESS


def encode_event(seq: int, type_: EventType, job: Job, timestamp: str) -> Event:
    """Snapshot ``job`` after a change as event number ``seq``; the only event serialiser.

    ``timestamp`` is the ISO 8601 text (``iso``) of when the change was made.
    """
    # Enum members go to orjson as they are (it writes their values): no .value lookups.
    body: dict[str, Any] = {
        "seq": seq,
        "type": type_,
        "jobId": job.id,
        "userId": job.user_id,
        "jobType": job.type,
        "status": job.status,
        "stage": job.stage,
        "progress": job.progress,
        "message": job.message,
        "metadata": job.metadata,
        "attempt": job.attempts,
        "maxAttempts": job.max_attempts,
        "timestamp": timestamp,
    }
    if job.result is not None:
        body["result"] = job.result
    if job.error is not None:
        body["error"] = job.error
    return Event(seq, type_, job.id, job.user_id, orjson.dumps(body))
