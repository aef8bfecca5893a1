"""Retention: pruning finished jobs and their events, the WAL kept small, health writes."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from jobserver.errors import ServiceUnavailable
from jobserver.models import JobStatus, error_dict
from jobserver.retention import Retention, file_pruner
from jobserver.store import NewJob, Store
from jobserver.store.frames import new_job_fields
from jobserver.store.sqlite import SqliteStore
from jobserver.store.sqlite_writer import Writer


async def finish(store: Store, user: str = "u1", *, fail: bool = False) -> str:
    job, _ = await store.enqueue(NewJob(type="t", user_id=user))
    [(claimed, _)] = await store.claim(1, 30)
    assert claimed.id == job.id and claimed.lease_token
    if fail:
        await store.fail(job.id, claimed.lease_token, error_dict("X", "no", False), None)
    else:
        await store.complete(job.id, claimed.lease_token, {"ok": True})
    return job.id


async def test_prune_deletes_old_finished_jobs_and_their_events_only(store: Store) -> None:
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


async def test_prune_takes_at_most_limit_jobs_oldest_first(store: Store) -> None:
    ids = [await finish(store) for _ in range(3)]
    first = await store.prune(time.time(), limit=2)
    assert first.job_ids == tuple(ids[:2])
    second = await store.prune(time.time(), limit=2)
    assert second.job_ids == (ids[2],) and second.through > first.through


async def test_pruned_through_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteStore(path)
    await store.open()
    await finish(store)
    keep = await finish(store)
    pruned = await store.prune(time.time(), limit=1)
    head = await store.head_seq()
    await store.close()
    store = SqliteStore(path)
    await store.open()
    try:
        assert await store.pruned_through() == pruned.through > 0
        assert await store.head_seq() == head
        assert await store.get_job(keep) is not None
        # A brand-new event still gets a fresh seq above everything, pruned or kept.
        _, [event] = await store.enqueue(NewJob(type="t", user_id="u1"))
        assert event.seq == head + 1
    finally:
        await store.close()


async def test_head_seq_never_goes_back_when_the_newest_events_are_pruned(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    store = SqliteStore(path)
    await store.open()
    await finish(store)
    head = await store.head_seq()
    await store.prune(time.time())
    await store.close()
    store = SqliteStore(path)
    await store.open()
    try:
        assert await store.head_seq() == head == await store.pruned_through()
        _, [event] = await store.enqueue(NewJob(type="t", user_id="u1"))
        assert event.seq == head + 1
    finally:
        await store.close()


async def test_ping_is_a_real_write_and_fails_once_closed(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    await store.ping()
    await store.close()
    with pytest.raises(ServiceUnavailable):
        await store.ping()
    with pytest.raises(ServiceUnavailable):
        await store.checkpoint()


async def test_wal_stays_bounded_under_steady_load(tmp_path: Path) -> None:
    """Writers and readers never stop, yet each checkpoint brings the WAL back to (near) zero."""
    path = tmp_path / "s.db"
    store = SqliteStore(path)
    await store.open()
    wal = path.with_name(path.name + "-wal")
    pad = {"pad": "x" * 2000}
    sizes: list[int] = []
    after: list[int] = []
    stop = asyncio.Event()

    async def writer(user: str) -> None:
        while not stop.is_set():
            job, _ = await store.enqueue(NewJob(type="t", user_id=user, payload=pad))
            await store.cancel(job.id, None)

    async def reader() -> None:
        while not stop.is_set():
            await store.list_jobs("w0", None, 20, 0)
            await store.events_after(0, user_id="w1", limit=50)

    tasks = [asyncio.create_task(writer(f"w{i}")) for i in range(4)]
    tasks.append(asyncio.create_task(reader()))
    try:
        for _ in range(6):
            await asyncio.sleep(0.4)
            sizes.append(wal.stat().st_size)
            after.append(await store.checkpoint())
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert max(sizes) > 100_000, sizes  # the load really wrote to the WAL
    # Truncated (0) unless a reader was mid-query; then bounded by what one interval writes.
    assert min(after) == 0 and max(after) <= max(sizes), (sizes, after)
    await store.close()
    assert not wal.exists() or wal.stat().st_size == 0


async def test_payload_values_names_what_kept_jobs_point_at(store: Store) -> None:
    await store.enqueue(NewJob(type="t", user_id="u1", payload={"sha256": "aa", "n": 1}))
    await store.enqueue(NewJob(type="t", user_id="u2", payload={"sha256": "bb"}))
    await store.enqueue(NewJob(type="t", user_id="u2", payload={"other": "cc"}))
    assert await store.payload_values("sha256") == {"aa", "bb"}
    assert await store.payload_values("missing") == set()


async def test_file_pruner_removes_old_files_no_job_needs(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "uploads"
    folder.mkdir()
    old = time.time() - 3600
    names = ["needed.pdf", "orphan.pdf", "fresh.pdf", ".incoming-123"]
    for name in names:
        (folder / name).write_bytes(b"%PDF-1.4")
    for name in ("needed.pdf", "orphan.pdf", ".incoming-123"):
        os.utime(folder / name, (old, old))
    await store.enqueue(NewJob(type="t", user_id="u1", payload={"sha256": "needed"}))
    prune = file_pruner(store, folder, "sha256")
    assert await prune(time.time() - 60) == 2
    assert sorted(p.name for p in folder.iterdir()) == ["fresh.pdf", "needed.pdf"]
    assert await file_pruner(store, tmp_path / "absent", "sha256")(time.time()) == 0


async def test_retention_prunes_jobs_then_the_uploads_they_named(store: Store, tmp_path: Path
                                                                  ) -> None:
    folder = tmp_path / "uploads"
    folder.mkdir()
    job, _ = await store.enqueue(NewJob(type="t", user_id="u1", payload={"sha256": "f1"}))
    [(claimed, _)] = await store.claim(1, 30)
    assert claimed.lease_token
    await store.complete(job.id, claimed.lease_token, {})
    (folder / "f1.pdf").write_bytes(b"%PDF-1.4")
    old = time.time() - 3600
    os.utime(folder / "f1.pdf", (old, old))
    retention = Retention(store, max_age_seconds=60, prune_interval=1, checkpoint_interval=1,
                          steps=[("files", file_pruner(store, folder, "sha256"))])
    assert await retention.prune() == 0  # finished a moment ago: kept, and so is its file
    assert (folder / "f1.pdf").exists()
    assert await retention.prune(now=time.time() + 120) == 1
    assert not (folder / "f1.pdf").exists()
    assert (retention.pruned_jobs, retention.pruned["files"]) == (1, 1)


async def test_an_event_a_reader_can_see_is_never_above_the_seq_ceiling(store: Store) -> None:
    """A client resumes from the last seq it read; the gateway calls a cursor above
    seq_ceiling() "ahead" and makes the client resync, so the ceiling must move as the commit
    lands, not when the batch is published (regression: about a third of reads were ahead)."""
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
        await asyncio.gather(*(store.enqueue(NewJob(type="t", user_id="u1")) for _ in range(20)))
    done = True
    await reader
    assert reads > 50 and ahead == 0


def test_a_commit_that_fails_never_leaves_its_seq_as_the_head(tmp_path: Path) -> None:
    """GET /api/meta gives clients head_seq() as their first cursor: it must never name a seq
    whose commit then fails and which the next event gets (that event would be skipped).
    The store's head is what its writer reports as durable after each batch."""
    real = sqlite3.connect(tmp_path / "w.db", isolation_level=None)
    failing = False

    class FailingCommit:  # the disk fails the next COMMIT
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def execute(self, sql: str, *args: Any) -> Any:
            if sql == "COMMIT" and failing:
                raise sqlite3.OperationalError("disk I/O error")
            return real.execute(sql, *args)

    enqueue = ("enqueue", new_job_fields(NewJob(type="t", user_id="u1")))
    writer = Writer(FailingCommit())  # type: ignore[arg-type]
    writer.open()
    writer.run([enqueue])
    before = writer.durable
    failing = True
    [(ok, error)], events = writer.run([enqueue])
    assert not ok and isinstance(error, ServiceUnavailable) and "disk I/O error" in str(error)
    assert events == [] and writer.durable == before
    failing = False
    [(ok, (_, [seq]))], [row] = writer.run([enqueue])
    assert ok and seq == row[0] == before + 1 == writer.durable
    real.close()
