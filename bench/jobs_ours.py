"""Job throughput of this project through its Python API, wired as jobserver/app.py wires it.

Enqueues N jobs (concurrently, so group commit batches them), then starts the worker pool
and waits until a subscriber on the bus has seen every job complete. Checks that every event
was persisted and delivered, and samples event-loop lag all the while.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness import RUN_DIR, LagMonitor, emit_result, job_args

from jobserver import gctune, joblog
from jobserver.bus import EventBus
from jobserver.handlers import HandlerOptions, JobContext, Registry
from jobserver.metrics import Metrics
from jobserver.models import Event, EventType, JobStage
from jobserver.queue import JobQueue
from jobserver.store import NewJob
from jobserver.store.sqlite import SqliteStore
from jobserver.worker import WorkerPool

USER = "bench"


async def noop(ctx: JobContext) -> Mapping[str, Any] | None:
    return None


async def progress10(ctx: JobContext) -> Mapping[str, Any] | None:
    for step in range(1, 11):
        await ctx.progress(JobStage.PROCESSING, step * 10.0, f"Step {step} of 10")
    return None


class Counter:
    """A bus subscriber that counts what it is delivered and notices the last completion."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self.delivered = 0
        self.completed = 0
        self.last_seq = 0
        self.in_order = True
        self.done = asyncio.Event()

    def deliver(self, event: Event) -> None:
        self.delivered += 1
        if event.seq <= self.last_seq:
            self.in_order = False
        self.last_seq = event.seq
        if event.type is EventType.COMPLETED:
            self.completed += 1
            if self.completed >= self.jobs:
                self.done.set()


async def run(jobs: int, progress: int, concurrency: int, timeout: float) -> dict[str, Any]:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="ours-", dir=RUN_DIR))
    try:
        return await _run(workdir / "jobserver.db", jobs, progress, concurrency, timeout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _run(
    db: Path, jobs: int, progress: int, concurrency: int, timeout: float
) -> dict[str, Any]:
    registry = Registry()
    registry.register("bench.noop", noop, HandlerOptions(max_attempts=1))
    registry.register("bench.progress10", progress10, HandlerOptions(max_attempts=1))
    job_type = "bench.progress10" if progress else "bench.noop"

    store = SqliteStore(db)
    await store.open()
    bus = EventBus()
    # The taps every server has: metrics and the job log (logging is not configured here,
    # as in the peers' scripts, so the log tap writes nothing).
    bus.add_tap(Metrics().on_event)
    bus.add_tap(joblog.on_event)
    events = JobQueue(store, bus)
    counter = Counter(jobs)
    bus.subscribe(counter, user_id=USER)
    pool = WorkerPool(
        events, registry, concurrency=concurrency, lease_seconds=30.0, grace_seconds=5.0
    )
    gctune.tune()  # as `python server.py` does once start-up is done
    lag = LagMonitor()
    lag.start()
    try:
        t0 = time.perf_counter()
        await asyncio.gather(
            *(events.enqueue(NewJob(type=job_type, user_id=USER)) for _ in range(jobs))
        )
        t1 = time.perf_counter()
        await pool.start()
        async with asyncio.timeout(timeout):
            await counter.done.wait()
        t2 = time.perf_counter()
    finally:
        lag_stats = await lag.stop()
        await pool.stop()
        head = await store.head_seq()
        await store.close()

    with sqlite3.connect(db) as conn:
        persisted = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        completed = conn.execute("SELECT COUNT(*) FROM jobs WHERE status='completed'").fetchone()[0]
        sync = conn.execute("PRAGMA synchronous").fetchone()[0]
    expected_events = jobs * (3 + (10 if progress else 0))
    return {
        "system": "jobserver",
        "jobs": jobs,
        "progress": 10 if progress else 0,
        "concurrency": concurrency,
        "enqueue_s": t1 - t0,
        "process_s": t2 - t1,
        "total_s": t2 - t0,
        "jobs_per_s": jobs / (t2 - t0),
        "events_per_s": persisted / (t2 - t0),
        "events_persisted": persisted,
        "events_delivered": counter.delivered,
        "events_expected": expected_events,
        "head_seq": head,
        "jobs_completed": completed,
        "in_order": counter.in_order,
        "all_durable_and_delivered": persisted == counter.delivered == expected_events
        and completed == jobs,
        "synchronous_at_close": sync,
        **lag_stats,
    }


def main() -> None:
    parser = job_args(__doc__)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    emit_result(asyncio.run(run(args.jobs, args.progress, args.concurrency, args.timeout)))


if __name__ == "__main__":
    main()
