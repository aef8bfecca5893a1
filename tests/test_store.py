"""The Store contract, run against every backend (the `store` fixture is parametrised)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import orjson
import pytest

from jobserver.errors import IllegalTransition, JobNotFound, LeaseLost, ServiceUnavailable
from jobserver.models import Event, EventType, JobStage, JobStatus, error_dict
from jobserver.store import NewJob, ProgressUpdate, Store
from jobserver.store.sqlite import SqliteStore


def new(user: str = "u1", **kw: object) -> NewJob:
    return NewJob(type="t", user_id=user, **kw)  # type: ignore[arg-type]


async def progress(store: Store, job_id: str, token: str, update: ProgressUpdate) -> Event:
    """Store.progress reports through a callback; wait for it."""
    future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()

    def done(event: Event | None, error: BaseException | None) -> None:
        if error is not None:
            future.set_exception(error)
        else:
            assert event is not None
            future.set_result(event)

    store.progress(job_id, token, update, done)
    return await future


async def claim_one(store: Store) -> tuple[str, str]:
    [(job, _)] = await store.claim(1, 30)
    assert job.lease_token
    return job.id, job.lease_token


async def test_enqueue_writes_job_and_event_together(store: Store) -> None:
    job, [event] = await store.enqueue(new(payload={"a": 1}))
    assert event.type is EventType.QUEUED and event.job_id == job.id
    stored = await store.get_job(job.id)
    assert stored is not None and stored.last_seq == event.seq and stored.payload == {"a": 1}
    [logged] = await store.events_after(0, job_id=job.id)
    assert logged.data == event.data


async def test_idempotency_key_is_per_user(store: Store) -> None:
    a, events = await store.enqueue(new(idempotency_key="k"))
    b, again = await store.enqueue(new(idempotency_key="k"))
    c, other = await store.enqueue(new(user="u2", idempotency_key="k"))
    assert a.id == b.id and events and not again
    assert c.id != a.id and other


async def test_claim_is_exclusive_and_leases(store: Store) -> None:
    for _ in range(5):
        await store.enqueue(new())
    first, second = await asyncio.gather(store.claim(3, 30), store.claim(3, 30))
    ids = [job.id for job, _ in first + second]
    assert len(ids) == 5 == len(set(ids))
    for job, event in first + second:
        assert job.status is JobStatus.ACTIVE and job.attempts == 1 and job.lease_token
        assert event.type is EventType.PROGRESS
    assert await store.claim(1, 30) == []


async def test_delayed_job_is_not_claimed_before_its_time(store: Store) -> None:
    await store.enqueue(new(delay_seconds=60))
    assert await store.claim(1, 30) == []
    due = await store.next_run_at()
    assert due is not None


async def test_progress_complete_and_fencing(store: Store) -> None:
    await store.enqueue(new())
    job_id, token = await claim_one(store)
    event = await progress(store, job_id, token, ProgressUpdate(JobStage.PROCESSING, 40, "m"))
    assert orjson.loads(event.data)["stage"] == "processing"
    with pytest.raises(LeaseLost):
        await progress(store, job_id, "not-the-token", ProgressUpdate(JobStage.PROCESSING, 50))
    with pytest.raises(LeaseLost):
        await store.complete(job_id, "not-the-token", {})
    done = await store.complete(job_id, token, {"noteId": "n1"})
    assert done.type is EventType.COMPLETED
    with pytest.raises(LeaseLost):
        await store.complete(job_id, token, {})
    job = await store.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED and job.result == {"noteId": "n1"}


async def test_completion_from_a_worker_whose_lease_was_taken_over_is_rejected(
    store: Store,
) -> None:
    await store.enqueue(new(max_attempts=3))
    job_id, old_token = await claim_one(store)
    await store.renew({job_id: old_token}, -1)  # the lease expires
    [lost] = await store.recover(expired_only=True)
    assert lost.type is EventType.RETRYING
    _, new_token = await claim_one(store)
    assert new_token != old_token
    with pytest.raises(LeaseLost):
        await store.complete(job_id, old_token, {"by": "old"})
    assert await store.renew({job_id: old_token}, 30) == {job_id}
    await store.complete(job_id, new_token, {"by": "new"})
    job = await store.get_job(job_id)
    assert job is not None and job.result == {"by": "new"} and job.attempts == 2


async def test_fail_with_retry_then_for_good(store: Store) -> None:
    await store.enqueue(new(max_attempts=2))
    job_id, token = await claim_one(store)
    err = error_dict("E", "boom", True)
    retrying = await store.fail(job_id, token, err, retry_at=0)
    assert retrying.type is EventType.RETRYING
    job_id, token = await claim_one(store)
    final = await store.fail(job_id, token, err, retry_at=0)  # no attempts left
    assert final.type is EventType.FAILED
    job = await store.get_job(job_id)
    assert job is not None and job.status is JobStatus.FAILED and job.error == err


async def test_cancel_and_retry_follow_the_transition_table(store: Store) -> None:
    job, _ = await store.enqueue(new())
    with pytest.raises(IllegalTransition):
        await store.retry(job.id, "u1")
    with pytest.raises(JobNotFound):
        await store.cancel(job.id, "someone-else")
    cancelled, event = await store.cancel(job.id, "u1")
    assert cancelled.status is JobStatus.CANCELLED and event.type is EventType.CANCELLED
    with pytest.raises(IllegalTransition):
        await store.cancel(job.id, "u1")
    again, event = await store.retry(job.id, "u1")
    assert again.status is JobStatus.QUEUED and event.type is EventType.QUEUED


async def test_cancel_of_a_running_job_fences_its_worker(store: Store) -> None:
    await store.enqueue(new())
    job_id, token = await claim_one(store)
    await store.cancel(job_id, None)
    with pytest.raises(LeaseLost):
        await progress(store, job_id, token, ProgressUpdate(JobStage.PROCESSING, 90))


async def test_requeue_does_not_count_the_attempt(store: Store) -> None:
    await store.enqueue(new(max_attempts=1))
    job_id, token = await claim_one(store)
    event = await store.requeue(job_id, token, "shutdown")
    assert event.type is EventType.QUEUED
    job = await store.get_job(job_id)
    assert job is not None and job.attempts == 0 and job.status is JobStatus.QUEUED


async def test_recover_requeues_or_fails_with_worker_lost(store: Store) -> None:
    await store.enqueue(new(max_attempts=2))
    await store.enqueue(new(max_attempts=1))
    await store.claim(2, 30)
    events = await store.recover(expired_only=False)
    kinds = sorted(orjson.loads(e.data)["type"] for e in events)
    assert kinds == ["job.failed", "job.retrying"]
    for e in events:
        assert orjson.loads(e.data)["error"]["code"] == "WORKER_LOST"
    counts = await store.count_by_status()
    assert counts[JobStatus.ACTIVE] == 0 and counts[JobStatus.FAILED] == 1


async def test_seq_is_strictly_increasing_under_concurrent_writers(store: Store) -> None:
    jobs = await asyncio.gather(*(store.enqueue(new(user=f"u{i % 3}")) for i in range(200)))
    seqs = [events[0].seq for _, events in jobs]
    assert len(set(seqs)) == 200
    logged = await store.events_after(0, limit=10_000)
    assert [e.seq for e in logged] == sorted(e.seq for e in logged)
    assert [e.seq for e in logged] == list(range(logged[0].seq, logged[0].seq + 200))
    mine = await store.events_after(0, user_id="u1", limit=10_000)
    assert mine and all(e.user_id == "u1" for e in mine)


async def test_a_bad_write_fails_alone_and_the_others_commit(store: Store) -> None:
    _job, _ = await store.enqueue(new())
    good = [store.enqueue(new()) for _ in range(5)]
    bad = store.cancel("no-such-job", None)
    results = await asyncio.gather(*good, bad, return_exceptions=True)
    assert isinstance(results[-1], JobNotFound)
    assert all(not isinstance(r, BaseException) for r in results[:-1])
    assert (await store.count_by_status())[JobStatus.QUEUED] == 6


async def test_sqlite_epoch_and_head_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    first = SqliteStore(path)
    await first.open()
    await first.enqueue(new())
    epoch, head = first.epoch, await first.head_seq()
    with pytest.raises(ServiceUnavailable):
        await SqliteStore(path, lock_wait=0.2).open()  # one process owns the file
    await first.close()
    second = SqliteStore(path)
    await second.open()
    assert second.epoch == epoch and await second.head_seq() == head
    _, [event] = await second.enqueue(new())
    assert event.seq == head + 1
    await second.close()
    fresh = SqliteStore(tmp_path / "other.db")
    await fresh.open()
    assert fresh.epoch != epoch
    await fresh.close()


async def test_sqlite_pragmas_are_durable(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "s.db")
    await s.open()
    settings = await s.settings()  # the writer process's own connection
    assert settings["journal_mode"] == "wal"
    assert settings["synchronous"] == 2  # FULL
    assert settings["busy_timeout"] == 5000
    await s.close()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_job_ids_sort_by_creation_time_and_stay_unique() -> None:
    """Inserts append to the indexes only if later jobs get larger ids."""
    from jobserver.store.changes import new_job_id

    times = [1_700_000_000.0 + i * 0.001 for i in range(200)]
    ids = [new_job_id(t) for t in times]
    assert ids == sorted(ids) and all(len(i) == 32 for i in ids)
    assert len({new_job_id(times[0]) for _ in range(1000)}) == 1000


async def test_each_returned_job_names_its_own_event_as_last_seq(store: Store) -> None:
    """Clients resume a job from its lastSeq: the job a write returns must carry the seq of
    the event that write made (regression: jobs crossed from the writer before it was set)."""
    job, [queued] = await store.enqueue(new())
    assert job.last_seq == queued.seq
    [(claimed, started)] = await store.claim(1, 30)
    assert claimed.last_seq == started.seq
    cancelled, event = await store.cancel(job.id, None)
    assert cancelled.last_seq == event.seq
    retried, event = await store.retry(job.id, None)
    assert retried.last_seq == event.seq == await store.head_seq()
