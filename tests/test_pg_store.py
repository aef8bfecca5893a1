"""The PostgreSQL store (issue 17) on the real server at 127.0.0.1:5432: migrations from
several nodes at once, and one global seq order across nodes (the store contract, publish
order included, runs on it in tests/test_store.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import psycopg
import pytest

from jobserver.errors import LeaseLost, ServiceUnavailable, TooManyJobs
from jobserver.models import Event, JobStage, JobStatus
from jobserver.store import NewJob, ProgressUpdate, hold
from jobserver.store.pg_schema import LOCK_SPACE, SEQ_LOCK, payload_has, payload_of
from jobserver.store.postgres import PostgresStore
from jobserver.store.schema import CORE
from tests.pgcluster import URL, db, schema
from tests.plugins import cutting_op

__all__ = ["schema"]  # the fixture: a schema of its own, dropped afterwards


def spy_fetches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every query asyncpg's ``Connection.fetch`` sends from now on, in order."""
    import asyncpg

    sent: list[str] = []
    fetch = asyncpg.Connection.fetch

    async def spy(self: asyncpg.Connection, query: str, *args: Any, **kw: Any) -> Any:
        sent.append(query)
        return await fetch(self, query, *args, **kw)

    monkeypatch.setattr(asyncpg.Connection, "fetch", spy)
    return sent



def node(schema: str, node_id: str = "n1", max_open_jobs: int | None = None) -> PostgresStore:
    return PostgresStore(URL, node_id=f"{schema}-{node_id}", schema=schema,
                         max_open_jobs=max_open_jobs)  # fmt: skip


@contextlib.contextmanager
def pg_committed(schema: str) -> Iterator[Callable[[int], bool]]:
    """Whether an event is in the table, read on a connection of its own."""
    with psycopg.connect(URL, autocommit=True, options=f"-c search_path={schema}") as conn:

        def committed(seq: int) -> bool:
            row = conn.execute("SELECT 1 FROM events WHERE seq=%s", (seq,)).fetchone()
            return row is not None

        yield committed


async def test_nodes_starting_at_once_migrate_once(schema: str) -> None:
    stores = [node(schema, f"n{i}") for i in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        assert len({s.epoch for s in stores}) == 1
        with psycopg.connect(URL, options=f"-c search_path={schema}") as conn:
            rows = conn.execute("SELECT key, value FROM meta WHERE key LIKE 'schema:%'").fetchall()
        assert dict(rows) == {"schema:core": str(CORE.version), "schema:core-pg": "1"}
    finally:
        for s in stores:
            await s.close()


async def test_many_writers_on_three_nodes_give_every_reader_every_seq_once_in_order(
    schema: str,
) -> None:
    """The ordering hazard: seqs taken by concurrent transactions on several nodes. Each
    node publishes every event, in seq order, with no gap and no duplicate."""
    stores = [node(schema, f"n{i}") for i in range(3)]
    seen: list[list[int]] = [[], [], []]
    for i, s in enumerate(stores):
        s.on_commit(lambda events, i=i: seen[i].extend(e.seq for e in events))
        await s.open()
    try:
        async def writer(s: PostgresStore, n: int) -> None:
            for k in range(n):
                job, _ = await s.enqueue(NewJob(type="t", user_id=f"u{k % 4}"))
                if k % 3 == 0:
                    await s.cancel(job.id, None)

        await asyncio.gather(*(writer(s, 40) for s in stores for _ in range(3)))
        total = await stores[0].seq_ceiling()
        async with asyncio.timeout(30):
            while any(len(x) < total for x in seen):
                await asyncio.sleep(0.05)
        for x in seen:
            assert x == list(range(1, total + 1))
    finally:
        for s in stores:
            await s.close()


async def test_a_node_recovers_its_own_jobs_at_start_and_others_after_their_lease(
    schema: str,
) -> None:
    a, b = node(schema, "a"), node(schema, "b")
    await a.open()
    await b.open()
    try:
        for _ in range(4):
            await a.enqueue(NewJob(type="t", user_id="u", max_attempts=2))
        mine = await a.claim(2, 0.2)  # a short lease
        theirs = await b.claim(2, 30)
        assert len(mine) == len(theirs) == 2
        own = await b.recover(expired_only=False)  # b at start: only its own
        assert {e.job_id for e in own} == {j.id for j, _ in theirs}
        await asyncio.sleep(0.3)
        lost = await b.recover(expired_only=True)  # a's leases ran out: b takes them back
        assert {e.job_id for e in lost} == {j.id for j, _ in mine}
        assert all(b'"WORKER_LOST"' in e.data for e in [*own, *lost])
    finally:
        await a.close()
        await b.close()


async def test_the_job_quota_holds_for_requests_at_once_on_two_nodes(schema: str) -> None:
    """The quota is counted in the write, under the lock every node's writes take: of 12
    enqueues at once on two nodes, exactly the 3 that fit are taken; another user's in the
    same batches are not refused with them; a batch or a retry past it takes nothing."""
    a, b = node(schema, "a", max_open_jobs=3), node(schema, "b", max_open_jobs=3)
    await a.open()
    await b.open()
    try:
        tries = [s.enqueue(NewJob(type="t", user_id=user))
                 for s in (a, b) for user in ("u", "u", "u", "u", "u", "v")]  # fmt: skip
        got = await asyncio.gather(*tries, return_exceptions=True)
        taken = [r[0] for r in got if not isinstance(r, BaseException)]
        refused = [r for r in got if isinstance(r, BaseException)]
        assert sorted(j.user_id for j in taken) == ["u", "u", "u", "v", "v"]
        assert len(refused) == 7 and all(isinstance(r, TooManyJobs) for r in refused)
        assert refused[0].code == "QUOTA_JOBS"
        first = next(j for j in taken if j.user_id == "u")
        await a.cancel(first.id, "u")
        with pytest.raises(TooManyJobs):
            await b.enqueue_many([NewJob(type="t", user_id="u"), NewJob(type="t", user_id="u")])
        await b.enqueue(NewJob(type="t", user_id="u"))  # the one place the cancel freed
        with pytest.raises(TooManyJobs):
            await a.retry(first.id, "u")
        assert (await a.get_job(first.id)).status == "cancelled"  # type: ignore[union-attr]
        assert (await a.job_counts("u"))[JobStatus.QUEUED] == 3
        assert (await a.job_counts("v"))[JobStatus.QUEUED] == 2
    finally:
        await a.close()
        await b.close()


async def test_progress_and_fencing(schema: str) -> None:
    store = node(schema)
    await store.open()
    try:
        await store.enqueue(NewJob(type="t", user_id="u"))
        [(job, _)] = await store.claim(1, 30)
        result: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(event: Event | None, error: BaseException | None) -> None:
            result.set_result((event, error))

        store.progress(job.id, "not-the-token", ProgressUpdate(JobStage.PROCESSING, 5), done)
        event, error = await result
        assert event is None and error is not None and error.code == "LEASE_LOST"
        assert job.lease_token is not None
        completed = await store.complete(job.id, job.lease_token, {"n": 1})
        got = await store.get_job(job.id)
        assert got is not None and got.status == "completed" and got.last_seq == completed.seq
    finally:
        await store.close()


def test_two_server_processes_share_jobs_and_events(schema: str, tmp_path: Any) -> None:
    """Jobs submitted on node A run on A or B; a long-poll client of B sees every event of
    them, in seq order, with no gap and no duplicate."""
    import json
    import time
    import urllib.request

    from .liveserver import LiveServer

    env = {"JOBSERVER_DATABASE_URL": URL, "JOBSERVER_DATABASE_SCHEMA": schema}
    a = LiveServer(tmp_path / "a", "--demo-jobs", env=env).start()
    b = LiveServer(tmp_path / "b", "--demo-jobs", env=env).start()
    try:
        token = a.token("alice")
        ids = []
        for _ in range(20):
            request = urllib.request.Request(
                a.url + "/api/jobs", method="POST",
                data=json.dumps({"type": "demo.sleep",
                                 "payload": {"seconds": 0.05, "steps": 3}}).encode(),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )  # fmt: skip
            with urllib.request.urlopen(request, timeout=10) as resp:
                ids.append(json.load(resp)["jobId"])
        seqs: list[int] = []
        done: set[str] = set()
        cursor = 0
        deadline = time.monotonic() + 60
        while len(done) < 20 and time.monotonic() < deadline:
            page = b.get(f"/api/events?since={cursor}&userId=alice&timeout=5", token)
            for event in page["events"]:
                seqs.append(event["seq"])
                if event["type"] == "job.completed":
                    done.add(event["jobId"])
            cursor = page["cursor"]
        assert done == set(ids)
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and seqs[0] == 1
        assert len(seqs) == 20 * 6  # queued, started, 3 steps, completed
        assert b.get(f"/api/jobs/{ids[0]}", token)["status"] == "completed"
    finally:
        a.stop()
        b.stop()


async def test_a_batch_of_jobs_is_one_commit(schema: str) -> None:
    store = node(schema)
    await store.open()
    try:
        await store.enqueue(NewJob(type="t", user_id="u", idempotency_key="k0"))
        made = await store.enqueue_many(
            [NewJob(type="t", user_id="u", idempotency_key=f"k{i}") for i in range(5)]
        )
        assert [bool(events) for _, events in made] == [False, True, True, True, True]
        seqs = [events[0].seq for _, events in made[1:]]
        assert seqs == list(range(seqs[0], seqs[0] + 4))
    finally:
        await store.close()


async def test_connections_cut_by_the_database_are_made_again(schema: str) -> None:
    """pg_terminate_backend on every connection of the node while it works: it reconnects,
    and the acknowledged jobs and their events are all there."""
    store = node(schema)
    seen: list[int] = []
    store.on_commit(lambda events: seen.extend(e.seq for e in events))
    await store.open()
    try:
        ids = [(await store.enqueue(NewJob(type="t", user_id="u")))[0].id for _ in range(5)]
        with psycopg.connect(URL, autocommit=True) as conn:
            cut = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s", (f"jobserver:{store.node_id}",),
            ).fetchall()  # fmt: skip
        assert len(cut) >= 3  # the pool's connections and the node's own
        async with asyncio.timeout(30):
            while True:
                try:
                    job, _ = await store.enqueue(NewJob(type="t", user_id="u"))
                    ids.append(job.id)
                    break
                except Exception:
                    await asyncio.sleep(0.2)
        async with asyncio.timeout(30):
            while len(seen) < len(ids):
                await asyncio.sleep(0.1)
        assert seen == list(range(1, len(ids) + 1))
        for job_id in ids:
            assert await store.get_job(job_id) is not None
    finally:
        await store.close()


async def test_nodes_taking_turns_never_reuse_or_skip_a_seq(schema: str) -> None:
    """Each write of a node follows another node's, so the head the node expects (its own
    last seq) is stale every time: its batch is made again with the real head. Each gets
    the next seq, its answer carries it, and both nodes publish every seq once, in order;
    also when the stale write is the one before a claim in the same batch."""
    stores = [node(schema, "a"), node(schema, "b")]
    seen: list[list[int]] = [[], []]
    for i, s in enumerate(stores):
        s.on_commit(lambda events, i=i: seen[i].extend(e.seq for e in events))
        await s.open()
    try:
        answered: list[int] = []
        for k in range(12):
            s = stores[k % 2]
            if k % 3 == 2:  # enqueue and claim in one batch: its write before the claim's
                (_, queued), claimed = await asyncio.gather(
                    s.enqueue(NewJob(type="t", user_id="u")), s.claim(1, 30)
                )
                answered += [queued[0].seq, *(e.seq for _, e in claimed)]
            else:
                _, queued = await s.enqueue(NewJob(type="t", user_id="u"))
                answered.append(queued[0].seq)
        assert answered == list(range(1, len(answered) + 1))
        async with asyncio.timeout(10):
            while any(len(x) < len(answered) for x in seen):
                await asyncio.sleep(0.02)
        assert seen == [answered, answered]
        made, _ = await stores[1].enqueue(NewJob(type="t", user_id="u"))
        job = await stores[0].get_job(made.id)
        assert job is not None and job.last_seq == len(answered) + 1
    finally:
        for s in stores:
            await s.close()


async def test_after_an_enqueue_a_claim_is_held_to_commit_with_the_next_enqueue(
    schema: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The writer's hold (store/hold.py): soon after an op a request waits on, a claim waits
    up to as long as the last batch took for the next such op, and commits with it. The
    hold's limits are raised here and a batch is made slow (its seq lock is held elsewhere),
    so the hold is seconds long, not milliseconds: no race with the clock."""
    monkeypatch.setattr(hold, "HOLD_SECONDS", 60.0)
    monkeypatch.setattr(hold, "HOLD_RECENT_SECONDS", 60.0)
    store = node(schema)
    await store.open()
    try:
        with psycopg.connect(URL, autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_SPACE, SEQ_LOCK))
            slow = asyncio.create_task(store.enqueue(NewJob(type="t", user_id="u")))
            await asyncio.sleep(2.0)
            other.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_SPACE, SEQ_LOCK))
            first, _ = await slow  # its batch took 2 s: so may the next hold
        claim = asyncio.create_task(store.claim(1, 30.0))
        await asyncio.sleep(0.5)
        assert not claim.done()  # held for an op a request waits on
        second, _ = await store.enqueue(NewJob(type="t", user_id="u"))
        async with asyncio.timeout(5):
            [(claimed, _)] = await claim
        assert claimed.id == first.id
        with psycopg.connect(URL, options=f"-c search_path={schema}") as conn:
            xmins = conn.execute("SELECT DISTINCT xmin::text FROM jobs WHERE id IN (%s, %s)",
                                 (first.id, second.id)).fetchall()  # fmt: skip
        assert len(xmins) == 1  # the claim and the enqueue: one transaction
        async with asyncio.timeout(5):  # no enqueue follows: held no longer than a batch took
            assert [j.id for j, _ in await store.claim(1, 30.0)] == [second.id]
    finally:
        await store.close()


async def test_payload_named_reads_the_index_its_key_s_plugin_declares(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nodes starting at once make the PDF plugin's ``payload_index`` once, and
    ``payload_named`` (a refused upload's question) looks its values up in it: with
    sequential scans off, a query the index cannot answer would still plan one."""
    stores = [PostgresStore(URL, node_id=f"{schema}-n{i}", schema=schema,
                            storage=["jobserver.pdf.storage"]) for i in range(3)]  # fmt: skip
    await asyncio.gather(*(s.open() for s in stores))
    store = stores[0]
    asked: list[tuple[str, tuple[Any, ...]]] = []
    read = store._read

    async def recorded(sql: str, *params: Any) -> list[Any]:
        asked.append((sql, params))
        return await read(sql, *params)

    try:
        for n in range(3):
            await store.enqueue(NewJob(type="t", user_id="u", payload={"sha256": f"s{n}"}))
        monkeypatch.setattr(store, "_read", recorded)
        assert await store.payload_named("sha256", ["s1", "nope"]) == {"s1"}
    finally:
        for s in stores:
            await s.close()
    # The node's 1 s poll of the events table reads through _read too: only the lookup counts.
    [(sql, params)] = [(q, p) for q, p in asked if "payload" in q]
    with psycopg.connect(URL, options=f"-c search_path={schema}") as conn:
        conn.execute("SET enable_seqscan = off")
        plan = [r[0] for r in conn.execute(f"EXPLAIN {sql.replace('$1', '%s')}", params)]
    assert "jobs_payload_sha256" in " ".join(plan) and "Seq Scan" not in " ".join(plan), plan


def pdf_node(schema: str, node_id: str) -> PostgresStore:
    """A node with the PDF plugin's tables, whose ``payload_index`` is ``sha256``."""
    return PostgresStore(URL, node_id=f"{schema}-{node_id}", schema=schema,
                         storage=["jobserver.pdf.storage"])  # fmt: skip


def sha256_index(schema: str) -> tuple[bool, bool] | None:
    """The PDF plugin's payload index: (valid, unique), or None when there is none."""
    with db(schema) as conn:
        row = conn.execute(
            "SELECT indisvalid, indisunique FROM pg_index "
            "WHERE indexrelid = to_regclass('jobs_payload_sha256')"
        ).fetchone()
    return None if row is None else (row[0], row[1])


async def test_a_payload_index_added_to_a_store_in_use_does_not_hold_its_writes_back(
    schema: str,
) -> None:
    """A node starts with a plugin whose payload index the jobs table lacks, while another
    node writes. Before: a plain CREATE INDEX queued for a lock that every write then waited
    behind, here for as long as a transaction writing the table went on."""
    running = node(schema, "n1")  # no plugin: no payload index
    await running.open()
    starting = pdf_node(schema, "n2")
    try:
        with psycopg.connect(URL, options=f"-c search_path={schema}") as writing, db(
            schema
        ) as watch:
            writing.execute("LOCK TABLE jobs IN ROW EXCLUSIVE MODE")  # a write, not committed
            blocked_by_writing = (
                "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX%%' "
                "AND %s = ANY(pg_blocking_pids(pid))"
            )
            opening = asyncio.create_task(starting.open())
            try:
                async with asyncio.timeout(30):  # the build waits for that write to end
                    while not watch.execute(blocked_by_writing, (writing.info.backend_pid,)
                                            ).fetchone():  # fmt: skip
                        await asyncio.sleep(0.05)
                async with asyncio.timeout(20):  # not behind the build
                    await running.enqueue(NewJob(type="t", user_id="u", payload={"sha256": "a"}))
            finally:
                writing.rollback()
            await asyncio.wait_for(opening, 30)
        assert sha256_index(schema) == (True, False)
    finally:
        await running.close()
        await starting.close()


async def test_an_invalid_payload_index_left_by_a_failed_build_is_built_again(
    schema: str,
) -> None:
    """A concurrent build that fails leaves an invalid index of that name, which IF NOT
    EXISTS would keep for ever (kept up by every write, used by no read)."""
    first = node(schema, "n1")
    await first.open()
    try:
        for _ in range(2):
            await first.enqueue(NewJob(type="t", user_id="u", payload={"sha256": "same"}))
    finally:
        await first.close()
    with db(schema) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(f"CREATE UNIQUE INDEX CONCURRENTLY jobs_payload_sha256 ON jobs "
                     f"({payload_of('sha256')}) WHERE {payload_has('sha256')}")  # fmt: skip
    assert sha256_index(schema) == (False, True)  # the failed build's
    store = pdf_node(schema, "n2")
    await store.open()
    try:
        assert sha256_index(schema) == (True, False)
        assert await store.payload_named("sha256", ["same", "other"]) == {"same"}
    finally:
        await store.close()


async def test_a_lease_holders_writes_read_no_row_yet_another_nodes_change_fences_them(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node that claimed a job writes its progress and outcome without reading its row
    first (it knows the row: its own last write), but only while the row is that version:
    a cancel by another node, or a renewal, is never overwritten."""
    import time


    sent = spy_fetches(monkeypatch)
    a, b = node(schema, "a"), node(schema, "b")
    await a.open()
    await b.open()
    try:
        for _ in range(3):
            await a.enqueue(NewJob(type="t", user_id="u"))
        one, two, three = [job for job, _ in await a.claim(3, 30)]
        result: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        sent.clear()
        a.progress(one.id, str(one.lease_token), ProgressUpdate(JobStage.PROCESSING, 5),
                   partial(_answered, result))  # fmt: skip
        assert (await result)[1] is None
        await a.complete(one.id, str(one.lease_token), {"n": 1})
        assert not [q for q in sent if "FOR UPDATE" in q]  # no row read, no page
        assert (await a.get_job(one.id)).status == "completed"  # type: ignore[union-attr]

        await b.cancel(two.id, "u")  # another node's change: a's row is no longer current
        with pytest.raises(LeaseLost):
            await a.complete(two.id, str(two.lease_token), {"n": 2})
        assert (await a.get_job(two.id)).status == "cancelled"  # type: ignore[union-attr]

        token = str(three.lease_token)
        for percent in (7, 9):  # the first with a renewal in its batch, the second after it
            answered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            a.progress(three.id, token, ProgressUpdate(JobStage.PROCESSING, percent),
                       partial(_answered, answered))  # fmt: skip
            if percent == 7:
                assert await a.renew({three.id: token}, 3600) == set()
            assert (await answered)[1] is None
        got = await a.get_job(three.id)
        assert got is not None and got.progress == 9
        assert got.lease_expires_at is not None and got.lease_expires_at > time.time() + 3000
    finally:
        await a.close()
        await b.close()


def _answered(future: asyncio.Future[Any], event: Event | None,
              error: BaseException | None) -> None:  # fmt: skip
    future.set_result((event, error))


async def _claim_after(store: PostgresStore, schema: str, *statements: tuple[str, Any]) -> Any:
    """Claim one job while another connection holds the seq lock: once the claim's statement
    waits for the lock (its snapshot taken), run ``statements`` there (each committed), then
    let it go; the claim's (job, event)."""
    with psycopg.connect(URL, autocommit=True, options=f"-c search_path={schema}") as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_SPACE, SEQ_LOCK))
        claim = asyncio.create_task(store.claim(1, 30))
        async with asyncio.timeout(10):
            while not other.execute(
                "SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype='advisory' AND NOT l.granted AND a.application_name=%s",
                (f"jobserver:{schema}-n1"[:63],),
            ).fetchone():  # fmt: skip
                await asyncio.sleep(0.01)
        for sql, params in statements:
            other.execute(sql, params)
        other.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_SPACE, SEQ_LOCK))
        async with asyncio.timeout(10):
            [claimed] = await claim
    return claimed


_INSERT_EVENT = ("INSERT INTO events (seq, type, job_id, user_id, data) "
                 "VALUES (%s, %s, 'x', 'u', '{}')")  # fmt: skip


async def test_a_lone_write_whose_snapshot_missed_another_nodes_events_is_made_again(
    schema: str,
) -> None:
    """A batch with no transaction of its own takes the seq lock inside its one statement,
    whose snapshot may predate a commit made while it waited for the lock: its seqs then
    collide with that commit's, and the batch is made again after reading the head."""
    store = node(schema)
    await store.open()
    try:
        job, _ = await store.enqueue(NewJob(type="t", user_id="u"))
        seen: list[int] = []
        store.on_commit(lambda events: seen.extend(e.seq for e in events))
        # Another node's event, committed while the claim waits for the lock.
        claimed, started = await _claim_after(
            store, schema, (_INSERT_EVENT, (job.last_seq + 1, "job.queued"))
        )
        assert claimed.id == job.id and started.seq == job.last_seq + 2
        assert seen == [job.last_seq + 1, job.last_seq + 2]
    finally:
        await store.close()


async def test_a_lone_write_whose_snapshot_missed_a_prune_of_another_nodes_events_is_made_again(
    schema: str,
) -> None:
    """As above, but a prune deleted that other node's event (and raised the pruned mark)
    before the lone write got the lock: no seq collides, so the head it reads under the lock
    must see the mark, or the write would take a seq already handed out."""
    store = node(schema)
    await store.open()
    try:
        job, _ = await store.enqueue(NewJob(type="t", user_id="u"))
        taken = job.last_seq + 1  # another node's event, then a prune of it
        claimed, started = await _claim_after(
            store, schema, (_INSERT_EVENT, (taken, "job.removed")),
            ("DELETE FROM events WHERE seq = %s", (taken,)),
            ("UPDATE meta SET value = %s WHERE key = 'pruned'", (str(taken),)),
        )  # fmt: skip
        assert claimed.id == job.id and started.seq == taken + 1, started.seq
    finally:
        await store.close()


async def _slow_enqueue(store: PostgresStore) -> Any:
    """An enqueue whose batch takes a second (the seq lock held elsewhere), so the writer's
    next hold may be as long (``hold.py``: no longer than the last batch took)."""
    with psycopg.connect(URL, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_SPACE, SEQ_LOCK))
        slow = asyncio.create_task(store.enqueue(NewJob(type="t", user_id="u")))
        await asyncio.sleep(1.0)
        other.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_SPACE, SEQ_LOCK))
        job, _ = await slow
    return job


async def test_a_held_batch_makes_its_reads_while_it_waits_and_is_made_again_if_they_moved(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the writer holds a batch for the next op a request waits on, the batch's reads
    are made (a claim's page, read without locks): when that op comes, only the write is
    left. A row another node changed meanwhile is not overwritten (the batch is made again
    in a transaction and claims the next job), and an op a lone batch cannot hold makes the
    batch from the start."""

    monkeypatch.setattr(hold, "HOLD_SECONDS", 60.0)
    monkeypatch.setattr(hold, "HOLD_RECENT_SECONDS", 60.0)
    sent = spy_fetches(monkeypatch)
    a = node(schema, "a")
    await a.open()
    try:
        one = await _slow_enqueue(a)
        two, _ = await a.enqueue(NewJob(type="t", user_id="u"))
        three = await _slow_enqueue(a)  # the last batch slow again: the next hold is long
        sent.clear()
        claim = asyncio.create_task(a.claim(1, 30.0))
        await asyncio.sleep(0.5)
        assert not claim.done()  # held ...
        assert [q for q in sent if q.startswith("SELECT xmin::text")]  # ... its page read
        with psycopg.connect(URL, autocommit=True, options=f"-c search_path={schema}") as b:
            b.execute("UPDATE jobs SET status='active', lease_token='b-1' WHERE id=%s",
                      (one.id,))  # fmt: skip  # as another node's claim would, meanwhile
        four, _ = await a.enqueue(NewJob(type="t", user_id="u"))
        async with asyncio.timeout(5):
            [(claimed, _)] = await claim
        assert claimed.id == two.id
        for job, token in ((one, "b-1"), (two, claimed.lease_token)):
            row = await a.get_job(job.id)
            assert row is not None and row.status == "active" and row.lease_token == token

        await _slow_enqueue(a)
        claim = asyncio.create_task(a.claim(1, 30.0))
        await asyncio.sleep(0.5)
        assert not claim.done()
        cancelled, _ = await a.cancel(four.id, "u")  # not an op a lone batch holds
        async with asyncio.timeout(5):
            [(claimed, _)] = await claim
        assert cancelled.status == "cancelled" and claimed.id == three.id
    finally:
        await a.close()


async def test_a_node_alone_notifies_nobody_and_a_node_that_starts_is_notified_at_once(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node alone on its schema commits no NOTIFY (nobody would read it); a node that
    starts says so (HELLO), and the first then NOTIFYs its batches at once: with the 1 s
    poll made an hour, the new node still sees them."""
    from jobserver.store import postgres

    monkeypatch.setattr(postgres, "POLL_SECONDS", 3600.0)
    a = node(schema, "a")
    await a.open()
    b = node(schema, "b")
    seen: list[int] = []
    b.on_commit(lambda events: seen.extend(e.seq for e in events))
    try:
        with psycopg.connect(URL, autocommit=True) as ear:
            ear.execute("LISTEN jobserver_events")
            async with asyncio.timeout(10):
                while not a._alone:  # counted once its own HELLO woke its reader
                    await asyncio.sleep(0.01)
            # The channel is the database's: other schemas' nodes (other tests) use it too.
            def heard(seconds: float) -> list[str]:
                notes = list(ear.notifies(timeout=seconds))
                pids = {r[0] for r in ear.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                    (f"jobserver:{a.node_id}"[:63],),
                )}  # fmt: skip
                return [n.payload for n in notes if n.pid in pids]

            heard(0.1)  # the HELLO
            job, _ = await a.enqueue(NewJob(type="t", user_id="u"))
            assert [j.id for j, _ in await a.claim(1, 30)] == [job.id]
            assert heard(0.5) == []
            await b.open()
            async with asyncio.timeout(10):
                while a._alone:
                    await asyncio.sleep(0.01)
            second, _ = await a.enqueue(NewJob(type="t", user_id="u"))
            assert str(second.last_seq) in heard(0.5)
            async with asyncio.timeout(5):
                while second.last_seq not in seen:
                    await asyncio.sleep(0.01)
            assert seen[0] == second.last_seq  # b started after the first job's events
    finally:
        await a.close()
        await b.close()


async def _cut_while_it_waits_for_the_seq_lock(store: PostgresStore, new: NewJob) -> Any:
    """Enqueue ``new`` while another connection holds the seq lock; once the batch's
    statement waits for it, pg_terminate_backend its connection, then let the lock go. The
    enqueue's outcome (its result, or the exception it raised)."""
    with psycopg.connect(URL, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_SPACE, SEQ_LOCK))
        enqueue = asyncio.create_task(store.enqueue(new))
        async with asyncio.timeout(10):
            while not (waiting := other.execute(
                "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype='advisory' AND NOT l.granted AND a.application_name=%s",
                (f"jobserver:{store.node_id}"[:63],),
            ).fetchone()):  # fmt: skip
                await asyncio.sleep(0.01)
        other.execute("SELECT pg_terminate_backend(%s)", waiting)
        other.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_SPACE, SEQ_LOCK))
        async with asyncio.timeout(10):
            return (await asyncio.gather(enqueue, return_exceptions=True))[0]


async def test_a_batch_cut_before_its_commit_is_made_again_and_one_cut_after_fails(
    schema: str,
) -> None:
    """A batch in a transaction whose connection is cut before it sent its COMMIT committed
    nothing: it is made again on another connection, and its caller gets its job (before,
    ServiceUnavailable). A lone batch cut once its write was sent may have committed: its
    caller is told the write failed; the node goes on serving."""
    store = node(schema)
    seen: list[int] = []
    store.on_commit(lambda events: seen.extend(e.seq for e in events))
    await store.open()
    try:
        keyed = NewJob(type="t", user_id="u", idempotency_key="k")  # never a lone batch
        outcome = await _cut_while_it_waits_for_the_seq_lock(store, keyed)
        assert not isinstance(outcome, BaseException), outcome
        job, events = outcome
        assert [e.seq for e in events] == [1] and (await store.get_job(job.id)) is not None
        assert store._guessing  # so the next enqueue is a lone batch
        lone = await _cut_while_it_waits_for_the_seq_lock(store, NewJob(type="t", user_id="u"))
        assert isinstance(lone, ServiceUnavailable), lone
        after, _ = await store.enqueue(NewJob(type="t", user_id="u"))
        assert (await store.get_job(after.id)) is not None
        async with asyncio.timeout(10):
            while seen[-1:] != [after.last_seq]:
                await asyncio.sleep(0.01)
        assert seen == list(range(1, after.last_seq + 1))
    finally:
        await store.close()


async def test_a_batch_with_a_plugin_op_cut_before_its_commit_is_not_run_again(
    schema: str,
) -> None:
    """A plugin's write op is code that should run once: its batch, cut before its COMMIT,
    fails its caller instead of being made again on another connection."""
    store = PostgresStore(URL, node_id=f"{schema}-n1", schema=schema,
                          storage=["tests.plugins.cutting_op"])  # fmt: skip
    await store.open()
    cutting_op.RUNS.clear()
    try:
        with pytest.raises(ServiceUnavailable):
            await store.write("test.cut_own_connection")
        assert cutting_op.RUNS == [1]
        job, _ = await store.enqueue(NewJob(type="t", user_id="u"))  # the node serves on
        assert (await store.get_job(job.id)) is not None
    finally:
        await store.close()
