"""Cluster-wide duties on PostgreSQL (issue 17): two nodes' retention never prunes at once, and
a node skips its turn when another pruned within the interval."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from jobserver.retention import Retention
from jobserver.store import NewJob
from jobserver.store.postgres import PostgresStore
from tests.pgcluster import URL, schema

__all__ = ["schema"]  # the fixture: a schema of its own, dropped afterwards


@pytest.fixture
async def nodes(schema: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    stores = (PostgresStore(URL, node_id=f"{schema}-a", schema=schema),
              PostgresStore(URL, node_id=f"{schema}-b", schema=schema))  # fmt: skip
    try:
        for store in stores:
            await store.open()
        yield stores
    finally:
        for store in stores:
            await store.close()


async def test_one_node_prunes_at_a_time_and_once_per_interval(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = nodes
    job, _ = await a.enqueue(NewJob(type="t", user_id="u"))
    await a.cancel(job.id, None)  # finished: old enough for a retention of 0.1 s
    running = 0
    most = 0
    release = asyncio.Event()

    async def step(cutoff: float) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1
        return 0

    def retention(store: PostgresStore) -> Retention:
        return Retention(store, max_age_seconds=0.1, prune_interval=0.5, checkpoint_interval=60,
                         steps=[("files", step)], duty=store.duty)  # fmt: skip

    ra, rb = retention(a), retention(b)
    await asyncio.sleep(0.2)
    first = asyncio.create_task(ra.prune())
    while running == 0:
        await asyncio.sleep(0.01)
    assert await rb.prune() == 0 and rb.skipped == 1  # A holds the duty right now
    release.set()
    assert await first == 1 and ra.skipped == 0
    assert await b.get_job(job.id) is None
    assert await rb.prune() == 0 and rb.skipped == 2  # A did it less than 0.5 s ago
    started = time.monotonic()
    ran = False
    while not ran and time.monotonic() - started < 3:
        await asyncio.sleep(0.05)
        skipped = rb.skipped
        await rb.prune()
        ran = rb.skipped == skipped
    assert ran and time.monotonic() - started >= 0.3  # B's turn, once it was due again
    assert most == 1
