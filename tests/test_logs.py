"""Logs: JSON lines with job fields, a text format by flag, and no token or secret ever printed."""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from jobserver.logs import REDACTED, JsonFormatter, Redactor, TextFormatter, configure

ROOT = Path(__file__).resolve().parent.parent
SECRET = "log-test-secret-0123456789abcdef0123456789"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVlLTEyMzQ1"


def record(msg: str, *args: Any, **extra: Any) -> logging.LogRecord:
    rec = logging.LogRecord("jobserver.test", logging.INFO, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_redactor_blanks_tokens_pairs_and_known_secrets() -> None:
    redact = Redactor([SECRET, "short"])
    cases = {
        f"token {JWT} seen": f"token {REDACTED} seen",
        "Authorization: Bearer abc.def-ghi": f"Authorization: {REDACTED} {REDACTED}",
        "GET /ws?token=abcdef&x=1": f"GET /ws?token={REDACTED}&x=1",
        '{"token": "opaque-value"}': f'{{"token": "{REDACTED}"}}',
        f"the key is {SECRET}!": f"the key is {REDACTED}!",
        "api_key=sk-123 password: hunter2": f"api_key={REDACTED} password: {REDACTED}",
        "a short word and an idempotencyKey=k1 stay": "a short word and an idempotencyKey=k1 stay",
    }
    for raw, want in cases.items():
        assert redact(raw) == want, raw


def test_a_secret_value_with_no_token_word_near_it_is_still_blanked() -> None:
    # The redactor first looks for anything it could blank out and keeps other lines as they
    # are: the configured secret values must be among what it looks for.
    redact = Redactor(["zq9-plain-value-77"])
    assert redact("upstream said zq9-plain-value-77 twice") == f"upstream said {REDACTED} twice"
    assert redact("nothing to hide here") == "nothing to hide here"


def test_json_formatter_writes_one_object_per_line_with_extras() -> None:
    fmt = JsonFormatter(Redactor([SECRET]))
    rec = record("job %s: %s", "completed", f"used {JWT}", jobId="j1", userId="alice",
                 stage="completed", progress=100.0, processingTimeMs=12.5, missing=None)
    line = fmt.format(rec)
    assert "\n" not in line
    data = orjson.loads(line)
    assert data["level"] == "INFO" and data["logger"] == "jobserver.test"
    assert data["message"] == f"job completed: used {REDACTED}"
    assert data["time"].endswith("Z")
    assert {k: data[k] for k in ("jobId", "userId", "stage", "progress", "processingTimeMs")} == {
        "jobId": "j1", "userId": "alice", "stage": "completed", "progress": 100.0,
        "processingTimeMs": 12.5}
    assert "missing" not in data
    try:
        raise RuntimeError(f"boom with {SECRET}")
    except RuntimeError:
        rec = record("failed")
        rec.exc_info = sys.exc_info()
    data = orjson.loads(fmt.format(rec))
    assert "RuntimeError" in data["exception"] and SECRET not in data["exception"]


def test_text_formatter_is_for_people() -> None:
    line = TextFormatter(Redactor()).format(record("job done", jobId="j1", progress=100.0))
    assert " INFO jobserver.test job done jobId=j1 progress=100.0" in line


def test_configure_replaces_handlers_and_sets_the_level() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    try:
        configure("json", "warning", [SECRET], stream)
        logging.getLogger("jobserver.x").info("hidden")
        logging.getLogger("jobserver.x").warning("shown %s", SECRET)
        lines = stream.getvalue().splitlines()
        assert len(lines) == 1 and orjson.loads(lines[0])["message"] == f"shown {REDACTED}"
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        logging.captureWarnings(False)


# -- the real server, as started from the command line ------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


Server = Callable[..., Any]
READERS: dict[int, asyncio.Task[None]] = {}  # by server pid: the task reading its stderr


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    """Start ``python server.py`` with flags; yields (base url, stderr lines so far)."""
    procs: list[asyncio.subprocess.Process] = []

    async def start(*flags: str) -> tuple[str, asyncio.subprocess.Process, list[str]]:
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "server.py"), "--port", str(port), "--demo-jobs",
            "--data-dir", str(tmp_path / f"data{port}"), *flags,
            cwd=ROOT, env={"JOBSERVER_SECRET": SECRET, "PATH": "/usr/bin:/bin"},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        procs.append(proc)
        assert proc.stdout is not None and proc.stderr is not None
        lines: list[str] = []

        async def collect(stream: asyncio.StreamReader) -> None:
            async for raw in stream:
                lines.append(raw.decode())

        READERS[proc.pid] = asyncio.get_running_loop().create_task(collect(proc.stderr))
        async with asyncio.timeout(30):
            while b"listening on" not in (line := await proc.stdout.readline()):
                if not line:
                    await proc.wait()
                    raise AssertionError("the server exited:\n" + "".join(lines))
        return f"http://127.0.0.1:{port}", proc, lines

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        reader = READERS.pop(proc.pid, None)
        if reader is not None:
            await asyncio.wait_for(reader, 10)


async def stop(proc: asyncio.subprocess.Process) -> None:
    proc.terminate()
    async with asyncio.timeout(30):
        await proc.wait()
        await READERS.pop(proc.pid)  # every line, up to the end of the stream


async def use_the_api(url: str) -> str:
    """Sign in, run a job with the token (header, cookie and query string); return the token."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{url}/api/session", json={"userId": "alice"}) as resp:
            token: str = (await resp.json())["token"]
        auth = {"Authorization": f"Bearer {token}"}
        body = {"type": "demo.sleep", "payload": {"seconds": 0.05, "steps": 2}}
        async with http.post(f"{url}/api/jobs", json=body, headers=auth) as resp:
            job_id = (await resp.json())["jobId"]
        async with http.get(f"{url}/api/jobs?token={token}", headers=auth) as resp:
            assert resp.status == 200
        async with http.get(f"{url}/api/jobs/nope", headers={"Authorization": "Bearer bad"}):
            pass
        async with http.ws_connect(f"{url}/ws?token={token}", origin=url) as ws:
            await ws.send_json({"type": "auth", "token": token})
            while (await ws.receive_json(timeout=5))["type"] != "authenticated":
                pass
            await ws.send_json({"type": "subscribe", "userId": "alice", "since": 0})
            while (await ws.receive_json(timeout=5))["type"] != "subscribed":
                pass
        async with asyncio.timeout(10):
            while True:
                async with http.get(f"{url}/api/jobs/{job_id}") as resp:  # the cookie
                    if (await resp.json())["status"] == "completed":
                        break
                await asyncio.sleep(0.05)
    return token


async def test_json_logs_carry_job_fields_and_never_a_token_or_the_secret(
    server: Server,
) -> None:
    url, proc, lines = await server("--log-format", "json", "--debug")
    token = await use_the_api(url)
    await stop(proc)
    text = "".join(lines)
    assert token not in text and token.split(".")[2] not in text and SECRET not in text
    records = [orjson.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "message"} <= r.keys() for r in records)
    jobs = [r for r in records if r.get("jobId")]
    assert {r["event"] for r in jobs} >= {"job.queued", "job.progress", "job.completed"}
    done = next(r for r in jobs if r["event"] == "job.completed")
    assert done["userId"] == "alice" and done["stage"] == "completed"
    assert done["progress"] == 100 and done["processingTimeMs"] > 0
    access = [r for r in records if r["logger"] == "aiohttp.access"]
    assert any(r["path"] == "/api/jobs" and r["userId"] == "alice" for r in access)
    assert any(r["path"] == "/ws" and r["httpStatus"] == 101 for r in access)
    subs = [r for r in records if r["logger"] == "jobserver.subscriptions"]
    assert [(r["message"], r["userId"]) for r in subs] == [
        ("subscribe userId=alice over ws", "alice")]


async def test_text_logs_by_flag_and_only_outcomes_without_debug(server: Server) -> None:
    url, proc, lines = await server("--log-format", "text")
    token = await use_the_api(url)
    await stop(proc)
    text = "".join(lines)
    assert token not in text and SECRET not in text
    assert not any(line.startswith("{") for line in lines)
    assert " INFO jobserver.joblog job completed: Completed " in text
    assert "job.progress" not in text  # progress is logged only with --debug
