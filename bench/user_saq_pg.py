"""The user's path for SAQ on PostgreSQL (issue 17's peer): the worker's settings and the producer.

The worker runs as SAQ's docs run it, ``saq user_saq_pg.settings`` (concurrency from
``BENCH_CONCURRENCY``, 50 by default), counting completions into the marks file in
``after_process``. Run as a script it is the producer: ``queue.enqueue`` one at a time;
``--reset`` makes the run's schema first, ``--drop`` drops it. SAQ's tables live in a schema
of the run's own (``search_path``) and its advisory locks in a keyspace of the run's own, as
others use this PostgreSQL too. Progress uses SAQ's own ``job.update`` (an UPDATE and a
NOTIFY, committed).
"""

from __future__ import annotations

import asyncio
import os
import time
import zlib
from typing import Any

import psycopg
from harness import Marks, produced, run_id, run_producer
from jobs_saq import noop, progress10
from saq import Queue

RUN = run_id()
SCHEMA = f"bench_saq_{RUN}"
DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"
URL = f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{SCHEMA}"
KEYSPACE = zlib.crc32(RUN.encode()) & 0x7FFFFFFF  # SAQ's advisory locks: not another run's
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "50"))
_marks: list[Marks] = []


def queue() -> Queue:
    return Queue.from_url(URL, name="bench", saq_lock_keyspace=KEYSPACE,
                          max_size=CONCURRENCY + 4)  # fmt: skip


async def after_process(ctx: dict[str, Any]) -> None:
    if not _marks:
        _marks.append(Marks.from_env())
    _marks[0].count()


settings = {
    "queue": queue(),
    "functions": [noop, progress10],
    "concurrency": CONCURRENCY,
    "after_process": after_process,
}


async def reset() -> None:
    """The schema and SAQ's tables, before the worker or the producer connects: each makes the
    tables only if it wins SAQ's lock, and the other would not wait for it."""
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await conn.execute(f"CREATE SCHEMA {SCHEMA}")
    q = queue()
    await q.connect()
    await q.disconnect()


async def drop() -> None:
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


async def produce(jobs: int, progress: int, mode: str, timeout: float) -> dict[str, Any]:
    q = queue()
    await q.connect()
    name = "progress10" if progress else "noop"
    marks = Marks(os.environ["BENCH_MARKS"])
    try:
        await q.enqueue(name)  # the warm-up job
        await marks.wait_async("warm", 30)
        t0 = time.time()
        async with asyncio.timeout(timeout):
            if mode != "one":
                raise SystemExit(f"saq pg: no mode {mode}")
            for _ in range(jobs):
                await q.enqueue(name)
        t1 = time.time()
    finally:
        await q.disconnect()
    return produced(jobs, mode, t0, t1)


def main() -> None:
    run_producer(__doc__, produce, {"--reset": reset, "--drop": drop})


if __name__ == "__main__":
    main()
