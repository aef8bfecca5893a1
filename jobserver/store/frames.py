"""Length-prefixed pickle frames between ``SqliteStore`` and its writer process.

Both ends are this package's own code over a private pipe, so pickle (the fastest codec for
the tuples, jobs and errors that cross) is safe here: nothing else can write to the pipe.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import select
import struct
from typing import Any

from ..models import Job
from .protocol import NewJob

HEADER = struct.Struct(">I")
READ_CHUNK = 1 << 20

# Jobs cross as plain tuples of their fields: pickle handles a dataclass through Python-level
# hooks, about five times slower than a tuple of the same values, on the event loop's side too.
JobFields = tuple[Any, ...]
NewJobFields = tuple[Any, ...]


def job_fields(job: Job) -> JobFields:
    """``job``'s fields in declaration order; ``Job(*fields)`` makes it again."""
    return (
        job.id, job.type, job.user_id, job.payload, job.status, job.stage, job.progress,
        job.message, job.metadata, job.result, job.error, job.attempts, job.max_attempts,
        job.created_at, job.started_at, job.finished_at, job.run_at, job.last_seq,
        job.idempotency_key, job.lease_token, job.lease_expires_at,
    )  # fmt: skip


def new_job_fields(new: NewJob) -> NewJobFields:
    """``new``'s fields in declaration order; ``NewJob(*fields)`` makes it again."""
    return (
        new.type, new.user_id, new.payload, new.max_attempts, new.delay_seconds,
        new.idempotency_key, new.job_id, new.message,
    )  # fmt: skip


def pack(value: Any) -> bytes:
    body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


async def read(stream: asyncio.StreamReader) -> Any:
    """The next frame from ``stream``; raises ``asyncio.IncompleteReadError`` at its end."""
    (size,) = HEADER.unpack(await stream.readexactly(HEADER.size))
    return pickle.loads(await stream.readexactly(size))


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

    def send(self, value: Any) -> None:
        view = memoryview(pack(value))
        while view:
            view = view[os.write(self.write_fd, view) :]

    def receive_many(self, max_items: int) -> list[list[Any]] | None:
        """Wait for one request (a list), then take every further one already sent until
        ``max_items`` are taken: whatever queued up while the last batch ran goes into the
        next. None once the other end is closed and nothing is left."""
        first = self._take(block=True)
        if first is None:
            return None
        requests = [first]
        total = len(first)
        while total < max_items:
            request = self._take(block=False)
            if request is None:
                break
            requests.append(request)
            total += len(request)
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
        value: list[Any] = pickle.loads(body)
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
