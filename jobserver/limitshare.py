"""On PostgreSQL, each node's request and sign-in limits are its share of the configured ones.

Limits are counted in each node's memory (no database round trip per request). Behind a load
balancer that spreads a client's requests over N nodes, N nodes each allowing the whole limit
would allow it N times over; so each node allows one N-th, N being the live nodes as its store
last counted them (the holders of the schema's live lock, counted every second), looked at
every ``CHECK_SECONDS``. A client whose requests all reach one node then gets one N-th.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol

CHECK_SECONDS = 1.0


class Shared(Protocol):
    def share(self, fraction: float) -> None: ...


class Gauge(Protocol):
    def set(self, value: float) -> None: ...


@contextlib.asynccontextmanager
async def shared_limits(count: Callable[[], int], limits: Sequence[Shared],
                        gauge: Gauge) -> AsyncIterator[None]:  # fmt: skip
    """While inside, keep ``limits`` at one over the nodes ``count()`` says (first at once)."""

    async def follow() -> None:
        seen = 0
        while True:
            nodes = max(1, count())
            if nodes != seen:
                seen = nodes
                gauge.set(nodes)
                for limit in limits:
                    limit.share(1.0 / nodes)
            await asyncio.sleep(CHECK_SECONDS)

    task = asyncio.create_task(follow(), name="limit-share")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
