"""Each state change of a job as a pure function: old Job in, new Job and event type out.

Backends load a job, apply one of these, then save the job and append its event in one
transaction, so every backend follows the same rules.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from ..errors import IllegalTransition, InvalidPayload, JobNotFound, LeaseLost
from ..models import (
    SERVER_STAGES,
    TERMINAL,
    ErrorDict,
    EventType,
    Job,
    JobStage,
    JobStatus,
    ResultDict,
    check_transition,
    error_dict,
)
from .protocol import NewJob

Change = tuple[Job, EventType]

WORKER_LOST = "WORKER_LOST"


def _to(job: Job, status: JobStatus, **fields: Any) -> Job:
    check_transition(job.status, status)
    return job.evolve(status=status, **fields)


def _released(job: Job, status: JobStatus, **fields: Any) -> Job:
    """Leave ``active`` (or stay out of it): the lease goes, so the old worker's writes fail."""
    return _to(job, status, lease_token=None, lease_expires_at=None, **fields)


def new_job_id(now: float) -> str:
    """32 hex digits: milliseconds since the epoch, then 80 random bits.

    Ids that sort by creation keep inserts at the end of the primary-key and per-job event
    indexes instead of scattering them, which makes each commit write fewer pages.
    """
    return f"{int(now * 1000):012x}{secrets.randbits(80):020x}"


def new_job(new: NewJob, now: float) -> Change:
    if new.max_attempts < 1:
        raise InvalidPayload("maxAttempts must be at least 1")
    if new.delay_seconds < 0:
        raise InvalidPayload("delaySeconds must not be negative")
    job = Job(
        id=new.job_id or new_job_id(now),
        type=new.type,
        user_id=new.user_id,
        payload=dict(new.payload),
        label=new.label,
        message=new.message,
        metadata=dict(new.metadata),
        max_attempts=new.max_attempts,
        created_at=now,
        run_at=now + new.delay_seconds,
        idempotency_key=new.idempotency_key,
    )
    return job, EventType.QUEUED


def owned(job: Job | None, job_id: str, user_id: str | None) -> Job:
    """The job, if it exists, was not removed and (when ``user_id`` is given) belongs to that
    user."""
    if (
        job is None
        or job.removed_at is not None
        or (user_id is not None and job.user_id != user_id)
    ):
        raise JobNotFound(f"no job {job_id}")
    return job


def leased(job: Job | None, job_id: str, token: str) -> Job:
    """The job, if the caller still holds its lease; otherwise the write is fenced off."""
    if job is None:
        raise JobNotFound(f"no job {job_id}")
    if job.status is not JobStatus.ACTIVE or job.lease_token != token:
        raise LeaseLost(f"job {job_id} is no longer leased to this worker")
    return job


def claimed(job: Job, token: str, lease_seconds: float, now: float) -> Change:
    attempt = job.attempts + 1
    return _to(
        job,
        JobStatus.ACTIVE,
        stage=JobStage.INITIALIZING,
        progress=0.0,
        message=f"Started (attempt {attempt} of {job.max_attempts})",
        error=None,
        attempts=attempt,
        started_at=now,
        lease_token=token,
        lease_expires_at=now + lease_seconds,
    ), EventType.PROGRESS


def check_handler_stage(stage: str) -> None:
    """Handlers report working stages; queued and the terminal ones are the server's."""
    if stage in SERVER_STAGES:
        raise InvalidPayload(f"stage {stage} is set by the server, not a handler")


# A progress update's fields in ProgressUpdate's order; the SQLite writer makes a plain tuple
# (one per event: a named tuple's Python ``__new__`` costs), PostgreSQL passes the named tuple.
ProgressFields = tuple[str, float, str, Mapping[str, Any] | None, str | None]


def progressed(job: Job, update: ProgressFields) -> Change:
    stage, percent, message, metadata, label = update
    check_handler_stage(stage)
    return job.evolve(
        stage=stage,
        progress=min(100.0, max(0.0, float(percent))),
        message=message,
        metadata=dict(metadata) if metadata is not None else job.metadata,
        label=job.label if label is None else label,
    ), EventType.PROGRESS


def completed(job: Job, result: ResultDict, now: float) -> Change:
    return _released(
        job,
        JobStatus.COMPLETED,
        stage=JobStage.COMPLETED,
        progress=100.0,
        message="Completed",
        result=result,
        finished_at=now,
    ), EventType.COMPLETED


def failed(job: Job, error: ErrorDict, retry_at: float | None, now: float) -> Change:
    if retry_at is not None and job.attempts < job.max_attempts:
        wait = max(0.0, retry_at - now)
        return _released(
            job,
            JobStatus.QUEUED,
            stage=JobStage.QUEUED,
            message=f"Retrying in {wait:.1f}s: {error['message']}",
            error=error,
            run_at=retry_at,
        ), EventType.RETRYING
    return _released(
        job,
        JobStatus.FAILED,
        stage=JobStage.FAILED,
        message=error["message"],
        error=error,
        finished_at=now,
    ), EventType.FAILED


def requeued(job: Job, message: str, now: float) -> Change:
    return _released(
        job,
        JobStatus.QUEUED,
        stage=JobStage.QUEUED,
        progress=0.0,
        message=message,
        attempts=max(0, job.attempts - 1),
        run_at=now,
    ), EventType.QUEUED


def cancelled(job: Job, now: float) -> Change:
    return _released(
        job,
        JobStatus.CANCELLED,
        stage=JobStage.CANCELLED,
        message="Cancelled",
        finished_at=now,
    ), EventType.CANCELLED


def retried(job: Job, now: float) -> Change:
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise IllegalTransition(f"only a failed or cancelled job can be retried, not {job.status}")
    return _to(
        job,
        JobStatus.QUEUED,
        stage=JobStage.QUEUED,
        progress=0.0,
        message="Queued again",
        result=None,
        error=None,
        attempts=0,
        started_at=None,
        finished_at=None,
        run_at=now,
    ), EventType.QUEUED


def removed(job: Job, now: float) -> Change:
    """A finished job its owner removed: kept (its events too) until retention prunes it, but
    gone from lists and counts. Its status and stage stay what they were."""
    if job.status not in TERMINAL:
        raise IllegalTransition(f"only a finished job can be removed; this one is {job.status}")
    return job.evolve(removed_at=now, message="Removed"), EventType.REMOVED


def worker_lost(job: Job, now: float) -> Change:
    """A job left active by a worker that is gone: requeue if attempts remain, else fail."""
    if job.attempts < job.max_attempts:
        error = error_dict(WORKER_LOST, "The worker running this job stopped; retrying", True)
        return failed(job, error, now, now)
    error = error_dict(WORKER_LOST, "The worker running this job stopped, no attempts left", False)
    return failed(job, error, None, now)
