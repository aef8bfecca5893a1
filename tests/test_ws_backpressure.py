"""Slow consumers: bounded memory, coalesced progress, 4000 past the bound, others unharmed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from socket import SO_SNDBUF, SOL_SOCKET
from typing import Any

import aiohttp
import orjson
import pytest

from jobserver.web.connection import Connection
from jobserver.web.keys import GATEWAY, STORE

from .conftest import ApiClient, MakeApi
from .test_ws import connect, eventually, next_json
from .wsraw import CLOSE, TEXT, RawWs, demo_only


@pytest.fixture
def make_api(make_api: MakeApi) -> MakeApi:
    return demo_only(make_api)


FLOOD = {"type": "demo.sleep", "payload": {"seconds": 0.6, "steps": 300}}
QUICK = {"type": "demo.sleep", "payload": {"seconds": 0, "steps": 0}}


class Peak:
    """The largest queue and transport buffer a connection reached, sampled every 2 ms."""

    def __init__(self) -> None:
        self.queue = 0
        self.buffer = 0
        self.congested = False


@contextmanager
def sampling(conn: Connection) -> Iterator[Peak]:
    peak = Peak()

    async def sample() -> None:
        while True:
            if conn.queue is not None:
                peak.congested = True
                peak.queue = max(peak.queue, len(conn.queue))
            peak.buffer = max(peak.buffer, conn.transport.get_write_buffer_size())
            await asyncio.sleep(0.002)

    task = asyncio.create_task(sample())
    try:
        yield peak
    finally:
        task.cancel()


async def slow_client(api: ApiClient) -> tuple[RawWs, Connection]:
    """A subscriber that reads its first replies, then nothing.

    Its receive buffer is 4 KiB, and the server's kernel send buffer for it is made small too,
    so that a few hundred events are enough to back the socket up.
    """
    gateway = api.app[GATEWAY]
    before = set(gateway.sockets)
    raw = await RawWs.connect(api.client.port, api.headers, rcvbuf=4096)
    assert (await raw.json())["type"] == "authenticated"
    raw.send_json({"type": "subscribe", "userId": api.user})
    assert (await raw.json())["type"] == "subscribed"
    (conn,) = gateway.sockets - before
    assert isinstance(conn, Connection)
    conn.transport.get_extra_info("socket").setsockopt(SOL_SOCKET, SO_SNDBUF, 8192)
    return raw, conn


async def fast_reader(
    ws: aiohttp.ClientWebSocketResponse, seqs: list[int], lags: list[float]
) -> None:
    """Read events until the socket closes, noting each one's emit-to-receive lag."""
    while True:
        msg = await ws.receive()
        if msg.type is not aiohttp.WSMsgType.TEXT:
            return
        event = orjson.loads(msg.data)
        if "seq" in event and event["type"].startswith("job."):
            seqs.append(event["seq"])
            stamp = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
            lags.append(time.time() - stamp.timestamp())


async def read_until_close(raw: RawWs) -> list[dict[str, Any]]:
    events = []
    while True:
        opcode, payload = await asyncio.wait_for(raw.frame(), 10)
        if opcode == CLOSE:
            raw.send_raw(payload[:2], CLOSE)
            return events
        assert opcode == TEXT
        events.append(orjson.loads(payload))


async def test_stalled_client_is_closed_4000_and_others_keep_up(make_api: MakeApi) -> None:
    api = await make_api("alice", ws_queue_size=20)
    gateway, store = api.app[GATEWAY], api.app[STORE]
    fast = [await connect(api) for _ in range(3)]
    for ws in fast:
        await ws.send_json({"type": "subscribe", "userId": "alice"})
        assert (await next_json(ws))["type"] == "subscribed"
    seqs: list[list[int]] = [[] for _ in fast]
    lags: list[float] = []
    pairs = zip(fast, seqs, strict=True)
    readers = [asyncio.create_task(fast_reader(ws, s, lags)) for ws, s in pairs]
    raw, conn = await slow_client(api)
    head = await store.head_seq()
    with sampling(conn) as peak:
        for _ in range(4):
            await api.post("/api/jobs", json=FLOOD)  # progress fills the socket's buffers
        await eventually(lambda: peak.congested, 20)
        for _ in range(40):  # status events cannot coalesce: the queue overflows
            await api.post("/api/jobs", json=QUICK)
        await eventually(lambda: conn.closer is not None, 20)
        # The server keeps at most ws_queue_size events and one high-water mark of bytes.
        assert peak.queue <= 20
        assert peak.buffer <= conn.high_water + 20 * 1024
        got = await read_until_close(raw)  # what was on the way, then 4000
    assert raw.close_code == 4000
    await eventually(lambda: conn not in gateway.sockets)
    await raw.close()
    # Resuming from the last seq it saw gives it everything after: no gap.
    last = got[-1]["seq"] if got else head
    for _ in range(3000):
        counts = await store.count_by_status()
        if not counts["queued"] and not counts["active"]:
            break
        await asyncio.sleep(0.01)
    again = await connect(api)
    await again.send_json({"type": "subscribe", "userId": "alice", "since": last})
    assert (await next_json(again))["type"] == "subscribed"
    stored = await store.events_after(head, user_id="alice", limit=100_000)
    rest = [(await next_json(again))["seq"] for e in stored if e.seq > last]
    assert [e["seq"] for e in got] + rest == [e.seq for e in stored if e.seq <= last] + rest
    assert sorted(set(rest)) == rest and rest == [e.seq for e in stored if e.seq > last]
    # The others got every event, in order, without falling behind.
    await eventually(lambda: all(len(s) == len(stored) for s in seqs), 20)
    for s in seqs:
        assert s == [e.seq for e in stored]
    lags.sort()
    assert lags[int(len(lags) * 0.99)] < 1.0, lags[-10:]
    for ws in [*fast, again]:
        await ws.close()
    for reader in readers:
        await reader


async def test_slow_client_gets_progress_coalesced_but_every_status_event(
    make_api: MakeApi,
) -> None:
    api = await make_api("alice", ws_queue_size=100)
    store = api.app[STORE]
    head = await store.head_seq()
    raw, conn = await slow_client(api)
    with sampling(conn) as peak:
        ids = [(await api.post("/api/jobs", json=FLOOD))[1]["jobId"] for _ in range(4)]
        await eventually(lambda: peak.congested, 20)
        for _ in range(3000):
            counts = await store.count_by_status()
            if not counts["queued"] and not counts["active"]:
                break
            await asyncio.sleep(0.01)
        assert peak.queue <= 100
    assert conn.closer is None  # coalescing kept it under the bound
    stored = await store.events_after(head, user_id="alice", limit=100_000)
    got: list[dict[str, Any]] = []
    while len(got) < len(stored):
        try:
            got.append(await asyncio.wait_for(raw.json(), 2))
        except TimeoutError:
            break
    seqs = [e["seq"] for e in got]
    assert seqs == sorted(set(seqs)) and set(seqs) <= {e.seq for e in stored}
    assert len(got) < len(stored)  # some progress was coalesced...
    status = [e.seq for e in stored if e.type.value != "job.progress"]
    assert set(status) <= set(seqs)  # ...but no status change, result or error
    for job_id in ids:  # and the newest progress of each job won
        newest = [e.seq for e in stored if e.job_id == job_id and e.type.value == "job.progress"]
        assert newest[-1] in seqs
    await raw.close()
