"""Three real server processes on one PostgreSQL (issue 17): any node serves any client.

Jobs submitted on node A run on every node; a WebSocket client of B receives every event of
them; a client that keeps losing its connection and moving between B and C (WebSocket and
long-poll) resumes each time with the seq the other node gave it: 1,000 events, each seen
exactly once, in order. A token issued by A works on B and C.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .liveserver import LiveServer
from .netcut import CutProxy
from .pgcluster import call, make_node, schema, start_all, stop_all, submit

__all__ = ["schema"]  # the fixture

JOBS, STEPS = 40, 22  # queued, started, 22 steps, completed: 25 events each
EVENTS = JOBS * (STEPS + 3)
USER = "alice"


def is_event(message: dict[str, Any]) -> bool:
    return str(message.get("type", "")).startswith("job.")


@contextlib.asynccontextmanager
async def subscribed(
    url: str, token: str, since: int, epoch: str | None
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A WebSocket on ``url`` subscribed to the user from ``since`` (``subscribed`` read)."""
    async with aiohttp.ClientSession() as http, http.ws_connect(
        url.replace("http", "ws", 1) + "/ws", headers={"Authorization": f"Bearer {token}"}
    ) as ws:  # fmt: skip
        await ws.send_json({"type": "subscribe", "userId": USER, "since": since,
                            **({"epoch": epoch} if epoch else {})})  # fmt: skip
        while True:
            message = await ws.receive_json(timeout=15)
            assert message["type"] not in ("error", "resync"), message
            if message["type"] == "subscribed":
                break
        yield ws


async def follow(node: LiveServer, token: str, ready: asyncio.Event) -> list[dict[str, Any]]:
    """One WebSocket on ``node`` that never drops: every event from the start."""
    events: list[dict[str, Any]] = []
    async with subscribed(node.url, token, 0, None) as ws:
        ready.set()
        while len(events) < EVENTS:
            message = await ws.receive_json(timeout=30)
            if is_event(message):
                events.append(message)
    return events


class Roamer:
    """A client that keeps its cursor while its connection is cut, over and over, and moves
    between nodes and transports: WebSocket on B (or A), long-poll on C (or B)."""

    def __init__(self, token: str, ws: list[CutProxy], polls: list[LiveServer],
                 rng: random.Random) -> None:  # fmt: skip
        self.token = token
        self.ws = ws
        self.polls = polls
        self.rng = rng
        self.cursor = 0
        self.epoch: str | None = None
        self.seen: list[int] = []
        self.legs: list[str] = []

    def take(self, event: dict[str, Any]) -> None:
        self.seen.append(int(event["seq"]))
        self.cursor = int(event["seq"])

    async def run(self) -> None:
        deadline = time.monotonic() + 50
        while len(self.seen) < EVENTS and time.monotonic() < deadline:
            if self.rng.random() < 0.5:
                await self.websocket_leg(self.rng.choice(self.ws))
            else:
                await self.poll_leg(self.rng.choice(self.polls))

    async def websocket_leg(self, proxy: CutProxy) -> None:
        """Read a random number of events, then cut the connection under the socket."""
        self.legs.append(f"ws {proxy.upstream_port}")
        budget = self.rng.randint(1, 120)
        with contextlib.suppress(aiohttp.ClientError, ConnectionError, asyncio.TimeoutError):
            async with subscribed(proxy.url, self.token, self.cursor, self.epoch) as ws:
                while budget > 0 and len(self.seen) < EVENTS:
                    msg = await ws.receive(timeout=10)
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    message = msg.json()
                    if is_event(message):
                        self.take(message)
                        budget -= 1
                proxy.cut()  # the network drops; nothing is said to the server

    async def poll_leg(self, node: LiveServer) -> None:
        """A few long-polls from the cursor; some are abandoned while they wait."""
        self.legs.append(f"poll {node.port}")
        headers = {"Authorization": f"Bearer {self.token}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            for _ in range(self.rng.randint(1, 3)):
                query = f"since={self.cursor}&userId={USER}&timeout=2"
                if self.epoch:
                    query += f"&epoch={self.epoch}"
                give_up = self.rng.choice([None, 0.05, 0.3])
                try:
                    async with asyncio.timeout(give_up or 15):
                        async with http.get(f"{node.url}/api/events?{query}") as resp:
                            page = await resp.json()
                            assert resp.status == 200, page
                except TimeoutError:
                    continue  # the client gave up waiting: the next poll resumes
                assert page.get("type") != "resync", page
                self.epoch = page.get("epoch", self.epoch)
                for event in page["events"]:
                    self.take(event)
                self.cursor = max(self.cursor, int(page["cursor"]))


@pytest.mark.timeout(120)
async def test_three_nodes_one_stream_across_drops_and_node_switches(
    schema: str, tmp_path: Path
) -> None:
    nodes = [make_node(tmp_path, schema, name) for name in "abc"]
    a, b, c = nodes
    await asyncio.to_thread(start_all, nodes)
    proxies = [await CutProxy(n.port).start() for n in (b, a)]
    try:
        token = await asyncio.to_thread(a.token, USER)
        for node in nodes:  # issued by A, honoured by every node
            status, body = await asyncio.to_thread(call, node, "GET", "/api/jobs", token)
            assert status == 200, body
            status, _ = await asyncio.to_thread(call, node, "GET", "/api/jobs", token + "x")
            assert status == 401
        ready = asyncio.Event()
        steady = asyncio.create_task(follow(b, token, ready))
        await asyncio.wait_for(ready.wait(), 15)
        seed = random.randrange(1 << 30)
        roamer = Roamer(token, proxies, [c, c, b], random.Random(seed))
        roaming = asyncio.create_task(roamer.run())
        payload = {"steps": STEPS, "delay": 0.04}
        ids = [await asyncio.to_thread(submit, a, token, payload) for _ in range(JOBS)]

        events = await asyncio.wait_for(steady, 60)
        seqs = [e["seq"] for e in events]
        assert seqs == list(range(1, EVENTS + 1))
        done = {e["jobId"]: e["result"]["node"] for e in events if e["type"] == "job.completed"}
        assert set(done) == set(ids)
        assert len(set(done.values())) >= 2, f"every job ran on one node: {done}"

        await asyncio.wait_for(roaming, 60)
        why = f"seed {seed}, legs {roamer.legs}"
        assert roamer.seen == list(range(1, EVENTS + 1)), why
        assert sum(p.cuts for p in proxies) >= 3, why
        assert any(leg.startswith("poll") for leg in roamer.legs), why
        for node in (b, c):  # every node has the same jobs
            status, job = await asyncio.to_thread(call, node, "GET", f"/api/jobs/{ids[-1]}", token)
            assert status == 200 and job["status"] == "completed", job
    finally:
        for proxy in proxies:
            await proxy.close()
        await asyncio.to_thread(stop_all, nodes)
