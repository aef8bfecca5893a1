"""Troubleshooting endpoints: event-loop lag sampled on demand (``/api/debug/loop-lag``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ..errors import InvalidPayload
from ..looplag import MAX_SECONDS, LoopLagProbe
from .http import json_body, json_response

LOOP_LAG = web.AppKey("loop_lag", LoopLagProbe)
routes = web.RouteTableDef()


def _number(body: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidPayload(f"{name} must be a number from {low:g} to {high:g}")
    return float(value)


@routes.post("/api/debug/loop-lag")
async def start_sampling(request: web.Request) -> web.Response:
    """Start a window: ``{"seconds": 30, "intervalMs": 5}``; earlier samples are dropped."""
    body = await json_body(request)
    seconds = _number(body, "seconds", 60, 0.1, MAX_SECONDS)
    interval = _number(body, "intervalMs", 5, 1, 1000)
    probe = request.app[LOOP_LAG]
    probe.start(seconds, interval / 1000)
    return json_response(probe.stats(), 202)


@routes.get("/api/debug/loop-lag")
async def read_sampling(request: web.Request) -> web.Response:
    """The window's lag so far: samples, p50, p99 and max in milliseconds."""
    return json_response(request.app[LOOP_LAG].stats())


@routes.delete("/api/debug/loop-lag")
async def stop_sampling(request: web.Request) -> web.Response:
    probe = request.app[LOOP_LAG]
    probe.stop()
    return json_response(probe.stats())


async def _probe_ctx(app: web.Application) -> AsyncIterator[None]:
    app[LOOP_LAG] = LoopLagProbe()
    yield
    await app[LOOP_LAG].close()


def setup_debug(app: web.Application) -> None:
    app.cleanup_ctx.append(_probe_ctx)
    app.add_routes(routes)
