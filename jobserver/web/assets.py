"""The page's static files: gzip when the browser takes it, ``Cache-Control: no-cache`` + ETag.

At start-up every file under ``static/`` is copied into a private temporary folder, a text
file with a ``.gz`` beside it (the standard library's gzip, level 9); aiohttp's
``FileResponse`` then sends the ``.gz`` to a browser that accepts gzip, with ETag,
Last-Modified, ``Content-Encoding`` and ``Vary: Accept-Encoding``. Every answer says
``Cache-Control: no-cache``: a browser keeps the files but asks each time whether they
changed (a 304 of a few hundred bytes), so a page never mixes modules of two versions. (The
page imports its modules by fixed names; content-hashed names would need a build step.) A
file changed on disk while the server runs is noticed by its size and time on the next
request and prepared again. Nothing is loaded from elsewhere, so the page works air-gapped.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from stat import S_ISREG

from aiohttp import web

STATIC = Path(__file__).resolve().parent.parent.parent / "static"
COMPRESSIBLE = frozenset({".js", ".mjs", ".css", ".html", ".svg", ".json", ".map", ".ts", ".txt"})
MIN_BYTES = 256  # smaller files gain nothing worth a second variant
CACHE_CONTROL = "no-cache"


class Assets:
    """Prepared copies of a folder's files (and their gzip variants) in another folder.

    Args:
        source: the folder served (``static/``).
        cache: an empty folder of this process's own for the copies.
    """

    def __init__(self, source: Path, cache: Path) -> None:
        self.source = source.resolve()
        self.cache = cache
        self._seen: dict[str, tuple[int, int]] = {}

    def prepare_all(self) -> int:
        """Prepare every file now (start-up); how many there are."""
        count = 0
        for path in sorted(self.source.rglob("*")):
            if path.is_file() and self.path(path.relative_to(self.source).as_posix()):
                count += 1
        return count

    def path(self, rel: str) -> Path | None:
        """The prepared copy of ``source/rel`` (made again if the file changed); None when
        there is no such file inside the folder."""
        try:
            found = (self.source / rel).resolve()
            found.relative_to(self.source)  # no way out: "..", absolute paths, symlinks
            st = found.stat()
        except (OSError, ValueError):
            return None
        if not S_ISREG(st.st_mode):
            return None
        key = found.relative_to(self.source).as_posix()
        if self._seen.get(key) != (st.st_mtime_ns, st.st_size):
            self._prepare(key, found, st.st_mtime_ns)
            self._seen[key] = (st.st_mtime_ns, st.st_size)
        return self.cache / key

    def _prepare(self, key: str, found: Path, mtime_ns: int) -> None:
        data = found.read_bytes()
        dest = self.cache / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Same time as the source: the ETag (time and size) stays the same across restarts.
        _write(dest, data, mtime_ns)
        packed = gzip.compress(data, 9, mtime=0)
        gz = dest.with_name(dest.name + ".gz")
        if found.suffix in COMPRESSIBLE and len(data) >= MIN_BYTES and len(packed) < len(data):
            _write(gz, packed, mtime_ns)
        else:
            gz.unlink(missing_ok=True)


def _write(path: Path, data: bytes, mtime_ns: int) -> None:
    """Write whole or not at all (a request may be reading the old copy)."""
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    temp.write_bytes(data)
    os.utime(temp, ns=(mtime_ns, mtime_ns))
    os.replace(temp, path)


ASSETS = web.AppKey("assets", Assets)


async def _send(request: web.Request, rel: str) -> web.FileResponse:
    path = await asyncio.to_thread(request.app[ASSETS].path, rel)
    if path is None:
        raise web.HTTPNotFound()
    # Vary on the plain variant too, so a shared cache keeps the two apart.
    headers = {"Cache-Control": CACHE_CONTROL, "Vary": "Accept-Encoding"}
    return web.FileResponse(path, headers=headers)


async def _index(request: web.Request) -> web.FileResponse:
    return await _send(request, "index.html")


async def _static(request: web.Request) -> web.FileResponse:
    return await _send(request, request.match_info["path"])


async def _assets_ctx(app: web.Application) -> AsyncIterator[None]:
    cache = Path(tempfile.mkdtemp(prefix="jobserver-static-"))
    try:
        assets = Assets(STATIC, cache)
        await asyncio.to_thread(assets.prepare_all)
        app[ASSETS] = assets
        yield
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def setup_assets(app: web.Application) -> None:
    """Serve ``/`` (the page) and ``/static/...``, when the folder is there."""
    if not STATIC.is_dir():
        return
    app.cleanup_ctx.append(_assets_ctx)
    app.router.add_get("/", _index)
    app.router.add_get("/static/{path:.+}", _static)
