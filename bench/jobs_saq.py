"""Job throughput of SAQ on Redis (runs in the peers' environment).

Enqueues N jobs, then runs a worker in this process until every job has completed.
Progress uses SAQ's own API (``job.update(progress=...)``: a Redis write and a publish).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from harness import emit_result, job_args, run_id, throughput
from saq import Queue, Worker

REDIS_DB = 9  # a database of its own; each run's queue has a name of its own (others bench too)


async def noop(ctx: dict[str, Any]) -> None:
    return None


async def progress10(ctx: dict[str, Any]) -> None:
    job = ctx["job"]
    for step in range(1, 11):
        await job.update(progress=step / 10)


async def run(jobs: int, progress: int, concurrency: int, timeout: float) -> dict[str, Any]:
    url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    queue = Queue.from_url(url, name=f"bench-{run_id()}")
    completed = 0
    done = asyncio.Event()

    async def after_process(ctx: dict[str, Any]) -> None:
        nonlocal completed
        completed += 1
        if completed >= jobs:
            done.set()

    worker = Worker(
        queue,
        functions=[noop, progress10],
        concurrency=concurrency,
        after_process=after_process,
    )
    name = "progress10" if progress else "noop"
    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(queue.enqueue(name) for _ in range(jobs)))
        t1 = time.perf_counter()
        running = asyncio.create_task(worker.start())
        async with asyncio.timeout(timeout):
            await done.wait()
        t2 = time.perf_counter()
        await worker.stop()
        await running
    finally:
        await queue.disconnect()
    return throughput(
        "saq",
        f"Redis, worker concurrency={concurrency}",
        jobs, progress, t0, t1, t2,
    )  # fmt: skip


def main() -> None:
    parser = job_args(__doc__)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    emit_result(asyncio.run(run(args.jobs, args.progress, args.concurrency, args.timeout)))


if __name__ == "__main__":
    main()
