"""Where uploaded PDFs and their owners are kept: a folder, or PostgreSQL (``pg_uploads.py``).

Uploads are named by content hash. A folder is the data dir's ``uploads`` (one node, as
always) or ``upload_dir``, a folder every node mounts; on PostgreSQL, with no ``upload_dir``,
they are in the database, so every node can read what any node received. The parser always
reads a local file: ``local_copy`` gives one for as long as it is needed.

Every ``keep`` leaves a new stamp. A request refused after it stored a file removes it with
its stamp (``remove``), which does nothing once the same content was kept again, by a
request of any node, or while a kept job names it: that request's job needs the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aiohttp import web

from ..datadir import private_dir
from ..retention import file_pruner
from ..store import Store
from .files import stored_name
from .owners import add_owner_in, owns_in

log = logging.getLogger(__name__)

SHARED_SWEEP_SECONDS = 3600.0  # a shared folder's ``.incoming-*`` this old was cut short
LOCK_NAME = ".uploads.lock"  # in a shared folder: keeps and removals one node at a time


@dataclass(frozen=True, slots=True)
class Kept:
    """What a ``keep`` did: whether it stored the content (it was not there before), and the
    stamp it left, which the next keep of the same content replaces."""

    created: bool
    stamp: str


class UploadStore(Protocol):
    folder: Path  # where a file part is written while it arrives (``.incoming-*``)

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def keep(self, temp: Path, sha256: str) -> Kept:
        """Keep the received file ``temp`` (gone afterwards) as ``sha256``; not ``created``
        when that content was kept already (it is fresh again: retention keeps young uploads)."""
        ...

    async def remove(
        self, store: Store, sha256: str, stamp: str, needed: Collection[str] | None = None
    ) -> bool:
        """Remove the content kept with ``stamp`` (a refused request's file), unless it was
        kept again since or a job in ``store`` names it (``needed``: which of the files a
        caller removes jobs name, when it looked them up at once); whether it went."""
        ...

    def local_copy(self, sha256: str) -> contextlib.AbstractAsyncContextManager[Path]:
        """A local file with the content, while the context lasts; FileNotFoundError when
        there is no such upload."""
        ...

    async def add_owner(self, sha256: str, user_id: str) -> None: ...

    async def owns(self, sha256: str, user_id: str) -> bool: ...

    async def prune(self, store: Store, cutoff: float) -> int:
        """Remove uploads kept since before ``cutoff`` that no kept job names."""
        ...

    # One parse per file across nodes: a node takes a file's parse before it starts one and
    # says it is alive while it runs; another node's job for that file waits for its notes.

    async def claim_parse(self, sha256: str) -> bool:
        """Take the parse of ``sha256``; False while another node's is alive."""
        ...

    async def beat_parse(self, sha256: str) -> None: ...

    async def end_parse(self, sha256: str) -> None: ...

    async def parsing_elsewhere(self, sha256: str) -> bool: ...


# The plugin's upload store, set while the server runs.
UPLOADS = web.AppKey("pdf-uploads", UploadStore)


class FolderUploads:
    """Uploads as ``<sha256>.pdf`` files, with their ``<sha256>.owners``, in ``folder``.

    Args:
        folder: the data dir's ``uploads``, or ``upload_dir``, a folder every node mounts.
        shared: other nodes write there too (a start sweeps only old ``.incoming-*`` files).
    """

    def __init__(self, folder: Path, shared: bool = False) -> None:
        self.folder = folder
        self.shared = shared
        self._lock = asyncio.Lock()

    def path(self, sha256: str) -> Path:
        return self.folder / stored_name(sha256)

    def stamp_path(self, sha256: str) -> Path:
        return self.folder / stored_name(sha256, ".kept")

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        """Keeps and removals one at a time: this process's by its lock, and in a shared
        folder every node's by ``flock`` on ``LOCK_NAME`` (the data dir's folder is this
        process's alone: its lock says so)."""
        async with self._lock:
            fd = await asyncio.to_thread(_flock, self.folder / LOCK_NAME) if self.shared else -1
            try:
                yield
            finally:
                if fd >= 0:
                    os.close(fd)

    async def open(self) -> None:
        private_dir(self.folder)
        if swept := sweep_incoming(self.folder, SHARED_SWEEP_SECONDS if self.shared else 0):
            log.info("removed %d upload(s) cut short by an earlier stop", swept)

    async def close(self) -> None:
        pass

    async def keep(self, temp: Path, sha256: str) -> Kept:
        final = self.path(sha256)
        stamp = uuid.uuid4().hex
        async with self._locked():
            created = not final.exists()
            if created:
                os.replace(temp, final)
            else:
                os.unlink(temp)  # the same content is stored already
                os.utime(final)  # fresh again: retention keeps young files
            self.stamp_path(sha256).write_text(stamp)
        return Kept(created, stamp)

    async def remove(
        self, store: Store, sha256: str, stamp: str, needed: Collection[str] | None = None
    ) -> bool:
        if await named_by_a_job(store, sha256, needed):
            return False
        async with self._locked():
            try:
                if self.stamp_path(sha256).read_text() != stamp:
                    return False  # kept again since: that request's job needs it
            except FileNotFoundError:
                return False
            self.path(sha256).unlink(missing_ok=True)
            self.stamp_path(sha256).unlink(missing_ok=True)  # or retention took it just now
        return True

    @contextlib.asynccontextmanager
    async def local_copy(self, sha256: str) -> AsyncIterator[Path]:
        path = self.path(sha256)
        path.stat()  # FileNotFoundError when it is gone
        yield path

    async def add_owner(self, sha256: str, user_id: str) -> None:
        add_owner_in(self.folder, sha256, user_id)

    async def owns(self, sha256: str, user_id: str) -> bool:
        return owns_in(self.folder, sha256, user_id)

    async def prune(self, store: Store, cutoff: float) -> int:
        return await file_pruner(store, self.folder, "sha256", spare={LOCK_NAME})(cutoff)

    # Parses are this process's alone (its flights): a shared folder does not share them.

    async def claim_parse(self, sha256: str) -> bool:
        return True

    async def beat_parse(self, sha256: str) -> None:
        pass

    async def end_parse(self, sha256: str) -> None:
        pass

    async def parsing_elsewhere(self, sha256: str) -> bool:
        return False


def _flock(path: Path) -> int:
    """Wait for the lock file ``path`` (made if missing); its descriptor (closing it lets go)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


async def named_by_a_job(store: Store, sha256: str, needed: Collection[str] | None) -> bool:
    """Whether a kept job names the file ``sha256``: in ``needed`` (those of the files being
    removed that jobs name, read by the caller), else looked up in ``store`` (an index)."""
    if needed is None:
        needed = await store.payload_named("sha256", [sha256])
    return sha256 in needed


def sweep_incoming(folder: Path, older_than: float = 0.0) -> int:
    """Remove uploads cut short by a crash (``.incoming-*``) written more than
    ``older_than`` seconds ago (in a shared folder another node may be receiving one now)."""
    removed = 0
    cutoff = time.time() - older_than
    for temp in folder.glob(".incoming-*"):
        with contextlib.suppress(FileNotFoundError):
            if older_than and temp.stat().st_mtime > cutoff:
                continue
            temp.unlink()
            removed += 1
    return removed


async def copy_folder(source: Path, uploads: UploadStore) -> int:
    """Every ``<sha256>.pdf`` in ``source``, with its owners, into ``uploads`` (a copy:
    ``source`` keeps its files); how many files."""
    copied = 0
    for path in await asyncio.to_thread(_stored_files, source):
        sha = path.stem
        temp = uploads.folder / f".incoming-{uuid.uuid4().hex}"
        await asyncio.to_thread(shutil.copyfile, path, temp)
        await uploads.keep(temp, sha)
        for user_id in await asyncio.to_thread(_owners, path.with_suffix(".owners")):
            await uploads.add_owner(sha, user_id)
        copied += 1
    return copied


def _stored_files(source: Path) -> list[Path]:
    return sorted(source.glob("*.pdf")) if source.is_dir() else []


def _owners(path: Path) -> list[str]:
    try:
        return [u for u in path.read_text("utf-8").splitlines() if u]
    except FileNotFoundError:
        return []
