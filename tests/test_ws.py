"""The WebSocket gateway over real sockets: Origin, auth, subscriptions, errors, limits."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson
import pytest

from jobserver.web.keys import GATEWAY, STORE

from .conftest import ApiClient, MakeApi
from .wsraw import CLOSE, RawWs, demo_only


@pytest.fixture
def make_api(make_api: MakeApi) -> MakeApi:
    return demo_only(make_api)


SLEEP = {"type": "demo.sleep", "payload": {"seconds": 0.05, "steps": 3}}


async def connect(api: ApiClient, **kw: Any) -> aiohttp.ClientWebSocketResponse:
    """A WebSocket authenticated by the bearer header; the ``authenticated`` reply is read."""
    ws = await api.client.ws_connect("/ws", headers=api.headers, **kw)
    assert await next_json(ws) == {"type": "authenticated", "userId": api.user}
    return ws


async def next_json(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> Any:
    msg = await ws.receive(timeout=timeout)
    assert msg.type is aiohttp.WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
    return orjson.loads(msg.data)


async def until_pong(ws: aiohttp.ClientWebSocketResponse) -> list[Any]:
    """Everything the server sent before it answered a ping (the stream is in order)."""
    await ws.send_json({"type": "ping"})
    seen = []
    while (message := await next_json(ws))["type"] != "pong":
        seen.append(message)
    return seen


async def eventually(check: Any, seconds: float = 5.0) -> None:
    """Wait until ``check()`` is true (bounded), then assert it."""
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert check()


async def run_job(api: ApiClient, body: dict[str, Any] = SLEEP) -> str:
    """Enqueue a job and wait until it has finished; its id."""
    status, job = await api.post("/api/jobs", json=body)
    assert status == 202, job
    for _ in range(500):
        _, job = await api.get(f"/api/jobs/{job['jobId']}")
        if job["status"] in ("completed", "failed", "cancelled"):
            return str(job["jobId"])
        await asyncio.sleep(0.01)
    raise AssertionError("the job did not finish")


async def events_until(
    ws: aiohttp.ClientWebSocketResponse, job_id: str, last_type: str = "job.completed"
) -> list[dict[str, Any]]:
    got = []
    while True:
        message = await next_json(ws)
        got.append(message)
        if message.get("jobId") == job_id and message["type"] == last_type:
            return got


# -- Origin and authentication ----------------------------------------------------------------


async def test_foreign_origin_with_valid_cookie_gets_403_and_no_upgrade(make_api: MakeApi) -> None:
    api = await make_api("alice")
    assert api.client.session.cookie_jar.filter_cookies(api.client.make_url("/"))  # signed in
    port = api.client.port
    cookie = f"jobserver_token={api.token}"
    foreign = await RawWs.connect(port, {"Origin": "http://evil.example", "Cookie": cookie})
    assert foreign.status == 403
    assert "upgrade" not in foreign.headers and "sec-websocket-accept" not in foreign.headers
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await api.client.ws_connect("/ws", headers={"Origin": "http://evil.example"})
    assert caught.value.status == 403
    # Same host with another port, or another scheme's default port, is another origin too.
    other_port = await RawWs.connect(port, {"Origin": "http://127.0.0.1:1", "Cookie": cookie})
    assert other_port.status == 403
    await foreign.close()
    await other_port.close()
    # The server's own origin, by the cookie alone, is let in.
    own = await api.client.ws_connect("/ws", headers={"Origin": f"http://127.0.0.1:{port}"})
    assert await next_json(own) == {"type": "authenticated", "userId": "alice"}
    await own.close()


async def test_allow_listed_origin_is_let_in(make_api: MakeApi) -> None:
    api = await make_api("alice", allowed_origins=("https://app.example",))
    ws = await api.client.ws_connect("/ws", headers={"Origin": "https://app.example"})
    assert await next_json(ws) == {"type": "authenticated", "userId": "alice"}
    await ws.close()
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await api.client.ws_connect("/ws", headers={"Origin": "https://other.example"})


async def test_auth_by_first_message(make_api: MakeApi) -> None:
    api = await make_api("alice")
    api.client.session.cookie_jar.clear()
    ws = await api.client.ws_connect("/ws")
    await ws.send_json({"type": "auth", "token": api.token})
    assert await next_json(ws) == {"type": "authenticated", "userId": "alice"}
    await ws.send_json({"type": "ping"})
    assert await next_json(ws) == {"type": "pong"}
    await ws.close()


async def test_socket_that_never_authenticates_is_closed_1008(make_api: MakeApi) -> None:
    api = await make_api("alice", ws_auth_timeout_seconds=0.3)
    api.client.session.cookie_jar.clear()
    started = time.monotonic()
    ws = await api.client.ws_connect("/ws")
    msg = await ws.receive(timeout=5)
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1008
    assert 0.25 < time.monotonic() - started < 3
    await eventually(lambda: not api.app[GATEWAY].sockets)


@pytest.mark.parametrize(
    "first",
    [
        {"type": "auth", "token": "not-a-token"},
        {"type": "subscribe", "userId": "alice"},
        "not json",
    ],
)
async def test_bad_first_message_is_closed_1008(make_api: MakeApi, first: Any) -> None:
    api = await make_api("alice")
    api.client.session.cookie_jar.clear()
    ws = await api.client.ws_connect("/ws")
    await (ws.send_str(first) if isinstance(first, str) else ws.send_json(first))
    msg = await ws.receive(timeout=5)
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1008


async def test_connections_per_user_limit_closes_1013(make_api: MakeApi) -> None:
    api = await make_api("alice", ws_max_connections_per_user=2)
    first, second = await connect(api), await connect(api)
    third = await api.client.ws_connect("/ws", headers=api.headers)
    msg = await third.receive(timeout=5)
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1013
    bob = await connect(await api.as_user("bob"))  # another user is not affected
    await first.close()
    await eventually(lambda: api.app[GATEWAY].connections_of("alice") < 2)
    again = await connect(api)  # a slot is free again
    for ws in (second, bob, again):
        await ws.close()


# -- subscriptions ------------------------------------------------------------------------------


async def test_subscribe_replies_then_backlog_then_live(make_api: MakeApi) -> None:
    api = await make_api("alice")
    done = await run_job(api)
    ws = await connect(api)
    await ws.send_json({"type": "subscribe", "userId": "alice", "since": 0})
    store = api.app[STORE]
    reply = await next_json(ws)
    head = await store.head_seq()
    assert reply == {"type": "subscribed", "userId": "alice", "seq": head, "epoch": store.epoch}
    backlog = await events_until(ws, done)
    stored = await store.events_after(0, user_id="alice")
    assert backlog == [orjson.loads(e.data) for e in stored]
    live = await run_job(api)
    assert [m["type"] for m in await events_until(ws, live)][-1] == "job.completed"
    await ws.close()


async def test_subscribe_without_since_gets_only_live_events(make_api: MakeApi) -> None:
    api = await make_api("alice")
    await run_job(api)
    ws = await connect(api)
    await ws.send_json({"type": "subscribe", "userId": "alice"})
    reply = await next_json(ws)
    assert reply["seq"] == await api.app[STORE].head_seq()
    assert await until_pong(ws) == []
    job_id = await run_job(api)
    events = await events_until(ws, job_id)
    assert events[0]["seq"] == reply["seq"] + 1
    await ws.close()


async def test_events_arrive_as_the_stored_bytes(make_api: MakeApi) -> None:
    api = await make_api("alice")
    ws = await connect(api)
    await ws.send_json({"type": "subscribe", "userId": "alice"})
    await next_json(ws)
    job_id = await run_job(api)
    frames = []
    while True:
        msg = await ws.receive(timeout=5)
        frames.append(msg.data.encode())
        if orjson.loads(msg.data)["type"] == "job.completed":
            break
    stored = await api.app[STORE].events_after(0, job_id=job_id)
    assert frames == [e.data for e in stored]
    await ws.close()


async def test_subscribe_to_another_users_stream_is_refused(make_api: MakeApi) -> None:
    alice = await make_api("alice")
    bob = await alice.as_user("bob")
    _, bobs_job = await bob.post("/api/jobs", json={**SLEEP, "delaySeconds": 0.3})
    ws = await connect(alice)
    await ws.send_json({"type": "subscribe", "userId": "bob", "since": 0})
    error = await next_json(ws)
    assert error["type"] == "error" and error["code"] == "NOT_FOUND" and error["userId"] == "bob"
    await ws.send_json({"type": "subscribe", "jobId": bobs_job["jobId"], "since": 0})
    error = await next_json(ws)
    assert error["type"] == "error" and error["code"] == "JOB_NOT_FOUND"
    await ws.send_json({"type": "subscribe", "jobId": "no-such-job"})
    assert (await next_json(ws))["code"] == "JOB_NOT_FOUND"
    await run_job(bob)  # bob's jobs run while alice listens
    for _ in range(100):
        _, job = await bob.get(f"/api/jobs/{bobs_job['jobId']}")
        if job["status"] == "completed":
            break
        await asyncio.sleep(0.02)
    assert await until_pong(ws) == []
    await ws.close()


async def test_duplicate_subscribe_changes_nothing(make_api: MakeApi) -> None:
    api = await make_api("alice")
    first = await run_job(api)
    ws = await connect(api)
    await ws.send_json({"type": "subscribe", "userId": "alice", "since": 0})
    assert (await next_json(ws))["type"] == "subscribed"
    backlog = await events_until(ws, first)
    await ws.send_json({"type": "subscribe", "userId": "alice", "since": 0})
    again = await next_json(ws)
    assert again["type"] == "subscribed" and again["userId"] == "alice"
    assert await until_pong(ws) == []  # no second backlog
    second = await run_job(api)
    live = await events_until(ws, second)
    seqs = [m["seq"] for m in backlog + live]
    assert seqs == sorted(set(seqs))
    assert seqs == [e.seq for e in await api.app[STORE].events_after(0, user_id="alice")]
    await ws.close()


async def test_user_and_job_subscriptions_deliver_each_event_once(make_api: MakeApi) -> None:
    api = await make_api("alice")
    early = await run_job(api)
    _status, job = await api.post("/api/jobs", json={**SLEEP, "delaySeconds": 0.3})
    ws = await connect(api)
    # The job first (its backlog), then the user: the user's backlog skips nothing it owes,
    # and repeats nothing the job subscription already sends.
    await ws.send_json({"type": "subscribe", "jobId": job["jobId"], "since": 0})
    assert (await next_json(ws))["type"] == "subscribed"
    await ws.send_json({"type": "subscribe", "userId": "alice", "since": 0})
    got = await events_until(ws, job["jobId"])
    seqs = [m["seq"] for m in got if "seq" in m and m["type"] != "subscribed"]
    assert len(seqs) == len(set(seqs))
    expected = [e.seq for e in await api.app[STORE].events_after(0, user_id="alice")]
    assert sorted(seqs) == expected
    assert early in {m.get("jobId") for m in got}
    # and the other way round, live: a user subscription plus one of its jobs
    ws2 = await connect(api)
    await ws2.send_json({"type": "subscribe", "userId": "alice"})
    await next_json(ws2)
    _, job2 = await api.post("/api/jobs", json={**SLEEP, "delaySeconds": 0.2})
    await ws2.send_json({"type": "subscribe", "jobId": job2["jobId"], "since": 0})
    got2 = [m for m in await events_until(ws2, job2["jobId"]) if m["type"] != "subscribed"]
    seqs2 = [m["seq"] for m in got2]
    assert seqs2 == sorted(set(seqs2))
    assert seqs2 == [e.seq for e in await api.app[STORE].events_after(0, job_id=job2["jobId"])]
    for w in (ws, ws2):
        await w.close()


async def test_unsubscribe_stops_delivery(make_api: MakeApi) -> None:
    api = await make_api("alice")
    ws = await connect(api)
    await ws.send_json({"type": "subscribe", "userId": "alice"})
    await next_json(ws)
    await events_until(ws, await run_job(api))
    await ws.send_json({"type": "unsubscribe", "userId": "alice"})
    assert await next_json(ws) == {"type": "unsubscribed", "userId": "alice"}
    await run_job(api)
    assert await until_pong(ws) == []
    await ws.send_json({"type": "unsubscribe", "userId": "alice"})  # idempotent
    assert await next_json(ws) == {"type": "unsubscribed", "userId": "alice"}
    await ws.close()


async def test_subscription_limit_is_an_error(make_api: MakeApi) -> None:
    api = await make_api("alice", ws_max_subscriptions=2)
    ids = []
    for _ in range(3):
        _, job = await api.post("/api/jobs", json={**SLEEP, "delaySeconds": 60})
        ids.append(job["jobId"])
    ws = await connect(api)
    for job_id in ids[:2]:
        await ws.send_json({"type": "subscribe", "jobId": job_id})
        assert (await next_json(ws))["type"] == "subscribed"
    await ws.send_json({"type": "subscribe", "jobId": ids[2]})
    error = await next_json(ws)
    assert error["code"] == "TOO_MANY_SUBSCRIPTIONS" and error["jobId"] == ids[2]
    assert await until_pong(ws) == []  # still open
    await ws.close()


# -- resync -------------------------------------------------------------------------------------


async def test_stale_cursor_gets_resync_never_a_gap(make_api: MakeApi) -> None:
    api = await make_api("alice")
    store = api.app[STORE]
    await run_job(api)
    ws = await connect(api)
    await ws.send_json({"type": "subscribe", "userId": "alice", "since": 0, "epoch": "other"})
    resync = await next_json(ws)
    head = await store.head_seq()
    assert resync == {
        "type": "resync", "userId": "alice", "reason": "epoch", "seq": head, "epoch": store.epoch
    }  # fmt: skip
    assert (await next_json(ws))["type"] == "subscribed"
    assert await until_pong(ws) == []  # live from the head, no backlog
    await ws.send_json({"type": "unsubscribe", "userId": "alice"})
    await next_json(ws)
    await ws.send_json({"type": "subscribe", "userId": "alice", "since": head + 100})
    assert (await next_json(ws))["reason"] == "ahead"
    assert (await next_json(ws))["type"] == "subscribed"
    await ws.send_json({"type": "unsubscribe", "userId": "alice"})
    await next_json(ws)
    pruned = await store.prune(time.time() + 1)
    assert pruned.through == head
    await ws.send_json({"type": "subscribe", "userId": "alice", "since": 1, "epoch": store.epoch})
    message = await next_json(ws)
    assert message.get("reason") == "pruned", message
    await ws.close()


# -- bad messages -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (b"{nope", "INVALID_JSON"),
        (b"[1, 2]", "INVALID_MESSAGE"),
        (b'{"type": 7}', "INVALID_MESSAGE"),
        (b'{"type": "dance"}', "UNKNOWN_TYPE"),
        (b'{"type": "subscribe"}', "INVALID_MESSAGE"),
        (b'{"type": "subscribe", "userId": "alice", "jobId": "j"}', "INVALID_MESSAGE"),
        (b'{"type": "subscribe", "userId": "alice", "since": -1}', "INVALID_MESSAGE"),
        (b'{"type": "subscribe", "userId": "alice", "since": "x"}', "INVALID_MESSAGE"),
        (b'{"type": "subscribe", "userId": "alice", "epoch": 5}', "INVALID_MESSAGE"),
        (b'{"type": "unsubscribe", "userId": 5}', "INVALID_MESSAGE"),
        (b'{"type": "auth", "token": "bad"}', "INVALID_TOKEN"),
    ],
)
async def test_bad_message_gets_error_and_connection_stays_open(
    make_api: MakeApi, message: bytes, code: str
) -> None:
    api = await make_api("alice")
    ws = await connect(api)
    await ws.send_str(message.decode())
    error = await next_json(ws)
    assert error["type"] == "error" and error["code"] == code and error["message"]
    await ws.send_json({"type": "ping"})
    assert await next_json(ws) == {"type": "pong"}
    await ws.close()


async def test_auth_as_another_user_on_an_open_socket_is_refused(make_api: MakeApi) -> None:
    api = await make_api("alice")
    bob = await api.as_user("bob")
    ws = await connect(api)
    await ws.send_json({"type": "auth", "token": bob.token})
    assert (await next_json(ws))["code"] == "AUTH_MISMATCH"
    await ws.send_json({"type": "auth", "token": api.token})
    assert await next_json(ws) == {"type": "authenticated", "userId": "alice"}
    await ws.close()


@pytest.mark.parametrize(("limit", "under", "over"), [(2048, 1900, 4096), (None, 60_000, 70_000)])
async def test_oversized_message_closes_1009(
    make_api: MakeApi, limit: int | None, under: int, over: int
) -> None:
    overrides = {} if limit is None else {"ws_max_message_bytes": limit}
    api = await make_api("alice", **overrides)
    ws = await connect(api)
    await ws.send_json({"type": "ping", "pad": "x" * under})  # under the limit: fine
    assert await next_json(ws) == {"type": "pong"}
    await ws.send_json({"type": "ping", "pad": "x" * over})
    msg = await ws.receive(timeout=5)
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1009
    await eventually(lambda: not api.app[GATEWAY].sockets)


# -- liveness and shutdown ----------------------------------------------------------------------


async def test_dead_peer_is_freed_by_heartbeat(make_api: MakeApi) -> None:
    api = await make_api("alice", ws_heartbeat_seconds=0.4)
    gateway = api.app[GATEWAY]
    alive = await connect(api)
    # A peer that never reads: it cannot answer pings.
    dead = await RawWs.connect(api.client.port, api.headers, rcvbuf=4096)
    assert dead.status == 101
    started = time.monotonic()
    for _ in range(400):
        await alive.send_json({"type": "ping"})  # the live one keeps answering
        assert await next_json(alive) == {"type": "pong"}
        if len(gateway.sockets) == 1:
            break
        await asyncio.sleep(0.01)
    assert len(gateway.sockets) == 1 and gateway.connections_of("alice") == 1
    assert time.monotonic() - started < 3  # 1.5 x heartbeat, rounded, well below 45 s
    await dead.close()
    await alive.close()


async def test_peer_that_answers_pings_stays(make_api: MakeApi) -> None:
    api = await make_api("alice", ws_heartbeat_seconds=0.2)
    ws = await connect(api)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.0):
            await ws.receive()  # meanwhile the client answers the server's pings
    assert len(api.app[GATEWAY].sockets) == 1
    await ws.send_json({"type": "ping"})
    assert await next_json(ws) == {"type": "pong"}
    await ws.close()


async def test_shutdown_closes_sockets_with_1001(make_api: MakeApi) -> None:
    api = await make_api("alice")
    raw = await RawWs.connect(api.client.port, api.headers)
    assert (await raw.json())["type"] == "authenticated"
    closing = asyncio.create_task(api.client.server.close())
    opcode, _ = await asyncio.wait_for(raw.frame(), 5)
    assert opcode == CLOSE and raw.close_code == 1001
    raw.send_raw(b"\x03\xe9", CLOSE)
    await asyncio.wait_for(closing, 10)
    await raw.close()


async def test_backlog_that_cannot_be_read_closes_1011(make_api: MakeApi) -> None:
    """Half a backlog cannot be finished: closing lets the client resume from its cursor."""
    api = await make_api("alice")
    await run_job(api)
    ws = await connect(api)
    await api.app[STORE].close()  # the store is gone (as at a crash of its disk)
    await ws.send_json({"type": "subscribe", "userId": "alice", "since": 0})
    assert (await next_json(ws))["type"] == "subscribed"
    msg = await ws.receive(timeout=10)
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1011
