"""Nodes that die and a database that goes away (issue 17), with real server processes.

kill -9 of a node with 50 running jobs: the other nodes take every one of them back once its
leases run out, and each ends (none is left ``active``); a node restarted after kill -9
takes its own running jobs back at once, long before their leases would run out. The
nodes' PostgreSQL connections killed (``pg_terminate_backend``) while jobs run: they
reconnect and carry on, and every acknowledged job and every event is there. A database
that cannot be reached (a proxy that refuses) makes ``/readyz`` fail until it is back.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .liveserver import LiveServer
from .netcut import CutProxy
from .pgcluster import (
    URL,
    call,
    db,
    make_node,
    schema,
    start_all,
    statuses,
    stop_all,
    submit,
    wait_for,
)

__all__ = ["schema"]  # the fixture

TERMINAL = {"completed", "failed", "cancelled"}
SHORT_LEASE = {"JOBSERVER_LEASE_SECONDS": "2"}  # the sweep runs every third of it
K_ENV = {**SHORT_LEASE, "JOBSERVER_MAX_RUNNING_PER_USER": "50"}  # one user's 50 jobs at once


def active(schema: str, n: int) -> bool:
    return list(statuses(schema).values()).count("active") == n


def all_ended(schema: str, ids: list[str]) -> bool:
    got = statuses(schema)
    return all(got.get(i) in TERMINAL for i in ids)


def worker_lost(schema: str) -> dict[str, int]:
    """job id -> how many WORKER_LOST retries its events record."""
    with db(schema) as conn:
        rows = conn.execute("SELECT job_id, data FROM events WHERE type='job.retrying'").fetchall()
    out: dict[str, int] = {}
    for job_id, data in rows:
        if json.loads(bytes(data))["error"]["code"] == "WORKER_LOST":
            out[job_id] = out.get(job_id, 0) + 1
    return out


def results(schema: str) -> dict[str, dict[str, Any]]:
    with db(schema) as conn:
        rows = conn.execute("SELECT id, result FROM jobs WHERE status='completed'").fetchall()
    return {i: json.loads(r) if isinstance(r, str | bytes) else r for i, r in rows}


@pytest.mark.timeout(120)
def test_kill_9_of_a_node_with_50_running_jobs(schema: str, tmp_path: Path) -> None:
    k = make_node(tmp_path, schema, "k", "--concurrency", "50", env=K_ENV)
    others = [make_node(tmp_path, schema, n, env=SHORT_LEASE) for n in "bc"]
    k.start()
    try:
        token = k.token("alice")
        ids = [submit(k, token, {"hold": 60, "steps": 2}) for _ in range(50)]
        wait_for(lambda: active(schema, 50), 30, "50 jobs running on k")
        start_all(others)  # started after k took every job, so all 50 are k's
        k.kill()
        killed = time.monotonic()
        wait_for(lambda: all_ended(schema, ids), 40, "every job of k to end on b or c")
        took = time.monotonic() - killed
        got = statuses(schema)
        assert [got[i] for i in ids] == ["completed"] * 50
        assert "active" not in got.values()
        assert worker_lost(schema) == dict.fromkeys(ids, 1)
        ran = results(schema)
        assert {ran[i]["node"] for i in ids} <= {"b", "c"}
        assert {ran[i]["attempt"] for i in ids} == {2}
        assert took < 20, f"recovered only after {took:.1f}s (lease 2s)"

        # A node restarted after kill -9 takes its own jobs back at once: its leases
        # (60 s here) are nowhere near their end.
        stop_all(others)
        long = {**K_ENV, "JOBSERVER_LEASE_SECONDS": "60"}
        k = make_node(tmp_path, schema, "k", "--concurrency", "50", env=long).start()
        again = [submit(k, token, {"hold": 60, "steps": 2}) for _ in range(20)]
        wait_for(lambda: active(schema, 20), 30, "20 jobs running on k")
        k.kill()
        restarted = time.monotonic()
        k = make_node(tmp_path, schema, "k", "--concurrency", "50", env=long).start()
        wait_for(lambda: all_ended(schema, again), 30, "k's own jobs to end after its restart")
        assert time.monotonic() - restarted < 30  # the leases had 60 s to run
        got = statuses(schema)
        assert [got[i] for i in again] == ["completed"] * 20
        lost = worker_lost(schema)
        assert all(lost.get(i) == 1 for i in again)
        assert {results(schema)[i]["node"] for i in again} == {"k"}
    finally:
        stop_all([k, *others])


def terminate_backends(schema: str, names: list[str]) -> int:
    """pg_terminate_backend on every connection of the named nodes; how many there were."""
    with db(schema) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = ANY(%s)", ([f"jobserver:{schema}-{n}" for n in names],),
        ).fetchall()  # fmt: skip
    return len(rows)


@pytest.mark.timeout(120)
def test_database_connections_killed_while_jobs_run(schema: str, tmp_path: Path) -> None:
    nodes = [make_node(tmp_path, schema, n, env=SHORT_LEASE) for n in "ab"]
    a = nodes[0]
    start_all(nodes)
    try:
        token = a.token("alice")
        acknowledged: list[str] = []
        refused: list[int] = []
        unanswered: list[int] = []  # jobs never acknowledged after 100 tries
        stop = threading.Event()

        def producer() -> None:
            # Jobs keep coming until the cuts are over, so some always run when one comes
            # (40 jobs sent at once could all end before the third). Bounded: 400 jobs.
            for i in range(400):
                node = nodes[i % 2]
                for _ in range(100):  # retried while the node is refusing
                    status, body = call(node, "POST", "/api/jobs", token,
                                        {"type": "nodes.work",
                                         "payload": {"steps": 8, "delay": 0.05}})  # fmt: skip
                    if status == 202:
                        acknowledged.append(body["jobId"])
                        break
                    refused.append(status)
                    time.sleep(0.1)
                else:
                    unanswered.append(i)
                if stop.is_set() and i >= 39:
                    return
                time.sleep(0.02)

        thread = threading.Thread(target=producer)
        thread.start()
        cut = 0
        try:
            for _ in range(3):
                wait_for(lambda: "active" in statuses(schema).values(), 20, "a running job")
                cut += terminate_backends(schema, ["a", "b"])
                time.sleep(0.7)
        finally:
            stop.set()
            thread.join(60)
        assert cut >= 6, "each node has a pool and a connection of its own"
        assert not unanswered and len(acknowledged) >= 40, refused
        wait_for(lambda: all_ended(schema, acknowledged), 40, "every acknowledged job to end")
        got = statuses(schema)
        assert set(acknowledged) <= set(got)
        assert "active" not in got.values() and "queued" not in got.values()
        with db(schema) as conn:
            seqs = [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq")]
        assert seqs == list(range(1, len(seqs) + 1))
        # Every event is there for a client of either node, each once and in order.
        for node in nodes:
            seen: list[int] = []
            cursor = 0
            while cursor < seqs[-1]:
                page = node.get(f"/api/events?since={cursor}&userId=alice&timeout=5", token)
                seen += [e["seq"] for e in page["events"]]
                cursor = page["cursor"]
            assert seen == seqs
        done = [i for i in acknowledged if got[i] == "completed"]
        assert len(done) >= len(acknowledged) - 5, {i: got[i] for i in acknowledged
                                                    if got[i] != "completed"}  # fmt: skip
        for node in nodes:
            assert wait_for(lambda n=node: ready(n) == 200, 20, "ready again")
    finally:
        stop_all(nodes)


def ready(node: LiveServer) -> int:
    try:
        status, _ = call(node, "GET", "/readyz", "")
    except OSError:
        return 0
    return status


@pytest.mark.timeout(120)
async def test_readyz_fails_while_the_database_is_unreachable(schema: str, tmp_path: Path) -> None:
    proxy = await CutProxy(5432).start()
    port = proxy.url.rsplit(":", 1)[1]
    url = URL.replace(":5432/", f":{port}/")
    node = make_node(tmp_path, schema, "a", url=url, env=SHORT_LEASE)
    await asyncio.to_thread(node.start)
    try:
        token = await asyncio.to_thread(node.token, "alice")
        assert await asyncio.to_thread(ready, node) == 200
        before = await asyncio.to_thread(submit, node, token, {"steps": 2})

        proxy.refusing = True
        proxy.cut()
        await wait_async(lambda: ready(node) == 503, 20, "/readyz to fail")
        status, body = await asyncio.to_thread(call, node, "POST", "/api/jobs", token,
                                               {"type": "nodes.work", "payload": {}})  # fmt: skip
        assert status == 503 and body["error"]["code"] == "UNAVAILABLE", body
        async with aiohttp.ClientSession() as http, http.get(node.url + "/healthz") as resp:
            assert resp.status == 200  # alive: restarting it would not bring the database

        proxy.refusing = False
        await wait_async(lambda: ready(node) == 200, 30, "/readyz to recover")
        after = await asyncio.to_thread(submit, node, token, {"steps": 2})
        await wait_async(lambda: all_ended(schema, [before, after]), 30, "both jobs to end")
        assert statuses(schema)[before] == statuses(schema)[after] == "completed"
    finally:
        await asyncio.to_thread(stop_all, [node])
        await proxy.close()


async def wait_async(check: Any, timeout: float, what: str) -> None:
    """``wait_for`` in a thread, so the proxy (in this loop) keeps running."""
    await asyncio.to_thread(wait_for, check, timeout, what, 0.2)
