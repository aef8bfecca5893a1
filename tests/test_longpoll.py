"""Long-polling ``GET /api/events`` over real sockets, and its agreement with the WebSocket."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson
import pytest

from jobserver.web.keys import GATEWAY, STORE

from .conftest import ApiClient, MakeApi
from .test_ws import SLEEP, connect, events_until, next_json, run_job
from .wsraw import demo_only


@pytest.fixture
def make_api(make_api: MakeApi) -> MakeApi:
    return demo_only(make_api)


async def poll(api: ApiClient, query: str) -> tuple[int, Any, bytes]:
    async with api.client.get(f"/api/events?{query}", headers=api.headers) as resp:
        raw = await resp.read()
        return resp.status, orjson.loads(raw), raw


async def test_returns_at_once_when_there_are_events(make_api: MakeApi) -> None:
    api = await make_api("alice")
    job_id = await run_job(api)
    store = api.app[STORE]
    started = time.monotonic()
    status, body, raw = await poll(api, "since=0&timeout=30")
    assert status == 200 and time.monotonic() - started < 5
    stored = await store.events_after(0, user_id="alice")
    assert raw == b'{"events":[%s],"cursor":%d,"epoch":"%s"}' % (
        b",".join(e.data for e in stored), stored[-1].seq, store.epoch.encode()
    )  # the stored bytes, joined: no second serialisation
    assert body["cursor"] == stored[-1].seq and body["epoch"] == store.epoch
    status, by_job, _ = await poll(api, f"since=0&jobId={job_id}&timeout=0")
    assert [e["seq"] for e in by_job["events"]] == [e.seq for e in stored if e.job_id == job_id]


async def test_waits_for_the_next_event(make_api: MakeApi) -> None:
    api = await make_api("alice")
    await run_job(api)
    _, first, _ = await poll(api, "since=0&timeout=0")

    async def later() -> None:
        await asyncio.sleep(0.3)
        await api.post("/api/jobs", json=SLEEP)

    task = asyncio.create_task(later())
    started = time.monotonic()
    status, body, _ = await poll(api, f"since={first['cursor']}&timeout=20")
    waited = time.monotonic() - started
    await task
    assert status == 200 and 0.2 < waited < 10
    assert body["events"] and body["events"][0]["type"] == "job.queued"
    assert body["events"][0]["seq"] == first["cursor"] + 1
    assert body["cursor"] == body["events"][-1]["seq"]


async def test_timeout_returns_no_events_and_the_same_cursor(make_api: MakeApi) -> None:
    api = await make_api("alice")
    await run_job(api)
    _, first, _ = await poll(api, "since=0&timeout=0")
    started = time.monotonic()
    status, body, _ = await poll(api, f"since={first['cursor']}&timeout=0.3")
    assert status == 200 and body["events"] == [] and body["cursor"] == first["cursor"]
    assert 0.25 < time.monotonic() - started < 5
    # without since: from now on
    status, body, _ = await poll(api, "timeout=0")
    assert body == {"events": [], "cursor": first["cursor"], "epoch": api.app[STORE].epoch}


async def test_another_users_events_are_404(make_api: MakeApi) -> None:
    alice = await make_api("alice")
    bob = await alice.as_user("bob")
    bobs_job = await run_job(bob)
    status, body, _ = await poll(alice, "userId=bob&since=0&timeout=0")
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"
    status, body, _ = await poll(alice, f"jobId={bobs_job}&since=0&timeout=0")
    assert status == 404 and body["error"]["code"] == "JOB_NOT_FOUND"
    status, body, _ = await poll(alice, "since=0&timeout=0")  # alice's own: none of bob's
    assert status == 200 and body["events"] == []
    async with alice.client.get("/api/events?since=0&timeout=0") as resp:
        assert resp.status == 200  # the session cookie alone is enough
    alice.client.session.cookie_jar.clear()
    async with alice.client.get("/api/events?since=0&timeout=0") as resp:
        assert resp.status == 401


@pytest.mark.parametrize(
    "query",
    ["timeout=61", "timeout=-1", "timeout=x", "since=-3", "since=abc",
     "userId=alice&jobId=j", "jobId="],
)  # fmt: skip
async def test_bad_query_is_400(make_api: MakeApi, query: str) -> None:
    api = await make_api("alice")
    status, body, _ = await poll(api, query)
    assert status == 400 and body["error"]["code"] in ("INVALID_PAYLOAD", "INVALID_MESSAGE")


async def test_stale_cursor_gets_resync(make_api: MakeApi) -> None:
    api = await make_api("alice")
    store = api.app[STORE]
    await run_job(api)
    head = await store.head_seq()
    status, body, _ = await poll(api, "since=0&epoch=another&timeout=0")
    expected = {"type": "resync", "reason": "epoch", "events": [], "cursor": head}
    assert status == 200 and body == {**expected, "epoch": store.epoch}
    _, body, _ = await poll(api, f"since={head + 5}&timeout=0")
    assert body["type"] == "resync" and body["reason"] == "ahead"
    await store.prune(time.time() + 1)
    _, body, _ = await poll(api, f"since=1&epoch={store.epoch}&timeout=0")
    assert body["type"] == "resync" and body["reason"] == "pruned"
    _, body, _ = await poll(api, f"since={head}&epoch={store.epoch}&timeout=0")
    assert body == {"events": [], "cursor": head, "epoch": store.epoch}


async def test_same_events_over_websocket_and_long_poll(make_api: MakeApi) -> None:
    api = await make_api("alice")
    store = api.app[STORE]
    ws = await connect(api)
    await ws.send_json({"type": "subscribe", "userId": "alice", "since": 0})
    assert (await next_json(ws))["type"] == "subscribed"
    polled: list[Any] = []

    async def read_polls() -> None:
        cursor = 0
        while not polled or polled[-1]["type"] not in ("job.failed",):
            status, body, _ = await poll(api, f"since={cursor}&timeout=10")
            assert status == 200
            polled.extend(body["events"])
            cursor = body["cursor"]

    poller = asyncio.create_task(read_polls())  # polls while the jobs run
    ids = []
    for seconds in (0.1, 0.2, 0.15):
        body = {"type": "demo.sleep", "payload": {"seconds": seconds, "steps": 5}}
        ids.append((await api.post("/api/jobs", json=body))[1]["jobId"])
    for job_id in ids:
        await run_until_done(api, job_id)
    ids.append((await api.post("/api/jobs", json={"type": "demo.fail", "payload": {}}))[1]["jobId"])
    await run_until_done(api, ids[-1])
    await asyncio.wait_for(poller, 20)
    stored = await store.events_after(0, user_id="alice")
    frames = [(await ws.receive(timeout=10)).data.encode() for _ in stored]
    assert frames == [e.data for e in stored]  # byte for byte, as stored
    assert polled == [orjson.loads(f) for f in frames]  # field for field, while jobs ran
    _, _, raw = await poll(api, "since=0&timeout=0")  # and byte for byte
    assert raw.startswith(b'{"events":[' + b",".join(frames) + b'],"cursor":')
    assert {e["type"] for e in polled} >= {"job.queued", "job.progress", "job.completed",
                                           "job.failed"}  # fmt: skip
    await ws.close()


async def run_until_done(api: ApiClient, job_id: str) -> None:
    for _ in range(1000):
        _, job = await api.get(f"/api/jobs/{job_id}")
        if job["status"] in ("completed", "failed", "cancelled"):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"job {job_id} did not finish")


async def test_many_pollers_are_woken_by_one_event(make_api: MakeApi) -> None:
    api = await make_api("alice")
    gateway = api.app[GATEWAY]
    store = api.app[STORE]
    head = await store.head_seq()
    url = api.client.make_url(f"/api/events?since={head}&timeout=30")
    reads = 0
    read = store.events_after

    async def counted(since: int, **kw: Any) -> Any:
        nonlocal reads
        reads += 1
        return await read(since, **kw)

    # Polls at the head wait without a query: waking a thousand must not queue a thousand reads.
    store.events_after = counted  # type: ignore[method-assign]

    async def one(session: aiohttp.ClientSession) -> tuple[int, Any]:
        async with session.get(url, headers=api.headers) as resp:
            return resp.status, await resp.json()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        pollers = [asyncio.create_task(one(session)) for _ in range(200)]
        for _ in range(1000):
            if len(gateway.pollers) == 200:
                break
            await asyncio.sleep(0.01)
        assert len(gateway.pollers) == 200
        started = time.monotonic()
        await api.post("/api/jobs", json={**SLEEP, "delaySeconds": 60})
        results = await asyncio.wait_for(asyncio.gather(*pollers), 20)
    assert time.monotonic() - started < 10
    for status, body in results:
        assert status == 200 and [e["type"] for e in body["events"]] == ["job.queued"]
    assert not gateway.pollers
    assert reads == 0


async def test_shutdown_answers_waiting_polls(make_api: MakeApi) -> None:
    api = await make_api("alice")
    gateway = api.app[GATEWAY]
    waiting = asyncio.create_task(poll(api, "timeout=60"))
    for _ in range(500):
        if gateway.pollers:
            break
        await asyncio.sleep(0.01)
    started = time.monotonic()
    await gateway.shutdown()
    status, body, _ = await asyncio.wait_for(waiting, 10)
    assert status == 200 and body["events"] == [] and time.monotonic() - started < 5


async def test_events_seen_by_websocket_and_poll_while_jobs_run(make_api: MakeApi) -> None:
    """Polls that race live events lose none and repeat none (the merge by seq)."""
    api = await make_api("alice")
    body = {"type": "demo.sleep", "payload": {"seconds": 0.6, "steps": 60}}
    ids = [(await api.post("/api/jobs", json=body))[1]["jobId"] for _ in range(3)]
    seqs: list[int] = []
    cursor = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _status, page, _ = await poll(api, f"since={cursor}&timeout=0.05")
        seqs.extend(e["seq"] for e in page["events"])
        cursor = page["cursor"]
        done = [await api.get(f"/api/jobs/{i}") for i in ids]
        if all(j["status"] == "completed" for _, j in done) and not page["events"]:
            break
    stored = await api.app[STORE].events_after(0, user_id="alice", limit=10_000)
    assert seqs == [e.seq for e in stored]
    ws = await connect(api)
    await ws.send_json({"type": "subscribe", "userId": "alice", "since": 0})
    await next_json(ws)
    got = await events_until(ws, stored[-1].job_id)
    assert [m["seq"] for m in got][: len(stored)] == seqs
    await ws.close()
