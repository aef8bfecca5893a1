"""The user's path for procrastinate on PostgreSQL: the worker's app and the producer.

The worker runs as procrastinate's docs run it, ``procrastinate --app=user_procrastinate.app
worker --concurrency 10`` (LISTEN/NOTIFY); each task counts its completion into the marks
file as it returns (procrastinate has no after-job hook). Run as a script it is the
producer: ``defer_async`` one at a time, or ``batch_defer_async`` 1,000 per call;
``--reset`` makes the run's schema first, ``--drop`` drops it. Progress is imitated with a
committed INSERT.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import psycopg
from harness import Marks, produced, run_id, run_producer
from procrastinate import App, PsycopgConnector

SCHEMA = f"bench_procrastinate_{run_id()}"  # a schema of its own in database test, per run
DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"
BATCH = 1000
POOL = int(os.environ.get("BENCH_CONCURRENCY", "10")) + 4  # the worker's --concurrency + 4
app = App(
    connector=PsycopgConnector(
        conninfo=DSN, kwargs={"options": f"-c search_path={SCHEMA}"}, min_size=2, max_size=POOL
    )
)
_marks: list[Marks] = []


def _done() -> None:
    if not _marks:
        _marks.append(Marks.from_env())
    _marks[0].count()


@app.task(name="noop")
async def noop() -> None:
    _done()


@app.task(name="progress10", pass_context=True)
async def progress10(context: Any) -> None:
    for step in range(1, 11):
        await app.connector.execute_query_async(
            "INSERT INTO bench_progress (job_id, step) VALUES (%(job)s, %(step)s)",
            job=context.job.id,
            step=step,
        )
    _done()


async def drop() -> None:
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


async def reset() -> None:
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await conn.execute(f"CREATE SCHEMA {SCHEMA}")
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        await app.connector.execute_query_async(
            "CREATE TABLE bench_progress (job_id BIGINT, step INT)"
        )


async def produce(jobs: int, progress: int, mode: str, timeout: float) -> dict[str, Any]:
    task = progress10 if progress else noop
    marks = Marks(os.environ["BENCH_MARKS"])
    async with app.open_async():
        await task.defer_async()  # the warm-up job
        await marks.wait_async("warm", 30)
        t0 = time.time()
        async with asyncio.timeout(timeout):
            if mode == "one":
                for _ in range(jobs):
                    await task.defer_async()
            elif mode == "batch":
                for start in range(0, jobs, BATCH):
                    await task.batch_defer_async(*({} for _ in range(min(BATCH, jobs - start))))
            else:
                raise SystemExit(f"procrastinate: no mode {mode}")
        t1 = time.time()
    return produced(jobs, mode, t0, t1)


def main() -> None:
    run_producer(__doc__, produce, {"--reset": reset, "--drop": drop})


if __name__ == "__main__":
    main()
