"""The client's typed objects: wire fields in, unknown fields kept, bad input refused."""

from __future__ import annotations

import pytest

from jobserver.client import (
    Job,
    JobEvent,
    JobFailed,
    JobProgress,
    JobRemoved,
    Meta,
    ProtocolError,
    event_from_wire,
)

EVENT = {
    "seq": 7, "type": "job.progress", "jobId": "j1", "userId": "alice", "jobType": "demo.sleep",
    "status": "active", "stage": "processing", "progress": 40.0, "message": "Step 2 of 5",
    "metadata": {"page": 2}, "attempt": 1, "maxAttempts": 3,
    "timestamp": "2026-12-03T12:00:00.000Z",
}  # fmt: skip


def test_an_event_is_its_types_class_with_the_wire_fields() -> None:
    event = event_from_wire({**EVENT, "newField": [1]})
    assert type(event) is JobProgress and event.type == "job.progress"
    assert (event.seq, event.jobId, event.stage, event.progress) == (7, "j1", "processing", 40.0)
    assert event.metadata == {"page": 2} and event.maxAttempts == 3 and not event.terminal
    assert event.raw["newField"] == [1]  # a field this client does not know is kept


def test_an_unknown_event_type_is_a_plain_event_and_a_broken_one_is_refused() -> None:
    later = event_from_wire({**EVENT, "type": "job.paused"})
    assert type(later) is JobEvent and later.type == "job.paused"
    error = {"code": "BOOM", "message": "m", "recoverable": True}
    failed = event_from_wire({**EVENT, "type": "job.failed", "error": error})
    assert isinstance(failed, JobFailed) and failed.terminal and failed.error is not None
    assert (failed.error.code, failed.error.recoverable) == ("BOOM", True)
    for broken in ({"type": "job.queued", "jobId": "j"}, {**EVENT, "seq": "7"}, [1],
                   {**EVENT, "error": {"message": "no code"}}):  # fmt: skip
        with pytest.raises(ProtocolError) as refused:
            event_from_wire(broken)
        assert refused.value.code == "PROTOCOL"


def test_a_job_follows_its_newer_events_only() -> None:
    job = Job.from_wire({"jobId": "j1", "status": "queued", "lastSeq": 5, "attempts": 0,
                         "payload": {"x": 1}})  # fmt: skip
    moved = job.with_event(event_from_wire(EVENT))
    assert (moved.status, moved.stage, moved.progress, moved.lastSeq) == ("active", "processing",
                                                                          40.0, 7)  # fmt: skip
    assert moved.attempts == 1 and moved.payload == {"x": 1} and not moved.finished
    assert moved.with_event(event_from_wire({**EVENT, "seq": 6, "stage": "x"})) is moved
    assert moved.with_event(event_from_wire({**EVENT, "seq": 8, "jobId": "other"})) is moved
    done = moved.with_event(event_from_wire(
        {**EVENT, "seq": 9, "type": "job.completed", "status": "completed", "result": {"ok": 1}}
    ))  # fmt: skip
    assert done.finished and done.result == {"ok": 1}
    with pytest.raises(ProtocolError):
        Job.from_wire({"status": "queued"})


def test_a_removed_event_ends_a_followed_job_and_marks_it_removed() -> None:
    done = Job.from_wire({"jobId": "j1", "status": "completed", "lastSeq": 9})
    assert not done.removed
    event = event_from_wire({**EVENT, "seq": 10, "type": "job.removed", "status": "completed",
                             "stage": "completed", "message": "Removed"})  # fmt: skip
    assert type(event) is JobRemoved and event.terminal
    gone = done.with_event(event)
    assert gone.removed and gone.removedAt == EVENT["timestamp"] and gone.status == "completed"


def test_meta_defaults_to_the_protocols_terminal_statuses() -> None:
    meta = Meta.from_wire({"epoch": "e", "seq": 3, "stageNames": {"queued": "Waiting"}})
    assert meta.terminalStatuses == ["cancelled", "completed", "failed"]
    assert Meta.from_wire({"terminalStatuses": ["done"]}).terminalStatuses == ["done"]
