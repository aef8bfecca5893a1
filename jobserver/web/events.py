"""Long-polling: ``GET /api/events``, the same events as the WebSocket for clients without one.

A poll registers a mailbox on the bus first, then reads the store; if the store has nothing
after ``since`` it waits on the mailbox. Whatever the mailbox caught is merged in by seq, so an
event committed between the two steps is neither lost nor repeated, and waking a thousand
pollers costs no query: the event itself is in each mailbox. The body is the stored event
bytes joined, never decoded and encoded again.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from .. import joblog
from ..bus import Mailbox
from ..errors import InvalidPayload, Unauthorized
from ..models import Event
from .gateway import Target, parse_since, parse_target
from .http import json_response, user_of
from .keys import GATEWAY, IDENTITY, METRICS, PRINCIPAL

routes = web.RouteTableDef()

MAX_TIMEOUT = 60.0
DEFAULT_TIMEOUT = 30.0
PAGE = 1000  # most events in one answer; ask again at once with the cursor for more


def _timeout(value: str | None) -> float:
    if value is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_TIMEOUT:
        raise InvalidPayload(f"timeout must be a number of seconds from 0 to {MAX_TIMEOUT:g}")
    return seconds


def _answer(events: list[Event], cursor: int, epoch: str) -> web.Response:
    body = b'{"events":[%s],"cursor":%d,"epoch":%s}' % (
        b",".join(e.data for e in events),
        cursor,
        orjson.dumps(epoch),
    )
    return web.Response(
        body=body, content_type="application/json", headers={"Cache-Control": "no-store"}
    )


@routes.get("/api/events")
async def poll(request: web.Request) -> web.Response:
    """Events after ``since`` for ``userId`` (default: the caller) or ``jobId``."""
    user_id = user_of(request)
    gateway = request.app[GATEWAY]
    query = request.query
    if "userId" in query or "jobId" in query:
        target = parse_target(query.get("userId"), query.get("jobId"))
    else:
        target = Target("userId", user_id)
    since = parse_since(query.get("since"))
    timeout = _timeout(query.get("timeout"))
    joblog.subscription("poll", "longpoll", user_id, target.wire(), since)
    await gateway.resolve(user_id, target)
    reason = await gateway.resync_reason(since, query.get("epoch") or None)
    if reason is not None:
        return json_response(
            {"type": "resync", "reason": reason, "events": [],
             "cursor": gateway.published, "epoch": gateway.epoch}
        )  # fmt: skip
    if since is None:
        since = gateway.published
    # Coalescing only when full: a poll normally returns every event.
    box = Mailbox(PAGE, coalesce_at=PAGE)
    bus = gateway.bus
    bus.subscribe(box, user_id=target.user_id, job_id=target.job_id)
    gateway.pollers.add(box)
    identity, token_id = request.app[IDENTITY], request[PRINCIPAL].token_id
    identity.track(token_id, box.close)  # signing out answers this poll at once
    try:
        if since >= gateway.published:
            # Nothing after the cursor has been published yet, and anything published from
            # now on reaches the mailbox: no query, so a thousand waiting polls cost none.
            events: list[Event] = []
        else:
            events = await gateway.store.events_after(
                since, user_id=target.user_id, job_id=target.job_id, limit=PAGE
            )
        if since < await gateway.store.pruned_through():
            # Retention pruned past the cursor while the log was read: never a silent gap.
            return json_response(
                {"type": "resync", "reason": "pruned", "events": [],
                 "cursor": gateway.published, "epoch": gateway.epoch}
            )  # fmt: skip
        waited = not events and timeout > 0 and not gateway.closing
        if waited:
            with request.app[METRICS].longpoll_waiting():
                await box.wait(timeout)
            if token_id is not None and identity.sessions.is_revoked(token_id):
                raise Unauthorized("this session was signed out; sign in again",
                                   code="TOKEN_REVOKED")  # fmt: skip
        if len(events) < PAGE and not box.overflowed:
            last = events[-1].seq if events else since
            live = [e for e in box.drain() if e.seq > last]
            if waited:
                request.app[METRICS].delivered("longpoll", live)
            events.extend(live)
    finally:
        bus.unsubscribe(box, user_id=target.user_id, job_id=target.job_id)
        gateway.pollers.discard(box)
        identity.untrack(token_id, box.close)
    return _answer(events, events[-1].seq if events else since, gateway.epoch)
