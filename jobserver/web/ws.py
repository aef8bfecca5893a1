"""The WebSocket endpoint ``/ws``: Origin check, authentication, and the client's messages.

The protocol (messages, close codes, resume) is described in docs/websocket.md.
"""

from __future__ import annotations

import asyncio
import logging
from http.cookies import CookieError, SimpleCookie
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from .. import joblog
from ..auth import Authenticator, Principal
from ..errors import (
    BadRequest,
    Forbidden,
    InvalidJson,
    InvalidPayload,
    JobServerError,
    ServiceUnavailable,
    Unauthorized,
)
from .connection import Connection
from .crosssite import origin_allowed
from .gateway import (
    CLOSE_INTERNAL,
    CLOSE_POLICY,
    CLOSE_TIMEOUT,
    CLOSE_TRY_LATER,
    Target,
    parse_since,
    parse_target,
)
from .http import COOKIE
from .keys import GATEWAY, IDENTITY, METRICS, SETTINGS

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

DATA = (WSMsgType.TEXT, WSMsgType.BINARY)
CONTROL = (WSMsgType.PING, WSMsgType.PONG)


def _header_token(request: web.Request, *, cookie: bool) -> str | None:
    """The bearer header's or the session cookie's token.

    Parsed here, not through ``request.cookies``, which would keep the parsed jar on the
    request (and so in memory) for as long as the socket stays open.
    """
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    if not cookie:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(request.headers.get("Cookie", ""))
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else None


async def _user_from_headers(request: web.Request, *, cookie: bool) -> Principal | None:
    """Who a bearer header names, or the cookie when ``cookie`` (the page's Origin may use
    it)."""
    token = _header_token(request, cookie=cookie)
    if not token:
        return None
    try:
        return await request.app[IDENTITY].auth.verify(token)
    except Unauthorized:
        return None  # a stale cookie: the client may still authenticate by message


def _parse(data: str | bytes) -> dict[str, Any]:
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise InvalidJson("the message is not valid JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise InvalidPayload(
            'a message is a JSON object with a string "type"', code="INVALID_MESSAGE"
        )
    return message


async def _authenticate(
    ws: web.WebSocketResponse, auth: Authenticator, timeout: float
) -> Principal:
    """The user named by the first message, ``{"type": "auth", "token"}``; Unauthorized else."""
    try:
        async with asyncio.timeout(timeout):
            while (msg := await ws.receive()).type in CONTROL:
                if msg.type is WSMsgType.PING:
                    await ws.pong(msg.data)
    except TimeoutError:
        raise Unauthorized(f"no auth message within {timeout:g}s") from None
    if msg.type not in DATA:
        raise Unauthorized("closed before authenticating")
    try:
        message = _parse(msg.data)
    except JobServerError:
        raise Unauthorized("the first message must be auth") from None
    token = message.get("token")
    if message["type"] != "auth" or not isinstance(token, str):
        raise Unauthorized('the first message must be {"type": "auth", "token": ...}')
    return await auth.verify(token)


def _error(exc: JobServerError, target: Target | None = None) -> dict[str, Any]:
    extra = target.wire() if target is not None else {}
    return {"type": "error", "code": exc.code, "message": exc.message, **extra}


async def _handle(conn: Connection, data: str | bytes, auth: Authenticator) -> None:
    """Act on one client message; a JobServerError becomes an ``error`` reply."""
    message = _parse(data)
    kind = message["type"]
    if kind == "ping":
        conn.send({"type": "pong"})
    elif kind == "subscribe":
        target = parse_target(message.get("userId"), message.get("jobId"))
        try:
            epoch = message.get("epoch")
            if epoch is not None and not isinstance(epoch, str):
                raise InvalidPayload("epoch must be a string", code="INVALID_MESSAGE")
            since = parse_since(message.get("since"))
            joblog.subscription("subscribe", "ws", conn.user_id, target.wire(), since)
            await conn.subscribe(target, since, epoch)
        except JobServerError as exc:
            conn.send(_error(exc, target))
    elif kind == "unsubscribe":
        target = parse_target(message.get("userId"), message.get("jobId"))
        joblog.subscription("unsubscribe", "ws", conn.user_id, target.wire())
        conn.unsubscribe(target)
    elif kind == "auth":
        token = message.get("token")
        user_id = (await auth.verify(token if isinstance(token, str) else "")).user_id
        if user_id != conn.user_id:
            raise Forbidden("this connection is signed in as another user", code="AUTH_MISMATCH")
        conn.send({"type": "authenticated", "userId": user_id})
    else:
        raise BadRequest(f"unknown message type {kind[:40]!r}", code="UNKNOWN_TYPE")


@routes.get("/ws")
async def websocket(request: web.Request) -> web.StreamResponse:
    app = request.app
    settings, gateway = app[SETTINGS], app[GATEWAY]
    if not origin_allowed(request, settings.allowed_origins, credentials=False):
        raise Forbidden("this page's Origin may not open the WebSocket", code="ORIGIN_NOT_ALLOWED")
    # A page let in only by "*" must send a token: its Origin never gets the cookie's user.
    cookie = origin_allowed(request, settings.allowed_origins, credentials=True)
    if gateway.closing:
        raise ServiceUnavailable("the server is shutting down")
    identity = app[IDENTITY]
    principal = await _user_from_headers(request, cookie=cookie)
    ws = web.WebSocketResponse(
        timeout=CLOSE_TIMEOUT,
        autoping=False,  # pings are answered below, pongs mark the peer alive (gateway.py)
        compress=False,  # events go out as ready-made frames (see connection.py)
        max_msg_size=settings.ws_max_message_bytes,
    )
    if not ws.can_prepare(request).ok:  # a plain GET (a browser tab, curl): say what this is
        raise BadRequest("GET /ws is the WebSocket endpoint: open it with a WebSocket client "
                         "(see docs/websocket.md); GET /api/events long-polls over plain HTTP")
    writer = await ws.prepare(request)
    transport = request.transport
    if transport is None:
        return ws
    conn = Connection(
        gateway, ws, transport, writer,
        queue_size=settings.ws_queue_size, max_subscriptions=settings.ws_max_subscriptions,
    )  # fmt: skip
    gateway.add(conn)
    metrics = app[METRICS]
    metrics.ws_opened()

    def ender() -> None:  # signed out: this socket's token is no longer valid
        gateway.spawn(conn.close(CLOSE_POLICY, "signed out"))

    # One coroutine for the socket's whole life (no helper frames): it is what an idle
    # connection costs, and there may be tens of thousands.
    try:
        if principal is None:
            try:
                principal = await _authenticate(
                    ws, identity.auth, settings.ws_auth_timeout_seconds
                )
            except Unauthorized as exc:
                await conn.close(CLOSE_POLICY, exc.message)
                return ws
        user_id = principal.user_id
        if not gateway.admit(conn, user_id):
            limit = settings.ws_max_connections_per_user
            await conn.close(CLOSE_TRY_LATER, f"at most {limit} connections per user")
            return ws
        identity.track(principal.token_id, ender)
        conn.send({"type": "authenticated", "userId": user_id})
        while True:
            msg = await ws.receive()
            conn.heard = True
            if msg.type in DATA:
                try:
                    await _handle(conn, msg.data, identity.auth)
                except JobServerError as exc:
                    conn.send(_error(exc))
            elif msg.type is WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type is not WSMsgType.PONG:
                break  # closed, or an error (e.g. 1009, too big) after which aiohttp closed it
    except Exception:
        log.exception("WebSocket handler failed")
        await conn.close(CLOSE_INTERNAL, "server error")
    finally:
        if principal is not None:
            identity.untrack(principal.token_id, ender)
        conn.detach()
        gateway.release(conn)
        # The code this server sent says why (4000: overflow), whatever the peer answered.
        metrics.ws_closed(conn.close_code if conn.close_code is not None else ws.close_code)
    return ws
