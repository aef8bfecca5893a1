"""Resume after connection drops: 1,000 random drops while jobs run lose and repeat nothing."""

from __future__ import annotations

import asyncio
import random
import time

import orjson
import pytest

from jobserver.models import JobStatus
from jobserver.web.keys import GATEWAY, POOL, STORE

from .conftest import MakeApi
from .wsraw import TEXT, RawWs, demo_only


@pytest.fixture
def make_api(make_api: MakeApi) -> MakeApi:
    return demo_only(make_api)


DROPS = 1000
JOB = {"type": "demo.sleep", "payload": {"seconds": 1.0, "steps": 50}}


async def test_1000_random_drops_then_resume_lose_and_repeat_nothing(make_api: MakeApi) -> None:
    api = await make_api("alice", concurrency=8)
    store, pool, port = api.app[STORE], api.app[POOL], api.client.port
    rng = random.Random(20261128)  # fixed: a failure can be replayed
    producing = True

    async def produce() -> None:
        while producing:
            status, _ = await api.post("/api/jobs", json=JOB)
            assert status == 202
            await asyncio.sleep(0.12)

    producer = asyncio.create_task(produce())
    received: list[bytes] = []  # every event payload, in the order it arrived
    cursor, epoch = 0, store.epoch
    drops = while_running = 0
    styles: dict[str, int] = {}
    started = time.monotonic()

    async def read_events(ws: RawWs, want: int, seconds: float) -> None:
        """Take up to ``want`` events within ``seconds``; a cut frame is simply lost."""
        nonlocal cursor
        try:
            async with asyncio.timeout(seconds):
                while want > 0:
                    opcode, payload = await ws.frame()
                    assert opcode == TEXT, (opcode, ws.close_code)
                    message = orjson.loads(payload)
                    if message["type"] in ("subscribed", "authenticated"):
                        continue
                    assert message["type"].startswith("job."), message  # never a resync
                    assert message["seq"] > cursor, (message["seq"], cursor)  # never twice
                    cursor = message["seq"]
                    received.append(payload)
                    want -= 1
        except TimeoutError:
            pass

    while drops < DROPS:
        ws = await RawWs.connect(port, api.headers)
        style = rng.choice(["before-subscribe", "right-after", "in-flight", "mid-frame",
                            "after-some", "after-some", "after-some", "after-many"])  # fmt: skip
        styles[style] = styles.get(style, 0) + 1
        if style != "before-subscribe":
            ws.send_json({"type": "subscribe", "userId": "alice", "since": cursor, "epoch": epoch})
        if style == "in-flight":  # events are on their way and unread when the socket dies
            await asyncio.sleep(rng.random() * 0.004)
        elif style == "mid-frame":
            await read_events(ws, rng.randint(0, 5), 0.02)
            await ws.reader.read(rng.randint(1, 40))  # part of the next frame, then cut
        elif style == "after-some":
            await read_events(ws, rng.randint(1, 15), 0.02)
        elif style == "after-many":
            await read_events(ws, rng.randint(30, 150), 0.1)
        if pool.running:
            while_running += 1
        if rng.random() < 0.5:
            ws.abort()  # an RST
        await ws.close()
        drops += 1
    producing = False
    await producer
    drop_seconds = time.monotonic() - started

    for _ in range(3000):  # let every job finish
        counts = await store.count_by_status()
        if not counts[JobStatus.QUEUED] and not counts[JobStatus.ACTIVE]:
            break
        await asyncio.sleep(0.01)
    head = await store.head_seq()
    ws = await RawWs.connect(port, api.headers)
    ws.send_json({"type": "subscribe", "userId": "alice", "since": cursor, "epoch": epoch})
    while cursor < head:
        await read_events(ws, head - cursor, 10)
        assert cursor == head or received, "the final resume stalled"
    await ws.close()

    stored = await store.events_after(0, user_id="alice", limit=1_000_000)
    print("DBG", drop_seconds, len(stored), len(received), while_running, styles)
    assert len(stored) > 2000, len(stored)
    got = [orjson.loads(p)["seq"] for p in received]
    assert got == [e.seq for e in stored]  # none missing, none twice, in order
    assert received == [e.data for e in stored]  # the very bytes that were stored
    assert while_running >= DROPS * 0.9, while_running
    assert all(n > 50 for n in styles.values()), styles
    assert drop_seconds < 90, drop_seconds
    for _ in range(300):
        if not api.app[GATEWAY].sockets:
            break
        await asyncio.sleep(0.01)
    assert not api.app[GATEWAY].sockets  # every dropped socket was freed
