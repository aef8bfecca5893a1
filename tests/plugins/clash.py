"""Declares the stage ``measuring`` with another display name than tests.plugins.shapes."""

from __future__ import annotations

from jobserver import JobContext, Stage, job_type


@job_type("clash.measure", stages=[Stage("measuring", "Taking measurements")])
async def measure(ctx: JobContext) -> dict[str, object]:
    return {}
