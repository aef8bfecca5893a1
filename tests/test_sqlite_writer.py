"""The SQLite backend's writer process: what crosses the pipe, and a writer that dies."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sqlite3
import sys
import threading
import time
from asyncio import unix_events
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from jobserver.errors import InvalidPayload, ServiceUnavailable
from jobserver.models import Event, Job, JobStage, JobStatus
from jobserver.store import NewJob, ProgressUpdate, frames, sqlite_link, sqlite_ops
from jobserver.store import sqlite as sqlite_module
from jobserver.store.frames import HEADER, Link, job_fields, new_job, new_job_fields, pack
from jobserver.store.sqlite import SqliteStore
from jobserver.store.sqlite_writer import Writer, _foreground, serve
from tests.store_contract import claim_one, progress


def break_decode_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next enqueue's reply handling raises (a bug in it), once; later ones work."""
    real = sqlite_module._job_events
    calls = 0

    def broken_once(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in reply handling")
        return real(*args)

    monkeypatch.setattr(sqlite_module, "_job_events", broken_once)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, list[Event]]]:
    s = SqliteStore(tmp_path / "s.db")
    published: list[Event] = []
    s.on_commit(published.extend)
    await s.open()
    yield s, published
    await s.close()


async def running(s: SqliteStore) -> tuple[str, str]:
    """A new job, claimed: its id and lease token."""
    await s.enqueue(NewJob(type="t", user_id="u1"))
    return await claim_one(s)


async def new_writer(s: SqliteStore, old: int) -> None:
    async with asyncio.timeout(20):
        while s.writer_pid in (None, old):
            await asyncio.sleep(0.02)


async def test_a_killed_writer_is_replaced_and_the_log_goes_on_without_a_gap(
    store: tuple[SqliteStore, list[Event]],
) -> None:
    s, published = store
    job_id, token = await running(s)
    old = s.writer_pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    await new_writer(s, old)
    # The lease lives in the file, so the worker goes on where it was.
    step = await progress(s, job_id, token, ProgressUpdate(JobStage.PROCESSING, 50, "half"))
    done = await s.complete(job_id, token, {"ok": True})
    assert (step.seq, done.seq) == (3, 4) == (done.seq - 1, await s.head_seq())
    assert [e.seq for e in published] == [1, 2, 3, 4]
    assert [e.seq for e in await s.events_after(0)] == [1, 2, 3, 4]


async def test_a_write_the_dead_writer_never_answered_fails_and_the_next_one_commits(
    store: tuple[SqliteStore, list[Event]],
) -> None:
    s, published = store
    await s.enqueue(NewJob(type="t", user_id="u1"))
    pid = s.writer_pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # the write below is sent but never read
    pending = asyncio.ensure_future(s.enqueue(NewJob(type="t", user_id="u1")))
    await asyncio.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ServiceUnavailable):
        await pending
    await new_writer(s, pid)
    _, [event] = await s.enqueue(NewJob(type="t", user_id="u1"))
    assert event.seq == 2 and [e.seq for e in published] == [1, 2]


async def test_events_committed_but_never_reported_are_published_after_a_restart(
    store: tuple[SqliteStore, list[Event]],
) -> None:
    """The writer can die between its COMMIT and its reply: subscribers must still get
    those events, in order, before any later one."""
    s, published = store
    for _ in range(3):
        await s.enqueue(NewJob(type="t", user_id="u1"))
    # As if the reply for the last two never came:
    s._link.durable = s._link._published = 1
    del published[1:]
    pid = s.writer_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    # Writes made while the new writer starts wait until the missed events are out.
    later = [s.enqueue(NewJob(type="t", user_id="u1")) for _ in range(20)]
    await new_writer(s, pid)
    await asyncio.gather(*later)
    assert [e.seq for e in published] == list(range(1, 24))


HOLDER = """
import asyncio, sys
from pathlib import Path
from jobserver.store.sqlite import SqliteStore
from jobserver.store.sqlite_writer import serve

async def main():
    s = SqliteStore(Path(sys.argv[1]))
    await s.open()
    print(s.writer_pid, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_after_kill_9_a_new_store_waits_for_the_old_writer_then_opens(
    tmp_path: Path,
) -> None:
    """A killed server's writer lives on (holding the inherited lock) until it reads
    end-of-file; a server started meanwhile waits for the lock instead of failing."""
    path = tmp_path / "s.db"
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, str(path), stdout=asyncio.subprocess.PIPE
    )
    assert holder.stdout is not None
    writer = int(await holder.stdout.readline())
    os.kill(writer, signal.SIGSTOP)  # so it cannot see its parent go
    holder.kill()
    await holder.wait()
    second = SqliteStore(path, lock_wait=10.0)
    opening = asyncio.ensure_future(second.open())
    await asyncio.sleep(0.5)
    assert not opening.done()  # the orphaned writer still owns the file
    os.kill(writer, signal.SIGCONT)  # it reads end-of-file and exits
    await opening
    _, [event] = await second.enqueue(NewJob(type="t", user_id="u1"))
    assert event.seq == 1
    await second.close()


def test_the_writer_takes_every_waiting_frame_into_one_batch() -> None:
    read_fd, write_fd = os.pipe()
    link = Link(read_fd, os.open(os.devnull, os.O_WRONLY))
    for frame in ([1, 2], [3], [4, 5, 6], [7]):
        os.write(write_fd, pack(frame))
    assert link.receive_many(4) == [[1, 2], [3]]  # [4, 5, 6] would make 6 ops of 4
    assert link.receive_many(4) == [[4, 5, 6], [7]]
    os.close(write_fd)
    assert link.receive_many(4) is None


def test_a_held_batch_takes_frames_until_one_a_caller_waits_on() -> None:
    read_fd, write_fd = os.pipe()
    link = Link(read_fd, os.open(os.devnull, os.O_WRONLY))
    frames = [[("claim", 1)], [("progress", 2)], [("enqueue", 3)], [("complete", 4)]]
    for frame in frames:
        os.write(write_fd, pack(frame))
    far = time.monotonic() + 30  # never reached: the enqueue ends the hold
    assert link.receive_until(10, far, _foreground) == frames[:3]
    # Without one, the hold takes what comes until its deadline, within the op limit.
    os.write(write_fd, pack([("progress", 5), ("progress", 6)]))
    soon = time.monotonic() + 0.05
    assert link.receive_until(2, soon, _foreground) == frames[3:]  # the pair would make 3
    assert link.receive_many(10) == [[("progress", 5), ("progress", 6)]]
    assert link.receive_until(10, time.monotonic(), _foreground) == []
    os.close(write_fd)
    assert link.receive_until(10, far, _foreground) == []  # end of file


async def test_an_enqueue_is_answered_before_the_rest_of_its_batch_is_published(
    store: tuple[SqliteStore, list[Event]],
) -> None:
    """Other jobs' progress submitted in the same turn shares the enqueue's commit, but the
    enqueue runs first: its caller hears back once its own event is published."""
    s, published = store
    job_id, token = await running(s)
    heard: list[Event] = []

    def done(event: Event | None, error: BaseException | None) -> None:
        assert event is not None and error is None
        heard.append(event)

    for i in range(20):
        s.progress(job_id, token, ProgressUpdate(JobStage.PROCESSING, float(i)), done)
    _, [queued] = await s.enqueue(NewJob(type="t", user_id="u1"))
    assert published[-1] == queued and heard == []  # the progress is not out yet
    async with asyncio.timeout(10):
        while len(heard) < 20:
            await asyncio.sleep(0.01)
    assert [e.seq for e in heard] == list(range(queued.seq + 1, queued.seq + 21))
    assert published[-21:] == [queued, *heard]


def test_enqueues_run_ahead_of_other_jobs_changes_but_never_of_a_cancel(tmp_path: Path) -> None:
    writer = Writer(sqlite3.connect(tmp_path / "w.db", isolation_level=None))
    writer.open()
    enqueue = ("enqueue", new_job_fields(NewJob(type="t", user_id="u1")))
    writer.run([enqueue])
    [(_, [(fields, claimed)])], _ = writer.run([("claim", 1, 30.0, None, None)])
    job = Job(*fields)
    assert job.lease_token is not None
    progress = ("progress", job.id, job.lease_token, JobStage.PROCESSING.value, 5.0, "", None,
                None)  # fmt: skip
    batch: list[Any] = [progress, enqueue, ("cancel", "nope", None), progress, enqueue]
    assert sqlite_ops.enqueues_first(batch) == [1]  # the second enqueue stays behind the cancel
    outcomes, rows = writer.run(batch, [1])
    assert [ok for ok, _ in outcomes] == [True, True, False, True, True]
    first = outcomes[1][1][1][0]
    assert first == claimed + 1 == rows[0][0] and rows[0][1] == "job.queued"
    assert [row[1] for row in rows] == ["job.queued", "job.progress", "job.progress", "job.queued"]
    assert sqlite_ops.first_events(batch, [1], outcomes) == 1


def test_the_writer_file_stays_a_valid_database_after_its_writer_is_killed(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        s = SqliteStore(tmp_path / "k.db")
        await s.open()
        writes = [s.enqueue(NewJob(type="t", user_id="u1")) for _ in range(200)]
        pid = s.writer_pid
        assert pid is not None
        await asyncio.sleep(0)
        os.kill(pid, signal.SIGKILL)
        await asyncio.gather(*writes, return_exceptions=True)
        await s.close()

    asyncio.run(run())
    with sqlite3.connect(tmp_path / "k.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        seqs = [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1))


def test_jobs_cross_as_tuples_of_every_field_in_order() -> None:
    job = Job(
        id="j", type="t", user_id="u", payload={"a": 1}, status=JobStatus.ACTIVE,
        stage=JobStage.PROCESSING, progress=5.0, message="m", metadata={"b": 2},
        result={"noteId": "n"}, error=None, attempts=2, max_attempts=3, created_at=1.0,
        started_at=2.0, finished_at=None, run_at=3.0, last_seq=7, idempotency_key="k",
        lease_token="t1", lease_expires_at=4.0,
    )  # fmt: skip
    assert len(job_fields(job)) == len(dataclasses.fields(Job))
    assert Job(*job_fields(job)) == job
    new = NewJob(type="t", user_id="u", payload={"x": 1}, max_attempts=2, delay_seconds=1.5,
                 idempotency_key="k", job_id="j", message="hi")  # fmt: skip
    assert len(new_job_fields(new)) == len(dataclasses.fields(NewJob))
    assert new_job(new_job_fields(new)) == new  # the payload crosses as JSON


def test_a_request_the_writer_cannot_read_is_answered_alone(tmp_path: Path) -> None:
    to_writer, from_server = os.pipe()
    from_writer, to_server = os.pipe()
    thread = threading.Thread(target=serve, args=(tmp_path / "s.db", Link(to_writer, to_server)))
    thread.start()
    replies = Link(from_writer, os.open(os.devnull, os.O_WRONLY))

    def reply() -> Any:
        received = replies.receive_many(1)  # replies are frames too
        assert received is not None
        return received[0]

    assert reply()[0] == "hello"
    enqueue = ("enqueue", new_job_fields(NewJob(type="t", user_id="u1")))
    os.write(from_server, pack([enqueue]))
    os.write(from_server, HEADER.pack(3) + b"bad")
    os.write(from_server, pack([enqueue]))
    answers = [reply() for _ in range(3)]
    assert [a[0] for a in answers] == [1, 1, 1]
    assert answers[1][1] is None  # the unreadable one
    assert [a[3] for a in answers] == [1, 1, 2]  # the writer went on
    os.close(from_server)
    thread.join(10)
    assert not thread.is_alive()


async def test_the_writer_ignores_signals_meant_for_the_server(
    store: tuple[SqliteStore, list[Event]],
) -> None:
    """Ctrl-C and a service manager's SIGTERM reach the whole process group; the writer
    must outlive them so the server's graceful shutdown can still write."""
    s, _ = store
    pid = s.writer_pid
    assert pid is not None
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        os.kill(pid, sig)
    await asyncio.sleep(0.2)
    await s.enqueue(NewJob(type="t", user_id="u1"))
    assert s.writer_pid == pid


async def test_a_prune_that_ends_unanswered_leaves_the_mark_read_from_the_file(
    store: tuple[SqliteStore, list[Event]],
) -> None:
    s, _ = store
    job_id, token = await running(s)
    await s.complete(job_id, token, {})
    await s.enqueue(NewJob(type="t", user_id="u1"))
    pid = s.writer_pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    pruning = asyncio.ensure_future(s.prune(10**12))
    await asyncio.sleep(0.1)
    pruning.cancel()  # it was sent: the writer will still run it
    os.kill(pid, signal.SIGCONT)
    async with asyncio.timeout(10):
        while await s.events_after(0, job_id=job_id):
            await asyncio.sleep(0.02)
    assert await s.pruned_through() == 3  # the file says so, though no reply came


async def test_the_writer_never_imports_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "cwd" / "jobserver"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('the wrong jobserver')\n")
    monkeypatch.chdir(fake.parent)
    s = SqliteStore(tmp_path / "s.db")
    await s.open()
    _, [event] = await s.enqueue(NewJob(type="t", user_id="u1"))
    assert event.seq == 1
    await s.close()


async def test_a_write_is_answered_in_the_turn_of_the_loop_that_reads_its_reply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reply is handled by the callback that reads the pipe: its caller resumes in the
    next turn (a StreamReader read by a task, or a subprocess transport, took a turn more)."""
    loop = asyncio.get_running_loop()
    turns = 0
    read_in: list[int] = []  # the turn in which each read of the writer's replies came
    real = unix_events._UnixReadPipeTransport._read_ready  # the only pipe read here

    def read_ready(self: Any) -> None:
        read_in.append(turns)
        real(self)

    def tick() -> None:  # first in each turn of the loop: scheduled by the turn before
        nonlocal turns
        turns += 1
        ticking.append(loop.call_soon(tick))

    monkeypatch.setattr(unix_events._UnixReadPipeTransport, "_read_ready", read_ready)
    s = SqliteStore(tmp_path / "s.db")
    await s.open()
    ticking = [loop.call_soon(tick)]
    try:
        for _ in range(5):
            await s.enqueue(NewJob(type="t", user_id="u1"))
            assert turns - read_in[-1] == 1, (turns, read_in)
    finally:
        ticking[-1].cancel()
        await s.close()


def whole_frames(buffer: bytes | bytearray) -> int:
    """How many whole frames ``buffer`` begins with."""
    count = at = 0
    while len(buffer) - at >= HEADER.size:
        at += HEADER.size + HEADER.unpack_from(buffer, at)[0]
        if at > len(buffer):
            break
        count += 1
    return count


async def test_replies_read_together_answer_the_first_ones_callers_before_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two replies in one read of the pipe: the callers of the first resume in the next turn,
    and the second is handled after them, in a later turn of its own. Before, both were
    handled in the read's callback, so the first's callers resumed after the second's."""
    loop = asyncio.get_running_loop()
    turns = 0
    happened: list[tuple[str, int]] = []
    held = bytearray()
    joining = False
    real = frames.Replies.data_received

    def data_received(self: frames.Replies, data: bytes) -> None:
        held.extend(data)
        if joining and whole_frames(held) < 2:  # the first reply waits for the second
            return
        joined = bytes(held)
        held.clear()
        if joining:
            happened.append(("read", turns))
        real(self, joined)

    def tick() -> None:  # first in each turn of the loop: scheduled by the turn before
        nonlocal turns
        turns += 1
        ticking.append(loop.call_soon(tick))

    monkeypatch.setattr(frames.Replies, "data_received", data_received)
    s = SqliteStore(tmp_path / "s.db")
    s.on_commit(lambda events: happened.extend(("published", e.seq) for e in events))
    await s.open()
    ticking = [loop.call_soon(tick)]
    # Cancels: a reply of enqueues pauses a turn after answering them, one of these does not.
    one, _ = await s.enqueue(NewJob(type="t", user_id="u1"))
    two, _ = await s.enqueue(NewJob(type="t", user_id="u1"))

    async def first() -> None:
        await s.cancel(one.id, None)
        happened.append(("first answered", turns))

    try:
        joining = True
        answered = asyncio.create_task(first())
        async with asyncio.timeout(20):
            while not whole_frames(held):  # the first reply came, and waits
                await asyncio.sleep(0.01)
        second = asyncio.create_task(s.cancel(two.id, None))
        await asyncio.wait_for(asyncio.gather(answered, second), 20)
        reads = [n for what, n in happened if what == "read"]
        assert len(reads) == 1  # both came in one read
        assert happened[-4:] == [("read", reads[0]), ("published", 3),
                                 ("first answered", reads[0] + 1), ("published", 4)], happened
    finally:
        ticking[-1].cancel()
        await s.close()


async def test_a_writer_that_cannot_be_started_again_fails_writes_instead_of_hanging(
    store: tuple[SqliteStore, list[Event]], monkeypatch: pytest.MonkeyPatch
) -> None:
    s, _ = store
    monkeypatch.setattr(sqlite_link, "RESTART_PAUSE_SECONDS", 0.01)
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")  # e.g. a venv rebuilt
    pid = s.writer_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    async with asyncio.timeout(10):
        with pytest.raises(ServiceUnavailable):
            while True:  # the first writes may still be queued for the restart
                await s.enqueue(NewJob(type="t", user_id="u1"))
                await asyncio.sleep(0.01)


async def test_a_reply_this_side_cannot_handle_answers_its_callers_and_a_new_writer_goes_on(
    store: tuple[SqliteStore, list[Event]], monkeypatch: pytest.MonkeyPatch
) -> None:
    s, _ = store
    break_decode_once(monkeypatch)
    async with asyncio.timeout(20):
        with pytest.raises(ServiceUnavailable):
            await s.enqueue(NewJob(type="t", user_id="u1"))
        _, [event] = await s.enqueue(NewJob(type="t", user_id="u1"))
    assert event.seq == 2  # the first one committed; its caller was told the outcome is unknown


async def test_the_writer_runs_the_servers_own_package_when_another_copy_comes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older install or checkout on PYTHONPATH must not be the writer the server talks to."""
    other = tmp_path / "elsewhere" / "jobserver"
    (other / "store").mkdir(parents=True)
    (other / "__init__.py").write_text("")
    (other / "store" / "__init__.py").write_text("")
    (other / "store" / "sqlite_writer.py").write_text(
        "def main(*args):\n    raise SystemExit('the wrong writer')\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(other.parent))
    s = SqliteStore(tmp_path / "s.db")
    await s.open()
    _, [event] = await s.enqueue(NewJob(type="t", user_id="u1"))
    assert event.seq == 1
    await s.close()


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


async def test_a_reply_lost_after_answering_its_enqueue_still_publishes_the_rest_of_its_batch(
    store: tuple[SqliteStore, list[Event]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An enqueue ran ahead of other jobs' progress: its event is published first, then
    handling the reply breaks. The progress committed with it: the new writer's start must
    publish it from the file (it was never published), not skip it as already out."""
    s, published = store
    job_id, token = await running(s)  # seqs 1 and 2
    break_decode_once(monkeypatch)
    heard: list[BaseException | None] = []
    for i in range(5):
        s.progress(job_id, token, ProgressUpdate(JobStage.PROCESSING, float(i)),
                   lambda event, error: heard.append(error))  # fmt: skip
    async with asyncio.timeout(20):
        with pytest.raises(ServiceUnavailable):  # its event (3) was published first
            await s.enqueue(NewJob(type="t", user_id="u1"))
        _, [event] = await s.enqueue(NewJob(type="t", user_id="u1"))
    assert len(heard) == 5  # the progress callers were told its outcome is unknown
    assert event.seq == 9  # the progress (4-8) committed
    assert [e.seq for e in published] == list(range(1, 10))
    assert published == await s.events_after(0)


async def test_a_reply_that_cannot_be_read_while_the_one_before_pauses_loses_none_of_its_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two replies in one read of the pipe: the first (an enqueue ahead of other jobs'
    progress) pauses after answering the enqueue, the second cannot be read. Both writers'
    events still reach subscribers once each, in order, once a new writer runs."""
    held = bytearray()
    joining = False
    real_received = frames.Replies.data_received
    real_loads = frames.loads
    loads = 0

    def data_received(self: frames.Replies, data: bytes) -> None:
        held.extend(data)
        if joining and whole_frames(held) < 2:  # the first reply waits for the second
            return
        joined = bytes(held)
        held.clear()
        real_received(self, joined)

    def unreadable_second(body: bytes) -> Any:
        nonlocal loads
        if joining:
            loads += 1
            if loads == 2:
                raise ValueError("a reply this side cannot unpickle")
        return real_loads(body)

    monkeypatch.setattr(frames.Replies, "data_received", data_received)
    monkeypatch.setattr(frames, "loads", unreadable_second)
    s = SqliteStore(tmp_path / "s.db")
    published: list[Event] = []
    s.on_commit(published.extend)
    await s.open()
    try:
        job_id, token = await running(s)  # seqs 1 and 2
        one, _ = await s.enqueue(NewJob(type="t", user_id="u1"))  # 3
        joining = True

        async def enqueue_after_progress() -> tuple[Job, list[Event]]:
            # In one turn: the enqueue is sent at once, with the progress before it, in one
            # frame (submitted in an earlier turn, the progress would go in a frame of its
            # own, which the writer may answer alone).
            for i in range(5):
                s.progress(job_id, token, ProgressUpdate(JobStage.PROCESSING, float(i)),
                           lambda event, error: None)  # fmt: skip
            return await s.enqueue(NewJob(type="t", user_id="u1"))  # 4, then 5-9

        first = asyncio.create_task(enqueue_after_progress())
        async with asyncio.timeout(20):
            while not whole_frames(held):  # the first reply came, and waits
                await asyncio.sleep(0.01)
        second = asyncio.create_task(s.cancel(one.id, None))  # 10
        _, [queued] = await first
        assert queued.seq == 4
        with pytest.raises(ServiceUnavailable):  # its reply could not be read
            await second
        joining = False
        _, [event] = await asyncio.wait_for(s.enqueue(NewJob(type="t", user_id="u1")), 20)
        assert event.seq == 11
        assert [e.seq for e in published] == list(range(1, 12))
        assert published == await s.events_after(0)
    finally:
        await s.close()


async def test_an_enqueue_sent_after_a_claim_in_its_batch_runs_first_and_the_claim_may_take_it(
    store: tuple[SqliteStore, list[Event]],
) -> None:
    """The claim was submitted first, in the same frame: the enqueue runs ahead of it, so the
    claim takes the new job. The queued event goes out first and its caller is answered
    before the claim's event is published; the claim's caller once that one is."""
    s, _ = store
    happened: list[tuple[str, int]] = []
    s.on_commit(lambda events: happened.extend(("published", e.seq) for e in events))

    async def claim() -> list[str]:
        claimed = await s.claim(5, 30)
        happened.extend(("claim answered", event.seq) for _, event in claimed)
        return [job.id for job, _ in claimed]

    async def enqueue() -> str:
        job, [event] = await s.enqueue(NewJob(type="t", user_id="u1"))
        happened.append(("enqueue answered", event.seq))
        return job.id

    claiming = asyncio.create_task(claim())  # both run in the next turn: one frame
    enqueuing = asyncio.create_task(enqueue())
    claimed, made = await asyncio.wait_for(asyncio.gather(claiming, enqueuing), 20)
    assert claimed == [made]
    assert happened == [("published", 1), ("enqueue answered", 1), ("published", 2),
                        ("claim answered", 2)]  # fmt: skip


async def test_an_enqueue_refused_ahead_of_its_batch_is_answered_before_the_rest_is_published(
    store: tuple[SqliteStore, list[Event]],
) -> None:
    s, published = store
    job_id, token = await running(s)  # seqs 1 and 2
    heard: list[int] = []

    def done(event: Event | None, error: BaseException | None) -> None:
        assert event is not None and error is None
        heard.append(event.seq)

    for i in range(3):
        s.progress(job_id, token, ProgressUpdate(JobStage.PROCESSING, float(i)), done)
    with pytest.raises(InvalidPayload):
        await s.enqueue(NewJob(type="t", user_id="u1", max_attempts=0))
    assert [e.seq for e in published] == [1, 2] and heard == []
    async with asyncio.timeout(10):
        while len(heard) < 3:
            await asyncio.sleep(0.01)
    assert heard == [3, 4, 5] and [e.seq for e in published] == [1, 2, 3, 4, 5]


async def test_two_enqueues_with_one_key_ahead_of_a_batch_make_one_job(
    store: tuple[SqliteStore, list[Event]],
) -> None:
    """Both run ahead of other jobs' progress, in their order: the second finds the first's
    job by its key (its row is written before the lookup), and both callers hear back
    before the progress is published."""
    s, published = store
    job_id, token = await running(s)  # seqs 1 and 2
    for i in range(3):
        s.progress(job_id, token, ProgressUpdate(JobStage.PROCESSING, float(i)),
                   lambda event, error: None)  # fmt: skip
    out_when_answered: list[list[int]] = []

    async def enqueue() -> tuple[Job, list[Event]]:
        made = await s.enqueue(NewJob(type="t", user_id="u1", idempotency_key="k"))
        out_when_answered.append([e.seq for e in published])
        return made

    pid = s.writer_pid
    assert pid is not None
    # The first enqueue goes at once (with the progress before it), the second at the end of
    # the turn: stopped, the writer finds both frames waiting and runs them as one batch.
    os.kill(pid, signal.SIGSTOP)
    try:
        one = asyncio.create_task(enqueue())
        two = asyncio.create_task(enqueue())
        await asyncio.sleep(0.1)
    finally:
        os.kill(pid, signal.SIGCONT)
    (first, [queued]), (again, none) = await asyncio.wait_for(asyncio.gather(one, two), 20)
    assert again.id == first.id and none == [] and queued.seq == 3
    assert out_when_answered == [[1, 2, 3]] * 2  # the progress (4-6) was not out yet
    async with asyncio.timeout(10):
        while len(published) < 6:
            await asyncio.sleep(0.01)
    assert published == await s.events_after(0)
