"""Requests per second per user (per address before signing in): 429 with Retry-After."""

from __future__ import annotations

from aiohttp import web

from ..errors import TooManyRequests
from .http import Handler
from .keys import RATE_LIMITER, USER


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """After the auth middleware: an API request takes a token from its user's bucket."""
    if request.path.startswith("/api/"):
        user = request.get(USER)
        key = user if user is not None else "address:" + (request.remote or "")
        wait = request.app[RATE_LIMITER].take(key)
        if wait > 0:
            raise TooManyRequests(
                "too many requests: slow down and try again", code="RATE_LIMITED",
                retry_after=wait,
            )  # fmt: skip
    return await handler(request)
