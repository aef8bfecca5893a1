"""Demo job types for trying the server, tests and benchmarks (enabled by --demo-jobs).

Declared with the public API only, as a user's own module would be.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from .errors import InvalidPayload, JobError
from .handlers import JobContext
from .jobtypes import job_type
from .models import JobStage


def _number(payload: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = payload.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidPayload(f"payload.{key} must be a number from {low} to {high}")
    return float(value)


def check_sleep(payload: dict[str, Any]) -> dict[str, Any]:
    seconds = _number(payload, "seconds", 1.0, 0.0, 3600.0)
    steps = int(_number(payload, "steps", 5, 0, 10_000))
    return {**payload, "seconds": seconds, "steps": steps}


@job_type("demo.sleep", display_name="Sleep (demo)", max_attempts=1, payload=check_sleep,
          label=lambda p: f"Sleep {p['seconds']:g}s")  # fmt: skip
async def sleep(ctx: JobContext) -> Mapping[str, Any]:
    """Sleep ``seconds`` in ``steps`` steps, reporting progress after each."""
    seconds, steps = float(ctx.payload["seconds"]), int(ctx.payload["steps"])
    for step in range(1, steps + 1):
        await asyncio.sleep(seconds / steps)
        await ctx.progress(JobStage.PROCESSING, 100.0 * step / steps, f"Step {step} of {steps}")
    if steps == 0 and seconds:
        await asyncio.sleep(seconds)
    return {"title": f"Slept {seconds:g}s", "steps": steps}


def check_fail(payload: dict[str, Any]) -> dict[str, Any]:
    code = payload.get("code", "DEMO_FAILURE")
    if not isinstance(code, str) or not code:
        raise InvalidPayload("payload.code must be a non-empty string")
    recoverable = payload.get("recoverable", False)
    if not isinstance(recoverable, bool):
        raise InvalidPayload("payload.recoverable must be true or false")
    seconds = _number(payload, "seconds", 0.0, 0.0, 3600.0)
    attempts = int(_number(payload, "failAttempts", 1000, 1, 1000))
    return {**payload, "code": code, "recoverable": recoverable, "seconds": seconds,
            "failAttempts": attempts}  # fmt: skip


@job_type("demo.fail", display_name="Fail (demo)", max_attempts=1, backoff=0.2, backoff_max=2.0,
          payload=check_fail, label=lambda p: f"Fail with {p['code']}")  # fmt: skip
async def fail(ctx: JobContext) -> Mapping[str, Any]:
    """Fail with ``code`` (recoverable or not), after ``seconds``; only in the first
    ``failAttempts`` attempts (all unless given), succeeding after them."""
    if ctx.attempt > int(ctx.payload.get("failAttempts", 1000)):
        await ctx.progress(JobStage.PROCESSING, 100.0, "Worked this time")
        return {"title": f"Succeeded on attempt {ctx.attempt}"}
    await ctx.progress(JobStage.PROCESSING, 50.0, "About to fail")
    await asyncio.sleep(float(ctx.payload["seconds"]))
    raise JobError(
        str(ctx.payload["code"]),
        str(ctx.payload.get("message", "This demo job fails on purpose")),
        recoverable=bool(ctx.payload["recoverable"]),
    )
