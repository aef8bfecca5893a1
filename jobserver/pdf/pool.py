"""ParsePool: a parse borrows one of the server's worker processes, plus any that are idle.

A document is read by one process, or shared page by page (every m-th page each) among the
processes that are idle when it starts, so a lone upload uses every core while a busy server
gives each document one. Page texts come back here as they are read (progress, and the text
for a generator that needs it); the helpers' pages are forwarded to the first process, which
writes the notes as soon as it has them all.

The processes are the ones ``process=True`` job types run in (``procs/pool.py``); a parse is
a call of ``pdf/child.py``'s ``extract`` in them. The event loop only reads frames from the
processes' pipes, so it never waits on parsing. A parse that runs past its wall-clock limit,
is cancelled, or takes a process down (memory cap, crash) costs only the processes it used:
they are killed and fresh ones take their place.

Fairness between users: each parse holds its processes as its user's (``owner``), at most
``per_owner`` of them, and a user who holds none while every process is busy gets an extra one
started (``ProcessPool.acquire(extra=True)``). So a document that runs to its time limit on
every process delays another user's small one only by the start of a process.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..errors import PARSE_CRASHED, PARSE_MEMORY, PARSE_TIMEOUT, JobError, JobServerError
from ..procs.pool import Child, Failures, Message, ProcessPool, exit_text
from .extract import Document, Limits, PageText, Share, assemble, page_from_wire, too_much_text
from .notes import NotesContent, Section

log = logging.getLogger(__name__)

# The kind of work a parse holds its processes as (``ProcessPool.acquire``).
KIND = "pdf-notes"
EXTRACT = "jobserver.pdf.child:extract"
WARM_UP = "jobserver.pdf.child:warm_up"


class ParseFailures(Failures):
    """A parse's failures, with the parser's own codes."""

    def memory(self) -> JobError:
        return JobError(PARSE_MEMORY, "Parsing the PDF needed more memory than a parser may use")

    def ended(self, status: int) -> JobError:
        """PDFium aborts (SIGABRT) when an allocation fails under the process's memory cap;
        any other end mid-parse is a crash."""
        if status == -signal.SIGABRT:
            return JobError(PARSE_MEMORY, "Parsing the PDF needed more memory than a parser "
                            "may use (the PDF engine ran out of memory and stopped)")  # fmt: skip
        return JobError(PARSE_CRASHED, "The parser process ended unexpectedly "
                        f"({exit_text(status)})", recoverable=True)  # fmt: skip

    def exception(self, name: str, message: str) -> JobError:
        return JobError(PARSE_CRASHED, f"The parser failed unexpectedly ({name})",
                        recoverable=True)  # fmt: skip


FAILURES = ParseFailures()


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
    """Parses PDFs in the server's worker processes.

    Args:
        memory_mb: address-space cap of a process while it parses.
        timeout: wall-clock seconds one parse may take.
        per_owner: processes one owner's (user's) parses may hold at once (0: all of them).
    """

    def __init__(self, memory_mb: int, timeout: float, per_owner: int = 0) -> None:
        self.memory_mb = memory_mb
        self.timeout = timeout
        self.per_owner = per_owner
        self.parses = 0
        self.shared = 0  # parses read by more than one process
        self._processes: ProcessPool | None = None

    def start(self, processes: ProcessPool | None) -> None:
        """Parse in ``processes`` from now on."""
        self._processes = processes

    @property
    def processes(self) -> ProcessPool:
        if self._processes is None:
            raise JobServerError("the PDF parser has no worker processes")
        return self._processes

    def closing(self) -> None:
        """From now on a process given back is not replaced (the server is stopping)."""
        if self._processes is not None:
            self._processes.closing()

    @property
    def size(self) -> int:
        return self.processes.size

    @property
    def replaced(self) -> int:
        return self.processes.replaced

    @property
    def pids(self) -> list[int]:
        return self.processes.pids

    @property
    def idle(self) -> int:
        """Processes waiting for work."""
        return 0 if self._processes is None else self._processes.idle

    @property
    def ready(self) -> int:
        """Processes that have started and warmed up."""
        return self.processes.ready

    @property
    def extras(self) -> int:
        """Extra processes started so far for users who had none (see the docstring)."""
        return self.processes.extras

    def held(self, owner: str) -> int:
        """Processes ``owner``'s parses hold now."""
        return self.processes.held(_kind(owner))

    async def parse(
        self, request: ParseRequest, listener: ParseListener, owner: str = ""
    ) -> ParseResult:
        """Parse one PDF into notes for ``owner``; JobError with the failure's code otherwise."""
        processes = self.processes
        kind, limit = _kind(owner), self.per_owner or None
        first = await processes.acquire(kind, limit, extra=True)
        try:
            # Startup is not parse time: a fresh process may still be importing the engine.
            await first.until_ready()
        except BaseException:
            await asyncio.shield(processes.release(first))
            raise
        helpers = processes.take_idle(kind, processes.size, limit)
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
            await asyncio.shield(processes.release(first))
        notes = NotesContent.from_wire(answer["notes"])
        if not request.include_text:
            return ParseResult(notes, None)
        outline = tuple(Section(str(t), p, int(lv)) for lv, t, p in answer["outline"])
        share = Share(int(answer["pages"]), answer["metaTitle"], outline)
        return ParseResult(notes, assemble(share, pages.texts))

    async def _read(
        self, first: Child, helpers: list[Child], request: ParseRequest, pages: _Pages
    ) -> Message:
        """The first process reads every m-th page and writes the notes; helpers the rest.

        The helpers' pages are forwarded to the first process as they arrive; a helper that
        fails makes it stop waiting (``abort``). Returns the first process's answer.
        """
        processes = self.processes
        stride = 1 + len(helpers)
        first_id = processes.next_id()

        def ask(call_id: int, offset: int, notes: bool) -> Message:
            return {"id": call_id, "target": EXTRACT, "memoryMb": self.memory_mb,
                    "payload": {"path": str(request.path), "stride": stride, "offset": offset,
                                "notes": notes, "timeout": self.timeout,
                                "maxPages": request.limits.max_pages,
                                "maxTextChars": request.limits.max_text_chars}}  # fmt: skip

        def forward(message: Message) -> None:
            pages.on_message(message)
            if message.get("type") == "page" and first.call is not None:
                first.send({**message, "id": first_id})

        async def helper(process: Child, offset: int) -> None:
            try:
                await process.request(ask(processes.next_id(), offset, False), forward, FAILURES)
            except BaseException:
                if first.call is not None:
                    first.send({"id": first_id, "type": "abort"})
                raise
            finally:
                await asyncio.shield(processes.release(process))  # free as soon as it is done

        # The first request goes out first: its call is set before any helper page can arrive.
        main = asyncio.ensure_future(
            first.request(ask(first_id, 0, True), pages.on_message, FAILURES)
        )
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


def _kind(owner: str) -> str:
    """The kind of work one user's parses hold processes as."""
    return f"{KIND}:{owner}"


def _consume(future: asyncio.Future[Any]) -> None:
    """Read a future's outcome that nobody awaits any more, so it is not logged as lost."""
    if not future.cancelled():
        future.exception()


