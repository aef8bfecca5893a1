"""The command-line client: upload PDFs, follow their jobs by long-poll, report the notes.

``python server.py submit FILE.pdf [...]`` signs in (a token, or open sign-in by name), uploads
every file, then long-polls ``/api/events`` for each job from the seq its upload returned, so
no event is missed between the upload and the first poll. It draws one progress bar per file
(rich) or, with ``--json``, prints every event as one JSON line. It exits 0 when every job
completed, 1 when one failed or was cancelled (its error's code and message on stderr), 2 for
a usage or sign-in problem and 3 when the server stayed unreachable.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import aiohttp
import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

TERMINAL = frozenset({"completed", "failed", "cancelled"})
POLL_SECONDS = 30
BACKOFF_BASE = 0.5
BACKOFF_CAP = 10.0
EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class ClientError(Exception):
    """A failure the client reports and exits on.

    Args:
        code: the server's error code (or the client's own, e.g. ``NETWORK``).
        message: what went wrong, for people.
        exit_code: the process's exit status for it.
    """

    def __init__(self, code: str, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.exit_code = exit_code


@dataclass(slots=True)
class Options:
    """What ``submit`` was asked to do.

    Args:
        files: PDFs to upload.
        server: the server's base URL.
        token: a bearer token; when empty, ``user`` signs in by name.
        user: the name to sign in with (open sign-in).
        json_lines: print events as JSON lines instead of drawing progress bars.
        give_up_seconds: how long the server may stay unreachable before the client gives up.
    """

    files: Sequence[Path]
    server: str
    token: str = ""
    user: str = ""
    json_lines: bool = False
    give_up_seconds: float = 300.0


@dataclass(slots=True)
class Tracked:
    """One uploaded file's job as the client follows it."""

    path: Path
    job: dict[str, Any]
    cursor: int
    task: TaskID | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def job_id(self) -> str:
        return str(self.job["jobId"])

    @property
    def status(self) -> str:
        return str(self.job.get("status", ""))


def _error_of(status: int, body: bytes) -> ClientError:
    try:
        data = orjson.loads(body)
        error = data["error"]
        return ClientError(str(error["code"]), str(error["message"]))
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return ClientError(f"HTTP_{status}", body[:200].decode(errors="replace") or str(status))


class Api:
    """The only place this client talks to the server.

    Args:
        session: an aiohttp session.
        server: the server's base URL.
        token: the bearer token to send (set after signing in).
    """

    def __init__(self, session: aiohttp.ClientSession, server: str, token: str = "") -> None:
        self.session = session
        self.server = server.rstrip("/")
        self.token = token

    async def call(
        self, method: str, path: str, *, timeout: float = 30.0, **kw: Any
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            async with self.session.request(
                method, self.server + path, headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout), **kw,
            ) as resp:  # fmt: skip
                body = await resp.read()
                if resp.status >= 400:
                    raise _error_of(resp.status, body)
                data: dict[str, Any] = orjson.loads(body)
                return data
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ClientError(
                "NETWORK", f"cannot reach {self.server}: {exc or type(exc).__name__}",
                EXIT_UNREACHABLE,
            ) from None  # fmt: skip

    async def sign_in(self, user: str) -> str:
        data = await self.call("POST", "/api/session", json={"userId": user})
        return str(data["token"])

    async def upload(self, path: Path) -> dict[str, Any]:
        form = aiohttp.FormData()
        with path.open("rb") as f:
            form.add_field("file", f.read(), filename=path.name, content_type="application/pdf")
        return await self.call("POST", "/api/jobs", data=form, timeout=300.0)

    async def events(self, job_id: str, since: int) -> dict[str, Any]:
        query = f"?jobId={quote(job_id)}&since={since}&timeout={POLL_SECONDS}"
        return await self.call("GET", "/api/events" + query, timeout=POLL_SECONDS + 15.0)

    def notes_url(self, note_id: str) -> str:
        return f"{self.server}/#notes/{quote(note_id)}"

    def markdown_url(self, note_id: str) -> str:
        return f"{self.server}/api/notes/{quote(note_id)}/markdown"


class Display:
    """Progress bars on stderr, or JSON lines on stdout; results and errors either way.

    Args:
        json_lines: print events as JSON lines instead of bars.
        stage_names: display names of stages, from the server's meta.
        out: where events (``--json``) and results go.
        err: where bars and errors go.
    """

    def __init__(
        self, json_lines: bool, stage_names: dict[str, str], out: TextIO, err: TextIO
    ) -> None:
        self.json_lines = json_lines
        self.stage_names = stage_names
        self.out = out
        self.err = err
        self.progress: Progress | None = None
        self._later: list[tuple[TextIO, str]] = []
        if not json_lines:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[stage]}"),
                TimeElapsedColumn(),
                console=Console(file=err),
            )

    def __enter__(self) -> Display:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
        self._flush()

    def add(self, tracked: Tracked) -> None:
        if self.progress is not None:
            tracked.task = self.progress.add_task(
                tracked.path.name, total=100, stage=self._stage(tracked.job)
            )

    def _stage(self, job: dict[str, Any]) -> str:
        stage = str(job.get("stage", ""))
        return self.stage_names.get(stage, stage)

    def update(self, tracked: Tracked, event: dict[str, Any] | None) -> None:
        if event is not None and self.json_lines:
            self.out.write(orjson.dumps(event).decode() + "\n")
            self.out.flush()
        if self.progress is not None and tracked.task is not None:
            job = tracked.job
            done = 100.0 if job.get("status") == "completed" else float(job.get("progress") or 0)
            self.progress.update(tracked.task, completed=done, stage=self._stage(job))

    def result(self, text: str) -> None:
        self._later.append((self.out, text))

    def error(self, text: str) -> None:
        self._later.append((self.err, text))

    def _flush(self) -> None:
        # Printed once the bars are gone, so a terminal never shows them torn.
        for stream, text in self._later:
            stream.write(text + "\n")
            stream.flush()
        self._later.clear()


def _backoff(attempt: int) -> float:
    ceiling: float = min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)
    return ceiling / 2 + random.random() * ceiling / 2


async def _retrying(
    call: Callable[[], Awaitable[dict[str, Any]]], give_up_seconds: float
) -> dict[str, Any]:
    """``call()``, retried with capped backoff while the server is unreachable."""
    first_failure: float | None = None
    attempt = 0
    while True:
        try:
            return await call()
        except ClientError as exc:
            if exc.exit_code != EXIT_UNREACHABLE:
                raise
            now = time.monotonic()
            first_failure = first_failure or now
            if now - first_failure > give_up_seconds:
                raise
            await asyncio.sleep(_backoff(attempt))
            attempt += 1


async def follow(api: Api, tracked: Tracked, display: Display, give_up_seconds: float) -> None:
    """Long-poll one job's events until it is finished; the job dict follows each event."""
    display.update(tracked, None)
    while tracked.status not in TERMINAL:
        reply = await _retrying(partial(api.events, tracked.job_id, tracked.cursor),
                                give_up_seconds)  # fmt: skip
        if reply.get("type") == "resync":
            # Our cursor is gone (pruned, or a new store): the job's state is the truth.
            tracked.job = await _retrying(
                partial(api.call, "GET", f"/api/jobs/{quote(tracked.job_id)}"), give_up_seconds
            )
            tracked.cursor = int(reply.get("cursor") or 0)
            display.update(tracked, None)
            continue
        for event in reply.get("events", []):
            if int(event["seq"]) <= tracked.cursor or event.get("jobId") != tracked.job_id:
                continue
            tracked.cursor = int(event["seq"])
            tracked.job.update(event)
            tracked.events.append(event)
            display.update(tracked, event)
        tracked.cursor = max(tracked.cursor, int(reply.get("cursor") or 0))


def _report(api: Api, tracked: Tracked, display: Display) -> bool:
    job, name = tracked.job, tracked.path.name
    if job.get("status") == "completed":
        result = job.get("result") or {}
        note_id = result.get("noteId")
        cached = " (from cache)" if result.get("cacheHit") else ""
        if note_id:
            display.result(f"{name}: notes ready{cached}: {api.notes_url(str(note_id))}")
            display.result(f"{name}: Markdown: {api.markdown_url(str(note_id))}")
        else:
            display.result(f"{name}: completed{cached}")
        return True
    if job.get("status") == "cancelled":
        display.error(f"{name}: CANCELLED: the job was cancelled")
        return False
    error = job.get("error") or {}
    display.error(
        f"{name}: {error.get('code', 'FAILED')}: {error.get('message', 'the job failed')}"
    )
    return False


async def submit(options: Options, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Upload ``options.files``, follow their jobs to the end; the process's exit status."""
    missing = [str(p) for p in options.files if not p.is_file()]
    if missing:
        print(f"error: no such file: {', '.join(missing)}", file=err)
        return EXIT_USAGE
    if not options.token and not options.user:
        print("error: give --token (JOBSERVER_TOKEN) or --user (JOBSERVER_USER)", file=err)
        return EXIT_USAGE
    async with aiohttp.ClientSession() as session:
        api = Api(session, options.server, options.token)
        try:
            if not api.token:
                api.token = await api.sign_in(options.user)
            meta = await api.call("GET", "/api/meta")
        except ClientError as exc:
            print(f"error: {exc.code}: {exc.message}", file=err)
            return exc.exit_code
        stage_names = {str(k): str(v) for k, v in (meta.get("stageNames") or {}).items()}
        status = EXIT_OK
        with Display(options.json_lines, stage_names, out, err) as display:
            jobs: list[Tracked] = []
            uploads = await asyncio.gather(
                *(api.upload(path) for path in options.files), return_exceptions=True
            )
            for path, outcome in zip(options.files, uploads, strict=True):
                if isinstance(outcome, ClientError):
                    display.error(f"{path.name}: {outcome.code}: {outcome.message}")
                    status = max(status, EXIT_JOB_FAILED)
                    continue
                if isinstance(outcome, BaseException):
                    raise outcome
                # Start just before the job's own first event, so --json shows job.queued too.
                cursor = max(int(outcome.get("lastSeq") or 1) - 1, 0)
                tracked = Tracked(path, outcome, cursor)
                jobs.append(tracked)
                display.add(tracked)
            followed = await asyncio.gather(
                *(follow(api, t, display, options.give_up_seconds) for t in jobs),
                return_exceptions=True,
            )
            for tracked, ended in zip(jobs, followed, strict=True):
                if isinstance(ended, ClientError):
                    display.error(f"{tracked.path.name}: {ended.code}: {ended.message}")
                    status = max(status, ended.exit_code)
                elif isinstance(ended, BaseException):
                    raise ended
                elif not _report(api, tracked, display):
                    status = max(status, EXIT_JOB_FAILED)
        return status
