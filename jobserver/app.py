"""create_app: builds the store, bus, emitter, worker pool and web routes from Settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from . import demo, joblog
from .auth import load_secret
from .bus import EventBus
from .config import Settings
from .emitter import JobEvents
from .handlers import Registry
from .metrics import Metrics
from .pdf import job as pdf_job
from .retention import DAY, UPLOADS, Retention, upload_pruner
from .store.sqlite import SqliteStore
from .web import jobs, notes, ops, session
from .web.crosssite import cross_site_middleware
from .web.debug import setup_debug
from .web.http import auth_middleware, errors_middleware
from .web.keys import BUS, EVENTS, METRICS, POOL, REGISTRY, RETENTION, SECRET, SETTINGS, STORE
from .web.live import setup_live
from .worker import WorkerPool

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent.parent / "static"


def build_registry(settings: Settings) -> Registry:
    registry = Registry()
    pdf_job.register(registry, settings)
    if settings.demo_jobs:
        demo.register(registry)
    return registry


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    store = SqliteStore(app[SETTINGS].db_path)
    await store.open()
    app[STORE] = store
    bus = EventBus()
    app[BUS] = bus
    app[EVENTS] = JobEvents(store, bus)
    yield
    await store.close()


async def _ops_ctx(app: web.Application) -> AsyncIterator[None]:
    """Metrics and job logs tap the bus before workers start; upkeep runs in the background."""
    settings = app[SETTINGS]
    app[BUS].add_tap(app[METRICS].on_event)
    app[BUS].add_tap(joblog.on_event)
    retention = Retention(
        app[STORE],
        max_age_seconds=settings.retention_days * DAY,
        prune_interval=settings.prune_interval_seconds,
        checkpoint_interval=settings.checkpoint_interval_seconds,
        files=upload_pruner(app[STORE], settings.data_dir / UPLOADS, "sha256"),
    )
    app[RETENTION] = retention
    tasks = [
        asyncio.create_task(app[METRICS].sample_loop_lag(), name="loop-lag"),
        asyncio.create_task(retention.run(), name="retention"),
    ]
    with joblog.debug_logging(settings.debug):
        yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _pdf_ctx(app: web.Application) -> AsyncIterator[None]:
    """The PDF parser processes; they outlive the workers, which stop first."""
    handler = pdf_job.handler_in(app[REGISTRY])
    if handler is not None:
        await handler.start(app[STORE])
        app[BUS].add_tap(handler.on_event)  # a cancelled job stops the work begun for it
    yield
    if handler is not None:
        await handler.stop()


async def _pool_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pool = WorkerPool(
        app[EVENTS],
        app[REGISTRY],
        concurrency=settings.concurrency,
        lease_seconds=settings.lease_seconds,
        grace_seconds=settings.shutdown_grace_seconds,
    )
    app[POOL] = pool
    await pool.start()
    yield
    await pool.stop()


def create_app(settings: Settings, registry: Registry | None = None) -> web.Application:
    """The whole server as one aiohttp application; resources start and stop in order."""
    app = web.Application(
        middlewares=[errors_middleware, cross_site_middleware(settings), auth_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[SECRET] = load_secret(settings.secret, settings.data_dir)
    app[REGISTRY] = registry if registry is not None else build_registry(settings)
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(_store_ctx)
    setup_live(app)  # the gateway starts before workers publish
    app.cleanup_ctx.append(_ops_ctx)
    app.cleanup_ctx.append(_pdf_ctx)
    app.cleanup_ctx.append(_pool_ctx)
    setup_debug(app)
    app.add_routes(ops.routes)
    app.add_routes(session.routes)
    app.add_routes(jobs.routes)
    app.add_routes(notes.routes)
    if STATIC.is_dir():
        app.router.add_get("/", _index)
        app.router.add_static("/static/", STATIC)
    return app


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")
