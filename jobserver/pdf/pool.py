"""ParsePool: long-lived parser processes; a parse borrows one, plus any that are idle.

A document is read by one process, or shared page by page (every m-th page each) among the
processes that are idle when it starts, so a lone upload uses every core while a busy server
gives each document one. Page texts come back here as they are read (progress, and the text
for a generator that needs it); the helpers' pages are forwarded to the first process, which
writes the notes as soon as it has them all.

The event loop only reads frames from the processes' pipes, so it never waits on parsing. A
parse that runs past its wall-clock limit, is cancelled, or takes a process down (memory cap,
crash) costs only the processes it used: they are killed and fresh ones take their place.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from ..errors import PARSE_CRASHED, PARSE_MEMORY, PARSE_TIMEOUT, JobError
from .child import HEADER, frame
from .extract import Document, Limits, PageText, Share, assemble, page_from_wire, too_much_text
from .notes import NotesContent, Section

log = logging.getLogger(__name__)

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 2.0
PACKAGE_ROOT = Path(__file__).resolve().parents[2]

Message = dict[str, Any]


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
        include_text: keep the extracted text in the result (for a generator that needs it).
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
    on_message: Callable[[Message], None]
    future: asyncio.Future[Message]


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

    async def _frame(self) -> Message | None:
        assert self.proc.stdout is not None
        try:
            (size,) = HEADER.unpack(await self.proc.stdout.readexactly(HEADER.size))
            data: Message = orjson.loads(await self.proc.stdout.readexactly(size))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        return data

    async def _read(self) -> None:
        while (message := await self._frame()) is not None:
            if message.get("type") == "ready":
                if not self.ready.done():
                    self.ready.set_result(None)
                continue
            call = self.call
            if call is None or message.get("id") != call.id or call.future.done():
                continue
            if message.get("type") in ("result", "error"):
                call.future.set_result(message)
            else:
                call.on_message(message)  # a page read, or the notes being written
        self.healthy = False
        failure = _ended(await self.proc.wait())
        if not self.ready.done():
            self.ready.set_exception(failure)
            self.ready.exception()  # marks it seen: a process may die before anyone waits
        if self.call is not None and not self.call.future.done():
            self.call.future.set_exception(failure)

    def send(self, message: Message) -> None:
        """Write a frame without waiting (pages forwarded to a parse in progress)."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.write(frame(message))

    async def request(self, message: Message, on_message: Callable[[Message], None]) -> Message:
        """Send one request; its answer, or JobError (the child's, or PARSE_CRASHED)."""
        async with asyncio.timeout(STARTUP_TIMEOUT):
            await asyncio.shield(self.ready)
        assert self.proc.stdin is not None
        call = _Call(int(message["id"]), on_message, asyncio.get_running_loop().create_future())
        self.call = call
        try:
            self.proc.stdin.write(frame(message))
            await self.proc.stdin.drain()
        except ConnectionError:
            self.healthy = False  # the reader reports how it ended
        try:
            answer = await call.future
        except BaseException:
            self.healthy = False  # cancelled or crashed mid-request: its state is unknown
            raise
        finally:
            self.call = None
        if answer["type"] == "error":
            if answer.get("exiting"):
                self.healthy = False  # it exits after a MemoryError
            raise JobError(str(answer["code"]), str(answer["message"]),
                           recoverable=bool(answer["recoverable"]))  # fmt: skip
        return answer

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


def _ended(code: int) -> JobError:
    """Why a parser process ended: PDFium aborts (SIGABRT) when an allocation fails under the
    process's memory cap; any other end mid-parse is a crash."""
    if code == -signal.SIGABRT:
        return JobError(
            PARSE_MEMORY,
            "Parsing the PDF needed more memory than a parser may use "
            "(the PDF engine ran out of memory and stopped)",
            recoverable=False,
        )
    return JobError(
        PARSE_CRASHED, f"The parser process ended unexpectedly (exit status {code})",
        recoverable=True,
    )  # fmt: skip


class _Pages:
    """Collects one document's page texts from every process reading it."""

    def __init__(self, limits: Limits, listener: ParseListener) -> None:
        self.limits = limits
        self.listener = listener
        self.texts: dict[int, PageText] = {}
        self.chars = 0
        self.over: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_message(self, message: Message) -> None:
        if message.get("type") == "generating":
            self.listener.generating()
            return
        page = page_from_wire(message)
        self.texts[page.page] = page
        self.chars += len(page.text)
        if self.chars > self.limits.max_text_chars and not self.over.done():
            self.over.set_exception(too_much_text(self.limits, page.page, page.pages))
            self.over.exception()  # raised by the parse, which may already be ending
        self.listener.page(len(self.texts), page.pages)


class ParsePool:
    """A fixed number of parser processes.

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
        self.shared = 0  # parses read by more than one process
        self._idle: asyncio.Queue[_Process] = asyncio.Queue()
        self._all: set[_Process] = set()
        self._ids = itertools.count(1)
        self._closed = False

    async def start(self) -> None:
        """Start the processes; they warm up in parallel while the server starts serving."""
        for _ in range(self.size):
            self._idle.put_nowait(await self._spawn())

    def closing(self) -> None:
        """From now on a process given back is not replaced (the server is stopping)."""
        self._closed = True

    async def stop(self) -> None:
        self._closed = True
        await asyncio.gather(*(p.close() for p in list(self._all)), return_exceptions=True)
        self._all.clear()

    @property
    def pids(self) -> list[int]:
        return sorted(p.pid for p in self._all)

    @property
    def idle(self) -> int:
        """Processes waiting for work."""
        return self._idle.qsize()

    @property
    def ready(self) -> int:
        """Processes that have started and warmed up."""
        return sum(
            1 for p in self._all
            if p.ready.done() and not p.ready.cancelled() and p.ready.exception() is None
        )  # fmt: skip

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
        """Parse one PDF into notes; JobError with the failure's code otherwise."""
        first = await self._idle.get()
        try:
            # Startup is not parse time: a fresh process may still be importing the engine.
            async with asyncio.timeout(STARTUP_TIMEOUT):
                await asyncio.shield(first.ready)
        except BaseException:
            await asyncio.shield(self._give_back(first))
            raise
        helpers = self._idle_helpers()
        self.parses += 1
        self.shared += bool(helpers)
        pages = _Pages(request.limits, listener)
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self._read(first, helpers, request, pages)
        except TimeoutError:
            raise JobError(
                PARSE_TIMEOUT,
                f"Reading the PDF took longer than {self.timeout:g} s, so it was stopped",
                recoverable=True,
            ) from None
        finally:
            # Shielded: a cancelled job must still hand a working process back to the pool.
            await asyncio.shield(self._give_back(first))
        notes = NotesContent.from_wire(answer["notes"])
        if not request.include_text:
            return ParseResult(notes, None)
        outline = tuple(Section(str(t), p, int(lv)) for lv, t, p in answer["outline"])
        share = Share(int(answer["pages"]), answer["metaTitle"], outline)
        return ParseResult(notes, assemble(share, pages.texts))

    def _idle_helpers(self) -> list[_Process]:
        """The idle processes that are ready now (none of them is waited for)."""
        ready, waiting = [], []
        while not self._idle.empty():
            process = self._idle.get_nowait()
            usable = process.ready.done() and not process.ready.cancelled()
            if usable and process.ready.exception() is None:
                ready.append(process)
            else:
                waiting.append(process)
        for process in waiting:
            self._idle.put_nowait(process)
        return ready

    async def _read(
        self, first: _Process, helpers: list[_Process], request: ParseRequest, pages: _Pages
    ) -> Message:
        """The first process reads every m-th page and writes the notes; helpers the rest.

        The helpers' pages are forwarded to the first process as they arrive; a helper that
        fails makes it stop waiting (``abort``). Returns the first process's answer.
        """
        stride = 1 + len(helpers)
        first_id = next(self._ids)

        def ask(call_id: int, offset: int, notes: bool) -> Message:
            return {"id": call_id, "op": "extract", "path": str(request.path),
                    "stride": stride, "offset": offset, "notes": notes,
                    "maxPages": request.limits.max_pages,
                    "maxTextChars": request.limits.max_text_chars}  # fmt: skip

        def forward(message: Message) -> None:
            pages.on_message(message)
            if message.get("type") == "page" and first.call is not None:
                first.send({**message, "id": first_id})

        async def helper(process: _Process, offset: int) -> None:
            try:
                await process.request(ask(next(self._ids), offset, False), forward)
            except BaseException:
                if first.call is not None:
                    first.send({"id": first_id, "type": "abort"})
                raise
            finally:
                await asyncio.shield(self._give_back(process))  # free as soon as it is done

        # The first request goes out first: its call is set before any helper page can arrive.
        main = asyncio.ensure_future(first.request(ask(first_id, 0, True), pages.on_message))
        helping = [asyncio.ensure_future(helper(p, n)) for n, p in enumerate(helpers, 1)]
        everything = asyncio.gather(main, *helping, return_exceptions=True)
        try:
            waits: list[asyncio.Future[Any]] = [everything, pages.over]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if pages.over.done():
                pages.over.result()  # raises TEXT_TOO_LARGE
            answer, *rest = everything.result()
        finally:
            if not everything.done():  # cancelled, timed out or over the text limit
                first.healthy = False  # still parsing: killed, not lent again
                everything.cancel()
                everything.add_done_callback(_consume)
        for failure in (*rest, answer):  # a helper's failure explains the first's "abort"
            if isinstance(failure, BaseException):
                raise failure
        if not isinstance(answer, dict):
            raise JobError(PARSE_CRASHED, "The parser gave no answer", recoverable=True)
        return answer


def _consume(future: asyncio.Future[Any]) -> None:
    """Read a future's outcome that nobody awaits any more, so it is not logged as lost."""
    if not future.cancelled():
        future.exception()


