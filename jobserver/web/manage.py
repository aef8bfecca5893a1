"""The dashboard's job routes: one job's stored history, removing finished jobs, and bulk
cancel, retry or remove of a selection."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from ..errors import InvalidPayload, JobServerError
from ..models import TERMINAL, JobStatus
from .http import json_body, json_response, user_of, whole_number
from .jobs import own_job
from .keys import QUEUE, QUOTA, STORE

routes = web.RouteTableDef()
MAX_EVENTS_PAGE = 1000  # most events one GET /api/jobs/{id}/events returns
MAX_SELECTION = 1000  # most job ids one POST /api/jobs/bulk names
BULK_ACTIONS = ("cancel", "retry", "remove")


@routes.get("/api/jobs/{job_id}/events")
async def job_events(request: web.Request) -> web.Response:
    """The job's own events from the stored log, oldest first, after ``after``: kept as long
    as the job is (retention deletes them with it), whatever the resume floor of
    ``GET /api/events``."""
    job = await own_job(request)
    after = whole_number(request.query.get("after"), "after", 0, 2**62, 0)
    limit = whole_number(request.query.get("limit"), "limit", 1, MAX_EVENTS_PAGE, 200)
    events = await request.app[STORE].events_after(after, job_id=job.id, limit=limit + 1)
    more = len(events) > limit
    events = events[:limit]
    head = b'{"jobId":"' + job.id.encode() + b'","events":['
    tail = b'],"limit":%d,"nextAfter":%s}' % (
        limit, str(events[-1].seq).encode() if more else b"null"
    )
    body = head + b",".join(e.data for e in events) + tail
    return web.Response(body=body, content_type="application/json")


@routes.delete("/api/jobs/{job_id}")
async def remove_job(request: web.Request) -> web.Response:
    """Remove one finished job of yours (``job.removed``); its notes stay."""
    job = await request.app[QUEUE].remove(request.match_info["job_id"], user_of(request))
    return json_response(job.to_wire())


def finished_statuses(values: list[str]) -> list[JobStatus]:
    """The finished statuses named by ``status=`` (repeated or comma-separated); all three
    when none is named."""
    names = [v for value in values for v in value.split(",") if v]
    if not names:
        return sorted(TERMINAL)
    allowed = sorted(s.value for s in TERMINAL)
    if any(name not in allowed for name in names):
        raise InvalidPayload(f"status must be one of {', '.join(allowed)}")
    return [JobStatus(name) for name in dict.fromkeys(names)]


@routes.delete("/api/jobs")
async def remove_finished(request: web.Request) -> web.Response:
    """Remove all your finished jobs (or those of the ``status=`` given)."""
    statuses = finished_statuses(request.query.getall("status", []))
    removed = await request.app[QUEUE].remove_finished(user_of(request), statuses)
    return json_response({"removed": removed, "statuses": [s.value for s in statuses]})


def selection(body: dict[str, Any]) -> tuple[str, list[str]]:
    action = body.get("action")
    if action not in BULK_ACTIONS:
        raise InvalidPayload(f"action must be one of {', '.join(BULK_ACTIONS)}")
    ids = body.get("ids")
    if (
        not isinstance(ids, list)
        or not 0 < len(ids) <= MAX_SELECTION
        or not all(isinstance(i, str) and 0 < len(i) <= 200 for i in ids)
    ):
        raise InvalidPayload(f"ids must be a list of 1 to {MAX_SELECTION} job ids")
    return action, list(dict.fromkeys(ids))


@routes.post("/api/jobs/bulk")
async def bulk(request: web.Request) -> web.Response:
    """Cancel, retry or remove each job of a selection: each one succeeds or fails on its own
    (the store commits them together); the answer has one result per distinct id, in order."""
    action, ids = selection(await json_body(request))
    user_id = user_of(request)
    queue = request.app[QUEUE]

    async def one(job_id: str) -> dict[str, Any]:
        try:
            if action == "cancel":
                job = await queue.cancel(job_id, user_id)
            elif action == "remove":
                job = await queue.remove(job_id, user_id)
            else:
                async with request.app[QUOTA].reserve(user_id):
                    job = await queue.retry(job_id, user_id)
        except JobServerError as exc:
            return {"jobId": job_id, "ok": False,
                    "error": {"code": exc.code, "message": exc.message}}  # fmt: skip
        return {"jobId": job_id, "ok": True, "job": job.to_wire()}

    results = await asyncio.gather(*(one(job_id) for job_id in ids))
    done = sum(1 for r in results if r["ok"])
    return json_response({"action": action, "results": results, "done": done,
                          "refused": len(results) - done})  # fmt: skip
