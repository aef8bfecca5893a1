"""The page as served, in Chromium: compressed, revalidated, and whole on an air-gapped host."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from playwright.sync_api import Route

from tests.browser.conftest import Session
from tests.liveserver import LiveServer


def test_the_page_works_with_nothing_but_its_server_and_comes_gzipped(
    make_session: Callable[..., Session], server: LiveServer
) -> None:
    s = make_session(server)
    elsewhere: list[str] = []

    def refuse(route: Route) -> None:  # an air-gapped host: nothing but the server answers
        elsewhere.append(route.request.url)
        route.abort()

    s.context.route(lambda url: not url.startswith(server.url), refuse)
    encodings: dict[str, Any] = {}
    s.page.on("response", lambda r: encodings.__setitem__(
        r.url, (r.status, r.headers.get("content-encoding"), r.headers.get("cache-control"))))
    s.open()  # signs in and waits for the live connection
    assert elsewhere == [], f"the page asked for {elsewhere}"
    for name in ("/", "/static/app.js", "/static/app.css", "/static/jobclient/client.js"):
        status, encoding, cache = encodings[server.url + name]
        assert (status, encoding, cache) == (200, "gzip", "no-cache"), name
    # A reload revalidates: the browser asks again (no-cache) and gets the files back (a 304
    # that Chromium shows as its cached 200), still working.
    s.page.reload()
    s.wait_connection("live")
    assert elsewhere == []
