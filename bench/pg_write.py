"""The PostgreSQL store's write path in-process (no HTTP): a microbench for one node.

``enqueue``: ``store.enqueue`` one at a time, its latency (p50, p99). ``user``: the same while
8 workers claim, report 10 progress each and complete (the user's path without the web
layer): enqueues per second. ``progress``: 8 claimed jobs each reporting progress with up to
32 in flight, as handlers do: events per second. Each run uses a schema of its own, dropped
afterwards; every loop is bounded in count and time.

    .venv/bin/python bench/pg_write.py [--jobs 300] [--progress 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

import asyncpg
from harness import percentile

from jobserver.models import JobStage
from jobserver.store import NewJob, ProgressUpdate
from jobserver.store.postgres import PostgresStore

URL = "postgresql://postgres@127.0.0.1:5432/test"
WORKERS = 8
IN_FLIGHT = 32
LIMIT_SECONDS = 60.0


async def _store() -> PostgresStore:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    store = PostgresStore(URL, node_id=f"{schema}-n1", schema=schema)
    await store.open()
    return store


async def _drop(store: PostgresStore) -> None:
    await store.close()
    conn = await asyncpg.connect(URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{store.schema}" CASCADE')
    finally:
        await conn.close()


def _ms(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(values, 50) * 1000, 2),
            "p99_ms": round(percentile(values, 99) * 1000, 2)}  # fmt: skip


async def enqueue_one_at_a_time(store: PostgresStore, jobs: int) -> dict[str, Any]:
    took: list[float] = []
    for _ in range(jobs):
        t = time.perf_counter()
        await store.enqueue(NewJob(type="t", user_id="u"))
        took.append(time.perf_counter() - t)
    return {"jobs_per_s": round(jobs / sum(took), 1), **_ms(took)}


async def _send_progress(store: PostgresStore, job_id: str, token: str, n: int,
                         slots: asyncio.Semaphore) -> None:  # fmt: skip
    if n == 0:
        return
    done = asyncio.Event()
    left = n

    def settled(event: Any, error: BaseException | None) -> None:
        nonlocal left
        slots.release()
        if error is not None:
            raise error
        left -= 1
        if left == 0:
            done.set()

    for i in range(n):
        await slots.acquire()
        store.progress(job_id, token, ProgressUpdate(JobStage.PROCESSING, i / n), settled)
    await done.wait()


async def user_path(store: PostgresStore, jobs: int, steps: int = 10) -> dict[str, Any]:
    """A producer enqueueing one at a time while workers run the jobs."""
    finished = 0
    producing = True

    async def worker() -> None:
        nonlocal finished
        slots = asyncio.Semaphore(IN_FLIGHT)
        while producing or finished < jobs:
            claimed = await store.claim(1, 30)
            if not claimed:
                await asyncio.sleep(0.002)
                continue
            job, _ = claimed[0]
            assert job.lease_token
            await _send_progress(store, job.id, job.lease_token, steps, slots)
            await store.complete(job.id, job.lease_token, {"ok": True})
            finished += 1

    workers = [asyncio.create_task(worker()) for _ in range(WORKERS)]
    took: list[float] = []
    t0 = time.perf_counter()
    for _ in range(jobs):
        t = time.perf_counter()
        await store.enqueue(NewJob(type="t", user_id="u"))
        took.append(time.perf_counter() - t)
    t1 = time.perf_counter()
    producing = False
    await asyncio.wait_for(asyncio.gather(*workers), LIMIT_SECONDS)
    t2 = time.perf_counter()
    return {"enqueued_per_s": round(jobs / (t1 - t0), 1), "done_per_s": round(jobs / (t2 - t0), 1),
            **_ms(took)}  # fmt: skip


async def progress_rate(store: PostgresStore, total: int) -> dict[str, Any]:
    for _ in range(WORKERS):
        await store.enqueue(NewJob(type="t", user_id="u"))
    claimed = await store.claim(WORKERS, 60)
    each = total // len(claimed)
    t0 = time.perf_counter()
    await asyncio.gather(*(
        _send_progress(store, job.id, job.lease_token or "", each, asyncio.Semaphore(IN_FLIGHT))
        for job, _ in claimed
    ))  # fmt: skip
    took = time.perf_counter() - t0
    return {"events_per_s": round(each * len(claimed) / took, 1)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--progress", type=int, default=2000)
    args = parser.parse_args()
    out: dict[str, Any] = {}
    for name, run in (
        ("enqueue", lambda s: enqueue_one_at_a_time(s, args.jobs)),
        ("user", lambda s: user_path(s, args.jobs)),
        ("progress", lambda s: progress_rate(s, args.progress)),
    ):
        store = await _store()
        try:
            await enqueue_one_at_a_time(store, 20)  # warm: statements prepared, pool filled
            out[name] = await asyncio.wait_for(run(store), LIMIT_SECONDS)
        finally:
            await _drop(store)
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
