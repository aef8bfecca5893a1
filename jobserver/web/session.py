"""Signing in: open sign-in by name returns a token and sets the session cookie."""

from __future__ import annotations

from aiohttp import web

from ..auth import check_user_id, issue_token
from ..errors import Forbidden
from ..models import STATUS_EVENT_TYPES, TERMINAL, EventType, JobStatus
from .http import COOKIE, json_body, json_response, user_of
from .keys import PLUGINS, REGISTRY, SECRET, SETTINGS, STORE

routes = web.RouteTableDef()


@routes.post("/api/session")
async def sign_in(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    if not settings.open_signin:
        raise Forbidden("open sign-in is turned off; ask for a token", code="SIGNIN_DISABLED")
    user_id = check_user_id((await json_body(request)).get("userId"))
    token = issue_token(request.app[SECRET], user_id, settings.token_ttl_seconds)
    response = json_response({"userId": user_id, "token": token})
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        path="/",
        max_age=settings.token_ttl_seconds,
    )
    return response


@routes.get("/api/session")
async def who_am_i(request: web.Request) -> web.Response:
    return json_response({"userId": user_of(request)})


@routes.delete("/api/session")
async def sign_out(request: web.Request) -> web.Response:
    response = json_response({"signedOut": True})
    response.del_cookie(COOKIE, path="/")
    return response


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
        }
    )
