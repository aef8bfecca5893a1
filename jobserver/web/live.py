"""Live delivery wired into the app: the gateway's life cycle, shutdown, and its two routes."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from . import events, ws
from .gateway import Gateway
from .keys import BUS, GATEWAY, METRICS, SETTINGS, STORE


async def _gateway_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start after the store (it reads the head) and before workers publish anything."""
    gateway = Gateway(
        app[STORE],
        app[BUS],
        max_connections_per_user=app[SETTINGS].ws_max_connections_per_user,
        heartbeat_seconds=app[SETTINGS].ws_heartbeat_seconds,
        metrics=app[METRICS],
    )
    await gateway.start()
    app[GATEWAY] = gateway
    yield
    await gateway.shutdown()


async def _on_shutdown(app: web.Application) -> None:
    # Before aiohttp waits for open requests: sockets and long-polls would hold it up.
    if GATEWAY in app:
        await app[GATEWAY].shutdown()


def setup_live(app: web.Application) -> None:
    """Add ``/ws`` and ``GET /api/events``; call it right after the store's cleanup context."""
    app.cleanup_ctx.append(_gateway_ctx)
    app.on_shutdown.append(_on_shutdown)
    app.add_routes(ws.routes)
    app.add_routes(events.routes)
