"""process=True job types in the real server: stages, progress from the worker process, and
the limits (timeout, memory cap, crash, cancel) that stop one process without harming others."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobserver import job_type
from jobserver.client import Client, Job, JobEvent
from jobserver.procs import runner
from tests.liveserver import LiveServer
from tests.test_pdf_process import alive, children

CRUNCH, SHAPES = "tests.plugins.crunch", "tests.plugins.shapes"
WORKERS = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # The PDF plugin stays on: its parser shares these worker processes.
    live = LiveServer(tmp_path_factory.mktemp("procs") / "data", "--jobs", CRUNCH,
                      "--jobs", SHAPES, "--process-workers", str(WORKERS))  # fmt: skip
    yield live.start()
    live.stop()


async def client(server: LiveServer) -> Client:
    return await Client.sign_in(server.url, f"procs-{uuid.uuid4().hex[:8]}")


async def events_of(api: Client, job_id: str) -> list[JobEvent]:
    """Every event of a finished job, from the server's log."""
    out: list[JobEvent] = []
    async with api.follow(job_id=job_id, since=0) as events:
        async for item in events:
            assert isinstance(item, JobEvent)
            out.append(item)
            if item.type in ("job.completed", "job.failed", "job.cancelled"):
                return out
    raise AssertionError("the follow ended early")


def worker_pids(server: LiveServer) -> set[int]:
    """The server's worker processes (its children but the store's writer)."""
    assert server.proc is not None
    found = set()
    for pid in children(server.proc.pid):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"jobserver.procs.child" in cmd:
            found.add(pid)
    return found


async def gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return not alive(pid)


async def full_pool(server: LiveServer) -> set[int]:
    deadline = time.monotonic() + 30
    while len(pids := worker_pids(server)) != WORKERS:
        assert time.monotonic() < deadline, f"worker processes: {pids}"
        await asyncio.sleep(0.05)
    return pids


async def started_pid(api: Client, job_id: str) -> int:
    """The pid a job's handler reported in its first progress (it runs by then)."""
    async with api.follow(job_id=job_id, since=0) as events:
        async for item in events:
            if isinstance(item, JobEvent) and "pid" in (item.metadata or {}):
                return int(item.metadata["pid"])
    raise AssertionError("no pid reported")


async def test_stages_are_served_and_progress_from_the_process_arrives_as_events(
    server: LiveServer,
) -> None:
    async with await client(server) as api:
        meta = await api.meta()
        assert meta.stageNames["counting"] == "Counting primes"
        assert meta.stageNames["summing"] == "Adding them up"
        assert meta.stageNames["measuring"] == "Measuring the shape"  # shapes' stages, merged
        crunch = meta.raw["types"]["crunch.primes"]
        assert crunch["displayName"] == "Count primes"
        assert crunch["stages"] == ["counting", "summing"]

        job = await api.submit("crunch.primes", {"below": 20_000})
        assert job.raw["label"] == "primes below 20000"
        done = await api.wait(job.jobId, timeout=60)
        assert done.status == "completed", done.error
        assert done.result is not None and done.result["count"] == 2262
        assert done.result["pid"] in await full_pool(server)
        assert done.raw["label"] == "2262 primes"  # set from the process
        evs = await events_of(api, job.jobId)
        progress = [e for e in evs if e.type == "job.progress"]
        stages = [e.stage for e in progress]
        assert stages[0] == "initializing" and "counting" in stages and stages[-1] == "summing"
        counted = [e for e in progress if e.stage == "counting"]
        assert counted[-1].message == "1754 primes below 15000"  # the last one, at 3/4
        assert counted[-1].metadata["n"] == 15_000
        percents = [e.progress for e in progress]
        assert percents == sorted(percents)


async def test_a_process_job_that_never_ends_is_killed_at_its_timeout_while_others_run(
    server: LiveServer,
) -> None:
    async with await client(server) as api:
        before = await full_pool(server)
        stuck = await api.submit("crunch.forever")
        pid = await started_pid(api, stuck.jobId)
        assert pid in before
        # Meanwhile the server serves, and other jobs complete: async ones and the other process.
        shapes = [await api.submit("shapes.draw", {"sides": n}) for n in (3, 4, 5)]
        primes = await api.submit("crunch.primes", {"below": 5000})
        for job in [*shapes, primes]:
            done = await api.wait(job.jobId, timeout=60)
            assert done.status == "completed", done.error
        failed = await api.wait(stuck.jobId, timeout=60)
        assert failed.status == "failed" and failed.error is not None
        assert failed.error.code == "JOB_TIMEOUT" and failed.error.recoverable is True
        assert "1.5s" in failed.error.message
        assert await gone(pid), "the process that ran it is still alive"
        after = await full_pool(server)  # replaced
        assert pid not in after and len(after) == WORKERS


async def test_a_process_job_past_its_memory_cap_fails_with_its_code(server: LiveServer) -> None:
    async with await client(server) as api:
        job = await api.submit("crunch.hog")
        pid = await started_pid(api, job.jobId)
        done = await api.wait(job.jobId, timeout=60)
        assert done.status == "failed" and done.error is not None
        assert done.error.code == "JOB_MEMORY" and "256 MB" in done.error.message
        assert done.attempts == 1  # not retried: it would need the same memory again
        assert await gone(pid)
        ok = await api.wait((await api.submit("crunch.primes", {"below": 3000})).jobId, timeout=60)
        assert ok.status == "completed", ok.error


@pytest.mark.parametrize(("how", "ended"), [("exit", "exit status 7"),
                                            ("segfault", "killed by SIGSEGV")])  # fmt: skip
async def test_a_process_that_dies_fails_its_job_with_process_crashed(
    server: LiveServer, how: str, ended: str
) -> None:
    async with await client(server) as api:
        job = await api.submit("crunch.crash", {"how": how})
        done = await api.wait(job.jobId, timeout=60)
        assert done.status == "failed" and done.error is not None
        assert done.error.code == "PROCESS_CRASHED" and ended in done.error.message
        assert done.error.recoverable is True
        await full_pool(server)
        ok = await api.wait((await api.submit("crunch.primes", {"below": 3000})).jobId, timeout=60)
        assert ok.status == "completed", ok.error


async def test_cancelling_stops_the_work_in_its_process(
    server: LiveServer, tmp_path: Path
) -> None:
    async with await client(server) as api:
        # A handler that ignores ctx.cancelled: its process is killed.
        spinning = await api.submit("crunch.spin")
        pid = await started_pid(api, spinning.jobId)
        await api.cancel(spinning.jobId)
        assert (await api.wait(spinning.jobId, timeout=30)).status == "cancelled"
        assert await gone(pid), "the cancelled job's process still runs"
        # One that checks it stops by itself, and its process is kept.
        mark = tmp_path / "stopped"
        patient = await api.submit("crunch.patient", {"mark": str(mark)})
        pid = await started_pid(api, patient.jobId)
        await api.cancel(patient.jobId)
        assert (await api.wait(patient.jobId, timeout=30)).status == "cancelled"
        deadline = time.monotonic() + 10
        while not mark.exists():
            assert time.monotonic() < deadline, "the handler never saw ctx.cancelled"
            await asyncio.sleep(0.05)
        assert mark.read_text() == f"stopped {pid}"
        await asyncio.sleep(0.5)
        assert pid in worker_pids(server)


async def test_an_undeclared_stage_fails_the_job_for_good(server: LiveServer) -> None:
    async with await client(server) as api:
        done: Job = await api.wait((await api.submit("crunch.rogue")).jobId, timeout=60)
        assert done.status == "failed" and done.error is not None
        assert done.error.code == "UNKNOWN_STAGE" and "painting" in done.error.message
        assert done.attempts == 1


def test_a_process_handler_must_be_a_plain_function_importable_by_name() -> None:

    def make() -> Any:
        @job_type("inner.job", process=True, timeout=5)
        def inner(ctx: Any) -> dict[str, Any]:
            return {}

        return inner

    with pytest.raises(ValueError, match="module-level"):
        runner.check(make())

    @job_type("async.job", process=True, timeout=5)
    async def coroutine(ctx: Any) -> dict[str, Any]:
        return {}

    with pytest.raises(ValueError, match="plain def"):
        runner.check(coroutine)
