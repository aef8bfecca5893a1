"""A client for programs that hand work to jobserver and follow it (async, and ``SyncClient``).

It imports nothing from the server: ``clients/python`` packages it alone, with aiohttp as its
only dependency. See docs/clients.md.
"""

from __future__ import annotations

from .api import TokenProvider
from .client import Client
from .errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    JobServerClientError,
    NetworkError,
    NotFound,
    ProtocolError,
    ServerUnavailable,
    Unauthorized,
    WaitTimeout,
)
from .follow import TRANSPORTS, Follow, FollowStats, Transport
from .models import (
    TERMINAL_EVENT_TYPES,
    TERMINAL_STATUSES,
    FollowItem,
    Job,
    JobCancelled,
    JobCompleted,
    JobErrorInfo,
    JobEvent,
    JobFailed,
    JobPage,
    JobProgress,
    JobQueued,
    JobRemoved,
    JobRetrying,
    Meta,
    Resync,
    event_from_wire,
)
from .sync import SyncClient, SyncFollow

__all__ = [
    "TERMINAL_EVENT_TYPES",
    "TERMINAL_STATUSES",
    "TRANSPORTS",
    "ApiError",
    "BadRequest",
    "Client",
    "Conflict",
    "Follow",
    "FollowItem",
    "FollowStats",
    "Forbidden",
    "Job",
    "JobCancelled",
    "JobCompleted",
    "JobErrorInfo",
    "JobEvent",
    "JobFailed",
    "JobPage",
    "JobProgress",
    "JobQueued",
    "JobRemoved",
    "JobRetrying",
    "JobServerClientError",
    "Meta",
    "NetworkError",
    "NotFound",
    "ProtocolError",
    "Resync",
    "ServerUnavailable",
    "SyncClient",
    "SyncFollow",
    "TokenProvider",
    "Transport",
    "Unauthorized",
    "WaitTimeout",
    "event_from_wire",
]
