"""CORS over real sockets: the JSON API, long-poll and static files answer the pages of
``allowed_origins`` (the WebSocket's list), ``*`` never with credentials, others not at all."""

from __future__ import annotations

from typing import Any

from tests.conftest import MakeApi

APP = "https://app.example"
PREFLIGHT = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type"}  # fmt: skip


async def test_a_listed_origin_gets_cors_headers_with_credentials(make_api: MakeApi) -> None:
    api = await make_api("alice", allowed_origins=(APP,))
    for path in ("/api/jobs", "/api/meta", "/api/events?since=0&timeout=0", "/api/jobs/nope",
                 "/static/jobclient.js"):  # fmt: skip
        async with api.client.get(path, headers={**api.headers, "Origin": APP}) as resp:
            assert resp.headers["Access-Control-Allow-Origin"] == APP, path
            assert resp.headers["Access-Control-Allow-Credentials"] == "true"
            assert "Origin" in resp.headers.getall("Vary")
            assert "Retry-After" in resp.headers["Access-Control-Expose-Headers"]
    async with api.client.options("/api/jobs", headers={"Origin": APP, **PREFLIGHT}) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == APP
        assert "POST" in resp.headers["Access-Control-Allow-Methods"]
        assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
        assert int(resp.headers["Access-Control-Max-Age"]) > 0


async def test_an_unlisted_origin_gets_no_cors_header_and_its_preflight_is_refused(
    make_api: MakeApi,
) -> None:
    api = await make_api("alice", allowed_origins=(APP,))
    for origin in ("https://evil.example", "http://127.0.0.1:1", "null"):
        async with api.client.get("/api/jobs", headers={**api.headers, "Origin": origin}) as r:
            assert "Access-Control-Allow-Origin" not in r.headers, origin
        async with api.client.options("/api/jobs", headers={"Origin": origin, **PREFLIGHT}) as r:
            body: Any = await r.json()
            assert r.status == 403 and body["error"]["code"] == "ORIGIN_NOT_ALLOWED", origin
            assert "Access-Control-Allow-Origin" not in r.headers
    # Not under /api/ or /static/: no CORS at all, even for a listed origin.
    async with api.client.get("/healthz", headers={"Origin": APP}) as resp:
        assert "Access-Control-Allow-Origin" not in resp.headers


async def test_a_star_admits_any_origin_but_never_with_credentials(make_api: MakeApi) -> None:
    api = await make_api("alice", allowed_origins=("*",))
    for origin in ("https://any.example", "null"):
        async with api.client.get("/api/jobs", headers={**api.headers, "Origin": origin}) as r:
            assert r.status == 200
            assert r.headers["Access-Control-Allow-Origin"] == "*"
            assert "Access-Control-Allow-Credentials" not in r.headers
        async with api.client.options("/api/jobs", headers={"Origin": origin, **PREFLIGHT}) as r:
            assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "*"
            assert "Access-Control-Allow-Credentials" not in r.headers
