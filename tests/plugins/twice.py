"""Declares ``shapes.draw`` again, which tests.plugins.shapes already declares."""

from __future__ import annotations

from jobserver import JobContext, job_type


@job_type("shapes.draw")
async def draw_again(ctx: JobContext) -> dict[str, object]:
    return {}
