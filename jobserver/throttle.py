"""In-memory throttles: failed sign-ins per key in a window, and requests per second per key.

Each keeps its configured limit and a ``share`` of it that this process allows: 1 alone; on
PostgreSQL, one over the live nodes (``limitshare``), so N nodes behind a load balancer that
spreads a client over them allow it about the configured limit in all, not N times it.
"""

from __future__ import annotations

import math
import time
from collections import deque

MAX_KEYS = 100_000  # keys remembered at once; past it the stalest are forgotten


class FailureThrottle:
    """At most ``limit`` failures per key within ``window`` seconds; then refused until the
    oldest of them is ``window`` old.

    Args:
        limit: failures allowed within the window.
        window: seconds a failure is remembered.
    """

    def __init__(self, limit: int, window: float) -> None:
        self.configured = limit
        self.limit = limit  # this process's share of it, at least 1
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def share(self, fraction: float) -> None:
        """Allow ``fraction`` of the configured failures (rounded down, at least one)."""
        self.limit = max(1, math.floor(self.configured * fraction))

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again; 0 when it may now."""
        now = time.monotonic()
        times = self._recent(key, now)
        if times is None or len(times) < self.limit:
            return 0.0
        return times[-self.limit] + self.window - now

    def failed(self, key: str) -> None:
        now = time.monotonic()
        times = self._recent(key, now)
        if times is None:
            if len(self._failures) >= MAX_KEYS:
                self._failures.pop(next(iter(self._failures)))  # the longest-known key
            times = self._failures[key] = deque(maxlen=self.configured)
        times.append(now)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


class RateLimiter:
    """A token bucket per key: ``rate`` requests a second on average, bursts up to ``burst``.

    Args:
        rate: tokens added per second.
        burst: most tokens a bucket holds (a quiet key may send this many at once).
    """

    def __init__(self, rate: float, burst: float) -> None:
        self.configured = (rate, max(burst, 1.0))
        self.rate, self.burst = self.configured  # this process's share of them
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)

    def share(self, fraction: float) -> None:
        """Allow ``fraction`` of the configured rate and burst (a burst of at least one)."""
        rate, burst = self.configured
        self.rate, self.burst = rate * fraction, max(1.0, burst * fraction)

    def take(self, key: str) -> float:
        """Take a token for ``key``: 0 when granted, else the seconds until one is there."""
        now = time.monotonic()
        # Popped and put back: the dict stays in order of last use, so at the cap the key
        # dropped is the one quiet longest (the likeliest to have refilled), in O(1), and
        # never a busy key whose empty bucket a reset would refill.
        tokens, then = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        if len(self._buckets) >= MAX_KEYS:
            del self._buckets[next(iter(self._buckets))]
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate


def retry_after_header(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
