"""Prometheus metrics: one registry per app, fed by a bus tap and read from the store at scrape."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .models import FINISHED_EVENTS, Event, EventType, JobStatus

log = logging.getLogger(__name__)

# The seed's buckets for job duration, in seconds.
DURATION_BUCKETS: Final = (1.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0)
LAG_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LOOP_LAG_INTERVAL = 0.25
_ACTIVE: Final = JobStatus.ACTIVE.value  # compared with every event's status

# Why a WebSocket ended, by close code, for websocket_disconnects_total{reason}. A bounded set:
# a client may close with any code, and every label value is a series of its own.
CLOSE_REASONS: Final = {
    1000: "normal",  # either side closed cleanly
    1001: "normal",  # the page went away, or the server is shutting down
    1008: "policy",  # not authenticated
    1009: "too_big",  # a message over the size limit
    1011: "error",  # a server fault
    1013: "too_many",  # over the connections-per-user limit
    4000: "overflow",  # too far behind: told to resume
}


def close_reason(code: int | None) -> str:
    """``lost`` when no close frame came (dead peer, heartbeat timeout, 1006)."""
    if code is None or code == 1006:
        return "lost"
    if 4900 <= code <= 4999:
        return "client"  # the bundled client's own codes (no pong, timeout, resync)
    return CLOSE_REASONS.get(code, "other")


def parse_time(stamp: object) -> float | None:
    """The epoch seconds of an ISO 8601 ``timestamp`` text; None when it is not one."""
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Values read at scrape time from parts that keep their own counts."""

    by_status: dict[JobStatus, int] = field(default_factory=dict)
    recovered: int = 0
    running: int = 0
    concurrency: int = 0
    subscribers: int = 0
    pruned_jobs: int = 0


class _ScrapeCollector(Collector):
    """Turns the latest Snapshot into metric families; refreshed by the /metrics handler."""

    def __init__(self) -> None:
        self.snapshot = Snapshot()

    def collect(self) -> Iterable[Metric]:
        snap = self.snapshot
        jobs = GaugeMetricFamily(
            "jobs_by_status", "Jobs in the store by status (queued is the queue depth)",
            labels=["status"],
        )  # fmt: skip
        for status in JobStatus:
            jobs.add_metric([status.value], snap.by_status.get(status, 0))
        yield jobs
        yield CounterMetricFamily(
            "jobs_recovered", "Jobs whose worker was lost, requeued or failed", snap.recovered
        )
        yield GaugeMetricFamily("worker_jobs_running", "Jobs running in this process", snap.running)
        yield GaugeMetricFamily(
            "worker_concurrency", "Most jobs this process runs at once", snap.concurrency
        )
        yield GaugeMetricFamily(
            "event_bus_subscribers", "Live event subscribers (sockets, polls)", snap.subscribers
        )
        yield CounterMetricFamily(
            "jobs_pruned", "Finished jobs deleted by retention", snap.pruned_jobs
        )


class _EventCounts(Collector):
    """job_events_total{stage,status}, counted in a plain dict by the bus tap.

    The tap runs for every event; a prometheus_client Counter takes a lock and a label
    lookup per increment, which measured as a large share of the event loop's time.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily("job_events", "Job events emitted", labels=["stage", "status"])
        for (stage, status), count in sorted(self.counts.items()):
            family.add_metric([stage, status], count)
        yield family


class Metrics:
    """Every metric the server exports, in a registry of its own (tests build many apps).

    Job metrics come from ``on_event``, a bus tap, so no code path has to remember to count.
    The WebSocket gateway and the long-poll call ``ws_opened`` / ``ws_closed``,
    ``longpoll_waiting`` and ``delivered``.
    """

    def __init__(self) -> None:
        self._last_stamp: tuple[int, float | None] = (-1, None)
        self.registry = CollectorRegistry()
        reg = self.registry
        self._events = _EventCounts()
        reg.register(self._events)
        self.job_duration = Histogram(
            "job_duration_seconds", "Time a job's attempt took, by outcome",
            ["status", "cache_hit"], buckets=DURATION_BUCKETS, registry=reg,
        )  # fmt: skip
        self.attempts = Counter(
            "job_attempts_total", "Attempts started (a worker claimed a job)", registry=reg
        )
        self.retries = Counter(
            "job_retries_total", "Failed attempts queued again automatically", registry=reg
        )
        self.ws_connections = Gauge(
            "websocket_connections", "Open WebSocket connections", registry=reg
        )
        self.live_nodes = Gauge(
            "live_nodes", "Server processes on this store, as this one last counted them "
            "(1 on SQLite); request and sign-in limits are divided among them", registry=reg,
        )  # fmt: skip
        self.live_nodes.set(1)
        self.ws_connects = Counter(
            "websocket_connects_total", "WebSocket connections accepted", registry=reg
        )
        self.ws_disconnects = Counter(
            "websocket_disconnects_total", "WebSocket connections ended, by reason",
            ["reason"], registry=reg,
        )  # fmt: skip
        self.longpoll_waiters = Gauge(
            "longpoll_waiters", "Long-poll requests waiting for an event", registry=reg
        )
        self.fanout_lag = Histogram(
            "event_fanout_lag_seconds",
            "From an event's commit to its publication (bus, once per commit) or hand-off to "
            "a client (once per hand-off, the oldest event's)",
            ["transport"], buckets=LAG_BUCKETS, registry=reg,
        )  # fmt: skip
        self.loop_lag = Histogram(
            "event_loop_lag_seconds", "How late the event loop runs a timer",
            buckets=LAG_BUCKETS, registry=reg,
        )  # fmt: skip
        self._scrape = _ScrapeCollector()
        reg.register(self._scrape)
        # When each running attempt was claimed (by job id); emptied as attempts end.
        self._started: dict[str, float] = {}
        self._bus_lag = self.fanout_lag.labels("bus")
        self._durations: dict[tuple[str, str], Any] = {}  # job_duration's labelled children
        self._stamp_text: object = None

    # -- the bus tap ------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        body: Mapping[str, Any] | None = None
        status, stage, text = event.status, event.stage, event.timestamp
        if not status:  # read back from the log, not made by this node's writer: decode
            body = orjson.loads(event.data)
            status, stage = str(body.get("status")), str(body.get("stage"))
            text = str(body.get("timestamp"))
        key = (stage, status)
        counts = self._events.counts
        counts[key] = counts.get(key, 0) + 1
        now = time.time()
        # The events of one commit share its timestamp and are published together, so the
        # bus's fan-out lag is observed once per commit, as a client's is once per hand-off.
        if text != self._stamp_text:
            self._stamp_text = text
            stamp = parse_time(text)
            if stamp is not None:
                self._bus_lag.observe(max(0.0, now - stamp))
        if status == _ACTIVE:
            if event.job_id not in self._started:  # the first active event is the claim
                self._started[event.job_id] = now
                self.attempts.inc()
            return
        began = self._started.pop(event.job_id, None)
        if event.type is EventType.RETRYING:
            self.retries.inc()
            outcome = "retrying"
        elif event.type in FINISHED_EVENTS:
            outcome = str(status)
        else:
            return
        self._observe_duration(body or orjson.loads(event.data), outcome, now, began)

    def _observe_duration(
        self, body: Mapping[str, Any], outcome: str, now: float, began: float | None
    ) -> None:
        result = body.get("result") or {}
        seconds: float | None = None
        millis = result.get("processingTimeMs") if outcome == JobStatus.COMPLETED else None
        if isinstance(millis, int | float) and not isinstance(millis, bool):
            seconds = float(millis) / 1000
        elif began is not None:
            seconds = now - began
        if seconds is None:  # never started here (e.g. a queued job cancelled)
            return
        cache_hit = "true" if result.get("cacheHit") is True else "false"
        child = self._durations.get((outcome, cache_hit))
        if child is None:
            child = self._durations[(outcome, cache_hit)] = self.job_duration.labels(
                outcome, cache_hit
            )
        child.observe(max(0.0, seconds))

    # -- for the WebSocket gateway and the long-poll ----------------------------------------

    def ws_opened(self) -> None:
        self.ws_connects.inc()
        self.ws_connections.inc()

    def ws_closed(self, code: int | None) -> None:
        """A socket ended with close ``code``; counted by reason (see ``close_reason``)."""
        self.ws_connections.dec()
        self.ws_disconnects.labels(close_reason(code)).inc()

    @contextlib.contextmanager
    def longpoll_waiting(self) -> Iterator[None]:
        self.longpoll_waiters.inc()
        try:
            yield
        finally:
            self.longpoll_waiters.dec()

    def _time_of(self, event: Event) -> float | None:
        """An event's timestamp, parsed once: a wake-up hands one event to many clients."""
        seq, stamp = self._last_stamp
        if seq != event.seq:
            text = event.timestamp or orjson.loads(event.data).get("timestamp")
            stamp = parse_time(text)
            self._last_stamp = (event.seq, stamp)
        return stamp

    def delivered(self, transport: str, events: Sequence[Event]) -> None:
        """Events handed to a client's connection; the oldest one's lag is observed."""
        if events:
            stamp = self._time_of(events[0])
            if stamp is not None:
                self.fanout_lag.labels(transport).observe(max(0.0, time.time() - stamp))

    # -- scraping and sampling --------------------------------------------------------------

    def update(self, snapshot: Snapshot) -> None:
        self._scrape.snapshot = snapshot

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def sample_loop_lag(self, interval: float = LOOP_LAG_INTERVAL) -> None:
        """Forever: sleep ``interval`` and record how much later than asked the loop woke."""
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(interval)
            self.loop_lag.observe(max(0.0, loop.time() - start - interval))
