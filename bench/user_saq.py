"""The user's path for SAQ on Redis: the worker's settings and the producer.

The worker runs as SAQ's docs run it, ``saq user_saq.settings`` (Redis URL from
``BENCH_REDIS_URL``, concurrency from ``BENCH_CONCURRENCY``), counting completions into the
marks file in ``after_process``. Run as a script it is the producer: ``queue.enqueue`` one
at a time, or every job at once with ``asyncio.gather`` (SAQ has no batch enqueue).
Progress uses SAQ's own ``job.update``.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from harness import Marks, produced, run_id, run_producer
from jobs_saq import noop, progress10
from saq import Queue

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")
QUEUE = f"bench-{run_id()}"
_marks: list[Marks] = []


async def after_process(ctx: dict[str, Any]) -> None:
    if not _marks:
        _marks.append(Marks.from_env())
    _marks[0].count()


settings = {
    "queue": Queue.from_url(URL, name=QUEUE),
    "functions": [noop, progress10],
    "concurrency": int(os.environ.get("BENCH_CONCURRENCY", "50")),
    "after_process": after_process,
}


async def produce(jobs: int, progress: int, mode: str, timeout: float) -> dict[str, Any]:
    queue = Queue.from_url(URL, name=QUEUE)
    await queue.connect()
    name = "progress10" if progress else "noop"
    marks = Marks(os.environ["BENCH_MARKS"])
    try:
        await queue.enqueue(name)  # the warm-up job
        await marks.wait_async("warm", 30)
        t0 = time.time()
        async with asyncio.timeout(timeout):
            if mode == "one":
                for _ in range(jobs):
                    await queue.enqueue(name)
            elif mode == "gather":
                await asyncio.gather(*(queue.enqueue(name) for _ in range(jobs)))
            else:
                raise SystemExit(f"saq: no mode {mode}")
        t1 = time.time()
    finally:
        await queue.disconnect()
    return produced(jobs, mode, t0, t1)


def main() -> None:
    run_producer(__doc__, produce)


if __name__ == "__main__":
    main()
