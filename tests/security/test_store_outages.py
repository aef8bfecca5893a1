"""A store that never gives up (issue 13, finding 2), against the real server over sockets.

A writer killed every time it starts for 30 s, and a 15 s storage outage (the data folder
gone, as when its volume is unmounted) with a writer kill in it: meanwhile writes answer 503
with a code and the probes say why; afterwards writes succeed within seconds by themselves
and every acknowledged job completes.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.liveserver import LiveServer
from tests.security.procs import WriterKiller, kill_writers

JOB = {"type": "demo.sleep", "payload": {"seconds": 1, "steps": 4}, "maxAttempts": 50}


class Client:
    def __init__(self, session: aiohttp.ClientSession, url: str, token: str) -> None:
        self.session = session
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        # Bounded: a write must be answered (202 or 503), never left hanging.
        timeout = aiohttp.ClientTimeout(total=10)
        async with self.session.request(
            method, self.url + path, headers=self.headers, timeout=timeout, **kw
        ) as resp:
            return resp.status, await resp.json()

    async def enqueue(self) -> tuple[int, Any]:
        return await self.call("POST", "/api/jobs", json=JOB)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    # A short lease: a claim whose answer died with a writer is requeued soon after.
    live = LiveServer(
        tmp_path / "data", "--demo-jobs", "--concurrency", "4", "--lease-seconds", "3",
        "--max-attempts-limit", "50",  # every claim a killed writer loses costs an attempt
    )  # fmt: skip
    yield live.start()
    live.kill()


@pytest.fixture
async def client(server: LiveServer) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(session, server.url, server.token("alice"))


async def enqueue_some(client: Client, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        status, job = await client.enqueue()
        assert status == 202, job
        ids.append(job["jobId"])
    return ids


async def write_while_down(client: Client, seconds: float, acked: list[str]) -> int:
    """Enqueue twice a second for ``seconds``: each is 202 (kept) or 503 UNAVAILABLE."""
    refused = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, body = await client.enqueue()
        if status == 202:
            acked.append(body["jobId"])
        else:
            assert status == 503 and body["error"]["code"] == "UNAVAILABLE", (status, body)
            refused += 1
        await asyncio.sleep(0.5)
    return refused


async def probes_say_why(client: Client) -> None:
    status, ready = await client.call("GET", "/readyz")
    assert status == 503 and ready["error"]["code"] == "NOT_READY", ready
    assert ready["checks"]["database"].startswith("not writable"), ready
    status, health = await client.call("GET", "/healthz")
    assert status == 200 and health["status"] == "degraded", health
    assert "writer" in health["problems"]["database"], health


async def resumes_by_itself(client: Client, acked: list[str]) -> None:
    """Writes succeed again within seconds, and every acknowledged job completes."""
    async with asyncio.timeout(15):
        while True:
            status, body = await client.enqueue()
            if status == 202:
                acked.append(body["jobId"])
                break
            await asyncio.sleep(0.2)
    async with asyncio.timeout(90):
        for job_id in acked:
            while True:
                status, job = await client.call("GET", f"/api/jobs/{job_id}")
                assert status == 200
                assert job["status"] != "failed", job
                if job["status"] == "completed":
                    break
                await asyncio.sleep(0.2)
    status, ready = await client.call("GET", "/readyz")
    assert status == 200, ready
    assert await client.call("GET", "/healthz") == (200, {"status": "ok"})


def log_is_whole(server: LiveServer) -> None:
    """After a clean stop: no job left active, every seq once, no gap."""
    assert server.terminate() == 0
    with sqlite3.connect(server.data_dir / "jobserver.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM jobs WHERE status='active'").fetchone()[0] == 0
        seqs = [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1))


@pytest.mark.timeout(240)
async def test_a_writer_killed_every_time_it_starts_for_30s_then_all_work_resumes(
    server: LiveServer, client: Client
) -> None:
    acked = await enqueue_some(client, 30)
    assert server.proc is not None
    with WriterKiller(server.proc.pid) as killer:
        refused = await write_while_down(client, 5, acked)
        await probes_say_why(client)
        refused += await write_while_down(client, 25, acked)
    assert killer.kills >= 10 and refused >= 40  # really killed again and again, really down
    await resumes_by_itself(client, acked)
    log_is_whole(server)


@pytest.mark.timeout(240)
async def test_a_15s_storage_outage_with_a_writer_kill_in_it_then_all_work_resumes(
    server: LiveServer, client: Client
) -> None:
    acked = await enqueue_some(client, 30)
    assert server.proc is not None
    data = server.data_dir
    away = data.with_name("data-unmounted")
    os.rename(data, away)  # nothing can open the file by its path now
    try:
        refused = await write_while_down(client, 3, acked)
        assert kill_writers(server.proc.pid) == 1
        refused += await write_while_down(client, 4, acked)
        await probes_say_why(client)
        refused += await write_while_down(client, 8, acked)
        assert not data.exists()  # nobody made a new, empty store in its place
    finally:
        os.rename(away, data)
    assert refused >= 10
    await resumes_by_itself(client, acked)
    log_is_whole(server)
