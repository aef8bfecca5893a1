"""The job model: statuses, stages, event types, allowed transitions, and the wire format."""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import orjson

from .codegen import make_function
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
    """The stages every job has; a job type declares its own working stages beside these."""

    QUEUED = "queued"
    INITIALIZING = "initializing"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


# Display names live here (and in each job type's declaration); clients read GET /api/meta.
STAGE_DISPLAY_NAMES: Final[dict[str, str]] = {
    JobStage.QUEUED: "Waiting in queue",
    JobStage.INITIALIZING: "Starting",
    JobStage.PROCESSING: "Processing",
    JobStage.COMPLETED: "Completed",
    JobStage.FAILED: "Failed",
    JobStage.CANCELLED: "Cancelled",
}
# Set by the server, never by a handler's progress.
SERVER_STAGES: Final = frozenset(
    {JobStage.QUEUED, JobStage.COMPLETED, JobStage.FAILED, JobStage.CANCELLED}
)
# Any job type's handler may report these besides its own.
COMMON_HANDLER_STAGES: Final = (JobStage.INITIALIZING, JobStage.PROCESSING)


class EventType(StrEnum):
    QUEUED = "job.queued"
    PROGRESS = "job.progress"
    COMPLETED = "job.completed"
    FAILED = "job.failed"
    RETRYING = "job.retrying"
    CANCELLED = "job.cancelled"
    REMOVED = "job.removed"  # a finished job soft-deleted by its owner: gone from lists


# Status changes, results and errors: a slow client may never lose these (progress may coalesce).
STATUS_EVENT_TYPES: Final = frozenset(
    {
        EventType.QUEUED,
        EventType.COMPLETED,
        EventType.FAILED,
        EventType.RETRYING,
        EventType.CANCELLED,
        EventType.REMOVED,
    }
)
# The events that end a job (it reaches a TERMINAL status).
FINISHED_EVENTS: Final = frozenset({EventType.COMPLETED, EventType.FAILED, EventType.CANCELLED})

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


def column(
    sql: str,
    *,
    wire: tuple[str, ...],
    event: tuple[str, ...] = (),
    kind: str = "plain",
    **default: Any,
) -> Any:
    """Declare one of the job's fields, once: everything else is derived from this.

    Args:
        sql: the column's type in the jobs table.
        wire: the names it has on the job as clients see it (``GET /api/jobs/{id}``).
        event: the names it has on each event (empty: not on events).
        kind: ``json`` (stored as JSON text), ``status`` (a JobStatus), ``time`` (epoch
            seconds, ISO 8601 on the wire), ``optional`` (on events only when not None),
            or ``plain``.
        default: ``default=`` or ``default_factory=``, as for ``dataclasses.field``.
    """
    meta = {"sql": sql, "wire": wire, "event": event, "kind": kind}
    return field(metadata=meta, **default)


@dataclass(slots=True)
class Job:
    """One job's row: what it is, whose it is, and where it stands.

    The one declaration of the job's fields: the table's columns, the wire form, the event's
    fields, the codecs between them (``fields.py``) and the OpenAPI schema are made from it.
    """

    id: str = column("TEXT PRIMARY KEY", wire=("jobId",), event=("jobId",))
    type: str = column("TEXT NOT NULL", wire=("type", "jobType"), event=("jobType",))
    user_id: str = column("TEXT NOT NULL", wire=("userId",), event=("userId",))
    payload: dict[str, Any] = column("TEXT NOT NULL", wire=("payload",), kind="json")
    label: str = column(
        "TEXT NOT NULL DEFAULT ''", wire=("label",), event=("label",), default=""
    )
    status: JobStatus = column(
        "TEXT NOT NULL", wire=("status",), event=("status",), kind="status",
        default=JobStatus.QUEUED,
    )  # fmt: skip
    stage: str = column(
        "TEXT NOT NULL", wire=("stage",), event=("stage",), default=JobStage.QUEUED
    )
    progress: float = column(
        "REAL NOT NULL", wire=("progress",), event=("progress",), default=0.0
    )
    message: str = column("TEXT NOT NULL", wire=("message",), event=("message",), default="")
    metadata: dict[str, Any] = column(
        "TEXT NOT NULL", wire=("metadata",), event=("metadata",), kind="json",
        default_factory=dict,
    )  # fmt: skip
    result: ResultDict | None = column(
        "TEXT", wire=("result",), event=("result",), kind="json", default=None
    )
    error: ErrorDict | None = column(
        "TEXT", wire=("error",), event=("error",), kind="json", default=None
    )
    attempts: int = column(
        "INTEGER NOT NULL", wire=("attempts", "attempt"), event=("attempt", "attempts"),
        default=0,
    )  # fmt: skip
    max_attempts: int = column(
        "INTEGER NOT NULL", wire=("maxAttempts",), event=("maxAttempts",), default=1
    )
    created_at: float = column(
        "REAL NOT NULL", wire=("createdAt",), kind="time", default_factory=time.time
    )
    started_at: float | None = column("REAL", wire=("startedAt",), kind="time", default=None)
    finished_at: float | None = column("REAL", wire=("finishedAt",), kind="time", default=None)
    run_at: float = column(
        "REAL NOT NULL", wire=("runAt",), kind="time", default_factory=time.time
    )
    last_seq: int = column("INTEGER NOT NULL", wire=("lastSeq",), default=0)
    idempotency_key: str | None = column("TEXT", wire=("idempotencyKey",), default=None)
    lease_token: str | None = column("TEXT", wire=(), default=None)
    lease_expires_at: float | None = column("REAL", wire=(), default=None)
    # Set when its owner removed the finished job (a soft delete: retention deletes it later).
    removed_at: float | None = column("REAL", wire=("removedAt",), kind="time", default=None)

    if TYPE_CHECKING:

        def evolve(self, **changes: Any) -> Job:
            """A copy with ``changes`` applied (``dataclasses.replace`` costs several times
            more, and the store runs this for every event)."""

        def to_wire(self) -> dict[str, Any]:
            """The job as clients see it: the event's field names plus the job's own."""


JOB_FIELDS: Final = dataclasses.fields(Job)


def _derive_job_methods() -> None:
    names = [f.name for f in JOB_FIELDS]
    copy = [f"copy.{n} = self.{n}" for n in names]
    Job.evolve = make_function(  # type: ignore[method-assign]
        "evolve", "self, **changes", [
            "copy = object.__new__(Job)", *copy,
            "for name, value in changes.items():", "    setattr(copy, name, value)",
            "return copy",
        ], {"Job": Job},
    )  # fmt: skip
    items = []
    for f in JOB_FIELDS:
        value = f"self.{f.name}"
        if f.metadata["kind"] == "time":
            value = f"iso({value})"
        elif f.metadata["kind"] == "status":
            value = f"{value}.value"
        items += [f"{name!r}: {value}," for name in f.metadata["wire"]]
    Job.to_wire = make_function(  # type: ignore[method-assign]
        "to_wire", "self", ["return {", *items, "}"], {"iso": iso}
    )


_derive_job_methods()


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
    # What the store knew when it made the event, so a bus tap need not decode ``data`` for
    # them (the metrics tap runs for every event). Empty on an event read back from the log;
    # ``data`` always holds the same values. Not persisted as columns: the log keeps ``data``.
    status: str = ""
    stage: str = ""
    timestamp: str = ""

    @property
    def coalescable(self) -> bool:
        return self.type is EventType.PROGRESS

    # An event is its persisted row: one read back from the log equals the one published.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, tuple):
            return NotImplemented
        return self[:5] == other[:5]

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self[:5])


# An event as the store's writer sends it: Event's fields as a plain tuple (pickled per event;
# a named tuple would be built only to be taken apart again).
EventRow = tuple[int, EventType, str, str, bytes, str, str, str]


def _event_encoder() -> Any:
    """``encode_event_row``, written out from the declaration of the job's event fields.

    Enum members go to orjson as their values: it reads an enum's ``value`` through Python,
    which measured as a third of the encoding. The status and the stage are plain strings
    for the hints too (taps key dicts by them).
    """
    body = ["status = job.status._value_", "stage = str(job.stage)"]
    body += ["body = {", "'seq': seq,", "'type': type_._value_,"]
    optional = []
    for f in JOB_FIELDS:
        if not f.metadata["event"]:
            continue
        if f.name in ("result", "error"):  # on an event only when the job has one
            optional.append(f)
            continue
        value = f.name if f.name in ("status", "stage") else f"job.{f.name}"
        body += [f"{name!r}: {value}," for name in f.metadata["event"]]
    body += ["'timestamp': timestamp,", "}"]
    for f in optional:
        body += [f"if job.{f.name} is not None:"]
        body += [f"    body[{name!r}] = job.{f.name}" for name in f.metadata["event"]]
    body += ["return (seq, type_, job.id, job.user_id, dumps(body), status, stage, timestamp)"]
    return make_function(
        "encode_event_row", "seq, type_, job, timestamp", body, {"dumps": orjson.dumps}
    )


_encode_event_row = _event_encoder()
_new_tuple = tuple.__new__


def encode_event_row(seq: int, type_: EventType, job: Job, timestamp: str) -> EventRow:
    """Snapshot ``job`` after a change as event number ``seq``; the only event serialiser.

    ``timestamp`` is the ISO 8601 text (``iso``) of when the change was made.
    """
    row: EventRow = _encode_event_row(seq, type_, job, timestamp)
    return row


def encode_event(seq: int, type_: EventType, job: Job, timestamp: str) -> Event:
    """``encode_event_row``'s event as an ``Event``."""
    return event_of(_encode_event_row(seq, type_, job, timestamp))


def event_of(row: EventRow) -> Event:
    """The ``Event`` of a whole row (all eight fields), without the named tuple's Python
    ``__new__``: this runs for every event the writer sends."""
    event: Event = _new_tuple(Event, row)
    return event
