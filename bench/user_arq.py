"""The user's path for arq on Redis: the worker's settings and the producer.

The worker runs as arq's docs run it, ``arq user_arq.WorkerSettings`` (Redis from
``BENCH_REDIS_PORT``, ``poll_delay`` 10 ms, ``max_jobs`` 50), counting completions into the
marks file in ``after_job_end``. Run as a script it is the producer: ``enqueue_job`` one at
a time, or every job at once with ``asyncio.gather`` (arq has no batch enqueue). Progress is
imitated by a pipelined SET + PUBLISH per step.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from harness import Marks, produced, run_id, run_producer
from jobs_arq import noop, progress10

REDIS = RedisSettings(
    host="127.0.0.1",
    port=int(os.environ.get("BENCH_REDIS_PORT", "6379")),
    database=int(os.environ.get("BENCH_REDIS_DB", "10")),
)
QUEUE = f"bench:{run_id()}"
_marks: list[Marks] = []


async def after_job_end(ctx: dict[str, Any]) -> None:
    if not _marks:
        _marks.append(Marks.from_env())
    _marks[0].count()


class WorkerSettings:
    functions = [noop, progress10]
    redis_settings = REDIS
    queue_name = QUEUE
    poll_delay = 0.01
    max_jobs = 50
    after_job_end = after_job_end


async def produce(jobs: int, progress: int, mode: str, timeout: float) -> dict[str, Any]:
    pool = await create_pool(REDIS, default_queue_name=QUEUE)
    name = "progress10" if progress else "noop"
    marks = Marks(os.environ["BENCH_MARKS"])
    try:
        await pool.enqueue_job(name)  # the warm-up job
        await marks.wait_async("warm", 30)
        t0 = time.time()
        async with asyncio.timeout(timeout):
            if mode == "one":
                for _ in range(jobs):
                    await pool.enqueue_job(name)
            elif mode == "gather":
                await asyncio.gather(*(pool.enqueue_job(name) for _ in range(jobs)))
            else:
                raise SystemExit(f"arq: no mode {mode}")
        t1 = time.time()
    finally:
        await pool.aclose()
    return produced(jobs, mode, t0, t1)


def main() -> None:
    run_producer(__doc__, produce)


if __name__ == "__main__":
    main()
