"""Request and response helpers: JSON in and out (orjson), errors as {"error": {code, message}}."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ..errors import (
    BodyTooLarge,
    InBatch,
    InvalidJson,
    InvalidPayload,
    JobServerError,
    TooManyRequests,
    Unauthorized,
)
from ..throttle import retry_after_header
from .keys import IDENTITY, PRINCIPAL, SETTINGS, USER
from .numbers import whole

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
COOKIE = "jobserver_token"
REFRESH_COOKIE = "jobserver_refresh"  # sent only to /api/session
PUBLIC = frozenset({
    ("POST", "/api/session"),
    ("POST", "/api/session/refresh"),
    ("DELETE", "/api/session"),  # signs out whatever it can find, even an expired session
    ("GET", "/api/session/methods"),
    ("GET", "/api/openapi.json"),
})  # fmt: skip

HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "BODY_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return json_response({"error": {"code": code, "message": message, **extra}}, status)


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; InvalidJson / BodyTooLarge / InvalidPayload otherwise."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BodyTooLarge(
            f"the request body is larger than {request.app[SETTINGS].max_body_bytes} bytes"
        ) from None
    try:
        data = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        raise InvalidJson("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidPayload("the request body must be a JSON object")
    return data


MAX_PAGE = 200  # most items a list route returns at once


def whole_number(value: Any, name: str, low: int, high: int, default: int) -> int:
    """A whole number from a query string or a JSON body, within bounds; ``default`` if absent."""
    return default if value is None else whole(value, name, low, high)


def page_of(request: web.Request) -> tuple[int, int]:
    """``limit`` and ``offset`` of a list route (50 and 0 unless asked)."""
    query = request.query
    limit = whole_number(query.get("limit"), "limit", 1, MAX_PAGE, 50)
    return limit, whole_number(query.get("offset"), "offset", 0, 10**9, 0)


def page_body(key: str, items: list[Any], limit: int, offset: int) -> dict[str, Any]:
    """One page of a list fetched with ``limit + 1`` rows, so the extra row says more exist."""
    return {
        key: items[:limit],
        "limit": limit,
        "offset": offset,
        "nextOffset": offset + limit if len(items) > limit else None,
    }


def paged(key: str, items: list[Any], limit: int, offset: int) -> web.Response:
    """``page_body`` as the response."""
    return json_response(page_body(key, items, limit, offset))


def request_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE)


def user_of(request: web.Request) -> str:
    user: str = request[USER]
    return user


def _malformed(detail: str) -> web.Response:
    return error_response(400, "MALFORMED_REQUEST", f"the request is malformed: {detail}"[:300])


def sent_wrong(exc: Exception) -> bool:
    """``exc`` was raised by aiohttp's multipart reader: the body's framing is broken (no
    boundary, a bad part header, a bad encoding), which is the sender's fault, not ours."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    origin = "" if tb is None else str(tb.tb_frame.f_globals.get("__name__", ""))
    return origin == "aiohttp.multipart" and isinstance(
        exc, ValueError | RuntimeError | TypeError | AssertionError
    )


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error into {"error": {code, message}} with its status; never a traceback."""
    try:
        return await handler(request)
    except InBatch as exc:
        return error_response(exc.status, exc.code, exc.message, index=exc.index)
    except JobServerError as exc:
        response = error_response(exc.status, exc.code, exc.message)
        if isinstance(exc, TooManyRequests):
            response.headers["Retry-After"] = retry_after_header(exc.retry_after)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = HTTP_CODES.get(exc.status, "HTTP_ERROR")
        response = error_response(exc.status, code, exc.reason)
        if exc.status == 405:
            response.headers["Allow"] = exc.headers.get("Allow", "")
        return response
    except HttpProcessingError as exc:  # a body aiohttp could not read (its framing, chunks)
        return _malformed(str(exc.message))
    except Exception as exc:
        if sent_wrong(exc):
            return _malformed(str(exc))
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "INTERNAL_ERROR", "something went wrong on the server")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every /api route needs a valid token (Bearer header or cookie), except signing in."""
    if request.path.startswith("/api/") and (request.method, request.path) not in PUBLIC:
        token = request_token(request)
        if not token:
            raise Unauthorized("sign in first: send a bearer token or the session cookie")
        principal = await request.app[IDENTITY].auth.verify(token)
        request[PRINCIPAL] = principal
        request[USER] = principal.user_id
    return await handler(request)
