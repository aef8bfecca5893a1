"""Host and Origin checks over real sockets: DNS rebinding, cookie writes from other pages, and
the one ``allowed_origins`` list shared with the WebSocket (where ``*`` never brings the cookie).
"""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
import pytest

from jobserver.config import Settings
from tests.conftest import ApiClient, MakeApi
from tests.liveserver import LiveServer

JOB = {"type": "demo.sleep", "payload": {"seconds": 0}}


def raw_get(server: LiveServer, path: str, host: str) -> tuple[int, bytes]:
    """A request with exactly this Host header (urllib would not let us send any)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_a_rebound_host_name_is_refused_with_421(live: LiveServer) -> None:
    for path in ("/healthz", "/api/meta", "/"):
        status, body = raw_get(live, path, "evil.example")
        assert status == 421 and b'"HOST_NOT_ALLOWED"' in body, (path, body)
        status, body = raw_get(live, path, f"evil.example:{live.port}")
        assert status == 421
    for host in (f"127.0.0.1:{live.port}", f"localhost:{live.port}", "localhost"):
        assert raw_get(live, "/healthz", host)[0] == 200, host


async def cookie_post(api: ApiClient, path: str, headers: dict[str, str]) -> tuple[int, Any]:
    """A POST signed in by the session cookie alone, as a browser sends it."""
    async with api.client.post(path, json=JOB, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_cookie_writes_are_checked_by_origin_and_sec_fetch_site(make_api: MakeApi) -> None:
    api = await make_api("alice", allowed_origins=("https://app.example",))
    own = f"http://127.0.0.1:{api.client.port}"
    refused = [
        {"Origin": "http://127.0.0.1:1"},  # another port of the same host: same site
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "same-site", "Origin": own.replace("127.0.0.1", "localhost")},
        {"Sec-Fetch-Site": "cross-site"},
    ]
    for headers in refused:
        status, body = await cookie_post(api, "/api/jobs", headers)
        assert status == 403 and body["error"]["code"] == "ORIGIN_NOT_ALLOWED", headers
    allowed = [
        {},  # curl, programs: no Origin, no Sec-Fetch-Site
        {"Origin": own},
        {"Origin": own, "Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed into the address bar
        {"Origin": "https://app.example", "Sec-Fetch-Site": "cross-site"},  # listed
    ]
    for headers in allowed:
        status, body = await cookie_post(api, "/api/jobs", headers)
        assert status == 202, (headers, body)
    # A bearer token cannot be attached by another page without CORS: any Origin may send it.
    status, _ = await api.post("/api/jobs", json=JOB, headers={"Origin": "https://evil.example"})
    assert status == 202
    # Bodyless writes from the server's own page (the JS client's cancel) keep working.
    job_id = body["jobId"]
    async with api.client.post(f"/api/jobs/{job_id}/cancel", headers={"Origin": own}) as resp:
        assert resp.status in (200, 409)
    async with api.client.post(f"/api/jobs/{job_id}/retry",
                               headers={"Origin": "http://127.0.0.1:1"}) as resp:  # fmt: skip
        assert resp.status == 403
    async with api.client.delete("/api/session", headers={"Origin": "http://127.0.0.1:1"}) as resp:
        assert resp.status == 403


async def test_sign_in_from_another_page_is_refused(make_api: MakeApi) -> None:
    api = await make_api("alice")
    api.client.session.cookie_jar.clear()
    async with api.client.post("/api/session", json={"userId": "mallory"},
                               headers={"Origin": "http://127.0.0.1:1"}) as resp:  # fmt: skip
        assert resp.status == 403 and "Set-Cookie" not in resp.headers
    async with api.client.post("/api/session", json={"userId": "mallory"}) as resp:
        assert resp.status == 200  # a program signing in


async def test_a_star_origin_opens_the_websocket_but_never_with_the_cookie(
    make_api: MakeApi,
) -> None:
    api = await make_api("alice", allowed_origins=("*",))
    ws = await api.client.ws_connect("/ws", headers={"Origin": "https://any.example"})
    await ws.send_json({"type": "ping"})  # not signed in by the cookie: this is not an auth
    msg = await ws.receive(timeout=10)
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1008
    ws = await api.client.ws_connect("/ws", headers={"Origin": "https://any.example"})
    await ws.send_json({"type": "auth", "token": api.token})
    assert (await ws.receive_json(timeout=10))["type"] == "authenticated"
    await ws.close()
    # Nor does "*" let another page write with the cookie.
    status, body = await cookie_post(api, "/api/jobs", {"Origin": "https://any.example"})
    assert status == 403 and body["error"]["code"] == "ORIGIN_NOT_ALLOWED"


@pytest.mark.parametrize("bad", ["app.example", "https://app.example/path", "ftp://x.example"])
def test_an_origin_setting_that_is_not_an_origin_is_refused_at_start(bad: str) -> None:
    with pytest.raises(ValueError, match="allowed_origins"):
        Settings(allowed_origins=(bad,))
