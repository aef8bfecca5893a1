"""create_app: builds the store, bus, job queue, plugins, worker pool and routes from Settings."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from . import joblog, pguserdata, userdata
from .bus import EventBus
from .config import Settings
from .handlers import Registry
from .limitshare import Shared, shared_limits
from .metrics import Metrics
from .plugins import CleanupContext, Plugins, Server, load
from .procs.pool import ChildConfig, ProcessPool
from .procs.runner import ProcessRunner
from .queue import JobQueue
from .quotas import JobQuota
from .retention import DAY, Retention
from .store import Store
from .store.postgres import PostgresStore, node_id
from .store.sqlite import SqliteStore
from .throttle import RateLimiter
from .web import jobs, manage, ops, session
from .web.assets import setup_assets
from .web.cors import cors_middleware, setup_cors
from .web.crosssite import cross_site_middleware
from .web.debug import setup_debug
from .web.guard import ConnectionGuard, handler_args
from .web.http import auth_middleware, errors_middleware
from .web.identity import open_identity
from .web.keys import (
    BUS,
    GUARD,
    IDENTITY,
    METRICS,
    PLUGINS,
    POOL,
    PROCESSES,
    QUEUE,
    QUOTA,
    RATE_LIMITER,
    REGISTRY,
    RETENTION,
    SECRET,
    SERVER,
    SETTINGS,
    STORE,
)
from .web.limits import limits_middleware
from .web.live import setup_live
from .web.ratelimit import rate_limit_middleware
from .web.refusals import Refusals
from .worker import WorkerPool

log = logging.getLogger(__name__)


async def _identity_ctx(app: web.Application) -> AsyncIterator[None]:
    """First: a server without a usable sign-in method refuses to start (signin.py)."""
    identity = await open_identity(app[SETTINGS])
    app[IDENTITY] = identity
    app[SECRET] = identity.auth.secret
    yield
    await identity.sessions.close()


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    plugins = app[PLUGINS]
    store: Store
    if settings.database_url:
        store = PostgresStore(settings.database_url, node_id=node_id(settings),
                              storage=plugins.storage_modules,
                              schema=settings.database_schema,
                              max_open_jobs=settings.max_jobs_per_user)  # fmt: skip
    else:
        store = SqliteStore(settings.db_path, storage=plugins.storage_modules,
                            check_seconds=settings.db_check_seconds)  # fmt: skip
    await store.open()
    app[STORE] = store
    bus = EventBus()
    app[BUS] = bus
    queue = JobQueue(store, bus)
    app[QUEUE] = queue
    server = Server(app, settings, store, bus)
    server.processes = app[PROCESSES]
    app[SERVER] = server
    for plugin in plugins:
        for tap in plugin.taps:
            bus.add_tap(tap)
    for hook in plugins.queued_hooks:
        queue.on_queued(functools.partial(hook, server))
    if isinstance(store, SqliteStore):  # on PostgreSQL the store counts (in_store)
        await app[QUOTA].load(store)  # before anything is published
        bus.add_tap(app[QUOTA].on_event)
    yield
    await store.close()


async def _ops_ctx(app: web.Application) -> AsyncIterator[None]:
    """Metrics and job logs tap the bus before workers start; upkeep runs in the background."""
    settings = app[SETTINGS]
    app[BUS].add_tap(app[METRICS].on_event)
    app[BUS].add_tap(joblog.on_event)
    server = app[SERVER]
    retention = Retention(
        app[STORE],
        max_age_seconds=settings.retention_days * DAY,
        prune_interval=settings.prune_interval_seconds,
        checkpoint_interval=settings.checkpoint_interval_seconds,
        steps=[(name, functools.partial(step, server))
               for name, step in app[PLUGINS].retention_steps],
        duty=store.duty if isinstance(store := app[STORE], PostgresStore) else None,
    )  # fmt: skip
    app[RETENTION] = retention
    tasks = [
        asyncio.create_task(app[METRICS].sample_loop_lag(), name="loop-lag"),
        asyncio.create_task(retention.run(), name="retention"),
    ]
    identity = app[IDENTITY]
    limits: list[Shared] = [app[RATE_LIMITER], identity.per_account, identity.per_address]
    shared = (shared_limits(lambda: store.live_nodes, limits, app[METRICS].live_nodes)
              if isinstance(store, PostgresStore) else contextlib.nullcontext())  # fmt: skip
    async with shared:
        with joblog.debug_logging(settings.debug):
            yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _worker_processes(settings: Settings, plugins: Plugins) -> ProcessPool:
    """The worker processes, set up for every process job type and plugin that uses them."""
    process_types = [t for t in plugins.registry.types() if t.options.process]
    config = ChildConfig(
        memory_mb=settings.process_memory_mb,
        limit_mb=max([settings.process_memory_mb, plugins.process_memory_mb,
                      *(t.options.memory_mb or 0 for t in process_types)]),
        imports=sorted({t.handler.__module__ for t in process_types}),
        warm_ups=plugins.process_warm_ups,
        log_format=settings.log_format,
        log_level=settings.log_level,
    )  # fmt: skip
    return ProcessPool(settings.worker_processes, config)


async def _processes_ctx(app: web.Application) -> AsyncIterator[None]:
    """Started before plugins' contexts (the PDF parser uses them), stopped after workers."""
    pool = app[PROCESSES]
    plugins = app[PLUGINS]
    if plugins.process_memory_mb or any(t.options.process for t in plugins.registry.types()):
        await pool.start()
    yield
    await pool.stop()


def _plugin_ctx(context: CleanupContext) -> Callable[[web.Application], AsyncIterator[None]]:
    def start(app: web.Application) -> AsyncIterator[None]:
        return context(app[SERVER])

    return start


async def _pool_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pool = WorkerPool(
        app[QUEUE],
        app[REGISTRY],
        concurrency=settings.concurrency,
        lease_seconds=settings.lease_seconds,
        grace_seconds=settings.shutdown_grace_seconds,
        processes=ProcessRunner(app[PROCESSES], settings.process_memory_mb),
        max_running_per_user=settings.running_per_user,
    )
    app[POOL] = pool
    await pool.start()
    app[SERVER].pool = pool
    yield
    app[SERVER].pool = None
    await pool.stop()


async def _report_user_ids(app: web.Application) -> None:
    """Once the store is open: say which stored user ids normalisation left apart."""
    settings = app[SETTINGS]
    try:
        if settings.database_url:
            found = await pguserdata.unreachable_in(settings.database_url,
                                                    settings.database_schema)  # fmt: skip
            userdata.log_unreachable(found)
        else:
            await asyncio.to_thread(userdata.report, settings.db_path)
    except Exception:
        log.exception("could not check the stored user ids")


def create_app(
    settings: Settings, registry: Registry | None = None, plugins: Plugins | None = None
) -> web.Application:
    """The whole server as one aiohttp application; resources start and stop in order.

    ``plugins`` defaults to what ``settings`` names (``plugins.load``); a ``registry`` alone
    runs just those job types, with no plugin (tests build such servers).
    """
    if plugins is None:
        plugins = Plugins(registry=registry) if registry is not None else load(settings)
    metrics = Metrics()
    guard = ConnectionGuard(settings, Refusals(metrics.registry))
    app = web.Application(
        middlewares=[
            errors_middleware,
            limits_middleware(settings, guard),
            cross_site_middleware(settings),
            cors_middleware(settings),
            auth_middleware,
            rate_limit_middleware,
        ],
        client_max_size=settings.max_body_bytes,
        handler_args=handler_args(settings),
    )
    app[SETTINGS] = settings
    setup_cors(app, settings)
    app[PLUGINS] = plugins
    app[REGISTRY] = plugins.registry
    app[METRICS] = metrics
    app[PROCESSES] = _worker_processes(settings, plugins)
    app[GUARD] = guard  # cli.serve gives it the connections (web/guard.py)
    # On PostgreSQL the store's writes, which every node shares, count the jobs.
    app[QUOTA] = JobQuota(settings.max_jobs_per_user, in_store=bool(settings.database_url))
    app[RATE_LIMITER] = RateLimiter(
        settings.requests_per_second_per_user, settings.request_burst_per_user
    )
    app.cleanup_ctx.append(_identity_ctx)
    app.cleanup_ctx.append(_store_ctx)
    setup_live(app)  # the gateway starts before workers publish
    app.cleanup_ctx.append(_ops_ctx)
    app.cleanup_ctx.append(_processes_ctx)
    for plugin in plugins:
        app.cleanup_ctx.extend(_plugin_ctx(c) for c in plugin.contexts)
    app.cleanup_ctx.append(_pool_ctx)
    app.on_startup.append(_report_user_ids)
    setup_debug(app)
    app.add_routes(ops.routes)
    app.add_routes(session.routes)
    app.add_routes(jobs.routes)
    app.add_routes(manage.routes)
    for plugin in plugins:
        app.add_routes(plugin.route_defs)
    setup_assets(app)
    return app

