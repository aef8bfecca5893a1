"""Two job types with stages of their own, declared with the public API only."""

from __future__ import annotations

import asyncio
from typing import Any

from jobserver import InvalidPayload, JobContext, JobError, Stage, job_type

MEASURING = Stage("measuring", "Measuring the shape")
DRAWING = Stage("drawing", "Drawing it")


def check_shape(payload: dict[str, Any]) -> dict[str, Any]:
    sides = payload.get("sides")
    if not isinstance(sides, int) or not 3 <= sides <= 12:
        raise InvalidPayload("payload.sides must be a whole number from 3 to 12")
    return {"sides": sides, "fail": bool(payload.get("fail", False))}


@job_type(
    "shapes.draw", display_name="Draw a shape", stages=[MEASURING, DRAWING], max_attempts=2,
    backoff=0.05, backoff_max=0.1, payload=check_shape, label=lambda p: f"{p['sides']}-gon",
)  # fmt: skip
async def draw(ctx: JobContext) -> dict[str, Any]:
    ctx.log.info("drawing %d sides", ctx.payload["sides"])
    await ctx.progress(MEASURING, 30, "Measured", {"sides": ctx.payload["sides"]})
    if ctx.payload["fail"] and ctx.attempt == 1:
        raise JobError("SHAPE_WOBBLED", "The shape wobbled; trying again", recoverable=True)
    await ctx.progress(DRAWING, 80, "Drawn", label=f"{ctx.payload['sides']}-gon, drawn")
    return {"title": f"A {ctx.payload['sides']}-sided shape", "attempt": ctx.attempt}


@job_type("shapes.slow", stages=[MEASURING], concurrency=1, timeout=30)
async def slow(ctx: JobContext) -> dict[str, Any]:
    await ctx.progress(MEASURING, 10, "Measuring slowly")
    await asyncio.sleep(float(ctx.payload.get("seconds", 0.3)))
    return {}


@job_type("shapes.rogue")
async def rogue(ctx: JobContext) -> dict[str, Any]:
    """Reports a stage it never declared: the progress call refuses it."""
    await ctx.progress("painting", 50)
    return {}
