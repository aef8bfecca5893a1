"""LoopLagProbe: samples how late the event loop runs a short timer, for a bounded window."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

DEFAULT_INTERVAL = 0.005
MAX_SECONDS = 600.0
MAX_SAMPLES = 200_000


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class LoopLagProbe:
    """Started on demand (a benchmark, a person troubleshooting); stops by itself.

    Each sample sleeps ``interval`` seconds and records how much later than that the loop
    woke: the time the loop was busy with something else, i.e. the lag every request,
    event and timer on this loop saw at that moment.
    """

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.interval = DEFAULT_INTERVAL
        self.started_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, seconds: float, interval: float = DEFAULT_INTERVAL) -> None:
        """Forget earlier samples and sample for ``seconds`` (at most MAX_SECONDS)."""
        self.stop()
        self.samples = []
        self.interval = interval
        self.started_at = time.time()
        self._task = asyncio.create_task(self._sample(min(seconds, MAX_SECONDS)), name="loop-lag")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _sample(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end and len(self.samples) < MAX_SAMPLES:
            start = loop.time()
            await asyncio.sleep(self.interval)
            self.samples.append(max(0.0, loop.time() - start - self.interval))

    def stats(self) -> dict[str, Any]:
        ordered = sorted(self.samples)
        ms = 1000.0
        return {
            "running": self.running,
            "samples": len(ordered),
            "intervalMs": self.interval * ms,
            "p50Ms": round(_percentile(ordered, 0.50) * ms, 3),
            "p99Ms": round(_percentile(ordered, 0.99) * ms, 3),
            "maxMs": round((ordered[-1] if ordered else 0.0) * ms, 3),
        }
