"""What the server sends, as typed objects: jobs, pages, events, ``resync``, meta.

Field names are the wire names of docs/websocket.md and the README's API, unchanged (``jobId``,
``maxAttempts``...), so the documentation of the protocol is the documentation of these classes.
Each object keeps the JSON it was made from in ``raw``, so a field a newer server adds is never
lost.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

from .errors import ProtocolError

TERMINAL_STATUSES: Final = frozenset({"completed", "failed", "cancelled"})
# job.removed comes only after one of the others (only a finished job can be removed).
TERMINAL_EVENT_TYPES: Final = frozenset(
    {"job.completed", "job.failed", "job.cancelled", "job.removed"}
)

_T = TypeVar("_T")


def _build(cls: type[_T], data: Mapping[str, Any], **extra: Any) -> _T:
    """``cls`` from the wire fields it declares; what the server left out keeps its default."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    known = {k: v for k, v in data.items() if k in names and k not in extra}
    fields: dict[str, Any] = {**known, **extra, "raw": dict(data)}
    try:
        return cls(**fields)
    except TypeError as exc:
        raise ProtocolError("PROTOCOL", f"{cls.__name__} is missing a field: {exc}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobErrorInfo:
    """Why a job failed (a job's or an event's ``error``).

    Args:
        code: the stable code, e.g. ``CORRUPT_PDF``.
        message: what went wrong, for people.
        recoverable: whether the server would retry (or a retry may succeed).
    """

    code: str
    message: str = ""
    recoverable: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_wire(cls, data: Any) -> JobErrorInfo | None:
        if data is None:
            return None
        if not isinstance(data, Mapping) or not isinstance(data.get("code"), str):
            raise ProtocolError("PROTOCOL", f"an error object without a code: {data!r}")
        return _build(cls, data)


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """A job as ``GET /api/jobs/{id}`` returns it; the fields are the wire fields.

    ``createdAt``, ``startedAt``, ``finishedAt`` and ``runAt`` are ISO 8601 UTC text.
    ``jobType``, ``attempt`` and ``label`` come from servers that send them (the job's
    ``type`` and ``attempts`` under the event's names, and its short title); else they are
    empty. ``created`` is set in a batch's answer only: False when an idempotency key matched
    a job that already was.
    """

    jobId: str
    userId: str = ""
    type: str = ""
    jobType: str = ""
    label: str = ""
    status: str = "queued"
    stage: str = "queued"
    progress: float = 0.0
    message: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: JobErrorInfo | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    attempt: int = 0
    maxAttempts: int = 1
    createdAt: str | None = None
    startedAt: str | None = None
    finishedAt: str | None = None
    runAt: str | None = None
    lastSeq: int = 0
    idempotencyKey: str | None = None
    removedAt: str | None = None
    created: bool | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_wire(cls, data: Any) -> Job:
        if not isinstance(data, Mapping) or not isinstance(data.get("jobId"), str):
            raise ProtocolError("PROTOCOL", f"not a job: {str(data)[:200]}")
        return _build(cls, data, error=JobErrorInfo.from_wire(data.get("error")))

    @property
    def finished(self) -> bool:
        """Completed, failed or cancelled (a failed or cancelled job may still be retried)."""
        return self.status in TERMINAL_STATUSES

    @property
    def removed(self) -> bool:
        """Its owner removed it (``job.removed``): the server lists it no more."""
        return self.removedAt is not None

    def with_event(self, event: JobEvent) -> Job:
        """This job as ``event`` left it (an older event changes nothing)."""
        if event.jobId != self.jobId or event.seq <= self.lastSeq:
            return self
        raw = {**self.raw, **{k: v for k, v in event.raw.items() if k in _JOB_FIELDS_OF_EVENT}}
        raw.update(attempts=event.attempt, lastSeq=event.seq)
        if event.type == "job.removed":
            raw["removedAt"] = event.timestamp or None
        raw.pop("created", None)
        if "attempt" in self.raw:
            raw["attempt"] = event.attempt
        return Job.from_wire(raw)


# The event fields that are also the job's own (an event's ``attempt`` is the job's ``attempts``).
_JOB_FIELDS_OF_EVENT: Final = frozenset(
    {"status", "stage", "progress", "message", "metadata", "result", "error", "maxAttempts",
     "label"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobPage:
    """One page of ``GET /api/jobs``: newest first; ``nextOffset`` is None on the last page.

    ``total`` counts the jobs of the query (status and search) over all pages, ``counts`` the
    jobs of the search per status and ``all`` (servers that send them; else None and empty).
    """

    jobs: list[Job]
    limit: int
    offset: int
    nextOffset: int | None = None
    total: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_wire(cls, data: Any) -> JobPage:
        if not isinstance(data, Mapping) or not isinstance(data.get("jobs"), list):
            raise ProtocolError("PROTOCOL", f"not a page of jobs: {str(data)[:200]}")
        return _build(cls, data, jobs=[Job.from_wire(j) for j in data["jobs"]])


@dataclass(frozen=True, slots=True, kw_only=True)
class JobEvent:
    """One event of a job (docs/websocket.md, "Events, seq and epoch"); the wire fields.

    ``type`` is one of ``job.queued``, ``job.progress``, ``job.completed`` (with ``result``),
    ``job.failed`` and ``job.retrying`` (with ``error``), ``job.cancelled``, ``job.removed``
    (a finished job its owner removed); each has its own
    subclass below (a type this client does not know yet arrives as a plain ``JobEvent``).
    ``seq`` orders every event of the server; ``timestamp`` is ISO 8601 UTC text.
    ``attempts`` (the job's name for ``attempt``) and ``label`` come from servers that send
    them; else they are 0 and empty.
    """

    seq: int
    type: str
    jobId: str
    userId: str = ""
    jobType: str = ""
    status: str = ""
    stage: str = ""
    progress: float = 0.0
    message: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    attempt: int = 0
    attempts: int = 0
    maxAttempts: int = 1
    label: str = ""
    timestamp: str = ""
    result: dict[str, Any] | None = None
    error: JobErrorInfo | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def terminal(self) -> bool:
        """The job finished with this event (completed, failed or cancelled), or was removed
        (after it finished)."""
        return self.type in TERMINAL_EVENT_TYPES


@dataclass(frozen=True, slots=True, kw_only=True)
class JobQueued(JobEvent):
    """``job.queued``: the job was enqueued (or queued again by a retry)."""

    type: Literal["job.queued"] = "job.queued"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobProgress(JobEvent):
    """``job.progress``: the job started, or moved on (``stage``, ``progress``, ``message``)."""

    type: Literal["job.progress"] = "job.progress"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobCompleted(JobEvent):
    """``job.completed``: the job finished; ``result`` is what its handler returned."""

    type: Literal["job.completed"] = "job.completed"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFailed(JobEvent):
    """``job.failed``: the job failed for good; ``error`` says why."""

    type: Literal["job.failed"] = "job.failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRetrying(JobEvent):
    """``job.retrying``: an attempt failed with ``error``; the job is queued again."""

    type: Literal["job.retrying"] = "job.retrying"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobCancelled(JobEvent):
    """``job.cancelled``: the job was cancelled."""

    type: Literal["job.cancelled"] = "job.cancelled"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRemoved(JobEvent):
    """``job.removed``: its owner removed the finished job (status and stage unchanged)."""

    type: Literal["job.removed"] = "job.removed"


_EVENT_CLASSES: Final[dict[str, type[JobEvent]]] = {
    "job.removed": JobRemoved,
    "job.queued": JobQueued,
    "job.progress": JobProgress,
    "job.completed": JobCompleted,
    "job.failed": JobFailed,
    "job.retrying": JobRetrying,
    "job.cancelled": JobCancelled,
}


def event_from_wire(data: Any) -> JobEvent:
    """The typed event for one wire event (an unknown ``type`` gives a plain ``JobEvent``)."""
    if (
        not isinstance(data, Mapping)
        or not isinstance(data.get("seq"), int)
        or not isinstance(data.get("type"), str)
        or not isinstance(data.get("jobId"), str)
    ):
        raise ProtocolError("PROTOCOL", f"not an event: {str(data)[:200]}")
    cls = _EVENT_CLASSES.get(data["type"], JobEvent)
    return _build(cls, data, error=JobErrorInfo.from_wire(data.get("error")))


@dataclass(frozen=True, slots=True, kw_only=True)
class Resync:
    """The server could not replay what this follower missed: reload the state you show.

    It comes instead of a silent gap when the cursor is older than the kept log (``pruned``),
    from another database (``epoch``) or beyond the head (``ahead``). Events go on from ``seq``
    (the server's head), so whatever happened before it must be read again (``Client.get``,
    ``Client.list``).

    Args:
        reason: ``pruned``, ``epoch`` or ``ahead``.
        seq: the head seq the follower goes on from.
        epoch: the server's event log's epoch.
    """

    type: Literal["resync"] = "resync"
    reason: str = ""
    seq: int = 0
    epoch: str | None = None


FollowItem = JobEvent | Resync
"""What ``Client.follow`` yields: a job event, or a ``Resync``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Meta:
    """``GET /api/meta``: stage display names, statuses, event types, job types, epoch, head.

    ``terminalStatuses`` is the server's list where it sends one, else the protocol's three.
    """

    stageNames: dict[str, str] = field(default_factory=dict)
    statuses: list[str] = field(default_factory=list)
    terminalStatuses: list[str] = field(default_factory=lambda: sorted(TERMINAL_STATUSES))
    eventTypes: list[str] = field(default_factory=list)
    jobTypes: list[str] = field(default_factory=list)
    epoch: str | None = None
    seq: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_wire(cls, data: Any) -> Meta:
        if not isinstance(data, Mapping):
            raise ProtocolError("PROTOCOL", f"not the server's meta: {str(data)[:200]}")
        return _build(cls, data)
