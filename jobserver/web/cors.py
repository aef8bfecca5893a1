"""CORS for the JSON API and long-poll: pages of the ``allowed_origins`` may call ``/api/``
(and import ``/static/jobclient.js`` as a module).

The same list the WebSocket's Origin check reads (``crosssite.origin_allowed``): a listed
origin gets its own name back with ``Access-Control-Allow-Credentials`` (as it may open the
WebSocket with the cookie), an origin let in only by ``*`` gets ``*`` and never credentials,
so such a page must send a bearer token, and an origin not let in gets no CORS header at all
(the browser refuses it the response) and a 403 for its preflight. Preflights (``OPTIONS``
with ``Access-Control-Request-Method``) are answered here, before authentication, since a
browser sends them without the token.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ..config import Settings
from ..errors import Forbidden
from .crosssite import origin_allowed

PREFIXES = ("/api/", "/static/")
METHODS = "GET, POST, PUT, PATCH, DELETE"
HEADERS = "Authorization, Content-Type, Accept"
EXPOSED = "Retry-After"
MAX_AGE = "600"  # seconds a browser may reuse a preflight's answer


def allowed_origin(request: web.Request, allowed: tuple[str, ...]) -> tuple[str, bool] | None:
    """What ``Access-Control-Allow-Origin`` says to this request, and whether credentials may
    go with it; None when the request has no Origin or its Origin is not let in."""
    origin = request.headers.get("Origin")
    if origin is None or not request.path.startswith(PREFIXES):
        return None
    if origin_allowed(request, allowed, credentials=True):
        return origin, True  # listed (or the server's own page)
    if origin_allowed(request, allowed, credentials=False):
        return "*", False  # let in by "*" only: never with the cookie
    return None


def _headers(response: web.StreamResponse, value: str, credentials: bool) -> None:
    response.headers["Access-Control-Allow-Origin"] = value
    if credentials:
        response.headers["Access-Control-Allow-Credentials"] = "true"
    response.headers.add("Vary", "Origin")


def cors_middleware(settings: Settings) -> Middleware:
    """Answer preflights of the listed origins (204) and refuse the others' (403)."""
    origins = settings.allowed_origins

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (
            request.method != "OPTIONS"
            or "Access-Control-Request-Method" not in request.headers
            or not request.path.startswith(PREFIXES)
            or "Origin" not in request.headers
        ):
            return await handler(request)
        answer = allowed_origin(request, origins)
        if answer is None:
            raise Forbidden(
                "a page from this origin may not call the API; add it to allowed_origins",
                code="ORIGIN_NOT_ALLOWED",
            )
        response = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = METHODS
        response.headers["Access-Control-Allow-Headers"] = HEADERS
        response.headers["Access-Control-Max-Age"] = MAX_AGE
        return response  # the CORS headers themselves are added as it is sent (below)

    return cors


def setup_cors(app: web.Application, settings: Settings) -> None:
    """Every /api/ and /static/ answer (errors included) carries the CORS headers its origin
    may have, so a page on a listed origin can read the error codes too."""
    origins = settings.allowed_origins

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        answer = allowed_origin(request, origins)
        if answer is None or "Access-Control-Allow-Origin" in response.headers:
            return
        _headers(response, *answer)
        response.headers["Access-Control-Expose-Headers"] = EXPOSED

    app.on_response_prepare.append(add_headers)
