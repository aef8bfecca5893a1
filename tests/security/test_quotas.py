"""Issue 13, item 6: per-user limits answer 429 with Retry-After and a code; defaults are
generous enough for one busy user."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import aiohttp
import pytest

from jobserver.config import Settings
from jobserver.errors import TooManyJobs
from jobserver.models import Event, EventType
from jobserver.quotas import JobQuota
from tests import pdfs
from tests.conftest import ApiClient, MakeApi
from tests.wsraw import demo_only

LATER = {"type": "demo.sleep", "payload": {"seconds": 0}, "delaySeconds": 3600}


async def post_job(api: ApiClient, body: Any = LATER) -> tuple[int, Any, str | None]:
    async with api.client.post("/api/jobs", json=body, headers=api.headers) as resp:
        return resp.status, await resp.json(), resp.headers.get("Retry-After")


async def test_requests_per_second_per_user(make_api: MakeApi) -> None:
    api = await demo_only(make_api)(
        "alice", requests_per_second_per_user=2, request_burst_per_user=5
    )
    answers = [await api.get("/api/jobs") for _ in range(5)]
    assert {status for status, _ in answers} == {200}
    async with api.client.get("/api/jobs", headers=api.headers) as resp:
        assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
        assert (await resp.json())["error"]["code"] == "RATE_LIMITED"
    bob = await api.as_user("bob")  # signing in counted against the address, not alice
    assert (await bob.get("/api/jobs"))[0] == 200  # another user has a bucket of their own
    await asyncio.sleep(0.6)
    assert (await api.get("/api/jobs"))[0] == 200  # refilled at 2 a second


async def test_queued_and_running_jobs_per_user(make_api: MakeApi) -> None:
    api = await demo_only(make_api)("alice", max_jobs_per_user=3)
    # Ten at once: the reservation lets exactly three through, not whoever checked first.
    answers = await asyncio.gather(*(post_job(api) for _ in range(10)))
    assert sorted(status for status, _, _ in answers) == [202] * 3 + [429] * 7
    refused = next(body for status, body, _ in answers if status == 429)
    assert refused["error"]["code"] == "QUOTA_JOBS"
    assert all(int(after or 0) >= 1 for status, _, after in answers if status == 429)
    bob = await api.as_user("bob")
    assert (await post_job(bob))[0] == 202  # another user's quota is their own
    first = next(body for status, body, _ in answers if status == 202)
    assert (await api.post(f"/api/jobs/{first['jobId']}/cancel"))[0] == 200
    assert (await post_job(api))[0] == 202  # a finished job frees its place
    status, body = await api.post(f"/api/jobs/{first['jobId']}/retry")
    assert status == 429 and body["error"]["code"] == "QUOTA_JOBS"  # a retry queues one more


async def test_max_attempts_is_capped(make_api: MakeApi) -> None:
    api = await demo_only(make_api)("alice")
    status, body, _ = await post_job(api, {**LATER, "maxAttempts": 11})
    assert status == 400 and body["error"]["code"] == "INVALID_PAYLOAD"
    assert "from 1 to 10" in body["error"]["message"]
    assert (await post_job(api, {**LATER, "maxAttempts": 10}))[0] == 202
    assert Settings().pdf_timeout_seconds == 60  # and one parse may take a minute at most


async def test_upload_bytes_kept_per_user(make_api: MakeApi) -> None:
    data = pdfs.text_pdf(2, seed=31)
    api = await make_api("alice", max_stored_bytes_per_user=len(data) + 1000)

    async def upload(client: ApiClient, body: bytes) -> tuple[int, Any]:
        form = aiohttp.FormData()
        form.add_field("file", io.BytesIO(body), filename="a.pdf", content_type="application/pdf")
        return await client.post("/api/jobs", data=form)

    assert (await upload(api, data))[0] == 202
    status, body = await upload(api, pdfs.text_pdf(2, seed=32))
    assert status == 429 and body["error"]["code"] == "QUOTA_BYTES"
    assert (await upload(await api.as_user("bob"), data))[0] == 202


async def test_the_defaults_take_a_1000_job_batch_from_one_user(make_api: MakeApi) -> None:
    api = await demo_only(make_api)("alice")
    answers = await asyncio.gather(*(post_job(api) for _ in range(1000)))
    assert {status for status, _, _ in answers} == {202}


async def active_jobs(api: ApiClient) -> int:
    status, body = await api.get("/api/jobs?status=active")
    assert status == 200, body
    return len(body["jobs"])


async def test_one_users_backlog_holds_at_most_max_running_per_user_workers(
    make_api: MakeApi,
) -> None:
    # Before: alice's eight long jobs took all four slots and bob's job waited for one of hers.
    api = await demo_only(make_api)("alice", concurrency=4, max_running_per_user=2)
    long = {"type": "demo.sleep", "payload": {"seconds": 30, "steps": 1}}
    for _ in range(8):
        assert (await post_job(api, long))[0] == 202
    async with asyncio.timeout(5):
        while await active_jobs(api) < 2:
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # time enough to claim a third, were it allowed
    assert await active_jobs(api) == 2
    bob = await api.as_user("bob")
    started = asyncio.get_running_loop().time()
    status, job, _ = await post_job(bob, {"type": "demo.sleep", "payload": {"seconds": 0}})
    assert status == 202
    async with asyncio.timeout(5):
        while (await bob.get(f"/api/jobs/{job['jobId']}"))[1]["status"] != "completed":
            await asyncio.sleep(0.02)
    assert asyncio.get_running_loop().time() - started < 2  # at once, not after alice's 30 s
    assert await active_jobs(api) == 2
    for item in (await api.get("/api/jobs?limit=100"))[1]["jobs"]:
        await api.post(f"/api/jobs/{item['jobId']}/cancel")


def test_by_default_one_user_may_use_all_but_one_slot() -> None:
    assert Settings(concurrency=8).running_per_user == 7
    assert Settings(concurrency=1).running_per_user == 1
    assert Settings(concurrency=8, max_running_per_user=3).running_per_user == 3


async def test_a_published_job_is_not_also_counted_as_a_held_place() -> None:
    # An enqueue's job.queued event is published before its caller ends the reservation:
    # in between, its place must count once, or a concurrent request is refused for nothing.
    quota = JobQuota(2)

    def queued(job_id: str) -> Event:
        return Event(0, EventType.QUEUED, job_id, "alice", b"{}")

    async with quota.reserve("alice"):
        quota.on_event(queued("j1"))  # published; the first request has not resumed yet
        async with quota.reserve("alice"):  # 1 open + 1 more = 2: fits
            quota.on_event(queued("j2"))
    assert quota.open_jobs("alice") == 2
    with pytest.raises(TooManyJobs):
        async with quota.reserve("alice"):
            pass
