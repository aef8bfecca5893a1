"""Job throughput of arq on Redis with a 10 ms poll (runs in the peers' environment).

Enqueues N jobs, then runs a burst worker in this process until the queue is empty.
Progress is imitated with a Redis write and a publish per step (one pipelined round trip).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker
from harness import emit_result, job_args, run_id, throughput

REDIS_DB = 9  # a database of its own; each run's queue has a name of its own (others bench too)


async def noop(ctx: dict[str, Any]) -> None:
    return None


async def progress10(ctx: dict[str, Any]) -> None:
    redis = ctx["redis"]
    key = f"progress:{ctx['job_id']}"
    for step in range(1, 11):
        data = f'{{"jobId": "{ctx["job_id"]}", "progress": {step * 10}}}'
        async with redis.pipeline(transaction=False) as pipe:
            pipe.set(key, data)
            pipe.publish("progress", data)
            await pipe.execute()


async def run(
    jobs: int, progress: int, max_jobs: int, poll_delay: float, timeout: float
) -> dict[str, Any]:
    settings = RedisSettings(host="127.0.0.1", port=6379, database=REDIS_DB)
    queue = f"bench:{run_id()}"
    pool = await create_pool(settings, default_queue_name=queue)
    completed = 0

    async def after_job_end(ctx: dict[str, Any]) -> None:
        nonlocal completed
        completed += 1

    worker = Worker(
        queue_name=queue,
        functions=[noop, progress10],
        redis_settings=settings,
        burst=True,
        poll_delay=poll_delay,
        max_jobs=max_jobs,
        handle_signals=False,
        after_job_end=after_job_end,
    )
    name = "progress10" if progress else "noop"
    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(pool.enqueue_job(name) for _ in range(jobs)))
        t1 = time.perf_counter()
        async with asyncio.timeout(timeout):
            await worker.main()
        t2 = time.perf_counter()
        await worker.close()
    finally:
        await pool.aclose()
    if completed != jobs:
        raise SystemExit(f"arq: {completed} of {jobs} jobs completed")
    return throughput(
        "arq",
        f"Redis, burst worker, poll_delay={poll_delay * 1000:g} ms, max_jobs={max_jobs}",
        jobs, progress, t0, t1, t2,
    )  # fmt: skip


def main() -> None:
    parser = job_args(__doc__)
    parser.add_argument("--max-jobs", type=int, default=10)
    parser.add_argument("--poll-delay", type=float, default=0.01)
    args = parser.parse_args()
    emit_result(
        asyncio.run(run(args.jobs, args.progress, args.max_jobs, args.poll_delay, args.timeout))
    )


if __name__ == "__main__":
    main()
