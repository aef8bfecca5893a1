"""Routes for whoever runs the server: liveness, readiness, Prometheus metrics, the API document."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from ..metrics import Snapshot
from . import openapi
from .http import json_response
from .keys import BUS, METRICS, PLUGINS, POOL, RETENTION, STORE

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

# A readiness probe answers within this long even when the disk hangs.
READY_TIMEOUT = 2.0


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers HTTP (always 200: restarting it would not mend its
    storage, which the store keeps retrying on its own). ``degraded`` says why writes fail."""
    problem = request.app[STORE].problem
    if problem is None:
        return json_response({"status": "ok"})
    return json_response({"status": "degraded", "problems": {"database": problem}})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready: a real write commits and the worker pool is claiming jobs."""
    checks = {"database": "ok", "workers": "ok"}
    store = request.app[STORE]
    try:
        if store.problem is not None:
            checks["database"] = f"not writable: {store.problem}"
        else:
            async with asyncio.timeout(READY_TIMEOUT):
                await store.ping()
    except TimeoutError:
        checks["database"] = f"a write did not commit within {READY_TIMEOUT:g}s"
    except Exception as exc:
        checks["database"] = f"not writable: {exc}"
    if not request.app[POOL].alive:
        checks["workers"] = "not running"
    failing = {name: why for name, why in checks.items() if why != "ok"}
    if not failing:
        return json_response({"status": "ready", "checks": checks})
    log.warning("not ready: %s", "; ".join(f"{k}: {v}" for k, v in failing.items()))
    message = "not ready: " + ", ".join(sorted(failing))
    return json_response(
        {"status": "unavailable", "checks": checks,
         "error": {"code": "NOT_READY", "message": message}},
        503,
    )  # fmt: skip


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition; the counts the store and the pool keep are read now."""
    app = request.app
    pool = app[POOL]
    app[METRICS].update(
        Snapshot(
            by_status=await app[STORE].count_by_status(),
            recovered=pool.recovered,
            running=len(pool.running),
            concurrency=pool.concurrency,
            subscribers=app[BUS].subscriber_count(),
            pruned_jobs=app[RETENTION].pruned_jobs,
        )
    )
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return web.Response(body=encode(app[METRICS].registry), headers={"Content-Type": content_type})


@routes.get("/api/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    """The OpenAPI 3 description of the HTTP API (no token needed)."""
    plugins = request.app[PLUGINS]  # their routes are described by them
    body = openapi.document_bytes(plugins.openapi_paths, plugins.openapi_schemas)
    return web.Response(body=body, content_type="application/json")
