"""Signing in and out: ``/api/session`` by name, password or token; refresh; the methods on.

Every way in starts a session and answers ``{userId, token, refreshToken, expiresAt}`` with
the access token as an HttpOnly cookie and the refresh token as another, sent only to
``/api/session``. Signing out revokes the session on the server and ends its live sockets.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from ..auth import REFRESH, Principal, issue_token
from ..errors import Forbidden, InvalidPayload, TooManyRequests, Unauthorized
from ..models import STATUS_EVENT_TYPES, TERMINAL, EventType, JobStatus
from ..passwords import MAX_LENGTH, MIN_LENGTH
from ..userids import RULE, check_user_id
from .http import COOKIE, REFRESH_COOKIE, json_body, json_response, request_token, user_of
from .keys import IDENTITY, PLUGINS, REGISTRY, SECRET, SETTINGS, STORE

routes = web.RouteTableDef()


async def _start_session(request: web.Request, user_id: str, method: str) -> web.Response:
    settings = request.app[SETTINGS]
    identity = request.app[IDENTITY]
    expires_at = time.time() + settings.session_ttl_seconds
    session = await identity.sessions.start(user_id, method, expires_at)
    secret = request.app[SECRET]
    token = issue_token(secret, user_id, settings.token_ttl_seconds, sid=session.id)
    refresh = issue_token(secret, user_id, settings.session_ttl_seconds, sid=session.id,
                          kind=REFRESH)  # fmt: skip
    response = json_response({
        "userId": user_id,
        "token": token,
        "refreshToken": refresh,
        "expiresAt": int(time.time()) + settings.token_ttl_seconds,
        "method": method,
    })  # fmt: skip
    _set_cookies(response, token, settings.token_ttl_seconds, refresh, settings.session_ttl_seconds)
    return response


def _set_cookies(
    response: web.Response, token: str, ttl: int, refresh: str | None, refresh_ttl: int
) -> None:
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/", max_age=ttl)
    if refresh is not None:
        response.set_cookie(REFRESH_COOKIE, refresh, httponly=True, samesite="Strict",
                            path="/api/session", max_age=refresh_ttl)  # fmt: skip


def _address(request: web.Request) -> str:
    return request.remote or "unknown"


async def _password_sign_in(request: web.Request, body: dict[str, Any]) -> str:
    """The account's user id if the password is right; throttled per account and address."""
    identity = request.app[IDENTITY]
    if not identity.methods.password:
        raise Forbidden("this server has no password accounts", code="SIGNIN_DISABLED")
    user_id = check_user_id(body.get("userId"))
    password = body.get("password")
    if not isinstance(password, str):
        raise InvalidPayload("password must be a string")
    account, address = "account:" + user_id, "address:" + _address(request)
    wait = max(identity.per_account.retry_after(account),
               identity.per_address.retry_after(address))  # fmt: skip
    if wait > 0:
        raise TooManyRequests(
            "too many failed sign-ins; wait before trying again",
            code="SIGNIN_THROTTLED", retry_after=wait,
        )  # fmt: skip
    # One no account can have (the length rule is for setting one) is as wrong as any other:
    # the same answer, counted the same, and never hashed (a long one costs the server).
    fits = MIN_LENGTH <= len(password) <= MAX_LENGTH
    stored = await identity.sessions.password_hash(user_id) if fits else None
    if not fits or not await identity.verifier.verify(stored, password):
        identity.per_account.failed(account)
        identity.per_address.failed(address)
        raise Unauthorized("wrong name or password", code="BAD_CREDENTIALS")
    identity.per_account.succeeded(account)
    return user_id


@routes.post("/api/session")
async def sign_in(request: web.Request) -> web.Response:
    """By name (open sign-in), by name and password, or with a token an application minted."""
    body = await json_body(request)
    identity = request.app[IDENTITY]
    if "password" in body:
        return await _start_session(request, await _password_sign_in(request, body), "password")
    if "token" in body:
        token = body["token"]
        if not isinstance(token, str) or not token:
            raise InvalidPayload("token must be a non-empty string")
        principal = await identity.auth.verify(token)
        method = "jwks" if identity.methods.jwks and not principal.session else "token"
        return await _start_session(request, principal.user_id, method)
    if not identity.methods.open:
        raise Forbidden("open sign-in is turned off: sign in with a password or a token",
                        code="SIGNIN_DISABLED")  # fmt: skip
    return await _start_session(request, check_user_id(body.get("userId")), "open")


@routes.post("/api/session/refresh")
async def refresh(request: web.Request) -> web.Response:
    """A new access token for the session a refresh token (body or cookie) names."""
    body = await json_body(request)
    token = body.get("refreshToken", request.cookies.get(REFRESH_COOKIE))
    if not isinstance(token, str) or not token:
        raise Unauthorized("send the refresh token (refreshToken or the session cookie)")
    principal = await request.app[IDENTITY].auth.verify_refresh(token)
    settings = request.app[SETTINGS]
    ttl = int(min(settings.token_ttl_seconds, principal.expires_at - time.time()))
    if ttl < 1:
        raise Unauthorized("the session has expired; sign in again", code="TOKEN_EXPIRED")
    access = issue_token(request.app[SECRET], principal.user_id, ttl, sid=principal.token_id)
    response = json_response({"userId": principal.user_id, "token": access,
                              "expiresAt": int(time.time()) + ttl})  # fmt: skip
    _set_cookies(response, access, ttl, None, 0)
    return response


@routes.get("/api/session")
async def who_am_i(request: web.Request) -> web.Response:
    return json_response({"userId": user_of(request)})


async def _signed_out_principal(request: web.Request) -> Principal | None:
    """The session to end: the access token's, else (it expired) the refresh cookie's."""
    auth = request.app[IDENTITY].auth
    token = request_token(request)
    if token:
        try:
            return await auth.verify(token)
        except Unauthorized:
            pass
    refresh_token = request.cookies.get(REFRESH_COOKIE)
    if refresh_token:
        try:
            return await auth.verify_refresh(refresh_token)
        except Unauthorized:
            pass
    return None


@routes.delete("/api/session")
async def sign_out(request: web.Request) -> web.Response:
    """Revoke the session (or the token's id) and end its sockets and long-polls."""
    identity = request.app[IDENTITY]
    principal = await _signed_out_principal(request)
    ended = 0
    if principal is not None and principal.token_id is not None:
        if principal.session:
            await identity.sessions.revoke(principal.token_id)
        else:
            await identity.sessions.revoke_token(principal.token_id, principal.expires_at)
        ended = identity.end(principal.token_id)
    response = json_response({"signedOut": True, "revoked": principal is not None
                              and principal.token_id is not None, "closed": ended})  # fmt: skip
    response.del_cookie(COOKIE, path="/")
    response.del_cookie(REFRESH_COOKIE, path="/api/session")
    return response


@routes.get("/api/session/methods")
async def methods(request: web.Request) -> web.Response:
    """Which ways to sign in are on (no token needed: the page asks before signing in)."""
    return json_response({**request.app[IDENTITY].methods.wire(), "userIdRule": RULE})


@routes.get("/api/meta")
async def meta(request: web.Request) -> web.Response:
    """Stage display names and the enums clients need: the only source of these strings."""
    store = request.app[STORE]
    registry = request.app[REGISTRY]
    names = registry.stage_names()
    return json_response(
        {
            "stages": [{"id": s, "name": n} for s, n in names.items()],
            "stageNames": names,
            "statuses": [s.value for s in JobStatus],
            "terminalStatuses": [s.value for s in JobStatus if s in TERMINAL],
            "eventTypes": [t.value for t in EventType],
            "statusEventTypes": [t.value for t in EventType if t in STATUS_EVENT_TYPES],
            "jobTypes": registry.names(),
            "types": {
                jt.name: {
                    "displayName": jt.display_name,
                    "stages": [s.id for s in jt.stages],
                    "acceptsUpload": jt.name in request.app[PLUGINS].multipart_jobs,
                }
                for jt in registry.types()
            },
            "epoch": store.epoch,
            "seq": await store.head_seq(),
            "signin": request.app[IDENTITY].methods.wire(),
            "maxUploadBytes": request.app[SETTINGS].max_upload_bytes,
        }
    )
