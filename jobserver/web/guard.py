"""Connections: a cap below the descriptor limit, the oldest idle one dropped there, header timeout.

aiohttp gives the per-request limits (``handler_args``: header sizes, the keep-alive timeout)
but nothing that counts connections, so a flood of silent ones (slowloris) used every file
descriptor and every ``/healthz`` timed out. Here each accepted connection is a
``GuardedHandler`` (aiohttp's ``RequestHandler`` that reports to the ``ConnectionGuard``):

- at most ``cap`` are open, set below the descriptor limit, whose soft value is raised to the
  hard one at start;
- at the cap, the connection that has waited longest without a request in progress (idle,
  or still sending its headers) is closed to admit the new one, so a probe or a real client
  always gets through a flood of slow ones; when every connection is busy, the new one gets
  a 503 ``TOO_MANY_CONNECTIONS`` and is closed;
- a new connection has ``header_timeout_seconds`` to send its first request's headers; after a
  request, aiohttp's keep-alive timeout bounds the wait for the next one;
- a request aiohttp cannot parse (a bad request line, a NUL in a header, headers past the
  limits) answers 400 with a JSON error and a code, like every other error, and is counted
  as a refusal (one summary line a second) instead of an ERROR with a traceback each.

``web/limits.py`` tells the guard when a request starts and ends.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import OrderedDict
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from yarl import URL

from ..config import Settings
from .refusals import Refusals

log = logging.getLogger(__name__)

# Connections the kernel holds until they are accepted. asyncio accepts up to this many in one
# go before any of them is admitted, and a dropped one's descriptor is freed a loop turn
# later, so two backlogs' worth of descriptors are kept free beyond the cap.
BACKLOG = 128
FULL = orjson.dumps({"error": {
    "code": "TOO_MANY_CONNECTIONS",
    "message": "the server is at its connection limit with every connection busy; try again",
}})  # fmt: skip
FULL_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nRetry-After: 1\r\nContent-Length: %d\r\n\r\n%s" % (len(FULL), FULL)
)


def malformed_response(exc: HttpProcessingError) -> web.Response:
    """The JSON answer to a request aiohttp's parser refused (it never reaches the app)."""
    if isinstance(exc, LineTooLong) or "Too many headers" in str(exc.message):
        code, text = "HEADERS_TOO_LARGE", "the request line or headers are past the server's limits"
    else:
        code, text = "MALFORMED_REQUEST", "the request is not valid HTTP/1.1"
    body = orjson.dumps({"error": {"code": code, "message": text}})
    response = web.Response(body=body, status=400, content_type="application/json")
    response.force_close()  # the parser's state is lost: nothing after it can be read
    return response


def handler_args(settings: Settings) -> dict[str, Any]:
    """aiohttp's own per-connection limits (``web.Application(handler_args=...)``)."""
    return {
        "keepalive_timeout": settings.keepalive_timeout_seconds,
        "max_line_size": settings.max_header_bytes,
        "max_field_size": settings.max_header_bytes,
        "max_headers": settings.max_headers,
    }


def raise_fd_limit() -> int:
    """Raise the soft descriptor limit to the hard one; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("could not raise the descriptor limit from %d to %d: %s", soft, hard, exc)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def connection_cap(configured: int, nofile: int) -> int:
    """The most connections to keep open: ``configured``, but always an eighth of the
    descriptors (at least 64) left for the database, uploads, pipes and the listener, and four
    backlogs for connections being accepted and dropped.

    asyncio accepts up to a backlog of sockets per wake-up of the listener and admits them
    (``connection_made``) only two turns of the loop later, while it accepts more; a connection
    evicted to admit one holds its descriptor one turn more. So in a flood up to about three
    backlogs of accepted and one of evicted sockets are open beyond the cap (two backlogs of
    room let a 2,000-connection flood past a limit of 1,024 hit EMFILE)."""
    room = max(1, nofile - max(64, nofile // 8) - 4 * BACKLOG)
    if configured == 0:
        return room
    if configured > room:
        log.warning("max_connections %d is above what %d descriptors allow; using %d",
                    configured, nofile, room)  # fmt: skip
        return room
    return configured


class ConnectionGuard:
    """The open connections, in the order they began to wait for a request.

    Args:
        settings: the header timeout and the configured cap.
        refusals: where refusals and evictions are counted.
    """

    def __init__(self, settings: Settings, refusals: Refusals) -> None:
        self.settings = settings
        self.refusals = refusals
        self.cap = 0  # no cap until configure(): a test server runs without the guard
        self.open: set[GuardedHandler] = set()
        self.waiting: OrderedDict[GuardedHandler, None] = OrderedDict()

    def configure(self, nofile: int) -> int:
        self.cap = connection_cap(self.settings.max_connections, nofile)
        log.info("at most %d connections open (descriptor limit %d)", self.cap, nofile)
        return self.cap

    def admit(self, handler: GuardedHandler) -> bool:
        """Room for ``handler``: drop the longest-waiting connection if at the cap."""
        if self.cap and len(self.open) >= self.cap:
            if not self.waiting:
                self.refusals.count("connection_cap")
                return False
            victim, _ = self.waiting.popitem(last=False)
            self.refusals.count("evicted")
            self.close(victim)
        self.open.add(handler)
        self.waiting[handler] = None
        return True

    def close(self, handler: GuardedHandler) -> None:
        self.forget(handler)
        handler.force_close()

    def forget(self, handler: GuardedHandler) -> None:
        self.open.discard(handler)
        self.waiting.pop(handler, None)

    def busy(self, handler: GuardedHandler) -> None:
        """A request has arrived in full and is being handled: not to be dropped."""
        self.waiting.pop(handler, None)
        handler.answered()

    def idle(self, handler: GuardedHandler) -> None:
        """The request is answered; the connection waits for the next one (newest in line)."""
        if handler in self.open:
            self.waiting[handler] = None


class GuardedHandler(web.RequestHandler):
    """aiohttp's connection handler, admitted by the guard and timed until its first request.

    Args:
        guard: the guard this connection reports to.
        manager: aiohttp's ``web.Server`` (``runner.server``), as for ``RequestHandler``.
    """

    __slots__ = ("_guard", "_header_timer", "_refused")

    def __init__(self, guard: ConnectionGuard, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._header_timer: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._guard.admit(self):
            self._refused = True
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(FULL_RESPONSE)
            transport.close()
            return
        super().connection_made(transport)
        loop = asyncio.get_running_loop()
        self._header_timer = loop.call_later(
            self._guard.settings.header_timeout_seconds, self._headers_too_slow
        )

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused:
            return  # never started: nothing of aiohttp's to tear down
        self.answered()
        self._guard.forget(self)
        super().connection_lost(exc)

    def answered(self) -> None:
        """Its first request arrived (or it is gone): no header timeout any more."""
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def handle_error(
        self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:  # fmt: skip
        if not isinstance(exc, HttpProcessingError) or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        # The client's fault, not ours: aiohttp would log an ERROR with a traceback per request.
        self.answered()
        self._guard.refusals.count("malformed")
        log.debug("malformed request from %s: %s", request.remote, exc.message)
        return malformed_response(exc)

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        self._guard.refusals.count("header_timeout")
        self._guard.close(self)


class GuardedSite(web.BaseSite):
    """A TCP listener whose connections are ``GuardedHandler``s.

    Args:
        runner: the app's runner, set up.
        host: interface to listen on.
        port: port (0 picks a free one).
        guard: admits, times and drops the connections.
        handler_kwargs: what aiohttp's ``web.Server`` would pass each ``RequestHandler``.
    """

    __slots__ = ("_guard", "_handler_kwargs", "_host", "_port")

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard,
        handler_kwargs: dict[str, Any],
    ) -> None:  # fmt: skip
        super().__init__(runner, backlog=BACKLOG)
        self._host = host
        self._port = port
        self._guard = guard
        self._handler_kwargs = handler_kwargs

    @property
    def name(self) -> str:
        return str(URL.build(scheme="http", host=self._host or "0.0.0.0", port=self._port))

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        if server is None:
            raise RuntimeError("set the runner up before starting its site")
        guard, kwargs = self._guard, self._handler_kwargs

        def connection() -> GuardedHandler:
            return GuardedHandler(guard, server, loop=loop, **kwargs)

        self._server = await loop.create_server(
            connection, self._host, self._port, backlog=self._backlog, reuse_address=True
        )
