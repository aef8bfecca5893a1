"""Any node serves any client (issue 17): two real server processes, each with its own data dir,
on one PostgreSQL schema. Tokens and sessions, uploads, notes and quotas are the database's,
not a node's."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from tests.liveserver import LiveServer, LlmGate
from tests.pdfs import large_pdf, text_pdf
from tests.pgcluster import URL, call, db, make_node, new_schema, wait_for
from tests.test_pdf_api import refused_later

pytestmark = pytest.mark.timeout(120)


def upload(server: LiveServer, token: str, pdf: bytes, name: str = "doc.pdf") -> tuple[int, Any]:
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
        "Content-Type: application/pdf\r\n\r\n"
    ).encode() + pdf + f"\r\n--{boundary}--\r\n".encode()
    return call(server, "POST", "/api/jobs", token, data=body,
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})  # fmt: skip


def job_of(server: LiveServer, token: str, job_id: str) -> dict[str, Any]:
    status, job = call(server, "GET", f"/api/jobs/{job_id}", token)
    assert status == 200, job
    return dict(job)


@pytest.fixture(scope="module")
def schema() -> Iterator[str]:
    """One schema for the module's two nodes, dropped afterwards."""
    with new_schema() as name:
        yield name


def node(root: Path, name: str, schema: str, *args: str) -> LiveServer:
    return make_node(root, schema, name, "--demo-jobs", *args, jobs=None,
                     env={"JOBSERVER_MAX_JOBS_PER_USER": "3"})  # fmt: skip


@pytest.fixture(scope="module")
def gate() -> Iterator[LlmGate]:
    gate = LlmGate()
    yield gate
    gate.close()


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory, schema: str,
          gate: LlmGate) -> Iterator[tuple[LiveServer, LiveServer]]:  # fmt: skip
    """Each runs one job at a time; B starts once A's slot is taken by a long sleep, so what
    is submitted on A afterwards runs on B. Notes are asked of the gate (held by a test that
    needs a job to stay in its generating stage), then made offline."""
    root = tmp_path_factory.mktemp("pgshared")
    args = ("--concurrency", "1", "--llm-url", gate.url)
    a = node(root, "a", schema, *args).start()
    b = node(root, "b", schema, *args)
    try:
        status, job = call(a, "POST", "/api/jobs", a.token("blocker"), BLOCKER)
        assert status == 202, job
        wait_for(lambda: _blockers(a) == [job["jobId"]], 30, "A busy")
        b.start()
        yield a, b
        for job_id in _blockers(a):
            call(a, "POST", f"/api/jobs/{job_id}/cancel", a.token("blocker"))
    finally:
        b.stop()
        a.stop()


BLOCKER = {"type": "demo.sleep", "payload": {"seconds": 600}}


def _blockers(a: LiveServer) -> list[str]:
    """The long sleeps running now (the tests keep one, on A)."""
    status, page = call(a, "GET", "/api/jobs?status=active", a.token("blocker"))
    assert status == 200, page
    return [str(job["jobId"]) for job in page["jobs"]]


def block_a(a: LiveServer, b: LiveServer, schema: str) -> None:
    """Take A's one slot with a long sleep again, for the tests that expect it taken: two
    sleeps run, one on each node; the one on B is cancelled."""
    token = a.token("blocker")
    for _ in range(2 - len(_blockers(a))):
        assert call(b, "POST", "/api/jobs", token, BLOCKER)[0] == 202
    wait_for(lambda: len(_blockers(a)) == 2, 30, "a sleep on each node")
    with db(schema) as conn:
        on_b = conn.execute(
            "SELECT id FROM jobs WHERE status='active' AND starts_with(lease_token, %s)",
            (f"{schema}-b",),
        ).fetchall()
    assert len(on_b) == 1, on_b
    assert call(a, "POST", f"/api/jobs/{on_b[0][0]}/cancel", token)[0] == 200
    wait_for(lambda: len(_blockers(a)) == 1, 30, "B free again")


def test_a_token_from_one_node_works_on_the_other(nodes: tuple[LiveServer, LiveServer]) -> None:
    a, b = nodes
    token = a.token("tess")
    assert call(b, "GET", "/api/jobs", token)[0] == 200
    assert call(a, "GET", "/api/jobs", b.token("tess"))[0] == 200


def test_signing_out_on_one_node_refuses_the_token_on_the_other(
    nodes: tuple[LiveServer, LiveServer],
) -> None:
    a, b = nodes
    token = a.token("sam")
    assert call(b, "GET", "/api/jobs", token)[0] == 200
    assert call(a, "DELETE", "/api/session", token)[0] == 200
    assert call(a, "GET", "/api/jobs", token)[0] == 401

    def refused() -> bool:
        status, body = call(b, "GET", "/api/jobs", token)
        return status == 401 and body["error"]["code"] == "TOKEN_REVOKED"

    started = time.monotonic()
    wait_for(refused, 3, "B to refuse the signed-out token", every=0.05)
    assert time.monotonic() - started < 2  # a notification, or at worst the 1 s reload


async def test_signing_out_on_one_node_closes_that_sessions_socket_on_the_other(
    nodes: tuple[LiveServer, LiveServer],
) -> None:
    a, b = nodes
    token = a.token("wanda")
    async with aiohttp.ClientSession() as http, http.ws_connect(b.url + "/ws") as ws:
        await ws.send_json({"type": "auth", "token": token})
        assert (await ws.receive_json(timeout=10))["type"] == "authenticated"
        signed_out = await asyncio.to_thread(call, a, "DELETE", "/api/session", token)
        assert signed_out[0] == 200
        async with asyncio.timeout(3):  # a notification, or at worst the 1 s reload
            while (msg := await ws.receive()).type is not aiohttp.WSMsgType.CLOSE:
                pass
        assert msg.data == 1008 and msg.extra == "signed out"

def test_an_upload_on_one_node_is_parsed_on_the_other_and_its_notes_read_on_both(
    nodes: tuple[LiveServer, LiveServer], schema: str,
) -> None:
    a, b = nodes
    token = a.token("uma")
    pdf = text_pdf(pages=3, title="Shared Upload")
    status, job = upload(a, token, pdf)
    assert status == 202, job
    done = wait_for(lambda: (j := job_of(b, token, job["jobId"]))["status"] in
                    ("completed", "failed") and j, 30, "the job to finish")  # fmt: skip
    assert done["status"] == "completed", done
    # A's only slot is taken by the sleep: B ran it, from the database's copy of the file.
    assert len(_blockers(a)) == 1
    note_id = done["result"]["noteId"]
    for server in (a, b):
        status, note = call(server, "GET", f"/api/notes/{note_id}", token)
        assert status == 200, note
        assert note["filename"] == "doc.pdf"
    with psycopg.connect(URL, options=f"-c search_path={schema}") as conn:
        stored = conn.execute("SELECT size FROM upload_files WHERE sha256=%s",
                              (done["payload"]["sha256"],)).fetchone()  # fmt: skip
        chunks = conn.execute("SELECT count(*) FROM upload_chunks").fetchone()
        parses = conn.execute("SELECT count(*) FROM pdf_parses").fetchone()
    assert stored == (len(pdf),) and chunks and chunks[0] >= 1
    assert parses == (0,)  # B let go of the parse once the notes were cached
    assert not list((a.data_dir / "uploads").glob("*.pdf"))  # no node keeps it on disk
    # The same file again, on B, by another user, who may then name it by hash on A.
    other = b.token("vic")
    status, again = upload(b, other, pdf)
    assert status == 202
    wait_for(lambda: job_of(a, other, again["jobId"])["status"] == "completed", 30,
             "the second")  # fmt: skip
    status, named = call(a, "POST", "/api/jobs", other,
                         {"type": "pdf-notes", "payload": {"sha256": done["payload"]["sha256"]}})
    assert status == 202, named
    wait_for(lambda: job_of(a, other, named["jobId"])["status"] == "completed", 30,
             "the third")  # fmt: skip
    status, refused = call(a, "POST", "/api/jobs", a.token("eve"),
                           {"type": "pdf-notes", "payload": {"sha256": done["payload"]["sha256"]}})
    assert status == 404 and refused["error"]["code"] == "UPLOAD_MISSING"


async def test_a_refused_upload_on_one_node_leaves_the_file_the_other_kept_meanwhile(
    nodes: tuple[LiveServer, LiveServer], schema: str,
) -> None:
    """A stores a file, then refuses its upload (a bad field after the file); meanwhile B
    received the same bytes and queued a job for them: A's refusal must not delete them."""
    a, b = nodes
    token = a.token("rhea")
    pdf = large_pdf("Refused On A, Kept On B")
    sha = hashlib.sha256(pdf).hexdigest()

    def stored() -> bool:
        with db(schema) as conn:
            return bool(conn.execute("SELECT 1 FROM upload_files WHERE sha256=%s",
                                     (sha,)).fetchone())  # fmt: skip

    release = asyncio.Event()
    body, content_type = refused_later(pdf, release)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    async with aiohttp.ClientSession() as http:
        held = asyncio.create_task(http.post(a.url + "/api/jobs", data=body, headers=headers))
        await asyncio.to_thread(wait_for, stored, 30, "A to keep the file")
        status, job = await asyncio.to_thread(upload, b, token, pdf)
        assert status == 202, job
        release.set()
        async with await held as refused:
            assert refused.status == 400, await refused.text()
    assert stored()  # B's job names it
    done = await asyncio.to_thread(
        wait_for, lambda: (j := job_of(b, token, job["jobId"]))["status"] in
        ("completed", "failed") and j, 30, "B's job")  # fmt: skip
    assert done["status"] == "completed", done


def test_the_job_quota_counts_a_users_jobs_on_every_node(
    nodes: tuple[LiveServer, LiveServer],
) -> None:
    """At most 3 queued or running jobs per user (the nodes' setting), wherever submitted."""
    a, b = nodes
    token = a.token("quin")
    later = {"type": "demo.sleep", "payload": {"seconds": 1}, "delaySeconds": 3600}
    ids = []
    for server in (a, b, a):
        status, job = call(server, "POST", "/api/jobs", token, later)
        assert status == 202, job
        ids.append(job["jobId"])
    for server in (a, b):
        status, refused = call(server, "POST", "/api/jobs", token, later)
        assert status == 429 and refused["error"]["code"] == "QUOTA_JOBS", refused
    assert call(b, "POST", f"/api/jobs/{ids[0]}/cancel", token)[0] == 200
    status, job = call(a, "POST", "/api/jobs", token, later)
    assert status == 202, job
    for job_id in [*ids[1:], job["jobId"]]:
        assert call(a, "POST", f"/api/jobs/{job_id}/cancel", token)[0] == 200

def test_a_job_on_one_node_joins_the_parse_of_its_file_on_the_other(
    nodes: tuple[LiveServer, LiveServer], gate: LlmGate, schema: str,
) -> None:
    """B parses a file and is held in its generating stage; A's slot is freed, so a job for
    the same file then runs on A (B's one slot is busy) and waits for B's notes instead of
    parsing again. A's slot is taken again afterwards, for the tests that expect it."""
    a, b = nodes
    try:
        _join_across_nodes(a, b, gate)
    finally:
        block_a(a, b, schema)


def _join_across_nodes(a: LiveServer, b: LiveServer, gate: LlmGate) -> None:
    token = a.token("wes")
    before = gate.calls
    gate.hold()
    try:
        status, first = upload(a, token, text_pdf(pages=2, title="Joined Across Nodes"))
        assert status == 202, first
        gate.wait_held()
        assert job_of(a, token, first["jobId"])["status"] == "active"
        blocker = _blockers(a)[0]
        assert call(a, "POST", f"/api/jobs/{blocker}/cancel", a.token("blocker"))[0] == 200
        status, second = call(a, "POST", "/api/jobs", token,
                              {"type": "pdf-notes", "payload": first["payload"]})  # fmt: skip
        assert status == 202, second
        wait_for(lambda: "another server" in job_of(a, token, second["jobId"])["message"],
                 30, "the second job to join B's parse")  # fmt: skip
        assert gate.calls == before + 1
    finally:
        gate.release()
    done = [wait_for(lambda j=j: (r := job_of(b, token, j["jobId"]))["status"] == "completed"
                     and r, 30, "both jobs") for j in (first, second)]  # fmt: skip
    assert done[1]["result"]["joined"] is True and done[1]["result"]["cacheHit"] is False
    assert done[0]["result"]["noteId"] != done[1]["result"]["noteId"]
    assert gate.calls == before + 1  # one parse, one call for notes


def test_a_delayed_job_submitted_on_one_node_runs_on_the_other_once_due(
    nodes: tuple[LiveServer, LiveServer],
) -> None:
    """A's slot is taken, so B runs a job A took for a second later. B hears of it by its
    event, which has no run time: it must read when the job is due then, not at its next
    periodic read (worker.IDLE_SECONDS, 5 s), which would start it seconds late."""
    a, b = nodes
    assert len(_blockers(a)) == 1
    token = a.token("dee")
    for _ in range(3):  # at any moment in B's idle rounds
        status, job = call(a, "POST", "/api/jobs", token, {
            "type": "demo.sleep", "payload": {"seconds": 0}, "delaySeconds": 1})  # fmt: skip
        assert status == 202, job
        done = wait_for(lambda j=job: (r := job_of(b, token, j["jobId"]))["status"] in
                        ("completed", "failed") and r, 30, "the delayed job")  # fmt: skip
        assert done["status"] == "completed", done
        late = _seconds(done["startedAt"]) - _seconds(done["runAt"])
        assert 0 <= late < 1.0, (late, done)


def _seconds(wire_time: str) -> float:
    return datetime.fromisoformat(wire_time.replace("Z", "+00:00")).timestamp()
