"""The ``pdf-notes`` job type: stages, the notes cache, joining work in flight, saving the note."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from ..config import Settings
from ..errors import UPLOAD_MISSING, InvalidPayload, JobError, JobServerError
from ..handlers import JobContext
from ..jobtypes import HandlerOptions, JobType
from ..models import FINISHED_EVENTS, Event, EventType, JobStage
from ..procs.pool import ProcessPool
from ..store import Store
from . import storage
from .extract import Limits
from .files import is_sha256
from .flights import Flight, Update
from .generate import NotesGenerator, OfflineGenerator
from .llm import LlmGenerator
from .notes import Note, NotesContent
from .pool import ParsePool, ParseRequest
from .stages import DOWNLOADING, EXTRACTING, GENERATING, SAVING, STAGES
from .upload_store import UploadStore

log = logging.getLogger(__name__)

PDF_NOTES = "pdf-notes"
MAX_FILENAME = 200

# Where each stage puts the progress bar (percent).
READ_START, READ_DONE = 5.0, 10.0
EXTRACT_START, EXTRACT_SPAN = 10.0, 70.0
GENERATING_AT = 82.0
SAVING_AT = 95.0
# A prefetched flight that landed waits this long for its job before it is forgotten (its
# notes are in the cache by then anyway).
PREFETCH_HOLD_SECONDS = 60.0
# Another node parsing the same file: how often its notes are looked for (sooner when a job
# ends: its own may be the one), and how often a parsing node says it is still at it
# (pg_uploads.PARSE_STALE_SECONDS is the limit).
ELSEWHERE_POLL_SECONDS = 1.0
ELSEWHERE_MIN_GAP_SECONDS = 0.2  # and never more often than this, however many jobs end
BEAT_SECONDS = 5.0
CLOCK_SLACK_SECONDS = 60.0


def check_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """A pdf-notes job names its upload by content hash, never by path."""
    sha = payload.get("sha256")
    if not is_sha256(sha):
        raise InvalidPayload("payload.sha256 must be an upload's sha256 (64 lowercase hex digits)")
    name = payload.get("filename", "document.pdf")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_FILENAME:
        raise InvalidPayload(f"payload.filename must be a string of 1 to {MAX_FILENAME} characters")
    size = payload.get("size", 0)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InvalidPayload("payload.size must be a whole number of bytes")
    return {"sha256": sha, "filename": name, "size": size}


def make_generator(settings: Settings) -> NotesGenerator:
    if settings.llm_url:
        return LlmGenerator(
            settings.llm_url, settings.llm_model, settings.llm_api_key, settings.llm_timeout_seconds
        )
    return OfflineGenerator()


class _PageListener:
    """Turns the parser's page reports into the flight's progress updates."""

    def __init__(self, flight: Flight, label: str) -> None:
        self.flight = flight
        self.label = label

    def page(self, page: int, pages: int) -> None:
        self.flight.report(
            Update(
                EXTRACTING,
                EXTRACT_START + EXTRACT_SPAN * page / pages,
                f"Extracting page {page} of {pages}",
                {"page": page, "pages": pages},
            )
        )

    def generating(self) -> None:
        self.flight.report(Update(GENERATING, GENERATING_AT, self.label))


class PdfNotes:
    """The handler: one instance per app, started and stopped with it (``start``/``stop``).

    Args:
        settings: limits, pool size and the generator to use.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.limits = Limits(settings.pdf_max_pages, settings.pdf_max_text_chars)
        self.generator = make_generator(settings)
        self.pool = ParsePool(settings.pdf_memory_mb, settings.pdf_timeout_seconds,
                              per_owner=settings.max_parsers_per_user)  # fmt: skip
        self.flights: dict[str, Flight] = {}
        self._store: Store | None = None
        self._uploads: UploadStore | None = None
        self._closing = False
        self._prefetching: set[asyncio.Task[None]] = set()
        self._job_ended: asyncio.Future[None] | None = None  # set by the next job's end

    def start(self, store: Store, processes: ProcessPool | None, uploads: UploadStore) -> None:
        """Work with ``store`` and ``uploads``, parsing in the server's worker ``processes``."""
        self._store = store
        self._uploads = uploads
        self.pool.start(processes)

    async def stop(self) -> None:
        self._closing = True
        self.pool.closing()
        for task in list(self._prefetching):
            task.cancel()
        await asyncio.gather(*self._prefetching, return_exceptions=True)
        for flight in list(self.flights.values()):
            await flight.cancel()
        if isinstance(self.generator, LlmGenerator):
            await self.generator.close()

    @property
    def store(self) -> Store:
        if self._store is None:
            raise JobServerError("the pdf-notes job type has not been started")
        return self._store

    @property
    def uploads(self) -> UploadStore:
        if self._uploads is None:
            raise JobServerError("the pdf-notes job type has not been started")
        return self._uploads

    async def __call__(self, ctx: JobContext) -> Mapping[str, Any]:
        sha = str(ctx.payload["sha256"])
        flight = self._flight_for(sha, ctx.job.id)
        if flight is None:
            cached = await storage.cached_notes(self.store, sha, self.generator.name)
            if cached is not None:
                return await self._from_cache(ctx, cached)
            remote = await self._parsed_elsewhere(ctx, sha)
            if remote is not None:
                return await self._save(ctx, remote, cache_hit=False, joined=True)
        # No wait between this lookup and taking off (or joining): one file, one flight.
        flight = self._flight_for(sha, ctx.job.id)
        own = flight is not None and flight.owner == ctx.job.id  # prefetched for this job
        joined = flight is not None and not own
        if flight is None:
            flight = self._take_off(sha, user=ctx.job.user_id)
        follower = flight.join()
        if own:
            flight.owner = None
            if flight.task.done():  # it landed before this job came for it
                self._land(sha, flight)
        try:
            if joined:
                await ctx.progress(DOWNLOADING, READ_START,
                                   "The same file is already being read: joining that work")
            else:
                await ctx.progress(JobStage.INITIALIZING, 2, "No notes yet for this file")
        except BaseException:
            flight.leave(follower)
            raise  # fmt: skip

        async def report(update: Update) -> None:
            await ctx.progress(update.stage, update.percent, update.message, update.metadata)

        notes = await flight.follow(follower, report)
        return await self._save(ctx, notes, cache_hit=False, joined=joined)

    async def _parsed_elsewhere(self, ctx: JobContext, sha: str) -> NotesContent | None:
        """While another node parses this file, wait for its notes (they land in the shared
        cache before its job ends); None once this node holds the file's parse (the other
        node's ended without notes, or there was none).

        The notes are looked for when any job ends (a bus tap: every node's events come
        through it), at most every ``ELSEWHERE_MIN_GAP_SECONDS``, or every
        ``ELSEWHERE_POLL_SECONDS``; the parse is taken only once the
        other node's claim is gone or stale.
        """
        if await self.uploads.claim_parse(sha):
            return None
        since = time.time() - CLOCK_SLACK_SECONDS  # the other node's clock stamps its notes
        await ctx.progress(DOWNLOADING, READ_START, "The same file is being read on another "
                           "server: joining that work")  # fmt: skip
        while True:
            ended = self._next_end()  # before looking: an end meanwhile cuts the wait short
            looked = time.monotonic()
            cached = await storage.notes_made_since(self.store, sha, since)
            if cached is not None:
                return cached
            gone = not await self.uploads.parsing_elsewhere(sha)  # ended, or its node silent
            if gone and await self.uploads.claim_parse(sha):
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(ended), ELSEWHERE_POLL_SECONDS)
            # Busy nodes end jobs hundreds of times a second: look at most this often.
            await asyncio.sleep(max(0.0, ELSEWHERE_MIN_GAP_SECONDS - (time.monotonic() - looked)))
        # Taken: the other node may have cached its notes and let go just now.
        cached = await storage.notes_made_since(self.store, sha, since)
        if cached is not None and self._flight_for(sha, ctx.job.id) is None:
            await self.uploads.end_parse(sha)
        return cached

    def _next_end(self) -> asyncio.Future[None]:
        """Done when the next job ends (``on_event``)."""
        if self._job_ended is None or self._job_ended.done():
            self._job_ended = asyncio.get_running_loop().create_future()
        return self._job_ended

    async def _from_cache(self, ctx: JobContext, notes: NotesContent) -> Mapping[str, Any]:
        pages = {"pages": notes.page_count}
        await ctx.progress(DOWNLOADING, READ_DONE, "Notes for this file exist already")
        await ctx.progress(EXTRACTING, EXTRACT_START + EXTRACT_SPAN,
                           f"Text of {notes.page_count} page(s) already extracted", pages)
        await ctx.progress(GENERATING, GENERATING_AT, "Using the notes made before")
        return await self._save(ctx, notes, cache_hit=True, joined=False)  # fmt: skip

    async def _save(
        self, ctx: JobContext, notes: NotesContent, *, cache_hit: bool, joined: bool
    ) -> Mapping[str, Any]:
        job = ctx.job
        note = Note(
            id=job.id,
            user_id=job.user_id,
            job_id=job.id,
            content_hash=str(ctx.payload["sha256"]),
            filename=str(ctx.payload.get("filename") or "document.pdf"),
            content=notes,
        )
        # The saving event and the note go to the store together (one group commit).
        await asyncio.gather(
            ctx.progress(SAVING, SAVING_AT, "Saving notes"), storage.save_note(self.store, note)
        )
        return {
            "noteId": note.id,
            "title": notes.title,
            "pageCount": notes.page_count,
            "cacheHit": cache_hit,
            "joined": joined,
        }

    def _flight_for(self, sha: str, job_id: str) -> Flight | None:
        """The work on ``sha`` this job may follow: its own prefetched read, even finished, or
        another's still running (a finished one's notes are in the cache)."""
        flight = self.flights.get(sha)
        if flight is None or flight.owner == job_id or not flight.task.done():
            return flight
        return None

    def prefetch_soon(self, sha: str, job_id: str, free_slots: int, user: str = "") -> None:
        """``prefetch`` in the background; stopping the handler cancels it."""
        if self._closing:
            return
        task = asyncio.create_task(self.prefetch(sha, job_id, free_slots, user),
                                   name="pdf-prefetch")  # fmt: skip
        self._prefetching.add(task)
        task.add_done_callback(self._prefetched)

    def _prefetched(self, task: asyncio.Task[None]) -> None:
        self._prefetching.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("prefetching an upload failed", exc_info=error)

    async def prefetch(self, sha: str, job_id: str, free_slots: int, user: str = "") -> None:
        """Start reading an upload as soon as its job is queued, when a worker slot and a
        parser are free: the job, claimed a moment later, joins this flight instead of
        taking off after its claim and progress commits (about a quarter of a small PDF's
        time from upload to notes). Never for notes already cached or work in flight.
        """
        if free_slots <= 0 or self.pool.idle == 0 or sha in self.flights:
            return
        if await storage.cached_notes(self.store, sha, self.generator.name) is not None:
            return
        if not await self.uploads.claim_parse(sha):
            return  # another node parses it: the job will wait for those notes
        if not self._closing and sha not in self.flights and self.pool.idle > 0:
            self._take_off(sha, owner=job_id, user=user)
        elif sha not in self.flights:
            await self.uploads.end_parse(sha)

    def _take_off(self, sha: str, owner: str | None = None, user: str = "") -> Flight:
        """Start the work on ``sha``; its parse counts against ``user``'s parser share."""

        async def work(flight: Flight) -> None:
            await self._produce(flight, sha, user)

        flight = Flight(work, owner)
        flight.abandoned = lambda: self._land(sha, flight)  # a new job must not join it
        self.flights[sha] = flight

        def landed(task: asyncio.Task[None]) -> None:
            if flight.owner is not None and not task.cancelled() and flight.succeeded:
                # Made for a job that has not come for its notes yet: keep them a while.
                loop = asyncio.get_running_loop()
                loop.call_later(PREFETCH_HOLD_SECONDS, self._land, sha, flight)
            else:
                self._land(sha, flight)

        flight.task.add_done_callback(landed)
        return flight

    def on_event(self, event: Event) -> None:
        """A bus tap: a job's end wakes the jobs waiting for another node's notes; a job
        cancelled before it came for its prefetched flight stops it."""
        ended = self._job_ended
        if event.type in FINISHED_EVENTS and ended is not None and not ended.done():
            ended.set_result(None)
        if event.type is not EventType.CANCELLED:
            return
        for sha, flight in list(self.flights.items()):
            if flight.owner == event.job_id and flight.followers == 0:
                self._land(sha, flight)  # first, so no new job joins it while it stops
                flight.task.cancel()

    def _land(self, sha: str, flight: Flight) -> None:
        if self.flights.get(sha) is flight:
            del self.flights[sha]

    async def _produce(self, flight: Flight, sha: str, user: str) -> None:
        beat = asyncio.create_task(self._beat(sha), name="pdf-parse-beat")
        try:
            await self._read_and_parse(flight, sha, user)
        finally:
            beat.cancel()
            try:
                await self.uploads.end_parse(sha)  # after the notes are cached (or not made)
            except JobServerError:
                log.warning("could not let go of the parse of %s (it goes stale)", sha)

    async def _beat(self, sha: str) -> None:
        """Say this node is still parsing ``sha`` (another node's job for it waits)."""
        while True:
            await asyncio.sleep(BEAT_SECONDS)
            try:
                await self.uploads.beat_parse(sha)
            except JobServerError:
                log.warning("could not renew the parse of %s", sha)

    async def _read_and_parse(self, flight: Flight, sha: str, user: str) -> None:
        flight.report(Update(DOWNLOADING, READ_START, "Reading the uploaded file"))
        try:
            async with self.uploads.local_copy(sha) as path:  # the parser reads a local file
                size = os.stat(path).st_size
                message = f"Read {size / 1e6:.1f} MB"
                if self.pool.idle == 0:
                    message += "; waiting for a free parser"
                flight.report(Update(DOWNLOADING, READ_DONE, message, {"bytes": size}))
                parsed = await self.pool.parse(
                    ParseRequest(path, self.limits, include_text=self.generator.needs_text),
                    _PageListener(flight, self.generator.label),
                    owner=user,
                )
        except FileNotFoundError:
            raise JobError(
                UPLOAD_MISSING,
                "The uploaded file is no longer on the server; upload it again",
                recoverable=False,
            ) from None
        notes = await self.generator.generate(parsed.notes, parsed.document)
        flight.notes_ready(notes)
        try:
            # The flight lands (and leaves self.flights) only once the cache has the notes,
            # so a later upload of the same file finds one or the other, never neither.
            await storage.cache_notes(self.store, sha, notes)
        except JobServerError:
            log.exception("could not cache the notes of %s", sha)


def job_type(handler: PdfNotes) -> JobType:
    """``pdf-notes``: one attempt (a person retries), no overall time limit.

    Each step has its own limit (the parse, the model); the wait for a free parser is bounded
    by the jobs ahead of it, so an overall limit would only fail jobs that wait in line.
    """
    options = HandlerOptions(timeout=None, max_attempts=1, check_payload=check_payload)
    return JobType(
        PDF_NOTES, handler, options, display_name="PDF to notes", stages=STAGES,
        label=lambda payload: str(payload.get("filename") or ""), module=__name__,
    )  # fmt: skip
