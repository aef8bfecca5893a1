"""The Python client (``jobserver.client``) against the real server, run as a process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import tracemalloc
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jobserver.client import (
    ApiError,
    BadRequest,
    Client,
    Conflict,
    Follow,
    JobCompleted,
    JobEvent,
    JobProgress,
    JobQueued,
    NetworkError,
    NotFound,
    Resync,
    SyncClient,
    Unauthorized,
    WaitTimeout,
)
from tests.liveserver import ROOT, SECRET, LiveServer, make_pdf
from tests.netcut import CutProxy


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("client") / "data", "--demo-jobs").start()
    yield live
    live.stop()


def _user() -> str:
    return f"py-{uuid.uuid4().hex[:8]}"


async def until(check: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    """Wait (bounded) until ``check()`` holds."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.01)


def all_events(server: LiveServer, token: str, user: str, since: int) -> list[dict[str, Any]]:
    """The server's own log of a user's events after ``since`` (long-poll pages, no wait)."""
    events: list[dict[str, Any]] = []
    for _ in range(100):
        page = server.get(f"/api/events?userId={user}&since={since}&timeout=0", token)
        events += page["events"]
        if not page["events"]:
            return events
        since = page["cursor"]
    raise AssertionError("the log did not end")


STEPS = 22  # each job: queued + started + 22 steps + completed = 25 events
EVENTS, DISCONNECTS = 1000, 20


async def test_follow_1000_events_across_20_disconnects_without_gap_or_duplicate(
    server: LiveServer,
) -> None:
    """Jobs are enqueued steadily (directly, not through the proxy) while the follower's
    connections are cut 20 times: half the cuts leave the socket usable again at once, the
    other half refuse WebSockets until the follower has long-polled, then let it back.
    Either way the events it yields are the server's log, each once, in order."""
    user = _user()
    token = server.token(user)
    proxy = await CutProxy(server.port).start()
    received: list[JobEvent] = []
    finished: set[str] = set()
    submitted: list[str] = []
    cutting = True
    try:
        async with (
            Client(server.url, token=token) as producer_client,
            Client(proxy.url, token=token, user_id=user) as client,
            client.follow(poll_timeout=5, backoff_base=0.05, backoff_cap=0.4) as events,
        ):
            start = events.cursor
            assert start is not None and events.state == "websocket"

            async def consume() -> None:
                async for item in events:
                    assert isinstance(item, JobEvent), f"unexpected {item!r}"
                    received.append(item)
                    if item.terminal:
                        finished.add(item.jobId)

            async def produce() -> None:
                for _ in range(400):  # bounded; ends once the cuts are done and enough is made
                    if not cutting and len(submitted) * (STEPS + 3) >= EVENTS:
                        return
                    job = await producer_client.submit(
                        "demo.sleep", {"seconds": 1.0, "steps": STEPS}
                    )
                    submitted.append(job.jobId)
                    await asyncio.sleep(0.1)

            consumer = asyncio.create_task(consume())
            producer = asyncio.create_task(produce())
            polled_before = 0
            for cut in range(DISCONNECTS):
                seen = len(received)
                await until(lambda s=seen: len(received) >= s + 20 or consumer.done(),
                            f"events flow before cut {cut}")  # fmt: skip
                assert not consumer.done() and not producer.done()
                if cut % 2:
                    proxy.block_websockets = True
                    proxy.cut()
                    refused = proxy.refused_upgrades
                    await until(
                        lambda p=polled_before, r=refused: events.stats.via_polling >= p + 5
                        and proxy.refused_upgrades > r,
                        f"a socket is refused and events come by long-poll after cut {cut}",
                    )
                    polled_before = events.stats.via_polling
                    proxy.block_websockets = False
                else:
                    proxy.cut()
                sockets = events.stats.sockets
                await until(lambda s=sockets: events.stats.sockets > s,
                            f"the socket is back after cut {cut}")  # fmt: skip
            cutting = False
            await asyncio.wait_for(producer, 90)
            await until(lambda: finished >= set(submitted), "every job's end arrives", 90)
            assert not consumer.done()
            stats = events.stats
    finally:
        await proxy.close()
    assert proxy.cuts >= DISCONNECTS and proxy.refused_upgrades >= DISCONNECTS // 2
    seqs = [e.seq for e in received]
    assert seqs == sorted(set(seqs)), "an event came twice or out of order"
    log = all_events(server, token, user, start)
    assert seqs == [e["seq"] for e in log], "the follower's events are not the server's log"
    assert len(seqs) == len(submitted) * (STEPS + 3) >= EVENTS
    assert [e.raw for e in received] == log  # the wire fields, as sent
    assert sum(isinstance(e, JobCompleted) for e in received) == len(submitted)
    assert stats.via_polling >= 5 * DISCONNECTS // 2 and stats.via_websocket > 0
    assert stats.sockets >= DISCONNECTS + 1 and stats.resyncs == 0


async def test_wait_returns_the_terminal_job(server: LiveServer) -> None:
    async with await Client.sign_in(server.url, _user()) as client:
        job = await client.submit("demo.sleep", {"seconds": 0.5, "steps": 3})
        assert job.status == "queued" and job.type == "demo.sleep" and job.lastSeq > 0
        done = await client.wait(job.jobId, timeout=30)
        assert done.status == "completed" and done.finished
        assert done.result == {**(done.result or {}), "title": "Slept 0.5s", "steps": 3}
        assert done.progress == 100.0 and done.finishedAt is not None
        assert await client.wait(job.jobId, timeout=5) == done  # already finished: at once

        failing = await client.submit("demo.fail", {"code": "BOOM", "message": "on purpose"})
        failed = await client.wait(failing.jobId, timeout=30)
        assert failed.status == "failed" and failed.error is not None
        assert (failed.error.code, failed.error.message) == ("BOOM", "on purpose")

        slow = await client.submit("demo.sleep", {"seconds": 30, "steps": 1})
        with pytest.raises(WaitTimeout) as timeout:
            await client.wait(slow.jobId, timeout=0.5)
        assert timeout.value.code == "TIMEOUT" and isinstance(timeout.value, TimeoutError)
        cancelled = await client.cancel(slow.jobId)
        assert cancelled.status == "cancelled"
        assert (await client.wait(slow.jobId, timeout=10)).status == "cancelled"


async def test_search_counts_timeline_and_removal(server: LiveServer) -> None:
    async with await Client.sign_in(server.url, _user()) as client:
        flaky = await client.submit("demo.fail", {"recoverable": True, "failAttempts": 1},
                                    max_attempts=2, label="flaky report")  # fmt: skip
        await client.submit("demo.sleep", {"seconds": 0}, label="other")
        done = await client.wait(flaky.jobId, timeout=30)
        assert done.status == "completed" and done.attempts == 2
        page = await client.list(q="REPORT")
        assert [j.jobId for j in page.jobs] == [flaky.jobId] and page.total == 1
        assert page.counts["all"] == 1 and page.counts["completed"] == 1
        events = await client.events(flaky.jobId)
        assert events[0].type == "job.queued" and events[-1].terminal
        assert "job.retrying" in [e.type for e in events]
        removed = await client.remove(flaky.jobId)
        assert removed.removed and removed.status == "completed"
        with pytest.raises(NotFound):
            await client.get(flaky.jobId)
        await client.wait((await client.list(q="other")).jobs[0].jobId, timeout=30)
        assert await client.remove_finished(status="completed") == 1
        assert (await client.list()).total == 0


async def test_wait_by_long_poll_alone(server: LiveServer) -> None:
    async with await Client.sign_in(server.url, _user()) as client:
        job = await client.submit("demo.sleep", {"seconds": 0.3, "steps": 2})
        done = await client.wait(job.jobId, timeout=30, transports=("polling",))
        assert done.status == "completed"


async def test_errors_are_exceptions_with_the_servers_code(server: LiveServer) -> None:
    user = _user()
    async with Client(server.url, token=server.token(user)) as client:
        with pytest.raises(NotFound) as missing:
            await client.get("no-such-job")
        assert (missing.value.code, missing.value.status) == ("JOB_NOT_FOUND", 404)
        with pytest.raises(BadRequest) as unknown:
            await client.submit("no.such.type")
        assert unknown.value.code == "UNKNOWN_JOB_TYPE"
        with pytest.raises(BadRequest) as invalid:
            await client.submit("demo.sleep", {"seconds": -1})
        assert invalid.value.code == "INVALID_PAYLOAD" and "seconds" in invalid.value.message
        with pytest.raises(BadRequest) as bad_status:
            await client.list(status="sleeping")
        assert bad_status.value.code == "INVALID_PAYLOAD"
        job = await client.submit("demo.sleep", {"seconds": 0, "steps": 0})
        await client.wait(job.jobId, timeout=30)
        with pytest.raises(Conflict) as illegal:
            await client.cancel(job.jobId)
        assert (illegal.value.code, illegal.value.status) == ("ILLEGAL_TRANSITION", 409)
        assert (await client.get(job.jobId)).status == "completed"  # nothing else harmed

    async with await Client.sign_in(server.url, _user()) as other:
        with pytest.raises(NotFound):
            await other.get(job.jobId)  # another user's job is not found
        for transports in (("websocket",), ("polling",)):
            with pytest.raises(NotFound) as refused:
                async with other.follow(job_id=job.jobId, since=0, transports=transports) as ev:
                    await anext(ev)
            assert refused.value.code == "JOB_NOT_FOUND", transports

    async with Client(server.url, token="not-a-token") as forged:
        with pytest.raises(Unauthorized) as bad_token:
            await forged.list()
        assert bad_token.value.code == "INVALID_TOKEN"
        with pytest.raises(Unauthorized):
            async with forged.follow(user_id="anyone", transports=("websocket",)) as ev:
                await anext(ev)

    with pytest.raises(BadRequest) as bad_name:
        await Client.sign_in(server.url, "no spaces allowed")
    assert bad_name.value.code == "INVALID_PAYLOAD"


async def test_unreachable_server_is_a_network_error_not_a_refusal() -> None:
    async with Client("http://127.0.0.1:9", token="x", timeout=5) as client:
        with pytest.raises(NetworkError) as down:
            await client.get("job")
        assert down.value.code == "NETWORK" and down.value.status == 0
        follow = client.follow(user_id="x", give_up_after=0.5, backoff_base=0.05)
        with pytest.raises(NetworkError):
            async with follow:
                await anext(follow)


async def test_a_token_provider_is_asked_again_after_a_401(server: LiveServer) -> None:
    user = _user()
    asked: list[str] = []

    async def provider() -> str:
        asked.append("token")
        return server.token(user)

    async with Client(server.url, token="expired-or-forged", token_provider=provider) as client:
        job = await client.submit("demo.sleep", {"seconds": 0, "steps": 0})
        assert len(asked) == 1 and job.userId == user
        assert await client.whoami() == user
        assert len(asked) == 1
    async with Client(server.url, token_provider=provider) as lazy:
        assert (await lazy.get(job.jobId)).jobId == job.jobId
        assert len(asked) == 2
    # The WebSocket refuses a bad token with 1008: the provider is asked, the socket retried.
    async with (
        Client(server.url, token="forged", token_provider=provider) as socket_only,
        socket_only.follow(user_id=user, transports=("websocket",)) as events,
    ):
        assert events.state == "websocket" and len(asked) == 3

    async def forger() -> str:
        asked.append("forged")
        return "still-forged"

    async with Client(server.url, token="forged", token_provider=forger) as hopeless:
        with pytest.raises(Unauthorized):  # one new token, refused again: final, no loop
            async with hopeless.follow(user_id=user, transports=("websocket",)) as events:
                await anext(events)
        assert asked[3:] == ["forged"]


async def test_resync_is_yielded_then_events_go_on_from_the_head(server: LiveServer) -> None:
    """A cursor from another database, or past the head, cannot be replayed: the follower
    says so with a ``Resync`` (on either transport) and goes on from the server's head."""
    async with await Client.sign_in(server.url, _user()) as client:
        meta = await client.meta()
        cases: list[tuple[tuple[Any, ...], int, str | None, str]] = [
            (("websocket",), 10**9, meta.epoch, "ahead"),
            (("polling",), 10**9, meta.epoch, "ahead"),
            (("websocket",), 1, "another-epoch", "epoch"),
            (("polling",), 1, "another-epoch", "epoch"),
        ]
        for transports, since, epoch, reason in cases:
            async with client.follow(since=since, epoch=epoch, transports=transports,
                                     poll_timeout=2) as events:  # fmt: skip
                first = await asyncio.wait_for(anext(events), 30)
                assert isinstance(first, Resync), first
                assert (first.reason, first.epoch) == (reason, meta.epoch), transports
                assert first.seq >= meta.seq and events.cursor == first.seq
                job = await client.submit("demo.sleep", {"seconds": 0, "steps": 0})
                queued = await asyncio.wait_for(anext(events), 30)
                assert isinstance(queued, JobQueued) and queued.jobId == job.jobId
                assert queued.seq > first.seq and events.stats.resyncs == 1
            await client.wait(job.jobId, timeout=30)  # its events stay out of the next case


async def test_follow_from_now_yields_typed_events_with_the_wire_fields(
    server: LiveServer,
) -> None:
    user = _user()
    async with await Client.sign_in(server.url, user) as client:
        assert client.user_id == user
        async with client.follow() as events:  # from now: the subscription stands on return
            job = await client.submit("demo.sleep", {"seconds": 0.2, "steps": 2})
            got: list[JobEvent] = []
            async for item in events:
                assert isinstance(item, JobEvent)
                got.append(item)
                if item.terminal:
                    break
        assert [type(e) for e in got] == [JobQueued, JobProgress, JobProgress, JobProgress,
                                          JobCompleted]  # fmt: skip
        assert {e.jobId for e in got} == {job.jobId} and {e.userId for e in got} == {user}
        done = got[-1]
        assert done.type == "job.completed" and done.jobType == "demo.sleep"
        assert done.status == "completed" and done.attempt == 1 and done.maxAttempts == 1
        assert done.result is not None and done.result["steps"] == 2
        assert got[2].stage == "processing" and got[2].message == "Step 1 of 2"
        assert set(done.raw) >= {"seq", "type", "jobId", "userId", "jobType", "status", "stage",
                                 "progress", "message", "metadata", "attempt", "maxAttempts",
                                 "timestamp", "result"}  # fmt: skip


async def test_list_pages_and_iter_jobs_walks_every_page(server: LiveServer) -> None:
    async with await Client.sign_in(server.url, _user()) as client:
        made = [await client.submit("demo.sleep", {"seconds": 0, "steps": 0},
                                    delay_seconds=3600) for _ in range(5)]  # fmt: skip
        page = await client.list(limit=2)
        assert [j.jobId for j in page.jobs] == [j.jobId for j in made[::-1][:2]]
        assert page.nextOffset == 2 and page.limit == 2
        walked = [j.jobId async for j in client.iter_jobs(page_size=2)]
        assert walked == [j.jobId for j in made[::-1]]
        queued = [j async for j in client.iter_jobs(status="queued", page_size=3)]
        assert len(queued) == 5 and {j.status for j in queued} == {"queued"}
        again = await client.submit("demo.sleep", {}, idempotency_key="k1", max_attempts=2)
        same = await client.submit("demo.sleep", {}, idempotency_key="k1")
        assert same.jobId == again.jobId and again.maxAttempts == 2
        retried = await client.retry((await client.cancel(made[0].jobId)).jobId)
        assert retried.status == "queued"


async def test_upload_streams_the_file_and_returns_the_job(
    server: LiveServer, tmp_path: Path
) -> None:
    big = tmp_path / "big.pdf"
    with big.open("wb") as f:  # a 24 MB "PDF": accepted at upload, it fails to parse later
        f.write(b"%PDF-1.7\n")
        for _ in range(24):
            f.write(b"0" * (1 << 20))
    pdf = make_pdf(tmp_path / "small.pdf", "Client Upload", tag=uuid.uuid4().hex)
    async with await Client.sign_in(server.url, _user()) as client:
        tracemalloc.start()
        try:
            job = await client.upload(big, idempotency_key="big-1")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 8 * (1 << 20), f"the upload held {peak / (1 << 20):.1f} MB in memory"
        assert job.type == "pdf-notes" and job.payload["size"] == big.stat().st_size
        assert (await client.upload(big, idempotency_key="big-1")).jobId == job.jobId
        notes = await client.upload(pdf, type="pdf-notes", filename="renamed.pdf", max_attempts=2)
        assert notes.payload["filename"] == "renamed.pdf" and notes.maxAttempts == 2
        assert notes.label == "renamed.pdf"
        done = await client.wait(notes.jobId, timeout=60)
        assert done.status == "completed" and done.result and done.result["noteId"]
        text = tmp_path / "notes.txt"
        text.write_text("plain text, not a PDF " * 100)
        with pytest.raises(ApiError) as refused:
            await client.upload(text)
        assert (refused.value.code, refused.value.status) == ("NOT_A_PDF", 415)
        second = make_pdf(tmp_path / "second.pdf", "Second Upload", tag=uuid.uuid4().hex)
        both = await client.upload_many([pdf, second], idempotency_key="pair", max_attempts=3)
        assert [j.label for j in both] == ["small.pdf", "second.pdf"]
        assert [j.created for j in both] == [True, True] and both[1].maxAttempts == 3
        again = await client.upload_many([pdf, second], idempotency_key="pair")
        assert [j.jobId for j in again] == [j.jobId for j in both]
        assert [j.created for j in again] == [False, False]
        with pytest.raises(ApiError) as one_bad:
            await client.upload_many([pdf, text])
        assert (one_bad.value.code, one_bad.value.index) == ("NOT_A_PDF", 1)
        with pytest.raises(BadRequest) as no_uploads:
            await client.upload(pdf, type="demo.sleep")  # a type that takes no file
        assert no_uploads.value.code == "INVALID_PAYLOAD"


def test_sync_client_does_the_same_without_await(server: LiveServer) -> None:
    user = _user()
    with SyncClient.sign_in(server.url, user) as client:
        assert client.user_id == user and client.whoami() == user
        assert "demo.sleep" in client.meta().jobTypes
        with client.follow() as events:
            job = client.submit("demo.sleep", {"seconds": 0.2, "steps": 2})
            seen = []
            for item in events:
                assert isinstance(item, JobEvent)
                seen.append(item.type)
                if item.terminal:
                    break
            assert seen[0] == "job.queued" and seen[-1] == "job.completed"
            assert events.cursor is not None and events.state == "websocket"
        assert client.wait(job.jobId, timeout=30).status == "completed"
        assert [j.jobId for j in client.iter_jobs(page_size=1)] == [job.jobId]
        assert client.list().jobs[0].jobId == job.jobId
        with pytest.raises(NotFound) as missing:
            client.get("no-such-job")
        assert missing.value.code == "JOB_NOT_FOUND"
        with pytest.raises(Conflict):
            client.retry(job.jobId)

    calls: list[int] = []

    def provider() -> str:
        calls.append(1)
        return server.token(user)

    with SyncClient(server.url, token_provider=provider) as lazy:
        assert lazy.get(job.jobId).status == "completed" and calls == [1]


async def test_follow_outlives_a_server_restart(tmp_path: Path) -> None:
    """The server stops (sockets closed with 1001, polls refused) and comes back on the same
    data: the follower resumes from its cursor and misses nothing."""
    live = LiveServer(tmp_path / "data", "--demo-jobs").start()
    try:
        user = _user()
        token = live.token(user)
        async with (
            Client(live.url, token=token, user_id=user) as client,
            client.follow(backoff_base=0.1, backoff_cap=0.5, poll_timeout=2) as events,
        ):
            await client.submit("demo.sleep", {"seconds": 0, "steps": 1})
            got = [await asyncio.wait_for(anext(events), 30)]
            assert isinstance(got[0], JobQueued)
            assert live.terminate() == 0
            live.start()
            try:  # the pooled connection died with the old process: the key makes a retry safe
                second = await client.submit("demo.sleep", {"steps": 1}, idempotency_key="2")
            except NetworkError:
                second = await client.submit("demo.sleep", {"steps": 1}, idempotency_key="2")
            while not (got[-1].terminal and got[-1].jobId == second.jobId):
                item = await asyncio.wait_for(anext(events), 30)
                assert isinstance(item, JobEvent), item
                got.append(item)
        seqs = [e.seq for e in got]
        assert seqs == [e["seq"] for e in all_events(live, token, user, seqs[0] - 1)]
        assert events.stats.sockets >= 2 and events.stats.resyncs == 0
    finally:
        live.stop()


def test_follow_rejects_unknown_transports() -> None:
    client = Client("http://127.0.0.1:9")
    with pytest.raises(ValueError):
        client.follow(user_id="x", transports=("carrier-pigeon",))  # type: ignore[arg-type]
    assert isinstance(client.follow(user_id="x"), Follow)


async def test_label_open_session_and_sign_out(server: LiveServer) -> None:
    user = _user()
    async with Client(server.url) as client:
        with pytest.raises(ValueError):
            await client.open_session()
        assert await client.open_session(user) == user and client.user_id == user
        job = await client.submit("demo.sleep", {"seconds": 0, "steps": 0}, label="Nightly")
        assert job.label == "Nightly" and job.jobType == "demo.sleep"
        done = await client.wait(job.jobId, timeout=30)
        assert done.label == "Nightly" and done.attempt == 1 == done.attempts
        await client.sign_out()
        assert client.token is None
        with pytest.raises(Unauthorized) as signed_out:
            await client.get(job.jobId)
        assert signed_out.value.code == "UNAUTHORIZED"
    with SyncClient(server.url) as sync:
        assert sync.open_session(user) == user
        assert sync.get(job.jobId).label == "Nightly"
        sync.sign_out()
        with pytest.raises(Unauthorized):
            sync.list()


def _add_account(data_dir: Path, name: str, password: str) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "server.py"), "user", "add", name, "--data-dir", str(data_dir)],
        input=password + "\n", text=True, capture_output=True, check=True, timeout=60,
        cwd=ROOT, env={**os.environ, "JOBSERVER_SECRET": SECRET},
    )  # fmt: skip


async def test_password_sign_in_and_a_refreshed_token(tmp_path: Path) -> None:
    """Accounts with passwords (issue 13): a wrong password is BAD_CREDENTIALS; the right one
    gives a short-lived token that the client renews with its refresh token by itself."""
    data = tmp_path / "data"
    _add_account(data, "carol", "correct horse battery")
    live = LiveServer(data, "--demo-jobs", "--token-ttl-seconds", "1").start()
    try:
        with pytest.raises(Unauthorized) as wrong:
            await Client.sign_in(live.url, "carol", password="not her password")
        assert wrong.value.code == "BAD_CREDENTIALS"
        async with await Client.sign_in(live.url, "carol", password="correct horse battery") as c:
            first = c.token
            assert c.user_id == "carol" and first
            job = await c.submit("demo.sleep", {"seconds": 0, "steps": 1})
            deadline = time.monotonic() + 30
            while _status_with(live, first, job.jobId) != 401:  # until the token has expired
                assert time.monotonic() < deadline, "the access token never expired"
                await asyncio.sleep(0.2)
            assert (await c.wait(job.jobId, timeout=30)).status == "completed"
            assert c.token != first  # renewed through POST /api/session/refresh
            await c.sign_out()
        with SyncClient.sign_in(live.url, "carol", password="correct horse battery") as sync:
            assert sync.whoami() == "carol"
    finally:
        live.stop()


def _status_with(live: LiveServer, token: str, job_id: str) -> int:
    request = urllib.request.Request(
        f"{live.url}/api/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
