"""``nodes.work`` for the multi-node tests (tests/test_pg_nodes.py): it says which node ran it.

Each test node is started with ``TEST_NODE_NAME`` in its environment. A job reports
``steps`` progress events ``delay`` seconds apart and returns the name of the node that
ran it; with ``hold`` its first attempt waits (up to ``hold`` seconds) before its steps,
so a test can kill the node that runs it while it is running.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from jobserver import JobContext, Stage, job_type

WORKING = Stage("working", "Working")


@job_type("nodes.work", stages=[WORKING], max_attempts=3, backoff=0.05, backoff_max=0.1,
          timeout=120)  # fmt: skip
async def work(ctx: JobContext) -> dict[str, Any]:
    hold = float(ctx.payload.get("hold", 0))
    if hold and ctx.attempt == 1:
        await ctx.progress(WORKING, 1, "Held")
        await asyncio.sleep(min(hold, 90.0))
    steps, delay = int(ctx.payload.get("steps", 0)), float(ctx.payload.get("delay", 0))
    for step in range(1, steps + 1):
        if delay:
            await asyncio.sleep(delay)
        await ctx.progress(WORKING, 100.0 * step / steps, f"Step {step}")
    return {"node": os.environ.get("TEST_NODE_NAME", ""), "attempt": ctx.attempt}
