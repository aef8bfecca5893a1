"""The job model: every legal and illegal status change, and the event wire format."""

from __future__ import annotations

import itertools

import orjson
import pytest

from jobserver.errors import IllegalTransition
from jobserver.models import (
    STAGE_DISPLAY_NAMES,
    TRANSITIONS,
    Event,
    EventType,
    Job,
    JobStage,
    JobStatus,
    check_transition,
    encode_event,
    iso,
)

LEGAL = {
    (JobStatus.QUEUED, JobStatus.ACTIVE),
    (JobStatus.QUEUED, JobStatus.CANCELLED),
    (JobStatus.ACTIVE, JobStatus.COMPLETED),
    (JobStatus.ACTIVE, JobStatus.FAILED),
    (JobStatus.ACTIVE, JobStatus.CANCELLED),
    (JobStatus.ACTIVE, JobStatus.QUEUED),
    (JobStatus.FAILED, JobStatus.QUEUED),
    (JobStatus.CANCELLED, JobStatus.QUEUED),
}


@pytest.mark.parametrize("current,new", list(itertools.product(JobStatus, JobStatus)))
def test_every_transition_is_allowed_or_rejected(current: JobStatus, new: JobStatus) -> None:
    if (current, new) in LEGAL:
        check_transition(current, new)
    else:
        with pytest.raises(IllegalTransition):
            check_transition(current, new)


def test_the_table_is_exactly_the_legal_set() -> None:
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == LEGAL


def test_every_stage_has_a_display_name() -> None:
    assert set(STAGE_DISPLAY_NAMES) == set(JobStage)
    assert all(STAGE_DISPLAY_NAMES.values())


def test_event_wire_format_is_camel_case_with_iso_timestamp() -> None:
    job = Job(id="j1", type="demo.sleep", user_id="u1", payload={}, result={"noteId": "n"})
    event = encode_event(7, EventType.COMPLETED, job, iso(0.0) or "")
    body = orjson.loads(event.data)
    assert body["seq"] == 7 and body["type"] == "job.completed"
    assert body["jobId"] == "j1" and body["userId"] == "u1"
    assert body["timestamp"] == "1970-01-01T00:00:00.000Z"
    assert body["result"] == {"noteId": "n"} and "error" not in body
    for key in ["status", "stage", "progress", "message", "metadata"]:
        assert key in body


def test_an_event_carries_its_status_stage_and_timestamp_as_plain_strings() -> None:
    job = Job(id="j1", type="t", user_id="u1", payload={}, status=JobStatus.ACTIVE,
              stage=JobStage.PROCESSING)  # fmt: skip
    event = encode_event(3, EventType.PROGRESS, job, iso(0.0) or "")
    body = orjson.loads(event.data)
    assert (event.status, event.stage, event.timestamp) == (
        body["status"], body["stage"], body["timestamp"]
    ) == ("active", "processing", "1970-01-01T00:00:00.000Z")
    # Plain str, not enum members: a tap keys dicts by them, and enum members hash apart.
    assert type(event.status) is str and type(event.stage) is str
    assert body["type"] == "job.progress" and event.type is EventType.PROGRESS


def test_an_event_read_back_from_the_log_equals_the_one_published() -> None:
    job = Job(id="j1", type="t", user_id="u1", payload={})
    published = encode_event(3, EventType.QUEUED, job, iso(0.0) or "")
    read_back = Event(*published[:5])  # the log keeps the row, not the hints
    assert read_back.status == "" and published.status == "queued"
    assert read_back == published
    assert (read_back != published) is False  # tuple.__ne__ would compare the hints
    assert hash(read_back) == hash(published) and [read_back] == [published]
    assert published != published._replace(seq=4)


def test_evolve_copies_every_field_and_applies_changes() -> None:
    job = Job(id="j1", type="t", user_id="u1", payload={"a": 1}, metadata={"m": 2},
              result={"r": 3}, error={"e": 4}, attempts=2, last_seq=9, lease_token="x")
    assert job.evolve() == job
    changed = job.evolve(status=JobStatus.ACTIVE, progress=50.0)
    assert changed.status is JobStatus.ACTIVE and changed.progress == 50.0
    assert job.status is JobStatus.QUEUED and changed.payload == job.payload
