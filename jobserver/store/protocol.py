"""The Store interface every backend implements; workers and the web layer see only this."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from ..models import ErrorDict, Event, Job, JobStatus, ResultDict
from .claims import PerUser


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to create.

    Args:
        type: registered handler name.
        user_id: owner; only this user sees the job and its events.
        payload: handler input (JSON-able).
        max_attempts: how many times the job may run before it fails for good.
        delay_seconds: run no earlier than this many seconds from now.
        idempotency_key: a second enqueue with the same key (same user) returns the first job.
        job_id: a chosen id, else one is generated.
        message: the first event's message.
        label: a short human title (a file's name, say), for lists and searches.
        metadata: the first event's metadata (e.g. the name of the file a job reads).
    """

    type: str
    user_id: str
    payload: dict[str, Any] = field(default_factory=dict)
    max_attempts: int = 1
    delay_seconds: float = 0.0
    idempotency_key: str | None = None
    job_id: str | None = None
    message: str = "Queued"
    label: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


class ProgressUpdate(NamedTuple):
    """One progress report (a named tuple: one is made per progress event)."""

    stage: str
    progress: float
    message: str = ""
    metadata: Mapping[str, Any] | None = None
    label: str | None = None  # a new label for the job, when given


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one ``Store.prune`` call removed.

    Args:
        jobs: finished jobs deleted.
        events: events of those jobs deleted.
        through: ``pruned_through()`` after the call.
        job_ids: the deleted jobs, for whoever keeps files beside them.
    """

    jobs: int
    events: int
    through: int
    job_ids: tuple[str, ...] = ()


class Store(Protocol):
    """Durable jobs and events. Every state change writes the job and its event atomically.

    Write methods return the events they persisted (already committed), for the job queue to
    publish. ``seq`` is strictly increasing across the whole store; ``epoch`` changes only
    when the store is created anew.
    """

    @property
    def epoch(self) -> str: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def head_seq(self) -> int:
        """The last seq committed: a safe cursor to start from (nothing at or below it can
        still be rolled back)."""
        ...

    async def seq_ceiling(self) -> int:
        """The highest seq a reader may already see (committed, or being committed); a
        client's cursor above it is from elsewhere and must resync."""
        ...

    async def pruned_through(self) -> int:
        """Highest seq no longer kept; a client resuming from below it must resync."""
        ...

    async def enqueue(self, new: NewJob) -> tuple[Job, list[Event]]:
        """Create a queued job; with a known idempotency key, return that job and no event."""
        ...

    async def enqueue_many(self, news: Sequence[NewJob]) -> list[tuple[Job, list[Event]]]:
        """``enqueue`` each of ``news`` in one transaction, all or nothing, in order; the
        caller makes sure no two of them share an idempotency key."""
        ...

    async def claim(
        self, limit: int, lease_seconds: float, caps: Mapping[str, int] | None = None,
        per_user: PerUser | None = None,
    ) -> list[tuple[Job, Event]]:
        """Atomically take up to ``limit`` due queued jobs, oldest due first, leasing each to
        the caller; of a job type in ``caps``, no more than its number (a type's own
        concurrency limit, less what already runs); with ``per_user`` (the most jobs one
        user may run, and what each runs now), no more of a user's jobs than fit
        (``claims.ClaimBudget``)."""
        ...

    def on_commit(self, publish: Callable[[list[Event]], None]) -> None:
        """The contract every backend keeps (``queue.JobQueue`` relies on it, the contract
        tests check it): each committed event is given to ``publish`` exactly once, in seq
        order; never an event that did not commit, and never before it is durable; and the
        caller of a write hears back (its future, its ``done`` callback) only after the event
        it wrote was given to ``publish``."""
        ...

    def progress(
        self,
        job_id: str,
        token: str,
        update: ProgressUpdate,
        done: Callable[[Event | None, BaseException | None], None],
    ) -> None:
        """Submit a progress change now and return; ``done`` is called once it committed
        (with its event) or was rejected (with the error). A job's writes commit in the
        order they were submitted, so a caller may go on before its progress is durable."""
        ...

    async def complete(self, job_id: str, token: str, result: ResultDict) -> Event: ...

    async def fail(
        self, job_id: str, token: str, error: ErrorDict, retry_at: float | None
    ) -> Event:
        """Fail an attempt: back to queued at ``retry_at`` (job.retrying), else failed."""
        ...

    async def requeue(self, job_id: str, token: str, message: str) -> Event:
        """Give a running job back to the queue without counting the attempt (shutdown)."""
        ...

    async def cancel(self, job_id: str, user_id: str | None) -> tuple[Job, Event]: ...

    async def retry(self, job_id: str, user_id: str | None) -> tuple[Job, Event]:
        """Queue a failed or cancelled job again with a fresh set of attempts."""
        ...

    async def remove(self, job_id: str, user_id: str | None) -> tuple[Job, Event]:
        """Soft-delete a finished job (``job.removed``): gone from ``list_jobs`` and
        ``job_counts``, still read by ``get_job`` (``removed_at`` set) until pruned."""
        ...

    async def remove_finished(
        self, user_id: str, statuses: Collection[JobStatus], limit: int
    ) -> list[Event]:
        """``remove`` up to ``limit`` of ``user_id``'s jobs in ``statuses`` (finished ones),
        oldest first, in one transaction."""
        ...

    async def renew(self, leases: Mapping[str, str], lease_seconds: float) -> set[str]:
        """Extend the given ``{job_id: token}`` leases; return the ids whose lease was lost."""
        ...

    async def recover(self, *, expired_only: bool) -> list[Event]:
        """Requeue (attempts left) or fail with WORKER_LOST the jobs whose worker is gone."""
        ...

    async def get_job(self, job_id: str) -> Job | None: ...

    async def list_jobs(
        self, user_id: str, status: JobStatus | None, limit: int, offset: int,
        *, query: str | None = None,
    ) -> list[Job]:
        """``user_id``'s jobs that were not removed, newest first; ``query``: only those
        whose label or type contains it (case-insensitive)."""
        ...

    async def job_counts(self, user_id: str, query: str | None = None) -> dict[JobStatus, int]:
        """How many of ``user_id``'s jobs (not removed, matching ``query`` as in
        ``list_jobs``) are in each status."""
        ...

    async def events_after(
        self,
        since: int,
        *,
        user_id: str | None = None,
        job_id: str | None = None,
        limit: int = 1000,
    ) -> list[Event]: ...

    async def next_run_at(self, after: float | None = None) -> float | None:
        """When the earliest queued job becomes due (of those due after ``after``, when
        given), or None when there is none."""
        ...

    async def count_by_status(self) -> dict[JobStatus, int]:
        """Every user's jobs by status, removed ones left out (the ``/metrics`` gauge)."""
        ...

    async def payload_total(self, user_id: str, key: str) -> int:
        """The sum of the numbers ``payload[key]`` over ``user_id``'s kept jobs."""
        ...

    # -- plugins' own tables (declared with ``tables.Tables`` and ``tables.write_op``) ------

    async def write(self, op: str, *args: Any) -> Any:
        """Run the plugin write op ``op`` with ``args`` in the store's next transaction (it
        commits with whatever else was submitted in the same turn); returns its result."""
        ...

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of a read-only query over the plugins' tables (``?`` placeholders)."""
        ...

    async def ping(self) -> None:
        """A real, tiny durable write: returns when the store can commit, raises otherwise."""
        ...

    @property
    def problem(self) -> str | None:
        """Why writes or reads cannot be made right now, in words; None when they can.

        A store that cannot write keeps trying on its own; this says what it is waiting for.
        """
        ...

    async def prune(self, before: float, *, limit: int = 1000) -> Pruned:
        """Delete up to ``limit`` jobs that finished before ``before`` and all their events.

        Raises ``pruned_through()`` to the highest deleted seq, so a client resuming from
        below it is told to resync instead of getting a silent gap.
        """
        ...

    async def payload_values(self, key: str) -> set[str]:
        """Distinct string values of ``payload[key]`` over every kept job (the files jobs name)."""
        ...

    async def payload_named(self, key: str, values: Collection[str]) -> set[str]:
        """Which of ``values`` (at most a few hundred) a kept job's ``payload[key]`` names:
        looked up in the index a plugin declares for ``key`` (``Tables.payload_index``;
        ``key`` a plain name)."""
        ...

    async def checkpoint(self) -> int:
        """Bound the on-disk journal (SQLite: checkpoint and truncate the WAL).

        Returns the journal's size in bytes afterwards (0 where there is none).
        """
        ...
