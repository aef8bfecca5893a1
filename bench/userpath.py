"""The user's path: each system run as its users run it, producer and worker in processes apart.

jobserver is ``python server.py --demo-jobs`` (every other setting at its default: durable,
8 jobs at once), enqueued over HTTP by ``user_ours.py produce`` and watched by a WebSocket
subscriber in a third process. Each peer's worker is started by its own command line
(``huey_consumer``, ``saq``, ``arq``, ``procrastinate worker``) and fed by a producer process
through its client API. Every run starts a fresh server or worker on fresh storage; a
warm-up job goes first, then the clock runs from the first enqueue to the last completion.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import (
    PEERS_DIR,
    PEERS_PYTHON,
    ROOT,
    RUN_DIR,
    Marks,
    Process,
    child_env,
    free_port,
    parse_result,
)

USER = "bench"
# The Redis database of the user's path (the in-process scripts use 9): earlier versions of
# these scripts flushed 9 while someone else's bench might be using it.
REDIS_DB = 10
PEERS_BIN = PEERS_DIR / "venv" / "bin"


@dataclass(frozen=True)
class System:
    """One row family of the user's path: a system in one configuration.

    Args:
        label: the row's name; each mode adds its own (``saq gather``).
        script: the producer (and, for peers, worker module) under bench/.
        modes: how its producer enqueues: ``one`` at a time, ``inflight`` (100 at once),
            ``gather`` (every job at once with asyncio.gather), ``batch`` (1,000 per call).
        service: what it needs: ``redis``, ``redis-aof`` (the second Redis this module
            starts), ``postgres`` or nothing.
        baseline: counts for the targets' baseline (False: a reference row only).
        note: its configuration, durability included, as the report states it.
        concurrency: its worker's concurrency (0: the script's default).
    """

    label: str
    script: str
    modes: tuple[str, ...]
    service: str
    baseline: bool
    note: str
    concurrency: int = 0


OURS = System(
    "jobserver",
    "user_ours.py",
    ("one", "inflight", "batch"),
    "",
    False,
    "`python server.py --demo-jobs`, every other setting at its default: SQLite WAL, "
    "synchronous=FULL (a 202 means the job is committed and fsynced), 8 jobs at once, JSON "
    "logs with the access log to a file; producer over HTTP (aiohttp, keep-alive), completion "
    "seen by a WebSocket subscriber in its own process",
)
PEERS = (
    System(
        "huey fsync=off", "user_huey.py", ("one",), "", True,
        "`huey_consumer -w 1 -k thread -d 0.001 -m 0.01 -b 1 -n -C`, SqliteHuey on a file, WAL, "
        "synchronous=OFF: nothing it acknowledges is durable",
    ),
    System(
        "huey default", "user_huey.py", ("one",), "", True,
        "the same consumer, SqliteHuey with SQLite's default synchronous=FULL (durable)",
    ),
    System(
        "saq", "user_saq.py", ("one", "gather"), "redis", True,
        "`saq user_saq.settings`, concurrency 50, Redis at 6379 with no persistence (nothing on "
        "disk); progress by job.update",
    ),
    System(
        "saq aof", "user_saq.py", ("one", "gather"), "redis-aof", False,
        "the same on a Redis with `appendonly yes, appendfsync everysec` (up to 1 s of "
        "acknowledged jobs lost on a crash); a reference",
    ),
    System(
        "arq", "user_arq.py", ("one", "gather"), "redis", True,
        "`arq user_arq.WorkerSettings`, poll_delay 10 ms, max_jobs 50, Redis with no "
        "persistence; progress imitated by a pipelined SET + PUBLISH",
    ),
    System(
        "arq aof", "user_arq.py", ("one", "gather"), "redis-aof", False,
        "the same on the `appendonly yes, appendfsync everysec` Redis; a reference",
    ),
    System(
        "procrastinate", "user_procrastinate.py", ("one", "batch"), "postgres", True,
        "`procrastinate worker --concurrency 10` (LISTEN/NOTIFY), PostgreSQL 127.0.0.1 "
        "(synchronous_commit on: durable); progress imitated by an INSERT",
    ),
)  # fmt: skip


# -- services -------------------------------------------------------------------------------


@contextlib.contextmanager
def redis_aof() -> Iterator[int | None]:
    """A second redis-server on a free 127.0.0.1 port with an append-only file fsynced every
    second, in a directory of its own; stopped and removed on the way out. None without
    redis-server."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="redis-aof-", dir=RUN_DIR))
    port = free_port()
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
           "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
           "--daemonize", "no", "--protected-mode", "yes"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if _redis(port, "ping").strip() == "PONG":
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("the appendonly redis-server did not answer")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)


def _redis(port: int, *args: str) -> str:
    try:
        return subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
            capture_output=True, text=True, timeout=10,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ""


# -- one run --------------------------------------------------------------------------------


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=ROOT,
            env={**child_env(), **env},
        )  # fmt: skip


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _produce(python: Path | str, script: str, args: list[str], env: dict[str, str],
             timeout: float) -> dict[str, Any]:  # fmt: skip
    proc = subprocess.run(
        [str(python), str(ROOT / "bench" / script), *args], capture_output=True, text=True,
        timeout=timeout, cwd=ROOT, env={**child_env(), **env},
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(args)} exited {proc.returncode}:\n"
                           f"{proc.stderr[-3000:]}")  # fmt: skip
    return parse_result(proc.stdout)


def _result(system: str, mode: str, jobs: int, progress: int, produced: dict[str, Any],
            done: float) -> dict[str, Any]:  # fmt: skip
    return {
        "system": system,
        "mode": mode,
        "jobs": jobs,
        "progress": progress,
        "enqueue_s": produced["enqueued"] - produced["t0"],
        "enqueue_per_s": produced["enqueue_per_s"],
        "total_s": done - produced["t0"],
        "jobs_per_s": jobs / (done - produced["t0"]),
    }


def run_peer(system: System, mode: str, progress: int, jobs: int, aof_port: int | None,
             timeout: float = 300.0) -> dict[str, Any]:  # fmt: skip
    """One run of a peer: fresh storage, its worker by its command line, a producer."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="user-peer-", dir=RUN_DIR))
    marks = workdir / "marks"
    marks.touch()
    port = aof_port if system.service == "redis-aof" else 6379
    env = {
        "BENCH_MARKS": str(marks),
        "BENCH_TOTAL": str(jobs + 1),
        "BENCH_REDIS_URL": f"redis://127.0.0.1:{port}/{REDIS_DB}",
        "BENCH_REDIS_PORT": str(port),
        "BENCH_REDIS_DB": str(REDIS_DB),
        "BENCH_HUEY_DB": str(workdir / "huey.db"),
        "BENCH_HUEY_FSYNC": "off" if "fsync=off" in system.label else "default",
        "BENCH_RUN_ID": uuid.uuid4().hex[:12],  # its queue or schema: others run benches too
    }
    if system.concurrency:
        env["BENCH_CONCURRENCY"] = str(system.concurrency)
    module = system.script.removesuffix(".py")
    if module == "user_huey":
        cmd = [str(PEERS_BIN / "huey_consumer"), f"{module}.huey", "-w", "1", "-k", "thread",
               "-d", "0.001", "-m", "0.01", "-b", "1", "-n", "-C", "-q"]  # fmt: skip
    elif module == "user_saq":
        cmd = [str(PEERS_BIN / "saq"), f"{module}.settings", "--quiet"]
    elif module == "user_arq":
        cmd = [str(PEERS_BIN / "arq"), f"{module}.WorkerSettings"]
    elif module == "user_saq_pg":
        _schema(system, "--reset", env)
        cmd = [str(PEERS_BIN / "saq"), f"{module}.settings", "--quiet"]
    elif module == "user_procrastinate":
        _schema(system, "--reset", env)
        cmd = [str(PEERS_BIN / "procrastinate"), f"--app={module}.app", "worker",
               "--concurrency", str(system.concurrency or 10),
               "--delete-jobs", "never"]  # fmt: skip
    else:
        raise ValueError(f"no worker command for {module}")
    worker = _spawn(cmd, env, workdir / "worker.log")
    try:
        args = ["--jobs", str(jobs), "--progress", str(progress), "--mode", mode]
        produced = _produce(PEERS_PYTHON, system.script, args, env, timeout)
        try:
            done = Marks(marks).wait("done", timeout)
        except TimeoutError:
            log = (workdir / "worker.log").read_text()[-1500:]
            seen = Marks(marks).read()
            raise RuntimeError(f"{system.label}: not every job completed ({seen}): {log}") from None
        return _result(system.label, mode, jobs, progress, produced, done)
    finally:
        _stop(worker, signal.SIGINT if module == "user_huey" else signal.SIGTERM)
        if system.service == "postgres":
            _schema(system, "--drop", env, check=False)
        shutil.rmtree(workdir, ignore_errors=True)


def _schema(system: System, action: str, env: dict[str, str], check: bool = True) -> None:
    """A PostgreSQL peer's script makes (``--reset``) or drops (``--drop``) its run's schema."""
    subprocess.run([str(PEERS_PYTHON), str(ROOT / "bench" / system.script), action],
                   check=check, capture_output=True, timeout=120, cwd=ROOT,
                   env={**child_env(), **env})  # fmt: skip


@contextlib.contextmanager
def our_server(workdir: Path, root: Path = ROOT) -> Iterator[tuple[str, str]]:
    """``python server.py --demo-jobs`` on a free port and a fresh data dir: (url, token).

    ``root``: the checkout whose server runs (an A/B's other side), its package first."""
    port = free_port()
    cmd = [sys.executable, str(root / "server.py"), "--demo-jobs", "--port", str(port),
           "--data-dir", str(workdir / "data")]  # fmt: skip
    server = _spawn(cmd, {} if root == ROOT else {"PYTHONPATH": str(root)}, workdir / "server.log")
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"the server did not start: "
                                   f"{(workdir / 'server.log').read_text()[-2000:]}")  # fmt: skip
            time.sleep(0.1)
        req = urllib.request.Request(url + "/api/session", data=b'{"userId": "bench"}',
                                     method="POST")  # fmt: skip
        with urllib.request.urlopen(req, timeout=10) as resp:
            token = str(json.loads(resp.read())["token"])
        yield url, token
    finally:
        _stop(server)


def _watcher(url: str, token: str, marks: Path, total: int, timeout: float) -> Process:
    args = ["watch", "--url", url, "--token", token, "--user", USER, "--marks", str(marks),
            "--total", str(total), "--timeout", str(timeout)]  # fmt: skip
    return Process(sys.executable, "user_ours.py", args)


def run_ours(mode: str, progress: int, jobs: int, timeout: float = 300.0) -> dict[str, Any]:
    """One run of jobserver: a fresh server, a WebSocket watcher, a producer over HTTP."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="user-ours-", dir=RUN_DIR))
    marks = workdir / "marks"
    marks.touch()
    try:
        with our_server(workdir) as (url, token):
            watcher = _watcher(url, token, marks, jobs + 1, timeout)
            try:
                watcher.wait_ready(30)
                args = ["produce", "--url", url, "--token", token, "--marks", str(marks),
                        "--jobs", str(jobs), "--progress", str(progress), "--mode", mode,
                        "--timeout", str(timeout)]  # fmt: skip
                produced = _produce(sys.executable, "user_ours.py", args, {}, timeout)
                done = Marks(marks).wait("done", timeout)
                watched = watcher.result(30)
            finally:
                watcher.stop()
        result = _result("jobserver", mode, jobs, progress, produced, done)
        result["completed_seen"] = watched["completed"]
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_latency(pairs: int, rate: float, paced_seconds: float, events_per_s: float,
                timeout: float = 300.0) -> dict[str, Any]:  # fmt: skip
    """POST /api/jobs against GET /api/jobs/{id}, then POSTs at ``rate``/s, both while other
    jobs report ``events_per_s`` progress events (counted by a WebSocket subscriber)."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="user-lat-", dir=RUN_DIR))
    marks = workdir / "marks"
    marks.touch()
    try:
        with our_server(workdir) as (url, token):
            watcher = _watcher(url, token, marks, 10**9, timeout)
            try:
                watcher.wait_ready(30)
                args = ["latency", "--url", url, "--token", token, "--pairs", str(pairs),
                        "--rate", str(rate), "--paced-seconds", str(paced_seconds),
                        "--events-per-s", str(events_per_s), "--timeout", str(timeout)]  # fmt: skip
                result = _produce(sys.executable, "user_ours.py", args, {}, timeout)
                watched = watcher.result(30)
            finally:
                watcher.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    # Progress events/s over the whole measurement, whole seconds inside it only.
    start, end = result["windows"][0][0], result["windows"][1][1]
    per_second = watched["progress_per_second"]
    inside = [n for sec, n in per_second if start < sec and sec + 1 < end]
    if not inside:  # a window shorter than two seconds: the seconds it touches
        inside = [n for sec, n in per_second if start < sec + 1 and sec < end]
    result["load_events_per_s"] = sum(inside) / len(inside) if inside else float("nan")
    return result
