"""Job throughput of procrastinate on PostgreSQL (runs in the peers' environment).

Defers N jobs in batches, then runs a worker in this process that stops when the queue is
empty. Progress is imitated with a committed PostgreSQL insert per step.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
from harness import emit_result, job_args, run_id, throughput
from procrastinate import App, PsycopgConnector

SCHEMA = f"bench_procrastinate_{run_id()}"  # a schema of its own in database test, per run
DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"


async def reset_schema() -> None:
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await conn.execute(f"CREATE SCHEMA {SCHEMA}")


async def run(jobs: int, progress: int, concurrency: int, timeout: float) -> dict[str, Any]:
    await reset_schema()
    connector = PsycopgConnector(
        conninfo=DSN,
        kwargs={"options": f"-c search_path={SCHEMA}"},
        min_size=2,
        max_size=concurrency + 4,
    )
    app = App(connector=connector)

    @app.task(name="noop")
    async def noop() -> None:
        return None

    @app.task(name="progress10", pass_context=True)
    async def progress10(context: Any) -> None:
        job_id = context.job.id
        for step in range(1, 11):
            await app.connector.execute_query_async(
                "INSERT INTO bench_progress (job_id, step) VALUES (%(job)s, %(step)s)",
                job=job_id,
                step=step,
            )

    task = progress10 if progress else noop
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        await app.connector.execute_query_async(
            "CREATE TABLE bench_progress (job_id BIGINT, step INT)"
        )
        t0 = time.perf_counter()
        for start in range(0, jobs, 500):
            await task.batch_defer_async(*({} for _ in range(min(500, jobs - start))))
        t1 = time.perf_counter()
        async with asyncio.timeout(timeout):
            await app.run_worker_async(
                concurrency=concurrency,
                wait=False,
                install_signal_handlers=False,
                delete_jobs="never",
            )
        t2 = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        cur = await conn.execute(
            f"SELECT COUNT(*) FROM {SCHEMA}.procrastinate_jobs WHERE status='succeeded'"
        )
        row = await cur.fetchone()
        succeeded = row[0] if row else 0
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    if succeeded != jobs:
        raise SystemExit(f"procrastinate: {succeeded} of {jobs} jobs succeeded")
    return throughput(
        "procrastinate",
        f"PostgreSQL, batch defer, worker concurrency={concurrency}, stops when empty",
        jobs, progress, t0, t1, t2,
    )  # fmt: skip


def main() -> None:
    parser = job_args(__doc__)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    emit_result(asyncio.run(run(args.jobs, args.progress, args.concurrency, args.timeout)))


if __name__ == "__main__":
    main()
