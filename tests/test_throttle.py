"""The per-key token buckets behind the request rate limit (throttle.RateLimiter)."""

from __future__ import annotations

import pytest

from jobserver import throttle


def test_at_its_key_cap_the_limiter_forgets_the_quietest_key_never_a_busy_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(throttle, "MAX_KEYS", 3)
    limiter = throttle.RateLimiter(rate=0.001, burst=2)
    assert limiter.take("busy") == 0 and limiter.take("busy") == 0
    assert limiter.take("b") == 0 and limiter.take("c") == 0
    assert limiter.take("busy") > 0  # its bucket is empty, and it just asked again
    # A new key at the cap: the quietest ("b") makes room. Forgetting "busy" instead would
    # hand it a full bucket again: a client could refill itself by bringing new keys.
    assert limiter.take("d") == 0
    assert limiter.take("busy") > 0
    assert limiter.take("b") == 0  # forgotten, so new: a full bucket


def test_many_new_keys_at_the_cap_each_cost_the_same() -> None:
    limiter = throttle.RateLimiter(rate=0.001, burst=1)
    for i in range(throttle.MAX_KEYS + 1000):
        assert limiter.take(f"k{i}") == 0
    assert limiter.take("k0") == 0  # the first ones were forgotten: new again
    assert limiter.take(f"k{throttle.MAX_KEYS + 999}") > 0  # the last is remembered


def test_a_share_of_the_limits() -> None:
    limiter = throttle.RateLimiter(rate=0.001, burst=10)
    limiter.share(0.5)
    assert [limiter.take("k") == 0 for _ in range(6)] == [True] * 5 + [False]
    limiter.share(1.0)
    assert (limiter.rate, limiter.burst) == (0.001, 10)
    failures = throttle.FailureThrottle(limit=5, window=60)
    failures.share(1 / 3)  # rounded down: 1 each, 3 in all (never more than configured)
    failures.failed("x")
    assert failures.retry_after("x") > 0
    failures.share(1.0)
    assert failures.retry_after("x") == 0  # 1 of 5
    for _ in range(4):
        failures.failed("x")
    assert failures.retry_after("x") > 0
