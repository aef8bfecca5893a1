"""The dashboard's API over a real socket: a job's own events, search with counts, removal
(one and all finished) and bulk actions; bad input gets stable codes, other users get 404."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import aiohttp
import orjson

from jobserver.web.keys import STORE
from tests import pdfs
from tests.conftest import ApiClient, MakeApi
from tests.test_api import wait_status


async def batch(api: ApiClient, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    status, made = await api.post("/api/jobs", json={"jobs": jobs})
    assert status == 202, made
    return list(made["jobs"])


async def wait_all(api: ApiClient, ids: list[str], *statuses: str) -> None:
    await asyncio.gather(*(wait_status(api, i, *statuses) for i in ids))


async def test_a_jobs_events_are_its_timeline_paged_and_survive_the_resume_floor(
    make_api: MakeApi,
) -> None:
    api = await make_api(demo_jobs=True)
    job, other = await batch(api, [
        {"type": "demo.fail", "maxAttempts": 2, "payload": {"recoverable": True,
                                                           "failAttempts": 1}},
        {"type": "demo.sleep", "payload": {"seconds": 0}},
    ])  # fmt: skip
    await wait_status(api, job["jobId"], "completed")
    status, page = await api.get(f"/api/jobs/{job['jobId']}/events")
    assert status == 200 and page["nextAfter"] is None and page["jobId"] == job["jobId"]
    types = [e["type"] for e in page["events"]]
    assert types[0] == "job.queued" and types[-1] == "job.completed"
    assert "job.retrying" in types and types.count("job.progress") >= 3
    seqs = [e["seq"] for e in page["events"]]
    assert seqs == sorted(seqs) and all(e["jobId"] == job["jobId"] for e in page["events"])
    retry = next(e for e in page["events"] if e["type"] == "job.retrying")
    assert retry["error"]["recoverable"] is True
    # Paged: two at a time, nextAfter chains to the same list.
    seen, after = [], 0
    for _ in range(20):
        _, part = await api.get(f"/api/jobs/{job['jobId']}/events?after={after}&limit=2")
        seen += [e["seq"] for e in part["events"]]
        if part["nextAfter"] is None:
            break
        after = part["nextAfter"]
    assert seen == seqs
    # Retention of the other job (it finished first, its events came after this job's first
    # ones) moves the global resume floor past this job's events: the long-poll from 0 says
    # resync, the job's own route still has every one of them.
    store = api.app[STORE]
    done = await store.get_job(other["jobId"])
    assert done is not None and done.finished_at is not None
    pruned = await store.prune(done.finished_at + 0.001, limit=10)
    assert pruned.job_ids == (other["jobId"],) and pruned.through > seqs[0]
    _, poll = await api.get("/api/events?since=0&timeout=0")
    assert poll.get("type") == "resync"
    _, again = await api.get(f"/api/jobs/{job['jobId']}/events")
    assert [e["seq"] for e in again["events"]] == seqs


async def test_events_route_refuses_bad_input_and_other_users(make_api: MakeApi) -> None:
    api = await make_api(demo_jobs=True)
    [job] = await batch(api, [{"type": "demo.sleep", "payload": {"seconds": 0}}])
    for query in ("after=-1", "after=x", "limit=0", "limit=1001"):
        status, body = await api.get(f"/api/jobs/{job['jobId']}/events?{query}")
        assert status == 400 and body["error"]["code"] == "INVALID_PAYLOAD", query
    bob = await api.as_user("bob")
    status, body = await bob.get(f"/api/jobs/{job['jobId']}/events")
    assert status == 404 and body["error"]["code"] == "JOB_NOT_FOUND"
    status, missing = await bob.get("/api/jobs/nope/events")
    assert missing["error"]["message"].replace("nope", job["jobId"]) == body["error"]["message"]


async def test_list_has_search_total_and_counts_that_agree(make_api: MakeApi) -> None:
    api = await make_api(demo_jobs=True)
    jobs = await batch(api, [
        *({"type": "demo.sleep", "label": f"report {n}.pdf", "payload": {"seconds": 0}}
          for n in range(5)),
        *({"type": "demo.fail", "payload": {}} for _ in range(3)),
        {"type": "demo.sleep", "label": "Later", "delaySeconds": 600},
    ])  # fmt: skip
    await wait_all(api, [j["jobId"] for j in jobs[:8]], "completed", "failed")
    bob = await api.as_user("bob")
    await batch(bob, [{"type": "demo.sleep", "label": "report of bob", "delaySeconds": 600}])
    status, page = await api.get("/api/jobs?limit=2")
    assert status == 200 and page["total"] == 9 and len(page["jobs"]) == 2
    assert page["counts"] == {"queued": 1, "active": 0, "completed": 5, "failed": 3,
                              "cancelled": 0, "all": 9}  # fmt: skip
    assert page["jobs"][0]["label"] == "Later"  # newest first
    status, page = await api.get("/api/jobs?q=REPORT&limit=3")
    assert page["total"] == 5 and page["counts"]["all"] == 5 and page["nextOffset"] == 3
    _, rest = await api.get("/api/jobs?q=REPORT&limit=3&offset=3")
    labels = {j["label"] for j in page["jobs"] + rest["jobs"]}
    assert labels == {f"report {n}.pdf" for n in range(5)} and rest["nextOffset"] is None
    _, failed = await api.get("/api/jobs?q=demo.fail&status=failed")
    assert failed["total"] == 3 and failed["counts"]["completed"] == 0
    _, none = await api.get("/api/jobs?q=%25")  # a literal %, not a wildcard
    assert none["total"] == 0 and none["jobs"] == []
    status, body = await api.get("/api/jobs?q=" + "x" * 201)
    assert status == 400 and body["error"]["code"] == "INVALID_PAYLOAD"


async def test_remove_one_and_all_finished_publishes_job_removed(make_api: MakeApi) -> None:
    api = await make_api(demo_jobs=True)
    jobs = await batch(api, [
        *({"type": "demo.sleep", "payload": {"seconds": 0}} for _ in range(3)),
        {"type": "demo.fail", "payload": {}},
        {"type": "demo.sleep", "delaySeconds": 600},
    ])  # fmt: skip
    ids = [j["jobId"] for j in jobs]
    await wait_all(api, ids[:4], "completed", "failed")
    bob = await api.as_user("bob")
    status, body = await bob.request("DELETE", f"/api/jobs/{ids[0]}")
    assert status == 404 and body["error"]["code"] == "JOB_NOT_FOUND"
    status, body = await api.request("DELETE", f"/api/jobs/{ids[4]}")
    assert status == 409 and body["error"]["code"] == "ILLEGAL_TRANSITION"
    status, removed = await api.request("DELETE", f"/api/jobs/{ids[0]}")
    assert status == 200 and removed["removedAt"] and removed["status"] == "completed"
    assert (await api.get(f"/api/jobs/{ids[0]}"))[0] == 404
    assert (await api.get(f"/api/jobs/{ids[0]}/events"))[0] == 404
    status, body = await api.request("DELETE", "/api/jobs?status=queued")
    assert status == 400 and body["error"]["code"] == "INVALID_PAYLOAD"
    _, bobs = await bob.request("DELETE", "/api/jobs")
    assert bobs["removed"] == 0
    status, body = await api.request("DELETE", "/api/jobs?status=failed")
    assert status == 200 and body == {"removed": 1, "statuses": ["failed"]}
    status, body = await api.request("DELETE", "/api/jobs")
    assert body["removed"] == 2
    _, page = await api.get("/api/jobs")
    assert [j["jobId"] for j in page["jobs"]] == [ids[4]] and page["counts"]["all"] == 1
    # Each removal was one job.removed event, published with a seq like any other.
    _, poll = await api.get("/api/events?since=0&timeout=0")
    removals = [e for e in poll["events"] if e["type"] == "job.removed"]
    assert sorted(e["jobId"] for e in removals) == sorted(ids[:4])
    assert {e["status"] for e in removals} == {"completed", "failed"}


async def test_bulk_retry_cancel_remove_each_on_its_own(make_api: MakeApi) -> None:
    api = await make_api(demo_jobs=True)
    failed = await batch(api, [{"type": "demo.fail", "payload": {"recoverable": True}}] * 4)
    waiting = await batch(api, [{"type": "demo.sleep", "delaySeconds": 600}] * 2)
    failed_ids = [j["jobId"] for j in failed]
    await wait_all(api, failed_ids, "failed")
    bob = await api.as_user("bob")
    [theirs] = await batch(bob, [{"type": "demo.sleep", "delaySeconds": 600}])
    ids = [*failed_ids, failed_ids[0], theirs["jobId"], waiting[0]["jobId"]]
    status, body = await api.post("/api/jobs/bulk", json={"action": "retry", "ids": ids})
    assert status == 200 and body["done"] == 4 and body["refused"] == 2
    results = body["results"]
    assert [r["jobId"] for r in results] == [*failed_ids, theirs["jobId"], waiting[0]["jobId"]]
    assert results[4]["error"]["code"] == "JOB_NOT_FOUND"
    assert results[5]["error"]["code"] == "ILLEGAL_TRANSITION"
    assert all(r["job"]["status"] == "queued" for r in results[:4])
    await wait_all(api, failed_ids, "failed")  # ran again (and failed again)
    cancel = {"action": "cancel", "ids": [j["jobId"] for j in waiting]}
    status, body = await api.post("/api/jobs/bulk", json=cancel)
    assert body["done"] == 2 and all(r["job"]["status"] == "cancelled" for r in body["results"])
    status, body = await api.post("/api/jobs/bulk", json={**cancel, "action": "remove"})
    assert body["done"] == 2
    assert (await bob.get(f"/api/jobs/{theirs['jobId']}"))[1]["status"] == "queued"
    for bad in ({"action": "delete", "ids": ["a"]}, {"action": "retry", "ids": []},
                {"action": "retry", "ids": "a"}, {"action": "retry", "ids": [1]},
                {"action": "retry", "ids": ["a"] * 1001}):  # fmt: skip
        status, body = await api.post("/api/jobs/bulk", json=bad)
        assert status == 400 and body["error"]["code"] == "INVALID_PAYLOAD", bad
    status, body = await api.post("/api/jobs/bulk", data=b"{", headers={
        "Content-Type": "application/json"})  # fmt: skip
    assert status == 400 and body["error"]["code"] == "INVALID_JSON"


async def test_a_pdf_uploads_first_event_names_its_file(make_api: MakeApi) -> None:
    api = await make_api()
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(pdfs.text_pdf(1)), filename="bees.pdf",
                   content_type="application/pdf")  # fmt: skip
    status, job = await api.post("/api/jobs", data=form)
    assert status == 202 and job["metadata"] == {"fileName": "bees.pdf"}
    _, page = await api.get(f"/api/jobs/{job['jobId']}/events?limit=1")
    first = page["events"][0]
    assert first["type"] == "job.queued" and first["metadata"]["fileName"] == "bees.pdf"
    assert orjson.loads(orjson.dumps(first))["label"] == "bees.pdf"
