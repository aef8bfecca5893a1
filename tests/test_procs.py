"""The worker-process pool itself, with real processes: per-kind limits, order, stopping."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from jobserver.config import Settings, convert
from jobserver.procs.context import ProcessContext
from jobserver.procs.pool import Failures, ProcessPool

HERE = "tests.test_procs"


def wait_for_stop(ctx: ProcessContext) -> dict[str, Any]:
    """A call that runs until asked to stop (at most 20 s), then says so."""
    for _ in range(2000):
        if ctx.cancelled:
            break
        time.sleep(0.01)
    return {"stopped": ctx.cancelled, "pid": os.getpid()}


def pid(ctx: ProcessContext) -> int:
    return os.getpid()


@pytest.fixture
async def pool() -> AsyncIterator[ProcessPool]:
    processes = ProcessPool(2)
    await processes.start()
    yield processes
    await processes.stop()


async def call(pool: ProcessPool, kind: str, target: str, limit: int | None = None) -> Any:
    child = await pool.acquire(kind, limit)
    try:
        message = {"id": pool.next_id(), "target": f"{HERE}:{target}"}
        return await child.request(message, lambda m: None, Failures())
    finally:
        await pool.release(child)


async def test_a_kind_holds_no_more_processes_than_its_limit(pool: ProcessPool) -> None:
    first = await pool.acquire("crunch", limit=1)
    second = asyncio.ensure_future(pool.acquire("crunch", limit=1))
    other = await asyncio.wait_for(pool.acquire("thumbs"), 30)  # not held up by crunch's wait
    await asyncio.sleep(0.05)
    assert not second.done() and pool.held("crunch") == 1
    await pool.release(other)
    await asyncio.sleep(0.05)
    assert not second.done()  # a process is idle, but crunch is at its limit
    await pool.release(first)
    again = await asyncio.wait_for(second, 30)
    assert pool.held("crunch") == 1
    await pool.release(again)
    assert pool.held("crunch") == 0 and pool.idle == 2


async def test_processes_are_handed_out_in_the_order_asked(pool: ProcessPool) -> None:
    held = [await pool.acquire("a"), await pool.acquire("a")]
    order: list[str] = []

    async def take(name: str) -> None:
        child = await pool.acquire(name)
        order.append(name)
        await pool.release(child)

    waiting = [asyncio.ensure_future(take(n)) for n in ("one", "two", "three")]
    await asyncio.sleep(0.05)
    await pool.release(held.pop())
    await asyncio.wait_for(asyncio.gather(*waiting), 30)
    assert order == ["one", "two", "three"]
    await pool.release(held.pop())


async def test_a_stopped_call_that_notices_keeps_its_process(pool: ProcessPool) -> None:
    child = await pool.acquire("patient")
    await child.until_ready()
    before = child.pid
    future = child.start({"id": pool.next_id(), "target": f"{HERE}:wait_for_stop"},
                         lambda m: None, Failures())  # fmt: skip
    await asyncio.sleep(0.2)
    pool.stop_soon(child, future, grace=5.0)
    answer = await asyncio.wait_for(asyncio.shield(future), 10)
    assert answer["value"]["stopped"] is True and answer["value"]["pid"] == before
    await asyncio.sleep(0.1)
    assert before in pool.pids and pool.replaced == 0
    assert await call(pool, "x", "pid") in pool.pids


async def test_a_stopped_call_that_does_not_notice_is_killed(pool: ProcessPool) -> None:
    child = await pool.acquire("stubborn")
    await child.until_ready()
    before = child.pid
    future = child.start({"id": pool.next_id(), "target": f"{HERE}:wait_for_stop"},
                         lambda m: None, Failures())  # fmt: skip
    await asyncio.sleep(0.2)
    pool.stop_soon(child, future, grace=0)  # no grace: killed at once
    async with asyncio.timeout(10):
        while before in pool.pids or len(pool.pids) < 2:
            await asyncio.sleep(0.02)
    assert pool.replaced == 1


def test_pdf_workers_sizes_the_pool_unless_process_workers_is_set() -> None:
    assert Settings(pdf_workers=3).worker_processes == 3
    assert Settings(pdf_workers=3, process_workers=1).worker_processes == 1
    assert Settings(pdf_workers=3, process_workers=0).worker_processes == 0  # one per core
    assert convert("process_workers", "") is None and convert("process_workers", "4") == 4
    with pytest.raises(ValueError, match="process_workers"):
        Settings(process_workers=-1)
