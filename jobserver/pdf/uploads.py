"""PDF uploads: ``POST /api/jobs`` as multipart, streamed to disk, counted, checked and hashed.

The file part is written to a temporary file in the upload store's folder while it arrives,
with our own byte count (the app's small JSON body limit does not apply to a streamed part),
then kept by the upload store (``upload_store.py``: renamed to ``<sha256>.pdf``, or copied
into PostgreSQL). A refused upload leaves nothing behind: its partial file goes whether the
refusal is ours or the client's (a cancelled upload), and a file it stored goes too, unless
another request, on any node, kept the same bytes meanwhile (the store's stamp says so):
that one's job needs the file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from urllib.parse import unquote

from aiohttp import BodyPartReader, web

from ..datadir import create_private
from ..errors import (
    InBatch,
    InvalidPayload,
    JobServerError,
    NotAPdf,
    StorageFull,
    UploadNotFound,
)
from ..models import Job
from ..plugins import Server
from ..store import NewJob, Store
from ..web.http import user_of, whole_number
from ..web.keys import REGISTRY, SETTINGS, STORE
from ..web.limits import multipart_parts, skip_part, too_large
from .job import PDF_NOTES, PdfNotes
from .upload_store import UPLOADS, UploadStore

log = logging.getLogger(__name__)
CHUNK = 256 * 1024
# The PDF header may follow a little junk; readers look for it in the first kilobyte.
HEADER_WINDOW = 1024
MAX_FIELD = 1024
FIELDS = frozenset({"idempotencyKey", "maxAttempts"})
MAX_FILES = 100  # file parts one upload may carry


@dataclass(frozen=True, slots=True)
class StoredUpload:
    sha256: str
    size: int
    filename: str
    created: bool  # this request stored the file (it was not there before)
    stamp: str  # what the store's keep left: a refused request removes the file with it


def clean_filename(name: str | None) -> str:
    """The uploaded file's base name, printable and short; ``document.pdf`` when absent.

    Some clients percent-encode the name (aiohttp does; browsers encode only quotes and line
    breaks), so it is decoded once.
    """
    name = unquote(name or "")
    base = re.sub(r"[\x00-\x1f\x7f]", "", os.path.basename(name.replace("\\", "/")))
    return base.strip()[:200] or "document.pdf"


def _not_a_pdf() -> NotAPdf:
    return NotAPdf("The file is not a PDF (it does not start with the %PDF- header)")


async def receive_pdf(part: BodyPartReader, uploads: UploadStore, limit: int) -> StoredUpload:
    """Stream ``part`` to disk: count, check the header, hash; keep it as its ``sha256``."""
    temp = uploads.folder / f".incoming-{uuid.uuid4().hex}"
    digest = hashlib.sha256()
    size = 0
    head = b""
    try:
        with os.fdopen(create_private(temp), "wb") as out:
            while chunk := await part.read_chunk(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                if len(head) < HEADER_WINDOW:
                    head += chunk[: HEADER_WINDOW - len(head)]
                    if len(head) == HEADER_WINDOW and b"%PDF-" not in head:
                        raise _not_a_pdf()
                digest.update(chunk)
                out.write(chunk)
        if b"%PDF-" not in head:
            raise _not_a_pdf()
        sha = digest.hexdigest()
        kept = await uploads.keep(temp, sha)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull("the server's disk is full: the file could not be stored") from None
        raise
    return StoredUpload(sha, size, clean_filename(part.filename), kept.created, kept.stamp)


async def _field(part: BodyPartReader) -> str:
    data = b""
    while chunk := await part.read_chunk(MAX_FIELD):
        data += chunk
        if len(data) > MAX_FIELD:
            raise InvalidPayload(f"form field {part.name} is too long")
    return data.decode("utf-8", "replace").strip()


async def create_pdf_job(request: web.Request) -> list[NewJob]:
    """Read the multipart body; each ``file`` part becomes a ``pdf-notes`` job to enqueue
    (several go as one batch: one commit, all or nothing; an ``idempotencyKey`` then keys
    the n-th file's job as ``<key>.<n>``, from 0)."""
    job_type = request.app[REGISTRY].get(PDF_NOTES)
    settings = request.app[SETTINGS]
    uploads = request.app[UPLOADS]
    stored: list[StoredUpload] = []
    fields: dict[str, str] = {}
    try:
        async for part in multipart_parts(request, settings):
            if part.name == "file":
                if len(stored) >= MAX_FILES:
                    raise InvalidPayload(f"send at most {MAX_FILES} files per upload")
                try:
                    upload = await receive_pdf(part, uploads, settings.max_upload_bytes)
                except JobServerError as exc:
                    raise (InBatch(len(stored), exc) if stored else exc) from None
                stored.append(upload)
            elif part.name in FIELDS:
                fields[part.name] = await _field(part)
            else:
                await skip_part(request, part, settings)
        if not stored:
            raise InvalidPayload("send the PDF as a multipart form part named file")
        key = fields.get("idempotencyKey") or None
        if key is not None and len(key) > 200:
            raise InvalidPayload("idempotencyKey must be at most 200 characters")
        max_attempts = whole_number(
            fields.get("maxAttempts"), "maxAttempts", 1, settings.max_attempts_limit,
            job_type.options.max_attempts,
        )
    except BaseException:
        # Refused: the files it brought go now (not ones kept before, nor since).
        await _remove_created(request.app[STORE], uploads, stored)
        raise
    for upload in stored:
        await uploads.add_owner(upload.sha256, user_of(request))
    return [
        NewJob(
            type=PDF_NOTES,
            user_id=user_of(request),
            payload={"sha256": up.sha256, "filename": up.filename, "size": up.size},
            label=up.filename,
            max_attempts=max_attempts,
            idempotency_key=key if key is None or len(stored) == 1 else f"{key}.{n}",
            message=f"Queued {up.filename}",
            metadata={"fileName": up.filename},
        )
        for n, up in enumerate(stored)
    ]


async def _remove_created(store: Store, uploads: UploadStore, stored: list[StoredUpload]) -> None:
    created = [upload for upload in stored if upload.created]
    needed: Collection[str] | None = None  # which of them jobs name: one lookup a request
    for upload in created:
        try:
            if needed is None:
                needed = await store.payload_named("sha256", [u.sha256 for u in created])
            await uploads.remove(store, upload.sha256, upload.stamp, needed)
        except (JobServerError, OSError) as exc:  # retention removes it later; the refusal stands
            log.warning("could not remove the refused upload %s: %s", upload.sha256, exc)


async def check_upload_owner(server: Server, new: NewJob) -> None:
    """A pdf-notes job sent as JSON names its file by hash: only a file its user uploaded.

    An unknown hash and another user's get the same answer, so the answer never tells
    whether a file is on the server.
    """
    if not await server.app[UPLOADS].owns(str(new.payload["sha256"]), new.user_id):
        raise UploadNotFound(
            "you have no upload with this sha256; upload the file (multipart POST /api/jobs)"
        )


def prefetcher(handler: PdfNotes) -> Callable[[Server, Job], None]:
    """The plugin's queued-job hook: a due pdf-notes job starts reading its file in the
    background when a worker slot and a parser are free (``PdfNotes.prefetch``), so the
    parse does not wait for the job's claim. The answer to the client never waits for this."""

    def prefetch(server: Server, job: Job) -> None:
        if job.type != PDF_NOTES or job.run_at > time.time():  # not due yet: no hurry
            return
        handler.prefetch_soon(str(job.payload["sha256"]), job.id, server.free_slots,
                              job.user_id)

    return prefetch
