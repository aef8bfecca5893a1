"""The store's publish contract (``Store.on_commit``): durable first, in seq order, each event
once, and before its writer hears back; and a store that breaks it is caught.

``check_publish_order`` drives a real store with concurrent writes of every kind and checks
each delivered event against an independent reading of the database at the moment it is
delivered. A backend's test runs it with that backend's reading of its own database.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from jobserver.errors import LeaseLost
from jobserver.models import Event, EventType, JobStage
from jobserver.store import NewJob, ProgressUpdate, Store
from jobserver.store.sqlite import SqliteStore

Committed = Callable[[int], bool]


class Recorder:
    """A commit listener that checks each event is durable as it is handed over."""

    def __init__(self, committed: Committed) -> None:
        self.committed = committed
        self.seqs: list[int] = []
        self.early: list[int] = []

    def __call__(self, events: list[Event]) -> None:
        for event in events:
            if not self.committed(event.seq):
                self.early.append(event.seq)
            self.seqs.append(event.seq)


async def check_publish_order(store: Store, committed: Committed) -> None:
    recorder = Recorder(committed)
    store.on_commit(recorder)
    heard: list[int] = []

    def answered(seq: int) -> None:
        # The caller hears back only after its event was handed to the listener.
        assert seq in recorder.seqs, f"seq {seq} answered before it was published"
        heard.append(seq)

    async def one(i: int) -> None:
        _, events = await store.enqueue(NewJob(type="t", user_id=f"u{i % 3}"))
        answered(events[0].seq)

    await asyncio.gather(*(one(i) for i in range(60)))
    claimed = await store.claim(60, 30)
    for _, event in claimed:
        answered(event.seq)
    done = asyncio.get_running_loop().create_future()
    pending = {"n": 0}

    def progressed(event: Event | None, error: BaseException | None) -> None:
        assert error is None and event is not None
        answered(event.seq)
        pending["n"] -= 1
        if pending["n"] == 0:
            done.set_result(None)

    for job, _ in claimed:
        assert job.lease_token is not None
        for step in range(3):
            pending["n"] += 1
            update = ProgressUpdate(JobStage.PROCESSING, step * 30.0)
            store.progress(job.id, job.lease_token, update, progressed)
    await done

    async def finish(job_id: str, token: str, n: int) -> None:
        if n % 2:
            answered((await store.complete(job_id, token, {"n": n})).seq)
        else:
            answered((await store.fail(job_id, token, {"code": "X", "message": "m",
                                                       "recoverable": False}, None)).seq)

    await asyncio.gather(*(finish(job.id, str(job.lease_token), n)
                           for n, (job, _) in enumerate(claimed)))  # fmt: skip
    assert not recorder.early, f"published before they were durable: {recorder.early[:10]}"
    before = list(recorder.seqs)
    with pytest.raises(LeaseLost):  # a refused write publishes nothing
        await store.complete(claimed[0][0].id, "not-the-token", {})
    assert recorder.seqs == before, "a write that did not commit published an event"
    assert recorder.seqs == sorted(set(recorder.seqs)), "out of seq order, or published twice"
    assert sorted(heard) == recorder.seqs  # every event written was published, once
    assert len(recorder.seqs) == 60 + 60 + 180 + 60


def sqlite_committed(path: Path) -> Committed:
    """Whether an event is in the file, read on a connection of its own (not the store's)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def committed(seq: int) -> bool:
        return conn.execute("SELECT 1 FROM events WHERE seq=?", (seq,)).fetchone() is not None

    return committed


async def test_sqlite_publishes_durable_events_in_order_before_answering(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.db")
    await store.open()
    try:
        await check_publish_order(store, sqlite_committed(store.path))
    finally:
        await store.close()


class PublishesEarly(SqliteStore):
    """A broken backend: it hands a completion's event to the listener before it commits (and
    skips that seq when the commit comes). Everything else it does right."""

    def on_commit(self, publish: Callable[[list[Event]], None]) -> None:
        self._listener = publish
        self._early: set[int] = set()
        super().on_commit(lambda events: publish([e for e in events if e.seq not in self._early]))

    async def complete(self, job_id: str, token: str, result: dict[str, object]) -> Event:
        guess = await self.head_seq() + 1  # the seq it will most likely get
        self._early.add(guess)
        self._listener([Event(guess, EventType.COMPLETED, job_id, "?", b"{}")])
        return await super().complete(job_id, token, result)


async def test_a_store_that_publishes_before_commit_fails_the_contract(tmp_path: Path) -> None:
    store = PublishesEarly(tmp_path / "store.db")
    await store.open()
    try:
        with pytest.raises(AssertionError, match="before they were durable"):
            await check_publish_order(store, sqlite_committed(store.path))
    finally:
        await store.close()
