"""Batch enqueue: POST /api/jobs with {"jobs": [...]}, and multipart uploads of several PDFs."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from jobserver.client import BadRequest, Client, SyncClient
from jobserver.errors import InvalidPayload
from jobserver.store import NewJob
from jobserver.store.sqlite import SqliteStore
from jobserver.web.keys import SETTINGS
from tests.conftest import ApiClient, MakeApi
from tests.liveserver import LiveServer
from tests.pdfs import text_pdf
from tests.test_api import wait_status


def sleep_job(**extra: Any) -> dict[str, Any]:
    return {"type": "demo.sleep", "payload": {"seconds": 0, "steps": 1}, **extra}


def count_jobs(api: ApiClient) -> int:
    with sqlite3.connect(api.app[SETTINGS].db_path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])


async def test_a_batch_is_enqueued_in_one_commit_and_every_job_runs(make_api: MakeApi) -> None:
    api = await make_api()
    jobs = [sleep_job(label=f"job {i}") for i in range(50)]
    status, reply = await api.post("/api/jobs", json={"jobs": jobs})
    assert status == 202
    made = reply["jobs"]
    assert [j["label"] for j in made] == [f"job {i}" for i in range(50)]
    assert all(j["created"] and j["status"] == "queued" and j["userId"] == "alice" for j in made)
    seqs = [j["lastSeq"] for j in made]
    assert seqs == list(range(seqs[0], seqs[0] + 50))  # one transaction: consecutive events
    for job in made:
        await wait_status(api, job["jobId"], "completed")


async def test_one_bad_job_rejects_the_batch_with_its_index(make_api: MakeApi) -> None:
    api = await make_api()
    before = count_jobs(api)
    bad = [sleep_job(), sleep_job(), {"type": "no.such.type"}, sleep_job()]
    status, reply = await api.post("/api/jobs", json={"jobs": bad})
    assert status == 400
    assert reply["error"]["code"] == "UNKNOWN_JOB_TYPE" and reply["error"]["index"] == 2
    assert reply["error"]["message"].startswith("jobs[2]: ")
    for index, job in ((1, sleep_job(delaySeconds=-1)), (0, "not an object"),
                       (3, sleep_job(payload=[]))):  # fmt: skip
        jobs = [sleep_job(), sleep_job(), sleep_job(), sleep_job()]
        jobs[index] = job
        status, reply = await api.post("/api/jobs", json={"jobs": jobs})
        assert (status, reply["error"]["code"], reply["error"]["index"]) == (
            400, "INVALID_PAYLOAD", index)  # fmt: skip
    assert count_jobs(api) == before  # nothing of any refused batch was written
    status, _ = await api.get("/api/meta")
    assert status == 200  # and the server goes on


async def test_a_batch_must_hold_1_to_1000_jobs(make_api: MakeApi) -> None:
    api = await make_api()
    for jobs in ([], [sleep_job()] * 1001, "x", None):
        status, reply = await api.post("/api/jobs", json={"jobs": jobs})
        assert (status, reply["error"]["code"]) == (400, "INVALID_PAYLOAD")
        assert "index" not in reply["error"]
    status, reply = await api.post("/api/jobs", json={"jobs": [sleep_job()] * 1000})
    assert status == 202 and len(reply["jobs"]) == 1000


async def test_idempotency_keys_in_a_batch(make_api: MakeApi) -> None:
    api = await make_api()
    _, first = await api.post("/api/jobs", json=sleep_job(idempotencyKey="a"))
    # Two jobs with one key in one batch: refused, with the index of the second.
    twice = [sleep_job(idempotencyKey="b"), sleep_job(), sleep_job(idempotencyKey="b")]
    status, reply = await api.post("/api/jobs", json={"jobs": twice})
    assert (status, reply["error"]["code"], reply["error"]["index"]) == (
        400, "DUPLICATE_IDEMPOTENCY_KEY", 2)  # fmt: skip
    # A key that matches an existing job brings that job back, marked as not created.
    status, reply = await api.post(
        "/api/jobs", json={"jobs": [sleep_job(idempotencyKey="a"), sleep_job(idempotencyKey="c")]}
    )
    assert status == 202
    old, new = reply["jobs"]
    assert old["jobId"] == first["jobId"] and old["created"] is False
    assert new["created"] is True and new["idempotencyKey"] == "c"
    # Nothing new at all: 200.
    status, reply = await api.post(
        "/api/jobs", json={"jobs": [sleep_job(idempotencyKey="c"), sleep_job(idempotencyKey="a")]}
    )
    assert status == 200
    assert [j["jobId"] for j in reply["jobs"]] == [new["jobId"], first["jobId"]]
    assert not any(j["created"] for j in reply["jobs"])
    # Keys are per user.
    bob = await api.as_user("bob")
    status, reply = await bob.post("/api/jobs", json={"jobs": [sleep_job(idempotencyKey="a")]})
    assert status == 202 and reply["jobs"][0]["jobId"] != first["jobId"]


async def test_a_single_job_post_answers_as_before(make_api: MakeApi) -> None:
    api = await make_api()
    status, job = await api.post("/api/jobs", json=sleep_job())
    assert status == 202 and "created" not in job and job["status"] == "queued"


def pdf_form(*files: tuple[str, bytes], key: str | None = None) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, data in files:
        form.add_field("file", data, filename=name, content_type="application/pdf")
    if key is not None:
        form.add_field("idempotencyKey", key)
    return form


async def test_a_multipart_upload_of_several_pdfs_makes_one_job_per_file(
    make_api: MakeApi,
) -> None:
    api = await make_api()
    files = [(f"doc{i}.pdf", text_pdf(1, title=f"Document {i}")) for i in range(3)]
    status, reply = await api.post("/api/jobs", data=pdf_form(*files, key="folder"))
    assert status == 202
    jobs = reply["jobs"]
    assert [j["label"] for j in jobs] == ["doc0.pdf", "doc1.pdf", "doc2.pdf"]
    assert [j["idempotencyKey"] for j in jobs] == ["folder.0", "folder.1", "folder.2"]
    assert all(j["type"] == "pdf-notes" and j["created"] for j in jobs)
    for job in jobs:
        await wait_status(api, job["jobId"], "completed", timeout=60)
    # The same upload again finds the same jobs.
    status, again = await api.post("/api/jobs", data=pdf_form(*files, key="folder"))
    assert status == 200
    assert [j["jobId"] for j in again["jobs"]] == [j["jobId"] for j in jobs]
    # One file answers as a single job, as before.
    status, one = await api.post("/api/jobs", data=pdf_form(files[0]))
    assert status == 202 and one["label"] == "doc0.pdf" and "created" not in one


async def test_a_refused_file_in_a_multipart_batch_rejects_it_with_its_index(
    make_api: MakeApi,
) -> None:
    api = await make_api()
    before = count_jobs(api)
    files = [
        ("a.pdf", text_pdf(1, title="One")),
        ("b.pdf", text_pdf(1, title="Two")),
        ("c.pdf", b"not a pdf"),
    ]
    status, reply = await api.post("/api/jobs", data=pdf_form(*files))
    assert status == 415
    assert reply["error"]["code"] == "NOT_A_PDF" and reply["error"]["index"] == 2
    assert count_jobs(api) == before


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("batch") / "data", "--demo-jobs").start()
    yield server
    server.stop()


async def test_the_python_client_submits_many_in_one_request(live: LiveServer) -> None:
    token = live.token("py-batch")
    async with Client(live.url, token=token) as client:
        jobs = await client.submit_many(
            [sleep_job(idempotencyKey="x"), {"type": "demo.sleep", "maxAttempts": 2}]
        )
        assert [j.type for j in jobs] == ["demo.sleep", "demo.sleep"]
        assert jobs[1].maxAttempts == 2 and all(j.raw["created"] for j in jobs)
        again = await client.submit_many([sleep_job(idempotencyKey="x")])
        assert again[0].jobId == jobs[0].jobId and again[0].raw["created"] is False
        with pytest.raises(BadRequest) as refused:
            await client.submit_many([sleep_job(), {"type": "no.such.type"}])
        assert refused.value.code == "UNKNOWN_JOB_TYPE" and refused.value.index == 1
        for job in jobs:
            assert (await client.wait(job.jobId, timeout=30)).status == "completed"
    with SyncClient(live.url, token=token) as sync:
        assert len(sync.submit_many([sleep_job(), sleep_job()])) == 2


async def test_the_store_enqueues_many_in_one_transaction_all_or_nothing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    try:
        old, _ = await store.enqueue(NewJob(type="t", user_id="u", idempotency_key="k"))
        made = await store.enqueue_many([
            NewJob(type="t", user_id="u"),
            NewJob(type="t", user_id="u", idempotency_key="k"),
            NewJob(type="t", user_id="u", payload={"n": 2}),
        ])  # fmt: skip
        assert [len(events) for _, events in made] == [1, 0, 1]
        assert made[1][0].id == old.id and made[2][0].payload == {"n": 2}
        assert made[2][1][0].seq == made[0][1][0].seq + 1  # one commit, in order
        with pytest.raises(InvalidPayload):
            await store.enqueue_many(
                [NewJob(type="t", user_id="u"), NewJob(type="t", user_id="u", payload={"x": {1}})]
            )
        assert len(await store.list_jobs("u", None, 100, 0)) == 3  # nothing of that batch
    finally:
        await store.close()
