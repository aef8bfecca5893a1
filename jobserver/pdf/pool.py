"""ParsePool: long-lived parser processes, one PDF each at a time, killed and replaced on a limit.

The event loop only reads small frames from the processes' pipes, so it never waits on
parsing. A parse that runs past its wall-clock limit, is cancelled, or takes its process down
(memory cap, crash) costs that process only: it is killed and a fresh one takes its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from ..errors import PARSE_CRASHED, PARSE_TIMEOUT, JobError
from ..notes import NotesContent
from .child import HEADER, frame
from .extract import Document, Limits

log = logging.getLogger(__name__)

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 2.0
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def default_size() -> int:
    """One parser per CPU core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class ParseListener(Protocol):
    """Told how a parse goes, on the event loop; must not block."""

    def page(self, page: int, pages: int) -> None: ...

    def generating(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ParseRequest:
    """One PDF to turn into notes.

    Args:
        path: the stored upload.
        limits: pages and text the parse may produce.
        include_text: send the extracted text back too (for a generator that needs it).
    """

    path: Path
    limits: Limits
    include_text: bool = False


@dataclass(frozen=True, slots=True)
class ParseResult:
    notes: NotesContent
    document: Document | None


@dataclass(slots=True)
class _Call:
    id: int
    listener: ParseListener
    future: asyncio.Future[dict[str, Any]]


class _Process:
    """One parser process and the task that reads its frames."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.call: _Call | None = None
        self.healthy = True
        self.reader = asyncio.create_task(self._read(), name=f"parser-{proc.pid}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def _frames(self) -> dict[str, Any] | None:
        assert self.proc.stdout is not None
        try:
            (size,) = HEADER.unpack(await self.proc.stdout.readexactly(HEADER.size))
            data: dict[str, Any] = orjson.loads(await self.proc.stdout.readexactly(size))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        return data

    async def _read(self) -> None:
        while (message := await self._frames()) is not None:
            kind = message.get("type")
            if kind == "ready":
                if not self.ready.done():
                    self.ready.set_result(None)
                continue
            call = self.call
            if call is None or message.get("id") != call.id or call.future.done():
                continue
            if kind == "page":
                call.listener.page(int(message["page"]), int(message["pages"]))
            elif kind == "generating":
                call.listener.generating()
            else:
                call.future.set_result(message)
        self.healthy = False
        code = await self.proc.wait()
        failure = JobError(
            PARSE_CRASHED,
            f"The parser process ended unexpectedly (exit status {code})",
            recoverable=True,
        )
        if not self.ready.done():
            self.ready.set_exception(failure)
            self.ready.exception()  # marks it seen: a process may die before anyone waits
        if self.call is not None and not self.call.future.done():
            self.call.future.set_exception(failure)

    async def request(self, call: _Call, message: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.call = call
        try:
            self.proc.stdin.write(frame(message))
            await self.proc.stdin.drain()
        except ConnectionError:
            self.healthy = False  # the reader reports how it ended
        try:
            return await call.future
        finally:
            self.call = None

    async def kill(self) -> None:
        self.healthy = False
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await asyncio.gather(self.reader, return_exceptions=True)
        if not self.ready.done():
            self.ready.cancel()

    async def close(self) -> None:
        """Ask the process to exit (end of input); kill it if it does not."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await asyncio.shield(self.reader)
        except TimeoutError:
            await self.kill()
        if not self.ready.done():
            self.ready.cancel()


class ParsePool:
    """A fixed number of parser processes; each parse borrows one.

    Args:
        size: processes to keep (0: one per core).
        memory_mb: address-space cap of each process.
        timeout: wall-clock seconds one parse may take.
    """

    def __init__(self, size: int, memory_mb: int, timeout: float) -> None:
        self.size = size or default_size()
        self.memory_mb = memory_mb
        self.timeout = timeout
        self.replaced = 0
        self.parses = 0
        self._idle: asyncio.Queue[_Process] = asyncio.Queue()
        self._all: set[_Process] = set()
        self._ids = itertools.count(1)
        self._closed = False

    async def start(self) -> None:
        """Start the processes; they warm up in parallel while the server starts serving."""
        for _ in range(self.size):
            self._idle.put_nowait(await self._spawn())

    async def stop(self) -> None:
        self._closed = True
        await asyncio.gather(*(p.close() for p in list(self._all)), return_exceptions=True)
        self._all.clear()

    @property
    def pids(self) -> list[int]:
        return sorted(p.pid for p in self._all)

    async def _spawn(self) -> _Process:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "jobserver.pdf.child", str(self.memory_mb),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        process = _Process(proc)
        self._all.add(process)
        return process

    async def _give_back(self, process: _Process) -> None:
        if process.healthy and not self._closed:
            self._idle.put_nowait(process)
            return
        await process.kill()
        self._all.discard(process)
        if not self._closed:
            self.replaced += 1
            log.info("parser process %d replaced", process.pid)
            self._idle.put_nowait(await self._spawn())

    async def parse(self, request: ParseRequest, listener: ParseListener) -> ParseResult:
        """Parse one PDF in a borrowed process; JobError with the failure's code otherwise."""
        process = await self._idle.get()
        self.parses += 1
        try:
            answer = await self._run(process, request, listener)
            if answer.get("exiting"):
                process.healthy = False  # it exits after a MemoryError; do not lend it again
        except BaseException:
            process.healthy = False  # cancelled, timed out or crashed mid-parse: start afresh
            raise
        finally:
            # Shielded: a cancelled job must still hand a working process back to the pool.
            await asyncio.shield(self._give_back(process))
        if answer["type"] == "error":
            raise JobError(str(answer["code"]), str(answer["message"]),
                           recoverable=bool(answer["recoverable"]))  # fmt: skip
        document = answer.get("document")
        return ParseResult(
            NotesContent.from_wire(answer["notes"]),
            None if document is None else Document.from_wire(document),
        )

    async def _run(
        self, process: _Process, request: ParseRequest, listener: ParseListener
    ) -> dict[str, Any]:
        async with asyncio.timeout(STARTUP_TIMEOUT):
            await asyncio.shield(process.ready)
        call = _Call(next(self._ids), listener, asyncio.get_running_loop().create_future())
        message = {
            "id": call.id,
            "path": str(request.path),
            "maxPages": request.limits.max_pages,
            "maxTextChars": request.limits.max_text_chars,
            "includeText": request.include_text,
        }
        try:
            async with asyncio.timeout(self.timeout):
                return await process.request(call, message)
        except TimeoutError:
            raise JobError(
                PARSE_TIMEOUT,
                f"Reading the PDF took longer than {self.timeout:g} s, so it was stopped",
                recoverable=True,
            ) from None
