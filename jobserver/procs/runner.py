"""Runs a ``process=True`` job type's handler in a worker process, for the worker pool.

The handler is named to the process as ``module:qualified.name`` (what ``@job_type``
decorated), so it must be a module-level function of an importable module. Its attempt holds
one process from when the process is free until it answers: the type's timeout counts from
the call (not the wait for a process) and kills the process when it passes (``JOB_TIMEOUT``,
recoverable); a call over its memory cap fails with ``JOB_MEMORY``, a process that dies with
``PROCESS_CRASHED``. Progress the handler reports goes through the job's ``JobContext``, in
order; reports of one stage that arrive faster than they are written coalesce (newest wins).
Stopping the attempt (cancel, lost lease, shutdown) sets the handler's ``ctx.cancelled`` and
kills its process if it has not returned ``STOP_GRACE_SECONDS`` later.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping
from typing import Any

from ..errors import HANDLER_ERROR, JOB_MEMORY, JOB_TIMEOUT, PROCESS_CRASHED, JobError
from ..handlers import JobContext
from ..jobtypes import JobType
from .child import lookup
from .pool import Failures, Message, ProcessPool, exit_text

STOP_GRACE_SECONDS = 1.0


class HandlerFailures(Failures):
    """A handler's failures, with the codes documented for process job types."""

    def __init__(self, memory_mb: int) -> None:
        self.memory_mb = memory_mb

    def memory(self) -> JobError:
        return JobError(JOB_MEMORY, f"The job needed more memory than its {self.memory_mb} MB "
                        "cap; its process was replaced")  # fmt: skip

    def ended(self, status: int) -> JobError:
        return JobError(PROCESS_CRASHED, f"The job's process ended unexpectedly "
                        f"({exit_text(status)})", recoverable=True)  # fmt: skip

    def exception(self, name: str, message: str) -> JobError:
        return JobError(HANDLER_ERROR, message, recoverable=True)


def target_of(job_type: JobType) -> str:
    """How a worker process finds the handler: ``module:qualified.name``."""
    handler = job_type.handler
    return f"{handler.__module__}:{getattr(handler, '__qualname__', '?')}"


def check(job_type: JobType) -> None:
    """A process job type's handler is a plain function a worker process can import by
    name; ValueError saying why not."""
    handler = job_type.handler
    where = f"process=True job type {job_type.name!r}"
    if inspect.iscoroutinefunction(handler):
        raise ValueError(f"{where}: its handler must be a plain def, not async")
    target = target_of(job_type)
    module = target.partition(":")[0]
    if module == "__main__" or "<locals>" in target:
        raise ValueError(f"{where}: its handler must be a module-level function of an "
                         f"importable module (it is {target})")  # fmt: skip
    try:
        found = lookup(target)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{where}: cannot find its handler as {target}: {exc}") from None
    if found is not handler and getattr(found, "handler", None) is not handler:
        raise ValueError(f"{where}: {target} is not its handler")


class _Progress:
    """Carries a call's progress frames to the job's context, in order, newest of a stage
    winning while the previous write is being made."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self.pending: list[Message] = []
        self._nudge: asyncio.Future[None] | None = None

    def on_message(self, message: Message) -> None:
        if message.get("type") != "progress":
            return
        last = self.pending[-1] if self.pending else None
        if last is not None and last.get("stage") == message.get("stage"):
            if message.get("label") is None:
                message["label"] = last.get("label")
            self.pending[-1] = message
        else:
            self.pending.append(message)
        self._wake()

    def _wake(self, *_: Any) -> None:
        if self._nudge is not None and not self._nudge.done():
            self._nudge.set_result(None)

    async def follow(self, future: asyncio.Future[Message]) -> Message:
        """Report progress until the call's answer has come (after its last progress)."""
        future.add_done_callback(self._wake)
        loop = asyncio.get_running_loop()
        while True:
            while self.pending:
                m = self.pending.pop(0)
                metadata = m.get("metadata")
                await self.ctx.progress(
                    str(m.get("stage")), float(m.get("percent") or 0), str(m.get("message") or ""),
                    metadata if isinstance(metadata, dict) else None, label=m.get("label"),
                )  # fmt: skip
            if future.done():
                return future.result()
            self._nudge = loop.create_future()
            await self._nudge


class ProcessRunner:
    """Runs process job types in ``pool``.

    Args:
        pool: the server's worker processes.
        memory_mb: a call's address-space cap when its type sets none.
    """

    def __init__(self, pool: ProcessPool, memory_mb: int) -> None:
        self.pool = pool
        self.memory_mb = memory_mb

    @property
    def size(self) -> int:
        return self.pool.size

    async def run(self, job_type: JobType, ctx: JobContext) -> Mapping[str, Any]:
        """One attempt of ``ctx.job`` in a worker process; its result or a coded JobError."""
        options = job_type.options
        memory = options.memory_mb or self.memory_mb
        child = await self.pool.acquire(job_type.name, options.concurrency)
        try:
            await child.until_ready()
        except BaseException:
            await asyncio.shield(self.pool.release(child))
            raise
        job = ctx.job
        request = {
            "id": self.pool.next_id(), "target": target_of(job_type), "memoryMb": memory,
            "payload": ctx.payload, "jobId": job.id, "jobType": job.type, "label": job.label,
            "attempt": ctx.attempt, "maxAttempts": ctx.max_attempts,
            "stages": list(job_type.stage_ids()),
        }  # fmt: skip
        progress = _Progress(ctx)
        future = child.start(request, progress.on_message, HandlerFailures(memory))
        try:
            async with asyncio.timeout(options.timeout):
                value = child.answer(await progress.follow(future))
        except TimeoutError:
            child.healthy = False
            await asyncio.shield(self.pool.release(child))
            message = f"The job took longer than its {options.timeout:g}s limit; its process "
            message += "was stopped"
            raise JobError(JOB_TIMEOUT, message, recoverable=True) from None
        except asyncio.CancelledError:
            self.pool.stop_soon(child, future, STOP_GRACE_SECONDS)
            raise
        except BaseException:
            if not future.done():
                child.healthy = False  # the progress write failed mid-call: stop the work
            await asyncio.shield(self.pool.release(child))
            raise
        await asyncio.shield(self.pool.release(child))
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise JobError(HANDLER_ERROR, f"the handler returned {type(value).__name__}, "
                           "not a mapping", recoverable=False)  # fmt: skip
        return value
