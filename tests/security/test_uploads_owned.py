"""Uploads are owned: a job may name a file by hash only if its user uploaded those bytes.

Another user's hash and a hash nobody uploaded get the very same answer, so the answer never
tells whether a file is on the server; a second user who uploads the same bytes still gets
the cached notes at once.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import aiohttp

from tests import pdfs
from tests.liveserver import LiveServer
from tests.security.conftest import call


async def upload(server: LiveServer, token: str, data: bytes) -> tuple[int, Any]:
    form = aiohttp.FormData()
    form.add_field("file", data, filename="mine.pdf", content_type="application/pdf")
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            server.url + "/api/jobs", data=form, headers={"Authorization": f"Bearer {token}"}
        ) as resp,
    ):
        return resp.status, await resp.json()


def finished(server: LiveServer, token: str, job_id: str) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = server.get(f"/api/jobs/{job_id}", token)
        if job["status"] in ("completed", "failed", "cancelled"):
            return job
        time.sleep(0.1)
    raise TimeoutError(job_id)


async def test_a_foreign_hash_gets_the_same_answer_as_an_unknown_one(live: LiveServer) -> None:
    alice, bob = (f"{name}-{uuid.uuid4().hex[:6]}" for name in ("alice", "bob"))
    alice_token, bob_token = live.token(alice), live.token(bob)
    data = pdfs.text_pdf(3, seed=1313)
    status, job = await upload(live, alice_token, data)
    assert status == 202
    sha = job["payload"]["sha256"]
    assert sha == hashlib.sha256(data).hexdigest()
    done = finished(live, alice_token, job["jobId"])
    assert done["status"] == "completed", done

    def by_hash(token: str, digest: str) -> tuple[int, Any]:
        job = {"type": "pdf-notes", "payload": {"sha256": digest, "filename": "x.pdf"}}
        return call(live, "POST", "/api/jobs", job, token)

    foreign = by_hash(bob_token, sha)
    unknown = by_hash(bob_token, hashlib.sha256(b"never uploaded").hexdigest())
    assert foreign == unknown  # same status, code and message
    assert foreign[0] == 404 and foreign[1]["error"]["code"] == "UPLOAD_MISSING"
    assert live.get("/api/jobs", bob_token)["jobs"] == []  # no job was made for bob
    assert live.get("/api/notes", bob_token)["notes"] == []

    # Alice may name her own upload again; bob, once he sent the bytes, gets the cache at once.
    assert by_hash(alice_token, sha)[0] == 202
    status, his = await upload(live, bob_token, data)
    assert status == 202 and his["payload"]["sha256"] == sha
    done = finished(live, bob_token, his["jobId"])
    assert done["status"] == "completed" and done["result"]["cacheHit"] is True
    assert by_hash(bob_token, sha)[0] == 202
