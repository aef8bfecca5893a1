"""Several real server processes (nodes) on one PostgreSQL schema, for the multi-node tests.

The database is the shared one at 127.0.0.1:5432 (database ``test``); every test gets a
schema of its own (``JOBSERVER_DATABASE_SCHEMA``) and drops only that one. Each node is
``python server.py`` on a port and data directory of its own, with ``--node-id`` and
``TEST_NODE_NAME`` (read by ``tests.plugins.nodes``).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from .conftest import PG_URL as URL
from .liveserver import LiveServer, call

JOBS = "tests.plugins.nodes"


@contextlib.contextmanager
def new_schema() -> Iterator[str]:
    """A schema name of its own, dropped (with all in it) on the way out."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        with psycopg.connect(URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def schema() -> Iterator[str]:
    """A schema of its own per test, dropped afterwards."""
    with new_schema() as name:
        yield name


def make_node(root: Path, schema: str, name: str, *args: str, url: str = URL,
              env: dict[str, str] | None = None,
              jobs: str | None = JOBS) -> LiveServer:  # fmt: skip
    """A node (not started): its own data dir under ``root``, node id ``<schema>-<name>``;
    ``jobs``: the module of job types it loads (None: only what ``args`` ask for)."""
    node_env = {"JOBSERVER_DATABASE_URL": url, "JOBSERVER_DATABASE_SCHEMA": schema,
                "JOBSERVER_SECRET": "",  # the database's token secret, shared by every node
                "TEST_NODE_NAME": name, **(env or {})}  # fmt: skip
    load = ("--jobs", jobs) if jobs else ()
    return LiveServer(root / name, *load, "--node-id", f"{schema}-{name}", *args,
                      env=node_env)  # fmt: skip


def start_all(nodes: Sequence[LiveServer]) -> None:
    """Start the nodes at once (each start waits for its node to answer)."""
    with ThreadPoolExecutor(len(nodes)) as pool:
        for started in [pool.submit(n.start) for n in nodes]:
            started.result()


def stop_all(nodes: Sequence[LiveServer]) -> None:
    """SIGTERM to every node at once, then wait for each (killed if it takes too long)."""
    running = [n for n in nodes if n.proc is not None and n.proc.poll() is None]
    for n in running:
        assert n.proc is not None
        n.proc.terminate()
    for n in running:
        n.stop()


def submit(node: LiveServer, token: str, payload: dict[str, Any]) -> str:
    status, body = call(node, "POST", "/api/jobs", token, {"type": "nodes.work",
                                                          "payload": payload})  # fmt: skip
    assert status == 202, body
    job_id: str = body["jobId"]
    return job_id


def db(schema: str) -> psycopg.Connection[Any]:
    """A plain connection to the test's schema, as an operator's psql would be."""
    return psycopg.connect(URL, autocommit=True, options=f"-c search_path={schema}")


def statuses(schema: str) -> dict[str, str]:
    with db(schema) as conn:
        return dict(conn.execute("SELECT id, status FROM jobs").fetchall())


def wait_for(check: Any, timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll ``check()`` until it returns something true (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)
