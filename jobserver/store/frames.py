"""Pickle frames (``framing.py``) between ``SqliteStore`` and its writer process.

Both ends are this package's own code over a private pipe, so pickle (the fastest codec for
the tuples, jobs and errors that cross) is safe here: nothing else can write to the pipe.
What a caller hands in as JSON (a payload, metadata, a result, an error) crosses as orjson
bytes: a value that is not JSON is refused on the server's side, with its own write alone,
and everything pickled is plain data the writer can always read back.
"""

from __future__ import annotations

import asyncio
import os
import select
import time
from collections.abc import Callable
from typing import Any

import orjson

from .. import framing
from ..codegen import make_function
from ..errors import InvalidPayload
from ..models import JOB_FIELDS, Job
from .protocol import NewJob

HEADER = framing.HEADER
# Stands in for a request that could not be unpickled; the writer answers it with an error.
UNREADABLE: list[Any] = [None]
READ_CHUNK = 1 << 20

# Jobs cross as plain tuples of their fields: pickle handles a dataclass through Python-level
# hooks, about five times slower than a tuple of the same values, on the event loop's side too.
JobFields = tuple[Any, ...]
NewJobFields = tuple[Any, ...]


# ``job_fields(job)``: the job's fields in declaration order; ``Job(*fields)`` makes it again.
job_fields: Callable[[Job], JobFields] = make_function(
    "job_fields", "job", ["return (" + " ".join(f"job.{f.name}," for f in JOB_FIELDS) + ")"], {}
)


def json_bytes(value: Any, what: str) -> bytes:
    """``value`` as JSON, or InvalidPayload naming ``what`` when it is not JSON."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise InvalidPayload(f"{what} must be JSON: {exc}") from None


def new_job_fields(new: NewJob) -> NewJobFields:
    """``new``'s fields in declaration order, the payload as JSON; see ``new_job``."""
    # Plain str, int and float: nothing of the caller's own types crosses the pipe.
    return (
        str(new.type), str(new.user_id), json_bytes(new.payload, "the payload"),
        int(new.max_attempts), float(new.delay_seconds), _text(new.idempotency_key),
        _text(new.job_id), str(new.message), str(new.label),
        json_bytes(new.metadata, "the metadata"),
    )  # fmt: skip


def _text(value: str | None) -> str | None:
    return None if value is None else str(value)


IDEMPOTENCY_KEY = 5  # where new_job_fields puts it (the writer checks it before decoding)


def new_job(fields: NewJobFields) -> NewJob:
    payload = orjson.loads(fields[2])
    return NewJob(
        fields[0], fields[1], payload, fields[3], fields[4], fields[5], fields[6], fields[7],
        fields[8], orjson.loads(fields[9]),
    )  # fmt: skip


def pack(value: Any) -> bytes:
    return framing.pack(value, framing.PICKLE)


def loads(body: bytes) -> Any:
    return framing.PICKLE.loads(body)


class Replies(asyncio.Protocol):
    """The server's end of the writer process's reply pipe: each whole frame goes to
    ``on_frame`` (as the body's bytes, in order) from the callback that read it; ``on_end``
    once the pipe ends. A StreamReader read by a task, or a subprocess transport (it hands
    a pipe's data on with ``call_soon``), would each hand a reply over a turn of the loop
    later, and a write's caller waits for that turn.

    Args:
        on_frame: called with each frame's body.
        on_end: called once, when the pipe is closed (the writer exited or closed it).
    """

    def __init__(self, on_frame: Callable[[bytes], None], on_end: Callable[[], None]) -> None:
        self._on_frame = on_frame
        self._on_end = on_end
        self._buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        size = HEADER.size
        while len(buffer) >= size:
            end = size + HEADER.unpack_from(buffer)[0]
            if len(buffer) < end:
                break
            body = bytes(buffer[size:end])
            del buffer[:end]
            self._on_frame(body)

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_end()


class Link:
    """The writer process's end: blocking reads of requests, blocking writes of replies.

    Args:
        read_fd: where requests arrive (the parent's pipe).
        write_fd: where replies go.
    """

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self._buffer = bytearray()
        self._eof = False
        self._held: list[Any] | None = None  # read, but over the last batch's limit

    def send(self, value: Any) -> None:
        view = memoryview(pack(value))
        while view:
            view = view[os.write(self.write_fd, view) :]

    def receive_many(self, max_items: int) -> list[list[Any]] | None:
        """Wait for one request (a list), then take every further one already sent while the
        total stays within ``max_items``: whatever queued up while the last batch ran goes
        into the next. A request that cannot be unpickled comes as ``UNREADABLE``, in its
        place. None once the other end is closed and nothing is left."""
        first = self._held if self._held is not None else self._take(block=True)
        self._held = None
        if first is None:
            return None
        requests = [first]
        total = len(first)
        while total < max_items:
            request = self._take(block=False)
            if request is None:
                break
            if total + len(request) > max_items:
                self._held = request
                break
            requests.append(request)
            total += len(request)
        return requests

    def receive_until(
        self, max_items: int, deadline: float, stop: Callable[[list[Any]], bool]
    ) -> list[list[Any]]:
        """Requests arriving before ``deadline`` (``time.monotonic()``), within ``max_items``
        in all; returns at once after a request for which ``stop`` is true."""
        requests: list[list[Any]] = []
        total = 0
        while self._held is None:
            if not self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                    break
            request = self._take(block=False)
            if request is None:
                break
            if total + len(request) > max_items:
                self._held = request
                break
            requests.append(request)
            total += len(request)
            if stop(request):
                break
        return requests

    def _take(self, *, block: bool) -> list[Any] | None:
        """The next whole frame; without ``block``, None unless its first bytes are here
        (the rest of a frame that has begun is waited for: it is written in one go)."""
        while len(self._buffer) < HEADER.size:
            if not self._fill(block=block or len(self._buffer) > 0):
                return None
        (size,) = HEADER.unpack_from(self._buffer)
        end = HEADER.size + size
        while len(self._buffer) < end:
            if not self._fill(block=True):
                return None
        body = bytes(self._buffer[HEADER.size : end])
        del self._buffer[:end]
        try:
            value: list[Any] = framing.PICKLE.loads(body)
        except Exception:
            return UNREADABLE
        return value

    def _fill(self, *, block: bool) -> bool:
        if self._eof:
            return False
        if not block and not select.select([self.read_fd], [], [], 0)[0]:
            return False
        chunk = os.read(self.read_fd, READ_CHUNK)
        if not chunk:
            self._eof = True
            return False
        self._buffer += chunk
        return True
