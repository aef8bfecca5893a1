"""The PDF plugin's one entry point, ``setup``: uploads, parsing, notes and the job type.

It uses only what any plugin may: ``setup(plugin)`` registers the ``pdf-notes`` job type
with its stages, its tables and write ops (``storage``), its routes, the multipart upload
that makes its jobs, a hook that starts a parse as a job is queued, its cleanup context
(its parses run in the server's worker processes) and its retention steps.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

from ..config import Settings
from ..plugins import Plugin, Server
from ..retention import PRUNE_BATCH
from . import openapi, storage
from .files import uploads_dir
from .job import PdfNotes, job_type
from .pg_uploads import PgUploads
from .pool import WARM_UP
from .routes import routes
from .upload_store import UPLOADS, FolderUploads, UploadStore, copy_folder
from .uploads import check_upload_owner, create_pdf_job, prefetcher

log = logging.getLogger(__name__)


def upload_store(settings: Settings) -> UploadStore:
    """A folder every node mounts when ``upload_dir`` is set; else PostgreSQL when the store
    is there; else the data dir's ``uploads`` (one node, as before)."""
    if settings.upload_dir:
        return FolderUploads(Path(settings.upload_dir), shared=True)
    if settings.database_url:
        return PgUploads(settings.database_url, settings.database_schema,
                         uploads_dir(settings.data_dir))  # fmt: skip
    return FolderUploads(uploads_dir(settings.data_dir))


def setup(plugin: Plugin) -> None:
    handler = PdfNotes(plugin.settings)
    jt = plugin.add_job_type(job_type(handler))
    plugin.add_storage(storage.__name__)
    plugin.add_routes(routes)
    plugin.describe(openapi.PATHS, openapi.SCHEMAS)
    plugin.accept_multipart(jt.name, create_pdf_job)
    plugin.check_submit(jt.name, check_upload_owner)
    plugin.on_queued(prefetcher(handler))
    plugin.use_processes(warm_up=WARM_UP, memory_mb=plugin.settings.pdf_memory_mb)

    async def parsers(server: Server) -> AsyncIterator[None]:
        """Parses run in the server's worker processes; they outlive the workers. The upload
        store opens first (uploads a crash cut short are removed)."""
        uploads = upload_store(server.settings)
        await uploads.open()
        server.app[UPLOADS] = uploads
        handler.start(server.store, server.processes, uploads)
        server.add_tap(handler.on_event)  # a cancelled job stops the work begun for it
        try:
            yield
        finally:
            await handler.stop()
            await uploads.close()

    plugin.add_cleanup_context(parsers)

    async def prune_files(server: Server, cutoff: float) -> int:
        # Retention starts (and prunes at once) before plugins' contexts: until the upload
        # store is open there is nothing of it to prune, and the next round does it.
        uploads = server.app.get(UPLOADS)
        return 0 if uploads is None else await uploads.prune(server.store, cutoff)

    async def prune_cache(server: Server, cutoff: float) -> int:
        total = 0
        while (gone := await storage.prune_cache(server.store, cutoff, limit=PRUNE_BATCH)) > 0:
            total += gone
            if gone < PRUNE_BATCH:
                break
        return total

    async def move_uploads(settings: Settings) -> int:
        """``migrate-to-postgres``: the data dir's uploads into the nodes' upload store."""
        uploads = upload_store(settings)
        if isinstance(uploads, FolderUploads) and not uploads.shared:
            return 0  # no database, no shared folder: they are where they are
        await uploads.open()
        try:
            return await copy_folder(uploads_dir(settings.data_dir), uploads)
        finally:
            await uploads.close()

    plugin.add_move_step("uploads", move_uploads)
    plugin.add_retention_step("files", prune_files)
    plugin.add_retention_step("cached notes", prune_cache)
