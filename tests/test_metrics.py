"""The metrics bus tap on its own: events with the writer's hints count as events without."""

from __future__ import annotations

from jobserver.metrics import Metrics
from jobserver.models import Event, EventType, Job, JobStage, JobStatus, encode_event, iso


def _events() -> list[Event]:
    job = Job(id="j1", type="t", user_id="u1", payload={})
    made = [encode_event(1, EventType.QUEUED, job, iso(100.0) or "")]
    job = job.evolve(status=JobStatus.ACTIVE, stage=JobStage.INITIALIZING)
    made.append(encode_event(2, EventType.PROGRESS, job, iso(101.0) or ""))
    job = job.evolve(stage=JobStage.PROCESSING, progress=50.0)
    made.append(encode_event(3, EventType.PROGRESS, job, iso(101.0) or ""))
    job = job.evolve(status=JobStatus.COMPLETED, stage=JobStage.COMPLETED, progress=100.0,
                     result={"processingTimeMs": 1500, "cacheHit": True})  # fmt: skip
    made.append(encode_event(4, EventType.COMPLETED, job, iso(102.0) or ""))
    return made


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in metrics.registry.collect()
        for s in family.samples
        # lag is observed against the wall clock; _created is when each series began
        if not s.name.startswith("event_fanout_lag") and not s.name.endswith("_created")
    }


def test_hinted_and_decoded_events_count_the_same() -> None:
    hinted, decoded = Metrics(), Metrics()
    for event in _events():
        hinted.on_event(event)
        decoded.on_event(Event(*event[:5]))  # as read back from the log: no hints
    got = _samples(hinted)
    assert got == _samples(decoded)
    assert got[("job_events_total", (("stage", "processing"), ("status", "active")))] == 1
    assert got[("job_events_total", (("stage", "completed"), ("status", "completed")))] == 1
    assert got[("job_attempts_total", ())] == 1
    key = ("job_duration_seconds_sum", (("cache_hit", "true"), ("status", "completed")))
    assert got[key] == 1.5
    # The bus lag is observed once per commit: three distinct timestamps.
    for metrics in (hinted, decoded):
        lag = metrics.fanout_lag.labels("bus")
        assert lag._sum.get() > 0  # type: ignore[attr-defined]
        count = [s.value for f in metrics.registry.collect() for s in f.samples
                 if s.name == "event_fanout_lag_seconds_count"]  # fmt: skip
        assert count == [3.0]


def test_a_hand_off_lag_is_observed_for_hinted_and_decoded_events() -> None:
    metrics = Metrics()
    first = _events()[0]
    metrics.delivered("ws", [first])
    metrics.delivered("ws", [Event(*first[:5])._replace(seq=99)])  # read back: no hints
    counts = [s.value for f in metrics.registry.collect() for s in f.samples
              if s.name == "event_fanout_lag_seconds_count"
              and s.labels.get("transport") == "ws"]  # fmt: skip
    assert counts == [2.0]
