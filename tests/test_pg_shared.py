"""Any node serves any client (issue 17): two real server processes, each with its own data dir,
on one PostgreSQL schema. Tokens and sessions, uploads, notes and quotas are the database's,
not a node's."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import PG_URL
from tests.liveserver import LiveServer

pytestmark = pytest.mark.timeout(120)


def call(server: LiveServer, method: str, path: str, token: str | None = None,
         body: Any = None, data: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:  # fmt: skip
    head = dict(headers or {})
    if token is not None:
        head["Authorization"] = f"Bearer {token}"
    if body is not None:
        data = json.dumps(body).encode()
        head["Content-Type"] = "application/json"
    request = urllib.request.Request(server.url + path, data=data, headers=head, method=method)
    try:
        with urllib.request.urlopen(request, timeout=20) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def upload(server: LiveServer, token: str, pdf: bytes, name: str = "doc.pdf") -> tuple[int, Any]:
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
        "Content-Type: application/pdf\r\n\r\n"
    ).encode() + pdf + f"\r\n--{boundary}--\r\n".encode()
    return call(server, "POST", "/api/jobs", token, data=body,
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})  # fmt: skip


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def job_of(server: LiveServer, token: str, job_id: str) -> dict[str, Any]:
    status, job = call(server, "GET", f"/api/jobs/{job_id}", token)
    assert status == 200, job
    return dict(job)


@pytest.fixture(scope="module")
def schema() -> Iterator[str]:
    name = f"t_pgdata_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def node(root: Path, name: str, schema: str, *args: str) -> LiveServer:
    env = {
        "JOBSERVER_DATABASE_URL": PG_URL,
        "JOBSERVER_DATABASE_SCHEMA": schema,
        "JOBSERVER_SECRET": "",  # the database's, shared by both nodes
        "JOBSERVER_MAX_JOBS_PER_USER": "3",
    }
    return LiveServer(root / name, "--demo-jobs", *args, env=env)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory, schema: str) -> Iterator[tuple[LiveServer,
                                                                                   LiveServer]]:
    """A runs one job at a time; B starts once A's slot is taken by a long sleep, so what is
    submitted on A afterwards runs on B."""
    root = tmp_path_factory.mktemp("pgshared")
    a = node(root, "a", schema, "--concurrency", "1").start()
    b = node(root, "b", schema)
    try:
        token = a.token("blocker")
        status, job = call(a, "POST", "/api/jobs", token,
                           {"type": "demo.sleep", "payload": {"seconds": 60}})  # fmt: skip
        assert status == 202, job
        wait_for(lambda: job_of(a, token, job["jobId"])["status"] == "active", "A busy")
        b.start()
        yield a, b
        call(a, "POST", f"/api/jobs/{job['jobId']}/cancel", token)
    finally:
        b.stop()
        a.stop()


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
    wait_for(refused, "B to refuse the signed-out token", timeout=3)
    assert time.monotonic() - started < 2  # a notification, or at worst the 1 s reload
