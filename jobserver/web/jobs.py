"""The JSON API for jobs: create, read, list (with search and counts), cancel, retry."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from ..errors import DuplicateKey, InBatch, InvalidPayload, JobNotFound, JobServerError
from ..jobtypes import check_label
from ..models import Job, JobStatus
from ..quotas import check_bytes
from ..store import NewJob
from .http import json_body, json_response, page_body, page_of, user_of, whole_number
from .keys import PLUGINS, QUEUE, QUOTA, REGISTRY, SERVER, SETTINGS, STORE

routes = web.RouteTableDef()
MAX_BATCH = 1000  # most jobs one POST /api/jobs may carry (JSON "jobs", or multipart files)


def _optional_str(value: Any, name: str, max_len: int = 200) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= max_len:
        raise InvalidPayload(f"{name} must be a string of 1 to {max_len} characters")
    return value


async def submit(request: web.Request, new: NewJob) -> web.Response:
    """Enqueue ``new`` and answer 202 with the job (200 when an idempotency key matched)."""
    async with request.app[QUOTA].reserve(new.user_id):
        job, created = await request.app[QUEUE].enqueue(new)
    return json_response(job.to_wire(), 202 if created else 200)


async def submit_many(request: web.Request, news: Sequence[NewJob]) -> web.Response:
    """Enqueue every job of a batch in one commit, all or nothing: 202 with each job marked
    ``created`` (false: its idempotency key matched a job of yours), 200 when none was new."""
    seen: dict[str, int] = {}
    for index, new in enumerate(news):
        key = new.idempotency_key
        if key is not None and seen.setdefault(key, index) != index:
            raise InBatch(index, DuplicateKey(
                f"idempotencyKey {key!r} is also the key of jobs[{seen[key]}]"))  # fmt: skip
    async with request.app[QUOTA].reserve(news[0].user_id, len(news)):
        results = await request.app[QUEUE].enqueue_many(news)
    jobs = [{**job.to_wire(), "created": created} for job, created in results]
    return json_response({"jobs": jobs}, 202 if any(c for _, c in results) else 200)


async def multipart_jobs(request: web.Request) -> list[NewJob]:
    """A multipart body goes to the plugin that accepts it: the one for ``?type=``, else the
    first registered (``Plugin.accept_multipart``); one job per file part."""
    accepting = request.app[PLUGINS].multipart_jobs
    wanted = request.query.get("type")
    if wanted is None and accepting:
        wanted = next(iter(accepting))
    make = accepting.get(wanted or "")
    if make is None:  # name what was asked for, and what would take the files instead
        if not accepting:
            raise InvalidPayload("no job type on this server takes a multipart body")
        raise InvalidPayload(f"job type {wanted!r} does not take a multipart body; "
                             f"these do: {', '.join(accepting)}")  # fmt: skip
    request.app[REGISTRY].get(wanted or "")  # a disabled type is unknown
    made = await make(request)
    return [made] if isinstance(made, NewJob) else list(made)


async def new_job(request: web.Request, body: Any) -> NewJob:
    """The job a JSON object describes (``POST /api/jobs``, or one of its ``jobs``)."""
    if not isinstance(body, dict):
        raise InvalidPayload("a job must be a JSON object")
    job_type = request.app[REGISTRY].get(_optional_str(body.get("type"), "type") or "")
    payload = body.get("payload", {})
    if not isinstance(payload, dict):
        raise InvalidPayload("payload must be a JSON object")
    if job_type.options.check_payload is not None:
        payload = job_type.options.check_payload(payload)
    delay = body.get("delaySeconds", 0)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= 86400:
        raise InvalidPayload("delaySeconds must be a number from 0 to 86400")
    label = check_label(body.get("label")) or job_type.label_for(payload)
    new = NewJob(
        type=job_type.name,
        user_id=user_of(request),
        payload=payload,
        label=label,
        max_attempts=whole_number(
            body.get("maxAttempts"), "maxAttempts", 1, request.app[SETTINGS].max_attempts_limit,
            job_type.options.max_attempts,
        ),
        delay_seconds=float(delay),
        idempotency_key=_optional_str(body.get("idempotencyKey"), "idempotencyKey"),
    )
    for check in request.app[PLUGINS].submit_checks.get(new.type, ()):
        checked = check(request.app[SERVER], new)  # e.g. who may name which stored file
        if inspect.isawaitable(checked):
            await checked
    return new


async def batch_of(request: web.Request, items: Any) -> list[NewJob]:
    """Every job of a ``{"jobs": [...]}`` body; the first refused one refuses the batch."""
    if not isinstance(items, list) or not 0 < len(items) <= MAX_BATCH:
        raise InvalidPayload(f"jobs must be a list of 1 to {MAX_BATCH} jobs")
    news = []
    for index, item in enumerate(items):
        try:
            news.append(await new_job(request, item))
        except JobServerError as exc:
            raise InBatch(index, exc) from None
    return news


@routes.post("/api/jobs")
async def create_job(request: web.Request) -> web.Response:
    if request.content_type == "multipart/form-data":
        await check_bytes(request.app[STORE], request.app[SETTINGS], user_of(request),
                          request.content_length)  # fmt: skip
        news = await multipart_jobs(request)
        return await (submit(request, news[0]) if len(news) == 1 else submit_many(request, news))
    body = await json_body(request)
    if "jobs" in body:
        return await submit_many(request, await batch_of(request, body["jobs"]))
    return await submit(request, await new_job(request, body))


async def own_job(request: web.Request) -> Job:
    """The job named in the path, if it belongs to the caller (another user's is a 404)."""
    job_id = request.match_info["job_id"]
    job = await request.app[STORE].get_job(job_id)
    if job is None or job.user_id != user_of(request) or job.removed_at is not None:
        raise JobNotFound(f"no job {job_id}")
    return job


@routes.get("/api/jobs/{job_id}")
async def get_job(request: web.Request) -> web.Response:
    return json_response((await own_job(request)).to_wire())


@routes.get("/api/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    query = request.query
    status = None
    if "status" in query:
        try:
            status = JobStatus(query["status"])
        except ValueError:
            allowed = ", ".join(s.value for s in JobStatus)
            raise InvalidPayload(f"status must be one of {allowed}") from None
    limit, offset = page_of(request)
    search = _optional_str(query.get("q") or None, "q")
    store, user_id = request.app[STORE], user_of(request)
    jobs, counts = await asyncio.gather(
        store.list_jobs(user_id, status, limit + 1, offset, query=search),
        store.job_counts(user_id, search),
    )
    page = page_body("jobs", [job.to_wire() for job in jobs], limit, offset)
    by_status = {s.value: n for s, n in counts.items()}
    page["counts"] = {**by_status, "all": sum(by_status.values())}
    page["total"] = page["counts"][status.value if status else "all"]
    return json_response(page)


@routes.post("/api/jobs/{job_id}/cancel")
async def cancel_job(request: web.Request) -> web.Response:
    job = await request.app[QUEUE].cancel(request.match_info["job_id"], user_of(request))
    return json_response(job.to_wire())


@routes.post("/api/jobs/{job_id}/retry")
async def retry_job(request: web.Request) -> web.Response:
    user_id = user_of(request)
    async with request.app[QUOTA].reserve(user_id):
        job = await request.app[QUEUE].retry(request.match_info["job_id"], user_id)
    return json_response(job.to_wire())
