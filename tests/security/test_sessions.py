"""Issue 13, item 1: sign-out revokes the session on the server and ends its live connections;
access tokens can be short-lived and refreshed; user ids have one normal form."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import jwt

from jobserver.app import create_app
from jobserver.auth import CACHE_SECONDS, Principal, TokenCache
from jobserver.web.keys import IDENTITY
from tests.conftest import ApiClient, MakeApi, sign_in
from tests.wsraw import demo_only


async def test_sign_out_revokes_the_token_and_closes_its_sockets_and_polls(
    make_api: MakeApi,
) -> None:
    api = await make_api("alice")
    other = await api.as_user("alice")  # a second session of the same user: not signed out
    ws = await api.client.ws_connect("/ws", headers=api.headers)
    assert (await ws.receive_json(timeout=10))["type"] == "authenticated"
    poll = asyncio.create_task(api.get("/api/events?timeout=30"))
    await asyncio.sleep(0.3)  # the poll is waiting
    status, body = await api.request("DELETE", "/api/session")
    assert status == 200 and body["revoked"] is True and body["closed"] == 2
    closing = await ws.receive(timeout=10)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == 1008
    status, body = await asyncio.wait_for(poll, 10)  # answered at once, not after 30 s
    assert status == 401 and body["error"]["code"] == "TOKEN_REVOKED"
    status, body = await api.get("/api/jobs")
    assert status == 401 and body["error"]["code"] == "TOKEN_REVOKED"
    assert (await other.get("/api/jobs"))[0] == 200
    # A new socket with the revoked token is refused too.
    ws2 = await api.client.ws_connect("/ws")
    await ws2.send_json({"type": "auth", "token": api.token})
    await ws2.receive(timeout=10)
    assert ws2.close_code == 1008


async def test_a_revoked_session_stays_revoked_after_a_restart(
    aiohttp_client: Any, settings: Any
) -> None:
    client = await aiohttp_client(create_app(settings))
    api = await sign_in(client, "alice")
    assert (await api.request("DELETE", "/api/session"))[0] == 200
    await client.close()
    again = await aiohttp_client(create_app(settings))  # the same data dir
    status, body = await ApiClient(again, "alice", api.token).get("/api/jobs")
    assert status == 401 and body["error"]["code"] == "TOKEN_REVOKED"


async def _until_refused(api: ApiClient, token: str, seconds: float = 10.0) -> Any:
    """The body of the first refusal of ``token`` (asked every 50 ms, at most ``seconds``)."""
    deadline = time.monotonic() + seconds
    while True:
        status, body = await api.get("/api/jobs", headers={"Authorization": f"Bearer {token}"})
        if status == 401 or time.monotonic() > deadline:
            assert status == 401, (status, body)
            return body
        await asyncio.sleep(0.05)


async def test_short_access_tokens_are_refreshed_until_sign_out(make_api: MakeApi) -> None:
    api = await make_api("alice", token_ttl_seconds=1)
    async with api.client.post("/api/session", json={"userId": "alice"}) as resp:
        first = await resp.json()
    expired = await _until_refused(api, first["token"])  # within its 1 s
    assert expired["error"]["code"] == "TOKEN_EXPIRED"
    status, fresh = await api.post("/api/session/refresh",
                                   json={"refreshToken": first["refreshToken"]})  # fmt: skip
    assert status == 200 and fresh["userId"] == "alice"
    bearer = {"Authorization": f"Bearer {fresh['token']}"}
    assert (await api.get("/api/jobs", headers=bearer))[0] == 200
    # A refresh token is not an access token.
    wrong = {"Authorization": f"Bearer {first['refreshToken']}"}
    assert (await api.get("/api/jobs", headers=wrong))[1]["error"]["code"] == "INVALID_TOKEN"
    assert (await api.request("DELETE", "/api/session", headers=bearer))[0] == 200
    status, body = await api.post("/api/session/refresh",
                                  json={"refreshToken": first["refreshToken"]})  # fmt: skip
    assert status == 401 and body["error"]["code"] == "TOKEN_REVOKED"


async def test_a_remembered_token_is_refused_once_expired_or_signed_out(
    make_api: MakeApi,
) -> None:
    # Verified tokens are remembered (auth.TokenCache), so each of these is a cache hit.
    api = await make_api("alice", token_ttl_seconds=2)
    auth = api.client.app[IDENTITY].auth
    expires = jwt.decode(api.token, options={"verify_signature": False})["exp"]
    assert (await api.get("/api/jobs"))[0] == 200
    assert auth.cache.get(api.token, time.time()) is not None
    assert (await api.get("/api/jobs"))[0] == 200
    while time.time() < expires:
        await asyncio.sleep(0.05)
    status, body = await api.get("/api/jobs")
    assert status == 401 and body["error"]["code"] == "TOKEN_EXPIRED"

    again = await api.as_user("alice")
    assert (await again.get("/api/jobs"))[0] == 200
    assert auth.cache.get(again.token, time.time()) is not None
    assert (await again.request("DELETE", "/api/session"))[0] == 200
    status, body = await again.get("/api/jobs")  # at once, from the cache's own check
    assert status == 401 and body["error"]["code"] == "TOKEN_REVOKED"

    third = await api.as_user("alice")
    assert (await third.get("/api/jobs"))[0] == 200
    await auth.sessions.revoke_user("alice")  # as `server.py user signout alice` does
    status, body = await third.get("/api/jobs")
    assert status == 401 and body["error"]["code"] == "TOKEN_REVOKED"


def test_the_token_cache_is_bounded_and_forgets_the_oldest() -> None:
    cache = TokenCache(size=3)
    now = time.time()
    for n in range(5):
        cache.put(f"t{n}", Principal(f"u{n}", None, False, now + 60), now)
    assert [cache.get(f"t{n}", now) is not None for n in range(5)] == [False, False, True,
                                                                       True, True]  # fmt: skip
    cache.put("soon", Principal("u", None, False, now + 1), now)
    assert cache.get("soon", now + 0.5) is not None and cache.get("soon", now + 1) is None
    cache.put("long", Principal("u", None, False, now + 86400), now)
    assert cache.get("long", now + CACHE_SECONDS) is None  # verified again after a while


async def test_user_ids_have_one_normal_form(make_api: MakeApi) -> None:
    api = await demo_only(make_api)("alice")
    job = (await api.post("/api/jobs", json={"type": "demo.sleep", "payload": {"seconds": 0}}))[1]
    for spelling in ("ALICE", "Alice", "\uff41\uff4c\uff49\uff43\uff45"):  # full-width too
        same = await api.as_user(spelling)
        assert same.user == spelling
        assert await same.get("/api/session") == (200, {"userId": "alice"})
        assert (await same.get(f"/api/jobs/{job['jobId']}"))[0] == 200
    for bad in ("alice\n", " alice", "al ice", "alice/..", "", "a" * 65, "-alice", "al\u200bice"):
        async with api.client.post("/api/session", json={"userId": bad}) as resp:
            assert resp.status == 400, bad
            assert (await resp.json())["error"]["code"] == "INVALID_PAYLOAD"
