"""Issue 17's benchmark: the user's path on PostgreSQL, and cross-node emit-to-receive.

jobserver runs as one or two ``python server.py --demo-jobs`` nodes on one PostgreSQL schema
(every other setting at its default), fed over HTTP one job at a time by ``user_ours.py
produce`` on the first node and watched by a WebSocket subscriber of the last; its peers
are procrastinate (async worker) and SAQ (``PostgresQueue``) on the same PostgreSQL, each
worker started by its own command line in a process of its own (``userpath.run_peer``).
The lag run starts node A alone, gives it one job that reports progress at a fixed rate,
then starts node B and times each event from A's batch to a WebSocket client of B.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
from harness import ROOT, RUN_DIR, Marks, free_port
from userpath import System, _produce, _result, _spawn, _stop, _watcher

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
PEERS = (
    System(
        "procrastinate", "user_procrastinate.py", ("one",), "postgres", True,
        "`procrastinate worker --concurrency 20` (async worker, LISTEN/NOTIFY; connection pool "
        "of 24; of 5, 10 and 20 the fastest here on both cases), `defer_async` one at a time; "
        "progress imitated by a committed INSERT",
        concurrency=20,
    ),
    System(
        "saq", "user_saq_pg.py", ("one",), "postgres", True,
        "`saq user_saq_pg.settings`, PostgresQueue, concurrency 50 (pool of 54; 100 was no "
        "faster here), "
        "`enqueue` one at a time; progress by `job.update` (an UPDATE and a NOTIFY)",
        concurrency=50,
    ),
)  # fmt: skip
NOTE_OURS = (
    "`python server.py --demo-jobs` with `JOBSERVER_DATABASE_URL`, every other setting at its "
    "default (8 jobs at once per node); producer over HTTP to the first node, one POST at a "
    "time; completions seen by a WebSocket subscriber of the last node"
)


def _drop(schema: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(run())


class Nodes:
    """jobserver nodes on one schema of their own, started and stopped one by one."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.schema = f"bench_js_{uuid.uuid4().hex[:12]}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.urls: list[str] = []

    def start(self) -> str:
        n = len(self.procs)
        port = free_port()
        cmd = [sys.executable, str(ROOT / "server.py"), "--demo-jobs", "--port", str(port),
               "--data-dir", str(self.workdir / f"node{n}"),
               "--node-id", f"{self.schema}-{n}"]  # fmt: skip
        env = {"JOBSERVER_DATABASE_URL": PG_URL, "JOBSERVER_DATABASE_SCHEMA": self.schema,
               "JOBSERVER_SECRET": ""}  # fmt: skip
        log = self.workdir / f"server{n}.log"
        proc = _spawn(cmd, env, log)
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(url + "/readyz", timeout=5) as resp,
            ):
                if resp.status == 200:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"node {n} did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        self.urls.append(url)
        return url

    def token(self) -> str:
        req = urllib.request.Request(self.urls[0] + "/api/session", data=b'{"userId": "bench"}',
                                     method="POST")  # fmt: skip
        with urllib.request.urlopen(req, timeout=10) as resp:
            return str(json.loads(resp.read())["token"])

    def stop(self) -> None:
        for proc in self.procs:
            _stop(proc)
        with contextlib.suppress(Exception):
            _drop(self.schema)


@contextlib.contextmanager
def nodes() -> Iterator[Nodes]:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="user-pg-", dir=RUN_DIR))
    group = Nodes(workdir)
    try:
        yield group
    finally:
        group.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def run_ours(count: int, progress: int, jobs: int, timeout: float = 300.0) -> dict[str, Any]:
    """``count`` nodes, a producer on the first, a WebSocket watcher on the last."""
    with nodes() as group:
        for _ in range(count):
            group.start()
        token = group.token()
        marks = group.workdir / "marks"
        marks.touch()
        watcher = _watcher(group.urls[-1], token, marks, jobs + 1, timeout)
        try:
            watcher.wait_ready(30)
            args = ["produce", "--url", group.urls[0], "--token", token, "--marks", str(marks),
                    "--jobs", str(jobs), "--progress", str(progress), "--mode", "one",
                    "--timeout", str(timeout)]  # fmt: skip
            produced = _produce(sys.executable, "user_ours.py", args, {}, timeout)
            done = Marks(marks).wait("done", timeout)
            watched = watcher.result(30)
        finally:
            watcher.stop()
    label = f"jobserver {count} node" + ("s" if count > 1 else "")
    result = _result(label, "one", jobs, progress, produced, done)
    result["completed_seen"] = watched["completed"]
    return result


def run_lag(rate: float, seconds: float, timeout: float = 120.0) -> dict[str, Any]:
    """Node A runs one job reporting ``rate`` progress events/s; a WebSocket client of node B
    times each from A's batch to its arrival, for ``seconds``."""
    with nodes() as group:
        a = group.start()
        token = group.token()
        run_for = seconds + 15  # B's start-up, then the measurement
        payload = {"seconds": run_for, "steps": int(rate * run_for)}
        body = json.dumps({"type": "demo.sleep", "payload": payload})
        req = urllib.request.Request(a + "/api/jobs", data=body.encode(), method="POST",
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=10) as resp:
            job_id = json.loads(resp.read())["jobId"]
        _wait_active(a, token, job_id)  # claimed by A: B is not running yet
        b = group.start()
        args = ["lag", "--url", b, "--token", token, "--seconds", str(seconds)]
        result = _produce(sys.executable, "user_ours.py", args, {}, timeout)
    result["rate_asked"] = rate
    return result


def _wait_active(url: str, token: str, job_id: str) -> None:
    req = urllib.request.Request(f"{url}/api/jobs/{job_id}",
                                 headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with urllib.request.urlopen(req, timeout=10) as resp:
            if json.loads(resp.read())["status"] == "active":
                return
        time.sleep(0.05)
    raise RuntimeError("the lag job did not start on node A")
