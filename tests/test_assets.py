"""Static files over real sockets: gzip for browsers that take it, Cache-Control no-cache with
ETag revalidation, no way out of static/, files changed on disk served new, nothing external."""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path

import aiohttp
from multidict import CIMultiDict

from jobserver.web.assets import STATIC, Assets
from tests.conftest import MakeApi

GZIP = {"Accept-Encoding": "gzip, deflate, br"}


async def raw_get(url: str, headers: dict[str, str]) -> tuple[int, CIMultiDict[str], bytes]:
    """The bytes as sent (no decompression), to see what crossed the wire."""
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.get(url, headers=headers) as resp,
    ):
        return resp.status, CIMultiDict(resp.headers), await resp.read()


async def test_text_files_go_gzipped_to_browsers_that_take_it(make_api: MakeApi) -> None:
    api = await make_api("alice")
    for path, name in [("/", "index.html"), ("/static/app.js", "app.js"),
                       ("/static/app.css", "app.css"),
                       ("/static/jobclient/client.js", "jobclient/client.js")]:  # fmt: skip
        source = (STATIC / name).read_bytes()
        status, headers, body = await raw_get(str(api.client.make_url(path)), GZIP)
        assert status == 200, path
        assert headers["Content-Encoding"] == "gzip", path
        assert "Accept-Encoding" in headers["Vary"]
        assert gzip.decompress(body) == source, path
        assert len(body) < len(source) / 2, (path, len(body), len(source))
        assert headers["Cache-Control"] == "no-cache"
        assert headers["ETag"]
        # A client that takes no gzip gets the file as it is.
        status, plain_headers, plain = await raw_get(str(api.client.make_url(path)), {
            "Accept-Encoding": "identity"})  # fmt: skip
        assert status == 200 and plain == source and "Content-Encoding" not in plain_headers
        assert plain_headers["Vary"] == "Accept-Encoding"  # a cache must keep both apart
        assert plain_headers["ETag"] != headers["ETag"]  # two variants, two tags


async def test_a_browser_revalidates_with_its_etag_and_gets_a_304(make_api: MakeApi) -> None:
    api = await make_api("alice")
    url = str(api.client.make_url("/static/app.js"))
    _, headers, _ = await raw_get(url, GZIP)
    status, again, body = await raw_get(url, {**GZIP, "If-None-Match": headers["ETag"]})
    assert status == 304 and body == b""
    assert again["Cache-Control"] == "no-cache"


async def test_nothing_outside_static_is_served(make_api: MakeApi) -> None:
    api = await make_api("alice")
    for path in ("/static/%2e%2e/jobserver/config.py", "/static/..%2fpyproject.toml",
                 "/static/jobclient", "/static/nope.js", "/static/%2fetc%2fpasswd"):  # fmt: skip
        async with api.client.get(path) as resp:
            assert resp.status == 404, path
            assert "DEBUG" not in await resp.text()


def test_a_file_changed_while_the_server_runs_is_served_new(tmp_path: Path) -> None:
    source, cache = tmp_path / "static", tmp_path / "cache"
    source.mkdir()
    cache.mkdir()
    page = source / "page.js"
    page.write_text("// first\n" + "let x = 1;\n" * 100)
    assets = Assets(source, cache)
    assert assets.prepare_all() == 1
    served = assets.path("page.js")
    assert served is not None and served.read_text().startswith("// first")
    assert gzip.decompress((cache / "page.js.gz").read_bytes()) == page.read_bytes()
    page.write_text("// second\n" + "let y = 2;\n" * 100)
    os.utime(page, ns=(1, 1))  # a change even on a coarse clock
    served = assets.path("page.js")
    assert served is not None and served.read_text().startswith("// second")
    assert gzip.decompress((cache / "page.js.gz").read_bytes()) == page.read_bytes()
    assert served.stat().st_mtime_ns == 1  # the source's time: the ETag survives restarts
    (source / "tiny.css").write_text("a{}")
    assert assets.path("tiny.css") is not None and not (cache / "tiny.css.gz").exists()
    assert assets.path("../cache/page.js") is None


def test_the_page_loads_nothing_from_elsewhere() -> None:
    """Air-gapped hosts: no CDN, font service or remote module anywhere in static/."""
    external = re.compile(
        r"""(?:src|href)\s*=\s*["'](?:https?:)?//|(?:from|import)\s*\(?\s*["'](?:https?:)?//"""
        r"""|url\(\s*["']?(?:https?:)?//|@import\s+["'](?:https?:)?//"""
    )
    files = [p for p in STATIC.rglob("*") if p.suffix in {".html", ".js", ".css"}]
    assert len(files) >= 6
    for path in files:
        found = external.search(path.read_text())
        assert found is None, f"{path.relative_to(STATIC)} loads {found.group(0)!r}"
