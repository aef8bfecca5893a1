"""The command-line client: upload PDFs, follow their jobs by long-poll, report the notes.

``python server.py submit FILE.pdf [...]`` signs in (a token, or open sign-in by name), uploads
every file, then long-polls ``/api/events`` for each job from the seq its upload returned, so
no event is missed between the upload and the first poll. It draws one progress bar per file
(rich) or, with ``--json``, prints every event as one JSON line. It exits 0 when every job
completed, 1 when one failed or was cancelled (its error's code and message on stderr), 2 for
a usage or sign-in problem and 3 when the server stayed unreachable. It talks to the server
only through ``jobserver.client``.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO, TypeVar
from urllib.parse import quote

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

from .client import Client, Job, JobEvent, JobServerClientError, NetworkError, Resync

POLL_SECONDS = 30
BACKOFF_BASE = 0.5
BACKOFF_CAP = 10.0
EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3

_T = TypeVar("_T")


def exit_code_of(exc: JobServerClientError) -> int:
    """The process's exit status for a failure: 3 when the server stayed unreachable."""
    return EXIT_UNREACHABLE if isinstance(exc, NetworkError) else EXIT_USAGE


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
    job: Job
    cursor: int
    task: TaskID | None = None
    events: list[JobEvent] = field(default_factory=list)

    @property
    def job_id(self) -> str:
        return self.job.jobId


def notes_url(server: str, note_id: str) -> str:
    return f"{server}/#notes/{quote(note_id)}"


def markdown_url(server: str, note_id: str) -> str:
    return f"{server}/api/notes/{quote(note_id)}/markdown"


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

    def _stage(self, job: Job) -> str:
        return self.stage_names.get(job.stage, job.stage)

    def update(self, tracked: Tracked, event: JobEvent | None) -> None:
        if event is not None and self.json_lines:
            self.out.write(orjson.dumps(event.raw).decode() + "\n")
            self.out.flush()
        if self.progress is not None and tracked.task is not None:
            job = tracked.job
            done = 100.0 if job.status == "completed" else float(job.progress or 0)
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


async def _retrying(call: Callable[[], Awaitable[_T]], give_up_seconds: float) -> _T:
    """``call()``, retried with capped backoff while the server is unreachable."""
    first_failure: float | None = None
    attempt = 0
    while True:
        try:
            return await call()
        except NetworkError:
            now = time.monotonic()
            first_failure = first_failure or now
            if now - first_failure > give_up_seconds:
                raise
            await asyncio.sleep(_backoff(attempt))
            attempt += 1


async def follow(
    client: Client, tracked: Tracked, display: Display, give_up_seconds: float
) -> None:
    """Long-poll one job's events until it is finished; the job follows each event."""
    display.update(tracked, None)
    if tracked.job.finished:
        return
    async with client.follow(
        job_id=tracked.job_id, since=tracked.cursor, transports=("polling",),
        poll_timeout=POLL_SECONDS, backoff_base=BACKOFF_BASE, backoff_cap=BACKOFF_CAP,
        give_up_after=give_up_seconds,
    ) as events:  # fmt: skip
        async for item in events:
            if isinstance(item, Resync):
                # Our cursor is gone (pruned, or a new store): the job's state is the truth.
                tracked.job = await _retrying(lambda: client.get(tracked.job_id), give_up_seconds)
                display.update(tracked, None)
            else:
                tracked.job = tracked.job.with_event(item)
                tracked.events.append(item)
                display.update(tracked, item)
            tracked.cursor = events.cursor or tracked.cursor
            if tracked.job.finished:
                return


def _report(server: str, tracked: Tracked, display: Display) -> bool:
    job, name = tracked.job, tracked.path.name
    if job.status == "completed":
        result = job.result or {}
        note_id = result.get("noteId")
        cached = " (from cache)" if result.get("cacheHit") else ""
        if note_id:
            display.result(f"{name}: notes ready{cached}: {notes_url(server, str(note_id))}")
            display.result(f"{name}: Markdown: {markdown_url(server, str(note_id))}")
        else:
            display.result(f"{name}: completed{cached}")
        return True
    if job.status == "cancelled":
        display.error(f"{name}: CANCELLED: the job was cancelled")
        return False
    code = job.error.code if job.error else "FAILED"
    message = job.error.message if job.error else "the job failed"
    display.error(f"{name}: {code}: {message}")
    return False


async def _signed_in(options: Options) -> Client:
    if options.token:
        return Client(options.server, token=options.token)
    return await Client.sign_in(options.server, options.user)


async def submit(options: Options, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Upload ``options.files``, follow their jobs to the end; the process's exit status."""
    missing = [str(p) for p in options.files if not p.is_file()]
    if missing:
        print(f"error: no such file: {', '.join(missing)}", file=err)
        return EXIT_USAGE
    if not options.token and not options.user:
        print("error: give --token (JOBSERVER_TOKEN) or --user (JOBSERVER_USER)", file=err)
        return EXIT_USAGE
    try:
        client = await _signed_in(options)
    except JobServerClientError as exc:
        print(f"error: {exc.code}: {exc.message}", file=err)
        return exit_code_of(exc)
    async with client:
        try:
            meta = await client.meta()
        except JobServerClientError as exc:
            print(f"error: {exc.code}: {exc.message}", file=err)
            return exit_code_of(exc)
        stage_names = {str(k): str(v) for k, v in meta.stageNames.items()}
        status = EXIT_OK
        with Display(options.json_lines, stage_names, out, err) as display:
            jobs: list[Tracked] = []
            uploads = await asyncio.gather(
                *(client.upload(path) for path in options.files), return_exceptions=True
            )
            for path, outcome in zip(options.files, uploads, strict=True):
                if isinstance(outcome, JobServerClientError):
                    display.error(f"{path.name}: {outcome.code}: {outcome.message}")
                    status = max(status, EXIT_JOB_FAILED)
                    continue
                if isinstance(outcome, BaseException):
                    raise outcome
                # Start just before the job's own first event, so --json shows job.queued too.
                cursor = max((outcome.lastSeq or 1) - 1, 0)
                tracked = Tracked(path, outcome, cursor)
                jobs.append(tracked)
                display.add(tracked)
            followed = await asyncio.gather(
                *(follow(client, t, display, options.give_up_seconds) for t in jobs),
                return_exceptions=True,
            )
            for tracked, ended in zip(jobs, followed, strict=True):
                if isinstance(ended, JobServerClientError):
                    display.error(f"{tracked.path.name}: {ended.code}: {ended.message}")
                    status = max(status, exit_code_of(ended))
                elif isinstance(ended, BaseException):
                    raise ended
                elif not _report(client.base_url, tracked, display):
                    status = max(status, EXIT_JOB_FAILED)
        return status
