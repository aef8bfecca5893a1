"""Request limits where a request enters: body size, body stalls, multipart parts; refusals counted.

The ``limits`` middleware runs first after the error middleware:

- a body whose ``Content-Length`` is over its limit is refused before a byte of it is read
  (413: ``max_body_bytes`` for JSON, ``max_upload_bytes + multipart_overhead_bytes`` for a
  multipart upload);
- a body that stops arriving for ``body_timeout_seconds`` has its connection closed;
- it tells the connection guard (``web/guard.py``) when a request is in progress, so only
  idle connections are dropped at the connection cap;
- every refusal a limit raises is counted by reason (``web/refusals.py``);
- a client that closes its connection mid-request (a cancelled upload) is logged as one INFO
  line, status 499 in the access log, not as a server error.

``multipart_parts`` is how an upload handler reads its parts: at most ``max_multipart_parts``,
the whole body within its limit also when it comes without a length (chunked).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import BodyPartReader, web
from aiohttp.typedefs import Handler, Middleware

from ..config import Settings
from ..errors import BodyTooLarge, FileTooLarge, InvalidPayload, JobServerError, TooManyParts
from .guard import ConnectionGuard, GuardedHandler
from .refusals import CODES

log = logging.getLogger(__name__)

MULTIPART = "multipart/form-data"
# nginx's status for "client closed request": never sent, only seen in the access log.
CLIENT_CLOSED = 499
# aiohttp's own chunk size: reading a part in bigger chunks reads past its end and puts the
# rest back, a copy per part that made many tiny parts slow.
SKIP_CHUNK = 8192


def upload_limit(settings: Settings) -> int:
    """The most bytes a multipart upload's body may have, framing and fields included."""
    return settings.max_upload_bytes + settings.multipart_overhead_bytes


def human_bytes(n: int) -> str:
    """A size as people write it: 52428800 -> "50 MB", 200000 -> "195 KB" (1 KB = 1024 B)."""
    value, unit = float(n), "bytes"
    for name in ("KB", "MB", "GB"):
        if value < 1024:
            break
        value, unit = value / 1024, name
    return f"{value:.3g} {unit}" if unit != "bytes" else f"{n} bytes"


def too_large(max_upload_bytes: int) -> FileTooLarge:
    return FileTooLarge(
        f"The file is larger than the {human_bytes(max_upload_bytes)} this server accepts"
    )


class _BodyWatch:
    """Closes the connection of a request whose body has not grown for ``timeout`` seconds."""

    __slots__ = ("guard", "handle", "request", "seen", "stalled", "timeout")

    def __init__(self, request: web.Request, guard: ConnectionGuard, timeout: float) -> None:
        self.request = request
        self.guard = guard
        self.timeout = timeout
        self.seen = request.content.total_bytes
        self.stalled = False
        self.handle: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            timeout, self._check
        )

    def _check(self) -> None:
        content = self.request.content
        self.handle = None
        if content.is_eof():
            return
        if content.total_bytes != self.seen:
            self.seen = content.total_bytes
            self.handle = asyncio.get_running_loop().call_later(self.timeout, self._check)
            return
        self.stalled = True
        self.guard.refusals.count("body_timeout")
        protocol = self.request.protocol
        if isinstance(protocol, GuardedHandler):
            self.guard.close(protocol)
        elif protocol is not None:
            protocol.force_close()

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


def limits_middleware(settings: Settings, guard: ConnectionGuard) -> Middleware:
    """The middleware described above, for one app."""

    @web.middleware
    async def limits(request: web.Request, handler: Handler) -> web.StreamResponse:
        protocol = request.protocol
        guarded = protocol if isinstance(protocol, GuardedHandler) else None
        if guarded is not None:
            guard.busy(guarded)
        watch = None
        try:
            if request.body_exists:
                _check_length(request, settings)
                if not request.content.is_eof():
                    watch = _BodyWatch(request, guard, settings.body_timeout_seconds)
            return await handler(request)
        except JobServerError as exc:
            if (reason := CODES.get(exc.code)) is not None:
                guard.refusals.count(reason)
            raise
        except ConnectionError:
            if watch is not None and watch.stalled:
                # Closed by the body timeout: the answer reaches no one, but the access log
                # says what happened.
                return web.Response(status=408)
            transport = request.transport
            if transport is None or transport.is_closing():
                # The client went away mid-request (a cancelled upload, a closed tab): routine,
                # not a server error. What the handler stored is removed by its own cleanup.
                log.info("client closed the connection during %s %s after %d body bytes",
                         request.method, request.path, request.content.total_bytes)  # fmt: skip
                return web.Response(status=CLIENT_CLOSED)
            raise
        finally:
            if watch is not None:
                watch.cancel()
            if guarded is not None:
                guard.idle(guarded)

    return limits


def _check_length(request: web.Request, settings: Settings) -> None:
    length = request.content_length
    if length is None:
        return  # chunked: counted as it is read (client_max_size, multipart_parts)
    if request.content_type == MULTIPART:
        if length > upload_limit(settings):
            raise too_large(settings.max_upload_bytes)
    elif length > settings.max_body_bytes:
        raise BodyTooLarge(f"the request body is larger than {settings.max_body_bytes} bytes")


async def multipart_parts(
    request: web.Request, settings: Settings
) -> AsyncIterator[BodyPartReader]:
    """The parts of a multipart body, at most ``max_multipart_parts`` (TOO_MANY_PARTS above),
    never past the upload limit. Between parts the loop lets others run, so a body of many
    tiny parts, arriving faster than it is read, cannot hold it."""
    reader = await request.multipart()
    count = 0
    while (part := await reader.next()) is not None:
        count += 1
        if count > settings.max_multipart_parts:
            raise TooManyParts(
                f"a form may have at most {settings.max_multipart_parts} parts; "
                "send the PDF as the part named file"
            )
        if not isinstance(part, BodyPartReader):
            raise InvalidPayload("nested multipart bodies are not accepted")
        _check_read(request, settings)
        yield part
        await asyncio.sleep(0)


async def skip_part(request: web.Request, part: BodyPartReader, settings: Settings) -> None:
    """Read past a part nobody wants, within the upload limit."""
    while await part.read_chunk(SKIP_CHUNK):
        _check_read(request, settings)


def _check_read(request: web.Request, settings: Settings) -> None:
    if request.content.total_bytes > upload_limit(settings):
        raise too_large(settings.max_upload_bytes)
