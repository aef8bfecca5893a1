"""Operations over real sockets: /healthz, /readyz, /metrics, and retention on its schedule."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from asyncio.subprocess import PIPE, STDOUT
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

from jobserver.config import Settings
from jobserver.metrics import DURATION_BUCKETS
from jobserver.store import NewJob
from jobserver.store.sqlite import SqliteStore
from jobserver.web.keys import METRICS, POOL, RETENTION, SETTINGS, STORE
from tests import pdfs
from tests.conftest import ApiClient, MakeApi
from tests.test_api import wait_status

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(api: ApiClient) -> tuple[str, Samples]:
    """GET /metrics without any token; the text and every sample by (name, labels)."""
    async with api.client.get("/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def anonymous_get(api: ApiClient, path: str) -> tuple[int, Any]:
    api.client.session.cookie_jar.clear()
    async with api.client.get(path) as resp:
        return resp.status, await resp.json()


async def test_healthz_and_readyz_answer_without_a_token(make_api: MakeApi) -> None:
    api = await make_api()
    assert await anonymous_get(api, "/healthz") == (200, {"status": "ok"})
    status, body = await anonymous_get(api, "/readyz")
    assert status == 200
    assert body == {"status": "ready", "checks": {"database": "ok", "workers": "ok"}}


async def test_readyz_is_503_when_the_workers_stop(make_api: MakeApi) -> None:
    api = await make_api()
    await api.app[POOL].stop()
    status, body = await anonymous_get(api, "/readyz")
    assert status == 503 and body["error"]["code"] == "NOT_READY"
    assert body["checks"] == {"database": "ok", "workers": "not running"}
    assert (await anonymous_get(api, "/healthz"))[0] == 200


async def test_readyz_is_503_when_the_database_cannot_commit(make_api: MakeApi) -> None:
    api = await make_api()
    await api.app[POOL].stop()
    await api.app[STORE].close()
    status, body = await anonymous_get(api, "/readyz")
    assert status == 503 and body["error"]["code"] == "NOT_READY"
    assert body["checks"]["database"].startswith("not writable")
    assert "database" in body["error"]["message"]


async def test_metrics_count_events_durations_attempts_retries_and_queue_depth(
    make_api: MakeApi,
) -> None:
    api = await make_api()
    jobs = [
        {"type": "demo.sleep", "payload": {"seconds": 0.05, "steps": 2}},
        {"type": "demo.sleep", "payload": {"seconds": 0, "steps": 1}},
        {"type": "demo.fail", "payload": {"code": "BAD"}},
        {"type": "demo.fail", "maxAttempts": 2, "payload": {"code": "FLAKY", "recoverable": True}},
    ]
    ids = []
    for body in jobs:
        status, job = await api.post("/api/jobs", json=body)
        assert status == 202
        ids.append(job["jobId"])
    await api.post("/api/jobs", json={"type": "demo.sleep", "delaySeconds": 600})
    for job_id in ids:
        await wait_status(api, job_id, "completed", "failed")
    text, samples = await scrape(api)

    assert value(samples, "job_events_total", stage="completed", status="completed") == 2
    assert value(samples, "job_events_total", stage="failed", status="failed") == 2
    assert value(samples, "job_events_total", stage="queued", status="queued") == 6  # 5 + retry
    assert value(samples, "job_events_total", stage="processing", status="active") == 2 + 1 + 1 + 2
    assert value(samples, "job_duration_seconds_count", status="completed", cache_hit="false") == 2
    assert value(samples, "job_duration_seconds_count", status="failed", cache_hit="false") == 2
    assert value(samples, "job_duration_seconds_count", status="retrying", cache_hit="false") == 1
    buckets = sorted(
        float(dict(labels)["le"]) for (name, labels) in samples
        if name == "job_duration_seconds_bucket" and ("status", "completed") in labels
    )
    assert buckets == [*DURATION_BUCKETS, float("inf")]
    assert value(samples, "job_attempts_total") == 5
    assert value(samples, "job_retries_total") == 1
    assert value(samples, "jobs_by_status", status="queued") == 1
    assert value(samples, "jobs_by_status", status="completed") == 2
    assert value(samples, "jobs_by_status", status="failed") == 2
    assert value(samples, "jobs_recovered_total") == 0
    assert value(samples, "worker_concurrency") == 8
    events = await api.app[STORE].events_after(0, limit=10_000)
    # Once per commit: per run of events (in seq order) that share their commit's timestamp.
    stamps = [orjson.loads(e.data)["timestamp"] for e in events]
    commits = sum(1 for i, t in enumerate(stamps) if i == 0 or t != stamps[i - 1])
    assert 1 <= commits <= len(events)
    assert value(samples, "event_fanout_lag_seconds_count", transport="bus") == commits
    for name in ("websocket_connections", "longpoll_waiters"):
        assert (name, frozenset()) in samples, name
    async with asyncio.timeout(10):
        while value(samples, "event_loop_lag_seconds_count") == 0:
            await asyncio.sleep(0.1)
            _, samples = await scrape(api)
    assert shutil.which("promtool"), "promtool is missing: run scripts/system-deps"
    lint = await asyncio.create_subprocess_exec(
        "promtool", "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=STDOUT)
    out, _ = await asyncio.wait_for(lint.communicate(text.encode()), 30)
    assert lint.returncode == 0, out.decode()


async def test_each_app_keeps_its_own_metrics(make_api: MakeApi, tmp_path: Path) -> None:
    first = await make_api()
    second = await make_api(data_dir=tmp_path / "other")
    assert first.app[METRICS].registry is not second.app[METRICS].registry
    _, job = await first.post("/api/jobs", json={"type": "demo.sleep", "payload": {"seconds": 0}})
    await wait_status(first, job["jobId"], "completed")
    _, one = await scrape(first)
    _, two = await scrape(second)
    assert value(one, "job_attempts_total") == 1 and value(two, "job_attempts_total") == 0


async def test_jobs_left_running_by_a_dead_process_count_as_recovered(
    make_api: MakeApi, settings: Settings
) -> None:
    store = SqliteStore(settings.db_path)
    await store.open()
    await store.enqueue(NewJob(type="demo.sleep", user_id="alice", payload={"seconds": 0,
                                                                              "steps": 0}))
    await store.claim(1, 600)
    await store.close()  # as if killed: the job stays active with a long lease
    api = await make_api()
    _, samples = await scrape(api)
    assert value(samples, "jobs_recovered_total") == 1


async def test_retention_prunes_finished_jobs_on_its_schedule(make_api: MakeApi) -> None:
    api = await make_api(retention_days=0.5 / 86400, prune_interval_seconds=0.2,
                         checkpoint_interval_seconds=0.2)
    _, job = await api.post("/api/jobs", json={"type": "demo.sleep", "payload": {"seconds": 0}})
    _, later = await api.post("/api/jobs", json={"type": "demo.sleep", "delaySeconds": 600})
    await wait_status(api, job["jobId"], "completed")
    retention = api.app[RETENTION]
    async with asyncio.timeout(10):
        while (await api.get(f"/api/jobs/{job['jobId']}"))[0] != 404:
            await asyncio.sleep(0.1)
        while retention.checkpoints == 0:
            await asyncio.sleep(0.1)
    assert (await api.get(f"/api/jobs/{later['jobId']}"))[0] == 200
    assert await api.app[STORE].events_after(0, job_id=job["jobId"]) == []
    assert await api.app[STORE].pruned_through() > 0
    _, samples = await scrape(api)
    assert value(samples, "jobs_pruned_total") >= 1


async def test_retention_zero_keeps_everything(make_api: MakeApi) -> None:
    api = await make_api(retention_days=0.0, prune_interval_seconds=0.1)
    _, job = await api.post("/api/jobs", json={"type": "demo.sleep", "payload": {"seconds": 0}})
    await wait_status(api, job["jobId"], "completed")
    assert await api.app[RETENTION].prune(now=10**12) == 0
    assert (await api.get(f"/api/jobs/{job['jobId']}"))[0] == 200


async def test_a_long_poll_cursor_behind_the_pruned_log_gets_resync(make_api: MakeApi) -> None:
    api = await make_api(retention_days=1.0, prune_interval_seconds=3600)
    _, job = await api.post("/api/jobs", json={"type": "demo.sleep", "payload": {"seconds": 0}})
    done = await wait_status(api, job["jobId"], "completed")
    _, keep = await api.post("/api/jobs", json={"type": "demo.sleep", "delaySeconds": 600})
    assert await api.app[RETENTION].prune(now=time.time() + 2 * 86400) == 1
    through = await api.app[STORE].pruned_through()
    assert through == done["lastSeq"]
    status, page = await api.get("/api/events?since=1&timeout=0")
    assert status == 200 and page["type"] == "resync" and page["reason"] == "pruned"
    assert page["events"] == [] and page["cursor"] >= keep["lastSeq"]
    status, page = await api.get(f"/api/events?since={through}&timeout=0")
    assert status == 200 and "type" not in page
    assert [e["seq"] for e in page["events"]] == [keep["lastSeq"]]


async def test_uploads_of_pruned_jobs_go_and_a_reupload_makes_a_file_young_again(
    make_api: MakeApi,
) -> None:
    api = await make_api(retention_days=1.0, prune_interval_seconds=3600)
    form = aiohttp.FormData()
    form.add_field("file", pdfs.text_pdf(1), filename="a.pdf", content_type="application/pdf")
    status, job = await api.post("/api/jobs", data=form)
    assert status == 202
    await wait_status(api, job["jobId"], "completed", timeout=60)
    stored = api.app[SETTINGS].data_dir / "uploads" / f"{job['payload']['sha256']}.pdf"
    week_ago = time.time() - 7 * 86400
    os.utime(stored, (week_ago, week_ago))
    form = aiohttp.FormData()
    form.add_field("file", pdfs.text_pdf(1), filename="b.pdf", content_type="application/pdf")
    status, again = await api.post("/api/jobs", data=form)
    assert status == 202 and again["payload"]["sha256"] == job["payload"]["sha256"]
    assert stored.stat().st_mtime > time.time() - 600  # the same bytes were stored again
    await wait_status(api, again["jobId"], "completed", timeout=60)
    retention = api.app[RETENTION]
    assert await retention.prune(now=time.time() + 2 * 86400) == 2
    # The file, the record of who uploaded it (pdf/owners.py) and its stamp go together.
    assert not stored.exists() and not stored.with_suffix(".owners").exists()
    assert not stored.with_suffix(".kept").exists()
    assert retention.pruned["files"] == 3


@contextlib.asynccontextmanager
async def prune_during_reads(make_api: MakeApi) -> AsyncIterator[ApiClient]:
    """An app with one finished job whose event-log reads each let a prune land right after
    the read (the job is then past retention), as long as the block runs."""
    api = await make_api(retention_days=1.0, prune_interval_seconds=3600)
    _, job = await api.post("/api/jobs", json={"type": "demo.sleep", "payload": {"seconds": 0}})
    await wait_status(api, job["jobId"], "completed")
    store = api.app[STORE]
    read = store.events_after

    async def read_while_pruning(since: int, **kw: Any) -> Any:
        events = await read(since, **kw)  # what the cursor saw: everything still there
        await api.app[RETENTION].prune(now=time.time() + 2 * 86400)
        return events

    store.events_after = read_while_pruning  # type: ignore[method-assign]
    try:
        yield api
    finally:
        store.events_after = read  # type: ignore[method-assign]


async def test_a_prune_landing_while_the_log_is_read_gives_resync_not_a_gap(
    make_api: MakeApi,
) -> None:
    """Regression: the cursor was checked before the read, so a prune in between went unseen."""
    async with prune_during_reads(make_api) as api:
        status, page = await api.get("/api/events?since=0&timeout=0")
        assert status == 200 and page["type"] == "resync" and page["reason"] == "pruned"


async def test_a_prune_landing_mid_backlog_closes_the_socket_to_resume(make_api: MakeApi) -> None:
    """The WebSocket side of the same regression: 4000, and the resume then says resync."""
    from tests.test_ws import connect, next_json

    async with prune_during_reads(make_api) as api:
        ws = await connect(api)
        await ws.send_json({"type": "subscribe", "userId": api.user, "since": 0})
        assert (await next_json(ws))["type"] == "subscribed"
        closed = await ws.receive(timeout=5)
        assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == 4000
    ws = await connect(api)
    await ws.send_json({"type": "subscribe", "userId": api.user, "since": 0})
    reply = await next_json(ws)
    assert reply["type"] == "resync" and reply["reason"] == "pruned"
    await ws.close()
