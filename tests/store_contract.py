"""The Store contract: one suite every backend runs (``class TestXStore(StoreContract)``).

A backend's test class sets ``backend`` to its name in ``conftest.BACKENDS``, which says how
to make one of its stores and how to tell, independently of the store, whether an event has
committed. The fixtures ``store``, ``make_store`` and ``committed`` then come from conftest.

The publish order (``Store.on_commit``, which ``queue.JobQueue`` relies on) is checked on
one workload of concurrent writes of every kind: each event handed over once, in seq order;
none before it is durable and none that did not commit; and every write's caller hears
back only after its event was handed over. ``tests/test_publish_order.py`` runs the same
checks on stores that break the order, and they fail.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

import orjson
import pytest

from jobserver.errors import (
    IllegalTransition,
    InvalidPayload,
    JobNotFound,
    LeaseLost,
    ServiceUnavailable,
)
from jobserver.models import Event, EventType, JobStage, JobStatus, error_dict
from jobserver.store import NewJob, ProgressUpdate, Store
from tests.conftest import Committed, MakeStore


def new(user: str = "u1", **kw: Any) -> NewJob:
    return NewJob(type="t", user_id=user, **kw)


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


async def finish(store: Store, user: str = "u1", *, fail: bool = False) -> str:
    """A job run to its end (completed, or failed for good); its id."""
    job, _ = await store.enqueue(NewJob(type="t", user_id=user))
    [(claimed, _)] = await store.claim(1, 30)
    assert claimed.id == job.id and claimed.lease_token
    if fail:
        await store.fail(job.id, claimed.lease_token, error_dict("X", "no", False), None)
    else:
        await store.complete(job.id, claimed.lease_token, {"ok": True})
    return job.id


# -- the publish order ------------------------------------------------------------------------


@dataclass
class PublishLog:
    """What a commit listener was handed, checked against an independent reading as it came."""

    committed: Committed
    seqs: list[int] = field(default_factory=list)
    early: list[int] = field(default_factory=list)  # handed over before they had committed
    answered: list[int] = field(default_factory=list)  # seqs of the writes' answers, in order
    unpublished_answers: list[int] = field(default_factory=list)  # answered, not handed over

    def __call__(self, events: list[Event]) -> None:
        for event in events:
            if not self.committed(event.seq):
                self.early.append(event.seq)
            self.seqs.append(event.seq)

    def answer(self, seq: int) -> None:
        if seq not in self.seqs:
            self.unpublished_answers.append(seq)
        self.answered.append(seq)


async def publish_workload(store: Store, committed: Committed) -> PublishLog:
    """Concurrent writes of every kind (60 jobs: enqueue, claim, 3 progress each, complete or
    fail), then a refused write; what the listener was handed, and when."""
    log = PublishLog(committed)
    store.on_commit(log)

    async def one(i: int) -> None:
        _, events = await store.enqueue(NewJob(type="t", user_id=f"u{i % 3}"))
        log.answer(events[0].seq)

    await asyncio.gather(*(one(i) for i in range(60)))
    claimed = await store.claim(60, 30)
    for _, event in claimed:
        log.answer(event.seq)
    done = asyncio.get_running_loop().create_future()
    pending = {"n": 0}

    def progressed(event: Event | None, error: BaseException | None) -> None:
        if event is not None:
            log.answer(event.seq)
        pending["n"] -= 1
        if error is not None and not done.done():
            done.set_exception(error)
        elif pending["n"] == 0 and not done.done():
            done.set_result(None)

    for job, _ in claimed:
        assert job.lease_token is not None
        for step in range(3):
            pending["n"] += 1
            update = ProgressUpdate(JobStage.PROCESSING, step * 30.0)
            store.progress(job.id, job.lease_token, update, progressed)
    await done

    async def finish_one(job_id: str, token: str, n: int) -> None:
        if n % 2:
            log.answer((await store.complete(job_id, token, {"n": n})).seq)
        else:
            failure = error_dict("X", "m", False)
            log.answer((await store.fail(job_id, token, failure, None)).seq)

    await asyncio.gather(*(finish_one(job.id, str(job.lease_token), n)
                           for n, (job, _) in enumerate(claimed)))  # fmt: skip
    with pytest.raises(LeaseLost):  # a refused write publishes nothing
        await store.complete(claimed[0][0].id, "not-the-token", {})
    await asyncio.sleep(0.05)  # anything handed over late (or wrongly) comes by now
    assert len(log.answered) == 60 + 60 + 180 + 60
    return log


def check_seq_order(log: PublishLog) -> None:
    """Every event written was handed over once, in seq order."""
    assert log.seqs == sorted(set(log.seqs)), "out of seq order, or handed over twice"
    missing = sorted(set(log.answered) - set(log.seqs))
    assert not missing, f"written but never handed over: {missing[:10]}"


def check_published_before_answered(log: PublishLog) -> None:
    """A write's caller heard back only once its event was handed over."""
    assert not log.unpublished_answers, (
        f"answered before they were published: {log.unpublished_answers[:10]}"
    )


def check_only_committed_published(log: PublishLog) -> None:
    """Nothing was handed over before it was durable, nor anything that never committed."""
    assert not log.early, f"published before they were durable: {log.early[:10]}"
    # Every write that committed was answered with its seq: any other seq handed over is an
    # event that never committed (such as the refused write's).
    extra = sorted(set(log.seqs) - set(log.answered))
    assert not extra, f"published events no committed write made: {extra[:10]}"


# -- the suite --------------------------------------------------------------------------------


class StoreContract:
    """The tests every store backend passes; subclass with ``backend`` set."""

    backend: ClassVar[str]

    @pytest.fixture
    def backend_name(self) -> str:
        return self.backend

    # -- the publish order ----------------------------------------------------------------------

    async def test_events_are_published_once_in_seq_order(
        self, store: Store, committed: Committed
    ) -> None:
        check_seq_order(await publish_workload(store, committed))

    async def test_an_event_is_published_before_its_write_resolves(
        self, store: Store, committed: Committed
    ) -> None:
        check_published_before_answered(await publish_workload(store, committed))

    async def test_nothing_is_published_that_did_not_commit(
        self, store: Store, committed: Committed
    ) -> None:
        check_only_committed_published(await publish_workload(store, committed))

    # -- jobs and their events ------------------------------------------------------------------

    async def test_the_bytes_quota_sums_payload_sizes(self, store: Store) -> None:
        """What the upload bytes quota reads (``quotas.check_bytes``): payload sizes."""
        for user, size in (("u1", 100), ("u1", 250), ("u2", 7)):
            await store.enqueue(new(user, payload={"size": size}, delay_seconds=3600))
        await store.enqueue(new("u2", payload={"size": "not a number"}, delay_seconds=3600))
        assert await store.payload_total("u1", "size") == 350
        assert await store.payload_total("u2", "size") == 7
        assert await store.payload_total("nobody", "size") == 0

    async def test_enqueue_writes_job_and_event_together(self, store: Store) -> None:
        job, [event] = await store.enqueue(new(payload={"a": 1}))
        assert event.type is EventType.QUEUED and event.job_id == job.id
        stored = await store.get_job(job.id)
        assert stored is not None and stored.last_seq == event.seq and stored.payload == {"a": 1}
        [logged] = await store.events_after(0, job_id=job.id)
        assert logged.data == event.data

    async def test_idempotency_key_is_per_user(self, store: Store) -> None:
        a, events = await store.enqueue(new(idempotency_key="k"))
        b, again = await store.enqueue(new(idempotency_key="k"))
        c, other = await store.enqueue(new(user="u2", idempotency_key="k"))
        assert a.id == b.id and events and not again
        assert c.id != a.id and other

    async def test_claim_is_exclusive_and_leases(self, store: Store) -> None:
        for _ in range(5):
            await store.enqueue(new())
        first, second = await asyncio.gather(store.claim(3, 30), store.claim(3, 30))
        ids = [job.id for job, _ in first + second]
        assert len(ids) == 5 == len(set(ids))
        for job, event in first + second:
            assert job.status is JobStatus.ACTIVE and job.attempts == 1 and job.lease_token
            assert event.type is EventType.PROGRESS
        assert await store.claim(1, 30) == []

    async def test_claim_takes_no_more_of_a_type_than_its_cap(self, store: Store) -> None:
        for _ in range(3):
            await store.enqueue(NewJob(type="capped", user_id="u1"))
        for _ in range(2):
            await store.enqueue(new())
        claimed = await store.claim(10, 30, {"capped": 1})
        types = sorted(job.type for job, _ in claimed)
        assert types == ["capped", "t", "t"]

    async def test_claim_takes_no_more_of_a_user_than_its_room(self, store: Store) -> None:
        # u1's backlog comes first, more of it than one page: a limit of 3 running per user,
        # with 1 of u1's running already, leaves u1 room for 2; u2 and u3 get theirs.
        for _ in range(12):
            await store.enqueue(new("u1"))
        await store.enqueue(new("u2"))
        await store.enqueue(NewJob(type="capped", user_id="u3"))
        await store.enqueue(NewJob(type="capped", user_id="u3"))
        claimed = await store.claim(6, 30, {"capped": 1}, (3, {"u1": 1, "u2": 3}))
        users = sorted(job.user_id for job, _ in claimed)
        assert users == ["u1", "u1", "u3"]  # u2 is full; u3's second is over its type's cap
        again = await store.claim(6, 30, None, (3, {"u1": 3, "u2": 2}))
        assert sorted(job.user_id for job, _ in again) == ["u2", "u3"]
        assert len(await store.claim(20, 30)) == 10  # no limit: the rest of u1's

    async def test_delayed_job_is_not_claimed_before_its_time(self, store: Store) -> None:
        await store.enqueue(new(delay_seconds=60))
        assert await store.claim(1, 30) == []
        due = await store.next_run_at()
        assert due is not None and due > time.time() + 50

    async def test_progress_complete_and_fencing(self, store: Store) -> None:
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
        assert job is not None and job.status is JobStatus.COMPLETED
        assert job.result == {"noteId": "n1"}

    async def test_errors_keep_their_code_and_message(self, store: Store) -> None:
        await store.enqueue(new())
        job_id, _ = await claim_one(store)
        with pytest.raises(LeaseLost) as caught:
            await store.complete(job_id, "not-the-token", {})
        assert caught.value.code == "LEASE_LOST" and "no longer leased" in caught.value.message

    async def test_completion_from_a_worker_whose_lease_was_taken_over_is_rejected(
        self, store: Store
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

    async def test_fail_with_retry_then_for_good(self, store: Store) -> None:
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

    async def test_cancel_and_retry_follow_the_transition_table(self, store: Store) -> None:
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

    async def test_a_claim_in_the_batch_of_a_cancel_does_not_take_the_cancelled_job(
        self, store: Store
    ) -> None:
        # Submitted together, so one batch (one transaction) holds both: the claim must see
        # the cancel the batch made before it, not the job as the table had it.
        job, _ = await store.enqueue(new())
        (cancelled, _), claimed = await asyncio.gather(
            store.cancel(job.id, "u1"), store.claim(5, 30)
        )
        assert claimed == [] and cancelled.status is JobStatus.CANCELLED
        assert (await store.get_job(job.id)).status is JobStatus.CANCELLED  # type: ignore[union-attr]

    async def test_a_renewal_holds_through_a_progress_in_its_batch(self, store: Store) -> None:
        # One batch: the renewal writes the lease, then the progress writes the job's row;
        # the progress must start from the renewed row, not a copy read before it.
        await store.enqueue(new())
        [(job, _)] = await store.claim(1, 30)
        token = job.lease_token
        assert token is not None
        lost, _ = await asyncio.gather(
            store.renew({job.id: token}, 3600),
            progress(store, job.id, token, ProgressUpdate(JobStage.PROCESSING, 10)),
        )
        assert lost == set()
        kept = await store.get_job(job.id)
        assert kept is not None and kept.progress == 10
        assert kept.lease_expires_at is not None and kept.lease_expires_at > time.time() + 3000

    async def test_cancel_of_a_running_job_fences_its_worker(self, store: Store) -> None:
        await store.enqueue(new())
        job_id, token = await claim_one(store)
        await store.cancel(job_id, None)
        with pytest.raises(LeaseLost):
            await progress(store, job_id, token, ProgressUpdate(JobStage.PROCESSING, 90))

    async def test_requeue_does_not_count_the_attempt(self, store: Store) -> None:
        await store.enqueue(new(max_attempts=1))
        job_id, token = await claim_one(store)
        event = await store.requeue(job_id, token, "shutdown")
        assert event.type is EventType.QUEUED
        job = await store.get_job(job_id)
        assert job is not None and job.attempts == 0 and job.status is JobStatus.QUEUED

    async def test_recover_requeues_or_fails_with_worker_lost(self, store: Store) -> None:
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

    async def test_seq_is_strictly_increasing_under_concurrent_writers(self, store: Store) -> None:
        jobs = await asyncio.gather(*(store.enqueue(new(user=f"u{i % 3}")) for i in range(200)))
        seqs = [events[0].seq for _, events in jobs]
        assert len(set(seqs)) == 200
        logged = await store.events_after(0, limit=10_000)
        assert [e.seq for e in logged] == sorted(e.seq for e in logged)
        assert [e.seq for e in logged] == list(range(logged[0].seq, logged[0].seq + 200))
        mine = await store.events_after(0, user_id="u1", limit=10_000)
        assert mine and all(e.user_id == "u1" for e in mine)

    async def test_a_bad_write_fails_alone_and_the_others_commit(self, store: Store) -> None:
        await store.enqueue(new())
        good = [store.enqueue(new()) for _ in range(5)]
        bad = store.cancel("no-such-job", None)
        results = await asyncio.gather(*good, bad, return_exceptions=True)
        assert isinstance(results[-1], JobNotFound)
        assert all(not isinstance(r, BaseException) for r in results[:-1])
        assert (await store.count_by_status())[JobStatus.QUEUED] == 6

    async def test_a_value_that_is_not_json_fails_only_its_own_write(self, store: Store) -> None:
        await store.enqueue(new())
        job_id, token = await claim_one(store)
        odd: dict[str, Any] = {"callback": lambda: None}  # not JSON (nor picklable)
        bad = progress(store, job_id, token, ProgressUpdate(JobStage.PROCESSING, 10, "x", odd))
        good = progress(store, job_id, token, ProgressUpdate(JobStage.PROCESSING, 20, "y"))
        results = await asyncio.gather(bad, good, return_exceptions=True)
        assert isinstance(results[0], InvalidPayload)
        assert isinstance(results[1], Event) and results[1].seq == 3
        with pytest.raises(InvalidPayload):
            await store.enqueue(new(payload={"when": object()}))

    async def test_metadata_may_be_any_mapping_and_messages_any_str(self, store: Store) -> None:
        """Values of the caller's own types are stored as plain ones (a class from the
        server's __main__ could not even be pickled, and would fail every write made with it)."""
        odd_str = type("OddStr", (str,), {"__module__": "__main__"})
        for _ in range(3):
            await store.enqueue(new())
        claimed = [await claim_one(store) for _ in range(3)]
        updates = [
            ProgressUpdate(JobStage.PROCESSING, 10, odd_str("odd"), MappingProxyType({"a": 1})),
            ProgressUpdate(JobStage.PROCESSING, 20, "plain", {"b": 2}),
            ProgressUpdate(JobStage.PROCESSING, 30, odd_str("odd too")),
        ]
        events = await asyncio.gather(
            *(progress(store, job_id, token, u)
              for (job_id, token), u in zip(claimed, updates, strict=True))
        )  # fmt: skip
        bodies = [orjson.loads(e.data) for e in events]
        assert [b["message"] for b in bodies] == ["odd", "plain", "odd too"]
        assert bodies[0]["metadata"] == {"a": 1}

    async def test_each_returned_job_names_its_own_event_as_last_seq(self, store: Store) -> None:
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

    async def test_list_jobs_newest_first_per_user_and_status(self, store: Store) -> None:
        first, _ = await store.enqueue(new())
        second, _ = await store.enqueue(new())
        await store.enqueue(new(user="u2"))
        await store.cancel(first.id, None)
        assert [j.id for j in await store.list_jobs("u1", None, 10, 0)] == [second.id, first.id]
        assert [j.id for j in await store.list_jobs("u1", None, 1, 1)] == [first.id]
        cancelled = await store.list_jobs("u1", JobStatus.CANCELLED, 10, 0)
        assert [j.id for j in cancelled] == [first.id]

    async def test_search_and_counts_agree_per_user(self, store: Store) -> None:
        bees, _ = await store.enqueue(new(label="Bees of Europe.pdf"))
        umlaut, _ = await store.enqueue(new(label="Über Bienen.pdf"))
        await store.enqueue(new(label="wasps.pdf"))
        other, _ = await store.enqueue(NewJob(type="demo.sleep", user_id="u1"))
        await store.enqueue(new(user="u2", label="bees too"))
        await store.cancel(bees.id, None)
        found = await store.list_jobs("u1", None, 10, 0, query="BEES")
        assert [j.id for j in found] == [bees.id]
        assert [j.id for j in await store.list_jobs("u1", None, 10, 0, query="demo.")] == [
            other.id
        ]
        assert await store.list_jobs("u1", JobStatus.QUEUED, 10, 0, query="bees") == []
        assert [j.id for j in await store.list_jobs("u1", None, 10, 0, query="Über")] == [
            umlaut.id
        ]
        # Case folds beyond ASCII on both backends (SQLite's own lower() would not).
        assert [j.id for j in await store.list_jobs("u1", None, 10, 0, query="über")] == [
            umlaut.id
        ]
        counts = await store.job_counts("u1", "bees")
        assert counts[JobStatus.CANCELLED] == 1 and sum(counts.values()) == 1
        everything = await store.job_counts("u1")
        assert everything[JobStatus.QUEUED] == 3 and everything[JobStatus.CANCELLED] == 1
        assert sum((await store.job_counts("u2")).values()) == 1
        summer, _ = await store.enqueue(new(label="ÉTÉ en Provence.pdf"))
        assert [j.id for j in await store.list_jobs("u1", None, 10, 0, query="été")] == [
            summer.id
        ]
        assert sum((await store.job_counts("u1", "Été")).values()) == 1
        # A query ending in Σ: lowered alone it ends in the final sigma, within the label not.
        odyssey, _ = await store.enqueue(new(label="ΟΔΥΣΣΕΑΣ.pdf"))
        for query in ("ΟΔΥΣ", "ΟΔΥΣΣΕΑΣ", "οδυσσεασ.PDF"):
            found = await store.list_jobs("u1", None, 10, 0, query=query)
            assert [j.id for j in found] == [odyssey.id], query
        # The final sigma ς folds to the plain one on both sides: a query typed with it finds
        # a label in capitals, and a label written with it is found by a query in capitals
        # (PostgreSQL's lower() alone keeps ς, and lowers Σ to the plain one).
        found = await store.list_jobs("u1", None, 10, 0, query="οδυσσεας")
        assert [j.id for j in found] == [odyssey.id]
        island, _ = await store.enqueue(new(label="νησος.pdf"))
        for query in ("ΝΗΣΟΣ", "νησοσ.PDF", "νησος", "ος."):
            found = await store.list_jobs("u1", None, 10, 0, query=query)
            assert [j.id for j in found] == [island.id], query
        assert sum((await store.job_counts("u1", "ΝΗΣΟΣ")).values()) == 1

    async def test_removed_job_leaves_lists_and_counts_but_keeps_its_events(
        self, store: Store
    ) -> None:
        done = await finish(store)
        waiting, _ = await store.enqueue(new())
        with pytest.raises(IllegalTransition):
            await store.remove(waiting.id, "u1")  # not finished
        with pytest.raises(JobNotFound):
            await store.remove(done, "u2")  # another user's
        before = await store.events_after(0, job_id=done)
        job, event = await store.remove(done, "u1")
        assert event.type is EventType.REMOVED and job.removed_at is not None
        body = orjson.loads(event.data)
        assert body["status"] == "completed" and body["stage"] == "completed"
        assert job.last_seq == event.seq == await store.head_seq()
        assert [j.id for j in await store.list_jobs("u1", None, 10, 0)] == [waiting.id]
        assert sum((await store.job_counts("u1")).values()) == 1
        by_status = await store.count_by_status()  # the /metrics gauge
        assert by_status[JobStatus.COMPLETED] == 0 and by_status[JobStatus.QUEUED] == 1
        stored = await store.get_job(done)
        assert stored is not None and stored.removed_at is not None
        assert await store.events_after(0, job_id=done) == [*before, event]
        for again in (store.remove, store.retry, store.cancel):
            with pytest.raises(JobNotFound):
                await again(done, "u1")

    async def test_remove_finished_takes_only_the_statuses_asked(self, store: Store) -> None:
        completed = [await finish(store) for _ in range(3)]
        failed = await finish(store, fail=True)
        theirs = await finish(store, user="u2")
        mine_later, _ = await store.enqueue(new())
        events = await store.remove_finished("u1", [JobStatus.COMPLETED], 2)
        assert [e.job_id for e in events] == completed[:2]
        assert all(e.type is EventType.REMOVED for e in events)
        events = await store.remove_finished("u1", [JobStatus.COMPLETED, JobStatus.FAILED], 10)
        assert [e.job_id for e in events] == [completed[2], failed]
        assert [j.id for j in await store.list_jobs("u1", None, 10, 0)] == [mine_later.id]
        assert await store.remove_finished("u1", [JobStatus.COMPLETED], 10) == []
        assert [j.id for j in await store.list_jobs("u2", None, 10, 0)] == [theirs]

    async def test_first_event_carries_the_new_jobs_metadata(self, store: Store) -> None:
        job, [queued] = await store.enqueue(new(metadata={"fileName": "a.pdf"}))
        assert job.metadata == {"fileName": "a.pdf"}
        assert orjson.loads(queued.data)["metadata"] == {"fileName": "a.pdf"}
        [(_, started)] = await store.claim(1, 30)
        assert orjson.loads(started.data)["metadata"] == {"fileName": "a.pdf"}

    # -- heads, epochs, reopening ---------------------------------------------------------------

    async def test_epoch_and_head_survive_reopen(self, make_store: MakeStore) -> None:
        first = await make_store()
        await first.enqueue(new())
        epoch, head = first.epoch, await first.head_seq()
        await first.close()
        second = await make_store()
        assert second.epoch == epoch and await second.head_seq() == head
        _, [event] = await second.enqueue(new())
        assert event.seq == head + 1
        await second.close()
        fresh = await make_store("other")
        assert fresh.epoch != epoch

    async def test_an_event_a_reader_can_see_is_never_above_the_seq_ceiling(
        self, store: Store
    ) -> None:
        """A client resumes from the last seq it read; the gateway calls a cursor above
        seq_ceiling() "ahead" and makes the client resync, so the ceiling must move as the
        commit lands, not when the batch is published (regression: about a third of reads
        were ahead)."""
        done = False
        ahead = reads = 0

        async def read() -> None:
            nonlocal ahead, reads
            while not done:
                events = await store.events_after(await store.head_seq(), limit=1000)
                ceiling = await store.seq_ceiling()
                reads += 1
                ahead += any(e.seq > ceiling for e in events)

        reader = asyncio.create_task(read())
        for _ in range(100):
            await asyncio.gather(*(store.enqueue(new()) for _ in range(20)))
        done = True
        await reader
        assert reads > 50 and ahead == 0

    # -- retention and health -------------------------------------------------------------------

    async def test_prune_deletes_old_finished_jobs_and_their_events_only(
        self, store: Store
    ) -> None:
        done = await finish(store)
        failed = await finish(store, fail=True)
        cancelled, _ = await store.enqueue(NewJob(type="t", user_id="u2", delay_seconds=60))
        await store.cancel(cancelled.id, None)
        old_events = await store.events_after(0, limit=10_000)
        cutoff = time.time()
        await asyncio.sleep(0.01)
        queued, _ = await store.enqueue(NewJob(type="t", user_id="u1", delay_seconds=60))
        recent = await finish(store)
        running, _ = await store.enqueue(NewJob(type="t", user_id="u1"))
        await store.claim(1, 30)

        pruned = await store.prune(cutoff)

        assert pruned.jobs == 3 and set(pruned.job_ids) == {done, failed, cancelled.id}
        assert pruned.events == len(old_events)
        assert pruned.through == max(e.seq for e in old_events) == await store.pruned_through()
        for gone in (done, failed, cancelled.id):
            assert await store.get_job(gone) is None
            assert await store.events_after(0, job_id=gone) == []
        for kept in (queued.id, recent, running.id):
            assert await store.get_job(kept) is not None
            assert await store.events_after(0, job_id=kept)
        counts = await store.count_by_status()
        assert counts[JobStatus.QUEUED] == 1 and counts[JobStatus.ACTIVE] == 1
        assert counts[JobStatus.COMPLETED] == 1 and counts[JobStatus.FAILED] == 0
        again = await store.prune(cutoff)
        assert (again.jobs, again.events, again.through) == (0, 0, pruned.through)

    async def test_prune_takes_at_most_limit_jobs_oldest_first(self, store: Store) -> None:
        ids = [await finish(store) for _ in range(3)]
        first = await store.prune(time.time(), limit=2)
        assert first.job_ids == tuple(ids[:2])
        second = await store.prune(time.time(), limit=2)
        assert second.job_ids == (ids[2],) and second.through > first.through

    async def test_pruned_through_survives_a_restart(self, make_store: MakeStore) -> None:
        store = await make_store()
        await finish(store)
        keep = await finish(store)
        pruned = await store.prune(time.time(), limit=1)
        head = await store.head_seq()
        await store.close()
        store = await make_store()
        assert await store.pruned_through() == pruned.through > 0
        assert await store.head_seq() == head
        assert await store.get_job(keep) is not None
        # A brand-new event still gets a fresh seq above everything, pruned or kept.
        _, [event] = await store.enqueue(new())
        assert event.seq == head + 1

    async def test_head_seq_never_goes_back_when_the_newest_events_are_pruned(
        self, make_store: MakeStore
    ) -> None:
        store = await make_store()
        await finish(store)
        head = await store.head_seq()
        await store.prune(time.time())
        await store.close()
        store = await make_store()
        assert await store.head_seq() == head == await store.pruned_through()
        _, [event] = await store.enqueue(new())
        assert event.seq == head + 1

    async def test_ping_is_a_real_write_and_fails_once_closed(self, store: Store) -> None:
        await store.ping()
        await store.close()
        with pytest.raises(ServiceUnavailable):
            await store.ping()
        with pytest.raises(ServiceUnavailable):
            await store.enqueue(new())

    async def test_payload_values_names_what_kept_jobs_point_at(self, store: Store) -> None:
        await store.enqueue(NewJob(type="t", user_id="u1", payload={"sha256": "aa", "n": 1}))
        await store.enqueue(NewJob(type="t", user_id="u2", payload={"sha256": "bb"}))
        await store.enqueue(NewJob(type="t", user_id="u2", payload={"other": "cc"}))
        assert await store.payload_values("sha256") == {"aa", "bb"}
        assert await store.payload_values("missing") == set()

    async def test_payload_named_says_which_values_kept_jobs_name(
        self, make_store: MakeStore
    ) -> None:
        """With the index a plugin declares for the key (``Tables.payload_index``), and
        without one (a key no plugin declared: the same answers)."""
        store = await make_store(storage=["jobserver.pdf.storage"])
        await store.enqueue(NewJob(type="t", user_id="u1", payload={"sha256": "aa", "n": 1}))
        await store.enqueue(NewJob(type="t", user_id="u2", payload={"sha256": "bb", "k": "aa"}))
        await store.enqueue(NewJob(type="t", user_id="u2", payload={"other": "cc"}))
        await store.enqueue(NewJob(type="t", user_id="u2", payload={"sha256": 7}))
        assert await store.payload_named("sha256", ["aa", "cc", "zz", "bb"]) == {"aa", "bb"}
        assert await store.payload_named("sha256", ["aa", "aa"]) == {"aa"}
        assert await store.payload_named("sha256", []) == set()
        assert await store.payload_named("k", ["aa", "bb"]) == {"aa"}
        assert await store.payload_named("missing", ["aa"]) == set()
        with pytest.raises(ValueError, match="plain name"):
            await store.payload_named("sha256') OR ('1", ["aa"])
