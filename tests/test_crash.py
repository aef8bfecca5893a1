"""kill -9 of a server with 200 running jobs: nothing is lost and nothing stays active."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.liveserver import LiveServer


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[LiveServer]]:
    started: list[LiveServer] = []
    yield started
    for server in started:
        server.kill()


async def api(session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> Any:
    async with session.request(method, url, **kw) as resp:
        assert resp.status < 300, await resp.text()
        return await resp.json()


async def sign_in(session: aiohttp.ClientSession, url: str) -> dict[str, str]:
    body = await api(session, "POST", f"{url}/api/session", json={"userId": "crash"})
    return {"Authorization": f"Bearer {body['token']}"}


async def all_jobs(session: aiohttp.ClientSession, url: str, headers: dict[str, str]
                   ) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        page = await api(session, "GET", f"{url}/api/jobs?limit=200&offset={offset}",
                         headers=headers)
        jobs += page["jobs"]
        offset = page["nextOffset"]
    return jobs


# One user's 200 jobs all running at once (by default one user leaves a slot for others).
ALL_200 = ("--demo-jobs", "--concurrency", "200", "--max-running-per-user", "200")


async def test_kill_9_with_200_running_jobs_loses_nothing(
    tmp_path: Path, servers: list[LiveServer]
) -> None:
    data = tmp_path / "data"
    first = LiveServer(data, *ALL_200)
    servers.append(first)
    url = first.start().url
    async with aiohttp.ClientSession() as session:
        headers = await sign_in(session, url)
        # All at once: one at a time on a busy machine, the first could finish before the last
        # is queued.
        await asyncio.gather(*(api(session, "POST", f"{url}/api/jobs", headers=headers, json={
            "type": "demo.sleep", "maxAttempts": 1 + i % 2,
            "payload": {"seconds": 8, "steps": 5}}) for i in range(200)))
        async with asyncio.timeout(30):
            while True:
                active = await api(session, "GET", f"{url}/api/jobs?status=active&limit=200",
                                   headers=headers)
                if len(active["jobs"]) == 200:
                    break
                await asyncio.sleep(0.05)
    first.kill()

    second = LiveServer(data, *ALL_200)
    servers.append(second)
    url = second.start().url
    async with aiohttp.ClientSession() as session:
        headers = await sign_in(session, url)
        async with asyncio.timeout(60):
            while True:
                jobs = await all_jobs(session, url, headers)
                if all(j["status"] in ("completed", "failed") for j in jobs):
                    break
                await asyncio.sleep(0.1)
    assert len(jobs) == 200
    for job in jobs:
        if job["maxAttempts"] == 1:
            assert job["status"] == "failed" and job["attempts"] == 1
            assert job["error"]["code"] == "WORKER_LOST" and not job["error"]["recoverable"]
        else:
            assert job["status"] == "completed" and job["attempts"] == 2
    assert second.terminate() == 0

    with sqlite3.connect(data / "jobserver.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM jobs WHERE status='active'").fetchone()[0] == 0
        seqs = [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq")]
        assert seqs == list(range(1, len(seqs) + 1))  # no gap in the log
        lost = [orjson.loads(r[0]) for r in conn.execute(
            "SELECT data FROM events WHERE CAST(data AS TEXT) LIKE '%WORKER_LOST%'")]
        # subscribers were told: one event per job that was running at the kill
        assert len(lost) == 200
        assert {e["type"] for e in lost} == {"job.failed", "job.retrying"}
