"""The docs' first job type (docs/job-types.md), label function as written there."""

from __future__ import annotations

from jobserver import JobContext, Stage, job_type

FETCHING = Stage("fetching", "Fetching the page")


@job_type("web.wordcount", display_name="Word count", stages=[FETCHING], timeout=60,
          max_attempts=3, label=lambda p: p["url"])  # fmt: skip
async def wordcount(ctx: JobContext) -> dict[str, object]:
    await ctx.progress(FETCHING, 10, f"Fetching {ctx.payload['url']}")
    return {"title": "0 words", "words": 0}
