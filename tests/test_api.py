"""The JSON API over real sockets: create, read, list, cancel, retry, and every error code."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import ApiClient, MakeApi


async def wait_status(api: ApiClient, job_id: str, *statuses: str, timeout: float = 10) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            status, job = await api.get(f"/api/jobs/{job_id}")
            assert status == 200
            if job["status"] in statuses:
                return job
            await asyncio.sleep(0.02)


async def test_create_run_and_read_a_job(make_api: MakeApi) -> None:
    api = await make_api()
    status, job = await api.post("/api/jobs", json={"type": "demo.sleep",
                                                    "payload": {"seconds": 0.05, "steps": 2}})
    assert status == 202
    assert job["status"] == "queued" and job["userId"] == "alice" and job["type"] == "demo.sleep"
    done = await wait_status(api, job["jobId"], "completed")
    assert done["progress"] == 100 and done["attempts"] == 1 and done["maxAttempts"] == 1
    # A job type's result is its own: the server adds only how long it took.
    assert "cacheHit" not in done["result"] and done["result"]["processingTimeMs"] > 0
    assert done["jobType"] == "demo.sleep" and done["attempt"] == 1 and done["label"]
    assert done["startedAt"] and done["finishedAt"] and done["lastSeq"] > job["lastSeq"]


async def test_idempotency_key_returns_the_same_job(make_api: MakeApi) -> None:
    api = await make_api()
    body = {"type": "demo.sleep", "payload": {"seconds": 0}, "idempotencyKey": "k1"}
    s1, first = await api.post("/api/jobs", json=body)
    s2, second = await api.post("/api/jobs", json=body)
    assert (s1, s2) == (202, 200)
    assert first["jobId"] == second["jobId"]
    bob = await api.as_user("bob")
    s3, other = await bob.post("/api/jobs", json=body)
    assert s3 == 202 and other["jobId"] != first["jobId"]


async def test_list_own_jobs_newest_first_filtered_and_paged(make_api: MakeApi) -> None:
    api = await make_api()
    ids = []
    for _ in range(5):
        _, job = await api.post("/api/jobs", json={"type": "demo.sleep",
                                                   "payload": {"seconds": 60}, "delaySeconds": 60})
        ids.append(job["jobId"])
    bob = await api.as_user("bob")
    await bob.post("/api/jobs", json={"type": "demo.sleep", "payload": {"seconds": 0}})
    status, page = await api.get("/api/jobs?limit=3")
    assert status == 200
    assert [j["jobId"] for j in page["jobs"]] == ids[::-1][:3] and page["nextOffset"] == 3
    _, rest = await api.get("/api/jobs?limit=3&offset=3")
    assert [j["jobId"] for j in rest["jobs"]] == ids[::-1][3:] and rest["nextOffset"] is None
    _, queued = await api.get("/api/jobs?status=queued")
    assert len(queued["jobs"]) == 5
    _, none = await api.get("/api/jobs?status=completed")
    assert none["jobs"] == []


async def test_another_users_job_is_404(make_api: MakeApi) -> None:
    api = await make_api()
    _, job = await api.post("/api/jobs", json={"type": "demo.sleep", "payload": {"seconds": 0}})
    bob = await api.as_user("bob")
    for method, path in [("GET", ""), ("POST", "/cancel"), ("POST", "/retry")]:
        status, body = await bob.request(method, f"/api/jobs/{job['jobId']}{path}")
        assert status == 404 and body["error"]["code"] == "JOB_NOT_FOUND"


async def test_cancel_queued_then_retry(make_api: MakeApi) -> None:
    api = await make_api()
    _, job = await api.post("/api/jobs", json={"type": "demo.sleep", "payload": {"seconds": 0},
                                               "delaySeconds": 30})
    status, cancelled = await api.post(f"/api/jobs/{job['jobId']}/cancel")
    assert status == 200 and cancelled["status"] == "cancelled"
    status, again = await api.post(f"/api/jobs/{job['jobId']}/cancel")
    assert status == 409 and again["error"]["code"] == "ILLEGAL_TRANSITION"
    status, retried = await api.post(f"/api/jobs/{job['jobId']}/retry")
    assert status == 200 and retried["status"] == "queued" and retried["attempts"] == 0
    await wait_status(api, job["jobId"], "completed")
    status, body = await api.post(f"/api/jobs/{job['jobId']}/retry")
    assert status == 409 and body["error"]["code"] == "ILLEGAL_TRANSITION"


async def test_errors_have_codes_and_the_server_keeps_serving(make_api: MakeApi) -> None:
    api = await make_api(max_body_bytes=2048)
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"data": b"{not json"}, 400, "INVALID_JSON"),
        ({"data": b"[1, 2]"}, 400, "INVALID_PAYLOAD"),
        ({"json": {"type": "no.such"}}, 400, "UNKNOWN_JOB_TYPE"),
        ({"json": {"type": "demo.sleep", "payload": {"seconds": "x"}}}, 400, "INVALID_PAYLOAD"),
        ({"json": {"type": "demo.sleep", "payload": []}}, 400, "INVALID_PAYLOAD"),
        ({"json": {"type": "demo.sleep", "maxAttempts": 0}}, 400, "INVALID_PAYLOAD"),
        ({"json": {"type": "demo.sleep", "delaySeconds": -1}}, 400, "INVALID_PAYLOAD"),
        ({"data": b'{"type": "demo.sleep", "pad": "' + b"x" * 4096 + b'"}'}, 413,
         "BODY_TOO_LARGE"),
    ]
    for kwargs, want_status, want_code in cases:
        status, body = await api.post("/api/jobs", **kwargs)
        assert (status, body["error"]["code"]) == (want_status, want_code), kwargs
        assert body["error"]["message"]
    status, body = await api.get("/api/jobs/nope")
    assert status == 404 and body["error"]["code"] == "JOB_NOT_FOUND"
    status, body = await api.get("/api/jobs?status=bogus")
    assert status == 400 and body["error"]["code"] == "INVALID_PAYLOAD"
    status, body = await api.get("/api/no-such-route")
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"
    status, _ = await api.post("/api/jobs", json={"type": "demo.sleep", "payload": {"seconds": 0}})
    assert status == 202


async def test_api_requires_a_valid_token(make_api: MakeApi) -> None:
    api = await make_api()
    api.client.session.cookie_jar.clear()
    async with api.client.get("/api/jobs") as resp:
        assert resp.status == 401 and (await resp.json())["error"]["code"] == "UNAUTHORIZED"
    status, body = await api.get("/api/jobs", headers={"Authorization": "Bearer forged"})
    assert status == 401 and body["error"]["code"] == "INVALID_TOKEN"


async def test_meta_serves_stage_display_names(make_api: MakeApi) -> None:
    api = await make_api()
    status, meta = await api.get("/api/meta")
    assert status == 200
    ids = [s["id"] for s in meta["stages"]]
    for stage in ["initializing", "downloading", "extracting", "generating", "saving",
                  "completed", "failed", "cancelled"]:
        assert stage in ids and meta["stageNames"][stage]
    assert "demo.sleep" in meta["jobTypes"] and meta["epoch"]
