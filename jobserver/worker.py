"""The worker pool: claims due jobs under a lease, runs their handlers, records the outcome."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import (
    HANDLER_ERROR,
    JOB_TIMEOUT,
    JobError,
    JobServerError,
    LeaseLost,
    ServiceUnavailable,
)
from .handlers import JobContext, JobType, Registry
from .models import Event, EventType, Job, error_dict
from .procs.runner import ProcessRunner
from .queue import JobQueue

log = logging.getLogger(__name__)

UNKNOWN_JOB_TYPE = "UNKNOWN_JOB_TYPE"
WAKE_EVENTS = frozenset({EventType.QUEUED, EventType.RETRYING})
# While the store cannot write, claims and outcomes are tried again after pauses that double
# from the first to the last of these (seconds): work resumes soon after the store does.
STORE_RETRY_PAUSES = (0.1, 2.0)
# The longest the dispatcher sleeps without claiming; also how often it asks the store when
# the next delayed job is due (one queued before this start, or whose event was missed).
IDLE_SECONDS = 5.0
# Jobs heard of by their event alone (another node's) that it keeps apart, at most.
UNSEEN_MAX = 1024


def backoff(attempt: int, base: float, cap: float) -> float:
    """Seconds to wait after failed attempt ``attempt``: exponential, capped, half jittered."""
    delay = min(cap, base * 2.0 ** max(0, attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)


@dataclass(slots=True)
class _Running:
    job: Job
    task: asyncio.Task[None]
    stop_reason: str | None = None  # "cancelled", "lease-lost" or "shutdown"
    ctx: JobContext | None = field(default=None)
    in_handler: bool = True

    def time_out(self) -> None:
        """The timer fired: stop the handler, unless it has already returned."""
        if self.in_handler:
            self.stop("timeout")

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            if self.ctx is not None:
                self.ctx.cancelled.set()
            self.task.cancel()


class WorkerPool:
    """Runs up to ``concurrency`` jobs at once in this process.

    Args:
        events: the job queue, through which every outcome is persisted and published.
        registry: the job types this pool can run.
        concurrency: most jobs running at once.
        lease_seconds: lease length; renewed every third of it while a job runs.
        grace_seconds: how long ``stop`` waits for running jobs before requeueing them.
        processes: runs ``process=True`` job types in the worker processes; each such type
            runs at most as many jobs at once as there are processes.
        max_running_per_user: most jobs of one user running at once in this pool (0: no
            limit), so one user's backlog cannot take every slot while another user waits.
    """

    def __init__(
        self,
        events: JobQueue,
        registry: Registry,
        *,
        concurrency: int,
        lease_seconds: float,
        grace_seconds: float,
        processes: ProcessRunner | None = None,
        max_running_per_user: int = 0,
    ) -> None:
        self.events = events
        self.registry = registry
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.grace_seconds = grace_seconds
        self.running: dict[str, _Running] = {}
        self.recovered = 0
        self._wake = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._busy = 0  # jobs whose handler is running
        self._busy_by_type: dict[str, int] = {}
        self.max_running_per_user = max_running_per_user
        self._busy_by_user: dict[str, int] = {}
        # Types with a concurrency limit of their own: a claim takes no more than they have left.
        self._capped = {t.name: t.options.concurrency for t in registry.types()
                        if t.options.concurrency is not None}  # fmt: skip
        self.processes = processes
        for t in registry.types():
            if t.options.process and processes is not None:
                self._capped[t.name] = min(t.options.concurrency or processes.size,
                                           processes.size)  # fmt: skip
        self._claiming = False
        self._tasks: list[asyncio.Task[None]] = []
        # The earliest run time of a job queued for later that this pool knows of (queued
        # here, or read from the store at most every IDLE_SECONDS), so an idle dispatcher
        # needs no read after every claim.
        self._next_due: float | None = None
        self._due_read_at = -IDLE_SECONDS
        # Jobs queued (or retrying) that this pool heard of by their event alone, as it hears
        # of another node's: the event has no run time, so the next idle round reads it.
        self._unseen: set[str] = set()
        # Whether due jobs may wait for a capped type's or a user's running job to end:
        # then such an end wakes the dispatcher.
        self._blocked = False
        events.bus.add_tap(self._on_event)
        events.on_queued(self._queued)

    @property
    def free_slots(self) -> int:
        """Jobs this pool could start right now."""
        return max(0, self.concurrency - self._busy) if self._claiming else 0

    @property
    def alive(self) -> bool:
        return self._claiming and all(not t.done() for t in self._tasks)

    async def start(self) -> None:
        """Recover jobs a previous process left active, then start claiming."""
        self.recovered += len(await self.events.recover(expired_only=False))
        self._claiming = True
        self._tasks = [
            asyncio.create_task(self._dispatch(), name="worker-dispatch"),
            asyncio.create_task(self._heartbeat(), name="worker-heartbeat"),
        ]

    async def stop(self) -> None:
        """Stop claiming, let running jobs finish within the grace period, requeue the rest."""
        self._claiming = False
        self._wake.set()
        self._slot_free.set()
        dispatch, heartbeat = self._tasks
        # The dispatcher is not cancelled: a claim in flight would commit with nobody to run it.
        await asyncio.gather(dispatch, return_exceptions=True)
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)
        if self.running:
            log.info(
                "waiting up to %.1fs for %d running job(s)", self.grace_seconds, len(self.running)
            )
            await asyncio.wait([r.task for r in self.running.values()], timeout=self.grace_seconds)
        for running in list(self.running.values()):
            running.stop("shutdown")
        if self.running:
            await asyncio.gather(*(r.task for r in self.running.values()), return_exceptions=True)

    # -- claiming ---------------------------------------------------------------------------

    def _queued(self, job: Job) -> None:
        self._unseen.discard(job.id)  # its event came first; its run time is here
        self._later(job.run_at)

    def _later(self, run_at: float) -> None:
        """A job becomes due at ``run_at``: wake up then, if that is the earliest."""
        if run_at > time.time() and (self._next_due is None or run_at < self._next_due):
            self._next_due = run_at

    def _at_a_cap(self) -> bool:
        if any(self._busy_by_type.get(t, 0) >= n for t, n in self._capped.items()):
            return True
        limit = self.max_running_per_user
        return bool(limit) and any(n >= limit for n in self._busy_by_user.values())

    def _on_event(self, event: Event) -> None:
        if event.type in WAKE_EVENTS:
            if event.job_id not in self.running:  # not this pool's own retry (_later knows)
                self._unseen.add(event.job_id)
                if len(self._unseen) > UNSEEN_MAX:  # a flood: one read covers them all
                    self._unseen.clear()
                    self._due_read_at = -IDLE_SECONDS
            self._wake.set()
        elif event.type is EventType.CANCELLED:
            running = self.running.get(event.job_id)
            if running is not None:
                running.stop("cancelled")

    async def _dispatch(self) -> None:
        pause = STORE_RETRY_PAUSES[0]
        while self._claiming:
            # A job whose handler returned no longer takes a slot while its outcome is written,
            # so the next claim can share a commit with that write.
            free = self.free_slots
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            self._wake.clear()
            try:
                caps = {t: n - self._busy_by_type.get(t, 0) for t, n in self._capped.items()}
                per_user = ((self.max_running_per_user, dict(self._busy_by_user))
                            if self.max_running_per_user else None)  # fmt: skip
                # A job that ends while the claim is out frees room the claim did not see:
                # its end must wake the next round, or due jobs wait out the idle time.
                self._blocked = bool(caps) or per_user is not None
                jobs = await self.events.claim(free, self.lease_seconds, caps or None, per_user)
                for job in jobs:
                    self._unseen.discard(job.id)  # due: claimed before its hook ran, say
                    self._start(job)
                if len(jobs) < free:
                    self._blocked = self._blocked and self._at_a_cap()
                    await self._idle()
                self._blocked = False
                pause = STORE_RETRY_PAUSES[0]
            except Exception as exc:  # the dispatcher never dies: the store comes back
                self._blocked = False
                if pause == STORE_RETRY_PAUSES[0]:  # once per outage, not once per retry
                    log.warning("claiming jobs failed (%s); trying again until it works", exc,
                                exc_info=not isinstance(exc, ServiceUnavailable))  # fmt: skip
                await asyncio.sleep(pause)
                pause = min(STORE_RETRY_PAUSES[1], pause * 2)

    async def _idle(self) -> None:
        """Sleep until woken by a new job, the end of a job that held a cap (``_blocked``),
        or the next delayed job's run time (at most IDLE_SECONDS)."""
        now = time.time()
        if self._next_due is not None and self._next_due <= now:
            self._next_due = None  # it is due: claim it
            return
        if self._unseen:
            # A job of this node committed with the claim is answered in this turn too: its
            # queued hook (``_queued``) runs first and says when it is due.
            await asyncio.sleep(0)
        if self._unseen or now - self._due_read_at >= IDLE_SECONDS:
            self._unseen.clear()
            self._due_read_at = now
            due = await self.events.store.next_run_at(after=now)
            if due is not None:
                self._later(due)
        timeout = IDLE_SECONDS if self._next_due is None else self._next_due - time.time()
        timeout = min(IDLE_SECONDS, max(0.0, timeout))
        if timeout <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    async def _heartbeat(self) -> None:
        interval = self.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            leases = {
                job_id: r.job.lease_token
                for job_id, r in self.running.items()
                if r.job.lease_token is not None
            }
            try:
                lost = (
                    await self.events.renew(leases, self.lease_seconds) if leases else set()
                )
                # Shielded: recovered events must be published even if we are being stopped.
                recovered = await asyncio.shield(self.events.recover(expired_only=True))
                self.recovered += len(recovered)
            except ServiceUnavailable as exc:
                log.warning("renewing leases failed: %s", exc)
                continue
            except JobServerError:
                log.exception("renewing leases failed")
                continue
            for job_id in lost:
                running = self.running.get(job_id)
                if running is not None:
                    log.warning("lost the lease on job %s; stopping it", job_id)
                    running.stop("lease-lost")

    # -- running ----------------------------------------------------------------------------

    def _start(self, job: Job) -> None:
        task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
        self.running[job.id] = _Running(job, task)
        self._busy += 1
        self._busy_by_type[job.type] = self._busy_by_type.get(job.type, 0) + 1
        self._busy_by_user[job.user_id] = self._busy_by_user.get(job.user_id, 0) + 1

    def _release(self, running: _Running) -> None:
        """The handler is done (or never ran): free its slot, once."""
        if running.in_handler:
            running.in_handler = False
            self._busy -= 1
            self._busy_by_type[running.job.type] -= 1
            if self._blocked:  # a due job may have waited for this one's type or user
                self._wake.set()
            left = self._busy_by_user[running.job.user_id] - 1
            if left:
                self._busy_by_user[running.job.user_id] = left
            else:
                del self._busy_by_user[running.job.user_id]
            self._slot_free.set()

    def _finished(self, job_id: str) -> None:
        running = self.running.pop(job_id, None)
        if running is not None:
            self._release(running)

    async def _run(self, job: Job) -> None:
        token = job.lease_token
        assert token is not None
        try:
            await self._attempt(job, token)
        except LeaseLost:
            log.info("job %s: write rejected, lease no longer held", job.id)
        except asyncio.CancelledError:
            await self._stopped(job, token)
        except Exception:
            log.exception("job %s: recording its outcome failed", job.id)
        finally:
            self._finished(job.id)

    async def _attempt(self, job: Job, token: str) -> None:
        try:
            job_type = self.registry.get(job.type)
        except JobServerError as exc:
            error = error_dict(UNKNOWN_JOB_TYPE, exc.message, False)
            await _record(lambda: self.events.fail(job.id, token, error))
            return
        ctx = JobContext(job, self.events, token, self.registry.stages_of(job_type.name))
        running = self.running[job.id]
        running.ctx = ctx
        limit = job_type.options.timeout
        process = job_type.options.process  # timed by the runner, from when a process is free
        # A plain timer, not asyncio.timeout(): this runs for every job, so it must be cheap.
        loop = asyncio.get_running_loop()
        timer = None if limit is None or process else loop.call_later(limit, running.time_out)
        started = time.perf_counter()
        try:
            try:
                if process:
                    result = await self._in_process(job_type, ctx)
                else:
                    result = await job_type.handler(ctx)
            finally:
                self._release(running)
                if timer is not None:
                    timer.cancel()
        except JobError as exc:
            await self._failed(job, token, job_type, exc.code, exc.message, exc.recoverable)
            return
        except asyncio.CancelledError:
            if running.stop_reason != "timeout":
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            message = f"The job took longer than its {limit:g}s limit"
            await self._failed(job, token, job_type, JOB_TIMEOUT, message, True)
            return
        except LeaseLost:
            raise
        except Exception as exc:
            log.exception("job %s: handler %s raised", job.id, job.type)
            await self._failed(
                job, token, job_type, HANDLER_ERROR, f"{type(exc).__name__}: {exc}", True
            )
            return
        outcome: dict[str, Any] = dict(result or {})
        outcome.setdefault("processingTimeMs", round((time.perf_counter() - started) * 1000, 1))
        await _record(lambda: self.events.complete(job.id, token, outcome))

    async def _in_process(self, job_type: JobType, ctx: JobContext) -> Any:
        if self.processes is None:
            raise JobError(HANDLER_ERROR, "this server runs no worker processes",
                           recoverable=False)  # fmt: skip
        return await self.processes.run(job_type, ctx)

    async def _failed(
        self, job: Job, token: str, job_type: JobType, code: str, message: str, recoverable: bool
    ) -> None:
        error = error_dict(code, message, recoverable)
        if recoverable and job.attempts < job.max_attempts:
            opts = job_type.options
            retry_at = time.time() + backoff(job.attempts, opts.backoff_base, opts.backoff_max)
            self._later(retry_at)
            await _record(lambda: self.events.fail(job.id, token, error, retry_at))
        else:
            await _record(lambda: self.events.fail(job.id, token, error))

    async def _stopped(self, job: Job, token: str) -> None:
        """The task was cancelled: by a user (already recorded), a lost lease, or shutdown."""
        running = self.running.get(job.id)
        reason = running.stop_reason if running else None
        if reason == "shutdown":
            with contextlib.suppress(LeaseLost):
                await self.events.requeue(job.id, token, "Requeued: the server is shutting down")
        elif reason is None:
            raise asyncio.CancelledError


async def _record(write: Callable[[], Awaitable[object]]) -> None:
    """Write a job's outcome, again and again while the store cannot write (the job keeps
    its slot in ``running``, so its lease is renewed once the store is back). An outcome
    that did commit before its answer was lost is fenced by the lease: LeaseLost."""
    pause = STORE_RETRY_PAUSES[0]
    while True:
        try:
            await write()
            return
        except ServiceUnavailable as exc:
            if pause == STORE_RETRY_PAUSES[0]:
                log.warning("recording a job's outcome failed (%s); trying again", exc)
            await asyncio.sleep(pause)
            pause = min(STORE_RETRY_PAUSES[1], pause * 2)
