"""Uploads in PostgreSQL (issue 17): every node reads what any node received.

A file is kept as ``bytea`` chunks of ``CHUNK`` bytes (``upload_chunks``), written and read
one chunk at a time, so no file is ever whole in memory. The file part arrives into a local
temporary file first (it is hashed while it arrives); ``keep`` then copies it in one
transaction, so a file is in the table whole or not at all, and two nodes receiving the same
content at once keep it once. Each keep leaves a new ``stamp`` on the file's row: a refused
request's ``remove`` deletes the row only while it still has that request's stamp. The
parser reads a local copy made for it (``local_copy``), removed when it is done. Owners are
a table too. These connections are the plugin's own (a
small pool), so an upload never waits for, or holds up, the store's writes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Collection
from pathlib import Path

import asyncpg

from ..datadir import create_private, private_dir
from ..errors import ServiceUnavailable
from ..store import Store
from ..store.pg_schema import migrate
from ..tables import Tables
from .files import stored_name
from .upload_store import Kept, named_by_a_job, sweep_incoming

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
TABLES = Tables(
    name="pdf-uploads",
    version=2,
    create="""
CREATE TABLE IF NOT EXISTS upload_files (
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    kept_at REAL NOT NULL,
    stamp TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS upload_chunks (
    sha256 TEXT NOT NULL REFERENCES upload_files (sha256) ON DELETE CASCADE,
    n INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (sha256, n)
);
ALTER TABLE upload_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE TABLE IF NOT EXISTS upload_owners (
    sha256 TEXT NOT NULL,
    user_id TEXT NOT NULL,
    kept_at REAL NOT NULL,
    PRIMARY KEY (sha256, user_id)
);
CREATE TABLE IF NOT EXISTS pdf_parses (
    sha256 TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    beat_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS upload_files_age ON upload_files (kept_at);
CREATE INDEX IF NOT EXISTS upload_owners_age ON upload_owners (kept_at)
""",
    migrations={2: "ALTER TABLE upload_files ADD COLUMN stamp TEXT NOT NULL DEFAULT ''"},
)
_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
# A parse whose node has not said it is alive for this long is taken over.
PARSE_STALE_SECONDS = 15.0


class PgUploads:
    """The PDF plugin's uploads in the store's PostgreSQL schema.

    Args:
        url: the database (never logged).
        schema: the store's schema.
        folder: this node's own folder for files arriving and copies being parsed.
    """

    def __init__(self, url: str, schema: str, folder: Path) -> None:
        self.url = url
        self.schema = schema
        self.folder = folder
        self._pool: asyncpg.Pool | None = None
        self.node = f"{uuid.uuid4().hex[:12]}"  # this process, for its parse claims

    async def open(self) -> None:
        private_dir(self.folder)
        sweep_incoming(self.folder)  # this node's own leftovers (arrivals and parse copies)
        conn = await asyncpg.connect(self.url, server_settings={"search_path": self.schema})
        try:
            await migrate(conn, [TABLES])
        finally:
            await conn.close()
        self._pool = await asyncpg.create_pool(
            self.url, min_size=1, max_size=2, server_settings={"search_path": self.schema}
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise ServiceUnavailable("the upload store is not open")
        return self._pool

    async def keep(self, temp: Path, sha256: str) -> Kept:
        name = stored_name(sha256)  # checks the hash
        stamp = uuid.uuid4().hex
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                # A second node keeping the same content waits here for the first to commit.
                created = await conn.fetchval(
                    "INSERT INTO upload_files (sha256, size, kept_at, stamp) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT (sha256) DO UPDATE "
                    "SET kept_at = excluded.kept_at, stamp = excluded.stamp RETURNING xmax = 0",
                    sha256, os.stat(temp).st_size, time.time(), stamp,
                )  # fmt: skip
                if created:
                    with temp.open("rb") as source:
                        n = 0
                        while chunk := source.read(CHUNK):
                            await conn.execute(
                                "INSERT INTO upload_chunks (sha256, n, data) VALUES ($1, $2, $3)",
                                sha256, n, chunk,
                            )  # fmt: skip
                            n += 1
        except _ERRORS as exc:
            raise ServiceUnavailable(f"could not store the upload {name}: {exc}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        return Kept(bool(created), stamp)

    async def remove(
        self, store: Store, sha256: str, stamp: str, needed: Collection[str] | None = None
    ) -> bool:
        if await named_by_a_job(store, sha256, needed):
            return False
        # A keep since has left its own stamp (or waits on this row and then stores anew).
        status = await self._execute(
            "DELETE FROM upload_files WHERE sha256=$1 AND stamp=$2", sha256, stamp
        )
        return status == "DELETE 1"

    @contextlib.asynccontextmanager
    async def local_copy(self, sha256: str) -> AsyncIterator[Path]:
        copy = self.folder / f".incoming-copy-{uuid.uuid4().hex}.pdf"
        try:
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    if await conn.fetchval(
                        "SELECT 1 FROM upload_files WHERE sha256=$1", sha256
                    ) is None:  # fmt: skip
                        raise FileNotFoundError(stored_name(sha256))
                    with os.fdopen(create_private(copy), "wb") as out:
                        async for row in conn.cursor(
                            "SELECT data FROM upload_chunks WHERE sha256=$1 ORDER BY n",
                            sha256, prefetch=2,
                        ):  # fmt: skip
                            out.write(row[0])
            except FileNotFoundError:
                raise  # no such upload (an OSError, but not the database's)
            except _ERRORS as exc:
                raise ServiceUnavailable(f"could not read the upload: {exc}") from None
            yield copy
        finally:
            with contextlib.suppress(FileNotFoundError):
                copy.unlink()

    async def add_owner(self, sha256: str, user_id: str) -> None:
        stored_name(sha256)
        await self._execute(
            "INSERT INTO upload_owners (sha256, user_id, kept_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (sha256, user_id) DO UPDATE SET kept_at = excluded.kept_at",
            sha256, user_id, time.time(),
        )  # fmt: skip

    async def owns(self, sha256: str, user_id: str) -> bool:
        found = await self._fetchval(
            "SELECT 1 FROM upload_owners WHERE sha256=$1 AND user_id=$2", sha256, user_id
        )
        return found is not None

    # -- one parse per file across the nodes ---------------------------------------------

    async def claim_parse(self, sha256: str) -> bool:
        """Take the parse of ``sha256`` for this node; False while another node's is alive."""
        node = await self._fetchval(
            "INSERT INTO pdf_parses (sha256, node, beat_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (sha256) DO UPDATE SET node = excluded.node, beat_at = excluded.beat_at "
            "WHERE pdf_parses.node = excluded.node OR pdf_parses.beat_at < $4 RETURNING node",
            sha256, self.node, time.time(), time.time() - PARSE_STALE_SECONDS,
        )  # fmt: skip
        return node is not None

    async def beat_parse(self, sha256: str) -> None:
        await self._execute(
            "UPDATE pdf_parses SET beat_at=$1 WHERE sha256=$2 AND node=$3",
            time.time(), sha256, self.node,
        )  # fmt: skip

    async def end_parse(self, sha256: str) -> None:
        await self._execute(
            "DELETE FROM pdf_parses WHERE sha256=$1 AND node=$2", sha256, self.node
        )

    async def parsing_elsewhere(self, sha256: str) -> bool:
        found = await self._fetchval(
            "SELECT 1 FROM pdf_parses WHERE sha256=$1 AND node<>$2 AND beat_at >= $3",
            sha256, self.node, time.time() - PARSE_STALE_SECONDS,
        )  # fmt: skip
        return found is not None

    async def prune(self, store: Store, cutoff: float) -> int:
        """Uploads and owner records kept since before ``cutoff`` that no kept job names."""
        needed = list(await store.payload_values("sha256"))
        status = await self._execute(
            "DELETE FROM upload_files WHERE kept_at < $1 AND NOT (sha256 = ANY($2))",
            cutoff, needed,
        )  # fmt: skip
        await self._execute(
            "DELETE FROM upload_owners WHERE kept_at < $1 AND NOT (sha256 = ANY($2))",
            cutoff, needed,
        )  # fmt: skip
        return int(status.rsplit(" ", 1)[-1])

    async def _execute(self, sql: str, *args: object) -> str:
        try:
            return str(await self.pool.execute(sql, *args))
        except _ERRORS as exc:
            raise ServiceUnavailable(f"the upload store failed: {exc}") from None

    async def _fetchval(self, sql: str, *args: object) -> object:
        try:
            return await self.pool.fetchval(sql, *args)
        except _ERRORS as exc:
            raise ServiceUnavailable(f"the upload store failed: {exc}") from None
