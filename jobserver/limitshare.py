"""On PostgreSQL, each node's request and sign-in limits are its share of the configured ones.

Limits are counted in each node's memory (no database round trip per request). Behind a load
balancer that spreads a client's requests over N nodes, N nodes each allowing the whole limit
would allow it N times over; so every ``COUNT_SECONDS`` a node counts the live nodes (the
holders of the schema's live lock) and allows one N-th. A client whose requests all reach one
node then gets one N-th; a node that cannot count keeps its last share.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol

log = logging.getLogger(__name__)

COUNT_SECONDS = 5.0


class Shared(Protocol):
    def share(self, fraction: float) -> None: ...


class Gauge(Protocol):
    def set(self, value: float) -> None: ...


@contextlib.asynccontextmanager
async def shared_limits(count: Callable[[], Awaitable[int]], limits: Sequence[Shared],
                        gauge: Gauge) -> AsyncIterator[None]:  # fmt: skip
    """While inside, keep ``limits`` at one over the nodes ``count`` finds (first at once)."""
    seen = 0

    async def apply() -> None:
        nonlocal seen
        nodes = max(1, await count())
        if nodes != seen:
            seen = nodes
            gauge.set(nodes)
            for limit in limits:
                limit.share(1.0 / nodes)

    async def loop() -> None:
        while True:
            await asyncio.sleep(COUNT_SECONDS)
            try:
                await apply()
            except Exception as exc:  # the database is away: keep the last share
                log.debug("counting the live nodes failed: %s", exc)

    with contextlib.suppress(Exception):
        await apply()
    task = asyncio.create_task(loop(), name="limit-share")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
