"""Shared helpers for the bench scripts: statistics, subprocesses, servers, fds, lag, RSS.

Standard library only: the peers' virtual environment imports this module too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PEERS_DIR = BENCH / ".peers"
PEERS_PYTHON = PEERS_DIR / "venv" / "bin" / "python"
RUN_DIR = PEERS_DIR / "run"  # scratch data on the repository's own disk
RESULT_PREFIX = "BENCH-RESULT "
READY_PREFIX = "BENCH-READY "


# -- statistics -----------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of repeated measurements."""
    clean = [v for v in values if v is not None and not math.isnan(v)]
    if not clean:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "n": 0}
    return {
        "median": statistics.median(clean),
        "min": min(clean),
        "max": max(clean),
        "n": len(clean),
    }


# -- the result protocol: a script prints one JSON line prefixed by RESULT_PREFIX -----------


def emit_result(result: dict[str, Any]) -> None:
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def emit_ready(info: dict[str, Any]) -> None:
    print(READY_PREFIX + json.dumps(info), flush=True)


def parse_result(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            parsed: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return parsed
    raise RuntimeError("no result line in output:\n" + stdout[-2000:])


def run_script(
    python: Path | str, script: str, args: Sequence[str], timeout: float
) -> dict[str, Any]:
    """Run ``bench/<script>`` in its own process and return the result it printed."""
    cmd = [str(python), str(BENCH / script), *args]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=child_env()
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:])} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return parse_result(proc.stdout)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(BENCH), str(ROOT)])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class Process:
    """A long-running bench process (a server or a group of clients) that says when ready.

    Args:
        python: interpreter to run it with.
        script: file under bench/.
        args: its arguments.
    """

    def __init__(self, python: Path | str, script: str, args: Sequence[str]) -> None:
        self.cmd = [str(python), str(BENCH / script), *args]
        self.proc = subprocess.Popen(
            self.cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=child_env(),
        )
        self.ready: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = _readline(self.proc, deadline - time.monotonic())
            if line is None:
                break
            if line.startswith(READY_PREFIX):
                self.ready = json.loads(line[len(READY_PREFIX) :])
                return self.ready
        self.kill()
        raise RuntimeError(f"{self.cmd[1]} not ready in {timeout:.0f}s: {self.stderr_tail()}")

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def result(self, timeout: float) -> dict[str, Any]:
        """Close stdin (the signal to finish) and return the result line."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"{self.cmd[1]} gave no result in {timeout:.0f}s") from None
        if self.proc.returncode != 0:
            raise RuntimeError(f"{self.cmd[1]} exited {self.proc.returncode}: {err[-3000:]}")
        return parse_result(out)

    def stderr_tail(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read()[-3000:]

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def _readline(proc: subprocess.Popen[str], timeout: float) -> str | None:
    """One line of a child's stdout, or None at EOF or after ``timeout`` seconds."""
    import selectors

    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(max(0.0, timeout)):
            return None
    line = proc.stdout.readline()
    return line.rstrip("\n") if line else None


@contextlib.contextmanager
def processes(*procs: Process) -> Iterator[tuple[Process, ...]]:
    """Stop every process on the way out, whatever happened."""
    try:
        yield procs
    finally:
        for p in procs:
            p.stop()


# -- the machine ----------------------------------------------------------------------------


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def await_stdin_eof() -> asyncio.Future[None]:
    """A future done when stdin closes: the orchestrator's signal to finish and report."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        data = os.read(sys.stdin.fileno(), 4096)
        if not data and not done.done():
            loop.remove_reader(sys.stdin.fileno())
            done.set_result(None)

    loop.add_reader(sys.stdin.fileno(), on_readable)
    return done


class LagMonitor:
    """Measures event-loop lag: how late a ``interval`` sleep wakes, sampled until stopped.

    Args:
        interval: seconds between samples.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while len(self.samples) < 1_000_000:
            t0 = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.samples.append(max(0.0, time.perf_counter() - t0 - self.interval))

    async def stop(self) -> dict[str, float]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        ms = [s * 1000 for s in self.samples]
        return {
            "lag_p50_ms": percentile(ms, 50),
            "lag_p99_ms": percentile(ms, 99),
            "lag_max_ms": max(ms) if ms else math.nan,
            "lag_samples": len(ms),
        }


def fake_event(seq: int, index: int, count: int) -> dict[str, Any]:
    """A baseline's event: the same fields and size as our job.progress event, stamped now.

    ``metadata.t`` is the emit time (time.time(), one clock for every process here);
    ``metadata.end`` marks the last event of a stream.
    """
    now = time.time()
    return {
        "seq": seq,
        "type": "job.progress",
        "jobId": "0f3c5a7e9b1d4c2e8a6f0b3d5c7e9a1b",
        "userId": "bench",
        "jobType": "bench.emit",
        "status": "active",
        "stage": "processing",
        "progress": round(100.0 * (index + 1) / count, 3),
        "message": f"Step {index + 1} of {count}",
        "metadata": {"t": now, "i": index, "end": index == count - 1},
        "attempt": 1,
        "maxAttempts": 1,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now)),
    }


async def paced(count: int, interval: float) -> Any:
    """Yield 0..count-1, the i-th no earlier than start + i * interval (as fast as possible
    when interval is 0)."""
    start = time.monotonic()
    for i in range(count):
        if interval > 0:
            delay = start + i * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        yield i


async def serve_until_stopped(runner: Any, port: int) -> None:
    """Listen on 127.0.0.1:``port`` with an aiohttp ``AppRunner``, say ready, run until SIGTERM
    (or an hour at most), then clean up: the tail every bench server shares."""
    from aiohttp import web

    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    emit_ready({"port": port})
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(3600):
            await stop.wait()
    await runner.cleanup()


def throughput(
    system: str, config: str, jobs: int, progress: int, t0: float, t1: float, t2: float
) -> dict[str, Any]:
    """One throughput result: enqueue from ``t0`` to ``t1``, processing until ``t2``."""
    return {
        "system": system,
        "config": config,
        "jobs": jobs,
        "progress": 10 if progress else 0,
        "enqueue_s": t1 - t0,
        "process_s": t2 - t1,
        "total_s": t2 - t0,
        "jobs_per_s": jobs / (t2 - t0),
    }


def job_args(description: str | None) -> argparse.ArgumentParser:
    """The flags every throughput script takes; each adds its own knobs."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--progress", type=int, default=0, choices=(0, 10))
    parser.add_argument("--timeout", type=float, default=120.0)
    return parser


# -- the user's path: a worker in one process tells the orchestrator and producer when the
# warm-up job and the last job are done, through a small file ---------------------------------


class Marks:
    """Completion marks in a file: ``warm`` after the first job, ``done`` after the last.

    The process that sees completions (a peer's worker, our WebSocket subscriber) counts them
    with ``count``; the producer waits for ``warm`` before it starts the clock, the
    orchestrator for ``done``. Times are ``time.time()``, one clock for every process here.

    Args:
        path: the file (made empty by the orchestrator before each run).
        total: jobs to expect, the warm-up job included.
    """

    def __init__(self, path: str | Path, total: int = 0) -> None:
        self.path = Path(path)
        self.total = total
        self.seen = 0

    @classmethod
    def from_env(cls) -> Marks:
        return cls(os.environ["BENCH_MARKS"], int(os.environ.get("BENCH_TOTAL", "0")))

    def count(self, n: int = 1) -> None:
        before, self.seen = self.seen, self.seen + n
        if before < 1 <= self.seen:
            self.mark("warm")
        if before < self.total <= self.seen:
            self.mark("done")

    def mark(self, name: str) -> None:
        with open(self.path, "a") as f:
            f.write(f"{name} {time.time()!r}\n")

    def read(self) -> dict[str, float]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        return {k: float(v) for k, _, v in (x.partition(" ") for x in text.split("\n") if x)}

    def wait(self, name: str, timeout: float) -> float:
        """The time of mark ``name``; TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.read().get(name)
            if got is not None:
                return got
            time.sleep(0.002)
        raise TimeoutError(f"no {name!r} mark in {self.path} after {timeout:.0f}s")

    async def wait_async(self, name: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.read().get(name)
            if got is not None:
                return got
            await asyncio.sleep(0.002)
        raise TimeoutError(f"no {name!r} mark in {self.path} after {timeout:.0f}s")


def run_id() -> str:
    """A name for this run's queues and schemas (``BENCH_RUN_ID`` when the orchestrator set
    one for a worker and its producer): benches of other people on this machine share the
    Redis and PostgreSQL, so nothing is flushed, each run only uses names of its own."""
    return os.environ.get("BENCH_RUN_ID") or uuid.uuid4().hex[:12]


def producer_args(description: str | None) -> argparse.ArgumentParser:
    """The flags every user's-path producer takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--progress", type=int, default=0, choices=(0, 10))
    parser.add_argument("--mode", default="one", help="one, inflight, gather or batch")
    parser.add_argument("--timeout", type=float, default=120.0)
    return parser


def run_producer(
    description: str | None,
    produce: Callable[[int, int, str, float], Awaitable[dict[str, Any]]],
    commands: Mapping[str, Callable[[], Awaitable[None]]] | None = None,
) -> None:
    """A user's-path producer's ``main``: ``--reset``/``--drop`` style commands when given
    one, else ``produce(jobs, progress, mode, timeout)`` with ``producer_args``, its result
    printed for the harness."""
    command = (commands or {}).get(sys.argv[1]) if len(sys.argv) == 2 else None
    if command is not None:
        asyncio.run(command())
        return
    args = producer_args(description).parse_args()
    emit_result(asyncio.run(produce(args.jobs, args.progress, args.mode, args.timeout)))


def produced(jobs: int, mode: str, t0: float, t1: float) -> dict[str, Any]:
    """A producer's result: when it started the clock and when its last enqueue returned."""
    return {"jobs": jobs, "mode": mode, "t0": t0, "enqueued": t1, "enqueue_per_s": jobs / (t1 - t0)}
