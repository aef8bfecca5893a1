"""Typed application state keys shared by the web modules."""

from __future__ import annotations

from aiohttp import web

from ..auth import Principal
from ..bus import EventBus
from ..config import Settings
from ..handlers import Registry
from ..metrics import Metrics
from ..plugins import Plugins, Server
from ..procs.pool import ProcessPool
from ..queue import JobQueue
from ..quotas import JobQuota
from ..retention import Retention
from ..store import Store
from ..throttle import RateLimiter
from ..worker import WorkerPool
from .gateway import Gateway
from .guard import ConnectionGuard
from .identity import Identity

SETTINGS = web.AppKey("settings", Settings)
SECRET = web.AppKey("secret", str)
STORE = web.AppKey("store", Store)
BUS = web.AppKey("bus", EventBus)
QUEUE = web.AppKey("queue", JobQueue)
REGISTRY = web.AppKey("registry", Registry)
POOL = web.AppKey("pool", WorkerPool)
PROCESSES = web.AppKey("processes", ProcessPool)  # the worker processes
METRICS = web.AppKey("metrics", Metrics)
RETENTION = web.AppKey("retention", Retention)
GATEWAY = web.AppKey("gateway", Gateway)
PLUGINS = web.AppKey("plugins", Plugins)
SERVER = web.AppKey("server", Server)  # what plugins see of the running server
GUARD = web.AppKey("guard", ConnectionGuard)
IDENTITY = web.AppKey("identity", Identity)
QUOTA = web.AppKey("quota", JobQuota)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
USER = web.RequestKey("user", str)  # set by the auth middleware
PRINCIPAL = web.RequestKey("principal", Principal)  # set with USER
