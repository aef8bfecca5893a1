"""The live-delivery hub: open sockets and long-polls, the published cursor, shared frames.

Both transports (``/ws`` and ``GET /api/events``) ask the gateway the same questions: which
stream a client may follow (``resolve``), whether its cursor can be resumed (``resync_reason``),
and how far the bus has published (``published``). The gateway also builds each event's
WebSocket frame once, for every socket that sends it, and closes everything at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from ..bus import EventBus, Mailbox
from ..errors import InvalidPayload, JobNotFound, NotFound
from ..metrics import Metrics
from ..models import Event
from ..store import Store
from .numbers import BIGGEST, whole

log = logging.getLogger(__name__)

# Close codes (docs/websocket.md). 1000-1015 are RFC 6455's; 4000-4999 are ours.
CLOSE_GOING_AWAY: Final = 1001  # the server is shutting down: reconnect and resume
CLOSE_POLICY: Final = 1008  # not authenticated (no token, a bad one, or none within the limit)
CLOSE_TOO_BIG: Final = 1009  # a client message over ws_max_message_bytes
CLOSE_INTERNAL: Final = 1011  # a server fault
CLOSE_TRY_LATER: Final = 1013  # the user already holds ws_max_connections_per_user sockets
CLOSE_RESUME: Final = 4000  # too far behind: reconnect and subscribe with since=<last seq>
CLOSE_TIMEOUT: Final = 5.0  # how long a closing handshake and its last bytes may take
# A socket closed with 4000 whose peer is not reading keeps its last bytes (the close frame
# last) this long, so a peer that reads again in time learns to resume.
CLOSE_LINGER: Final = 30.0
FRAMES_KEPT: Final = 256  # event frames kept for the next socket (``Gateway.frame``)

Kind = Literal["userId", "jobId"]


@dataclass(frozen=True, slots=True)
class Target:
    """One stream a client follows: all events of a user, or of one job.

    Args:
        kind: ``userId`` or ``jobId``, the wire field naming the stream.
        id: the user's or the job's id.
    """

    kind: Kind
    id: str

    def matches(self, event: Event) -> bool:
        return (event.user_id if self.kind == "userId" else event.job_id) == self.id

    @property
    def user_id(self) -> str | None:
        return self.id if self.kind == "userId" else None

    @property
    def job_id(self) -> str | None:
        return self.id if self.kind == "jobId" else None

    def wire(self) -> dict[str, str]:
        return {self.kind: self.id}


def parse_target(user_id: object, job_id: object) -> Target:
    """Exactly one of ``userId`` / ``jobId``, a non-empty string; InvalidPayload otherwise."""
    if (user_id is None) == (job_id is None):
        raise InvalidPayload("name exactly one of userId or jobId", code="INVALID_MESSAGE")
    kind: Kind = "userId" if user_id is not None else "jobId"
    value = user_id if user_id is not None else job_id
    if not isinstance(value, str) or not 0 < len(value) <= 200:
        raise InvalidPayload(f"{kind} must be a string of 1 to 200 characters",
                             code="INVALID_MESSAGE")  # fmt: skip
    return Target(kind, sys.intern(value))  # one string per id, however many sockets follow it


def parse_since(value: object) -> int | None:
    """A cursor: a whole number >= 0 (a numeric string is accepted for query strings)."""
    if value is None:
        return None
    return whole(value, "since", 0, BIGGEST, code="INVALID_MESSAGE")


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame (RFC 6455 5.2) carrying ``payload`` (UTF-8)."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


class Closable(Protocol):
    """A live socket the gateway can close at shutdown."""

    user_id: str | None

    def beat(self) -> None:
        """Ping the peer, or cut it if it has not answered the previous ping."""
        ...

    async def close(self, code: int, reason: str) -> None: ...


class Gateway:
    """Shared state of live delivery; one per app.

    Args:
        store: where backlogs are read and jobs are looked up.
        bus: where live events come from.
        max_connections_per_user: sockets one user may hold at once.
        heartbeat_seconds: how often every socket is pinged; one that has not answered the
            previous ping is cut, so a dead peer is freed within twice this.
        metrics: where delivery lag is recorded (None: nowhere).
    """

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        *,
        max_connections_per_user: int,
        heartbeat_seconds: float = 15.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.max_connections_per_user = max_connections_per_user
        self.heartbeat_seconds = heartbeat_seconds
        self.metrics = metrics
        # Highest seq the bus has published. The job queue publishes in seq order, so every
        # event up to it has already gone to the subscribers that existed at the time.
        self.published = 0
        self.closing = False
        self.sockets: set[Closable] = set()
        self.pollers: set[Mailbox] = set()
        self._per_user: dict[str, int] = {}
        self._frames: dict[int, bytes] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._heartbeat: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Take the head before any worker runs, then follow the bus."""
        self.published = await self.store.head_seq()
        self.bus.add_tap(self._on_event)
        self._heartbeat = asyncio.create_task(self._beat(), name="ws-heartbeat")

    async def _beat(self) -> None:
        # One timer for all sockets rather than one per socket (aiohttp's heartbeat=): an
        # idle connection then costs no timer handle and no reset on every frame.
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            for sock in list(self.sockets):
                sock.beat()

    def _on_event(self, event: Event) -> None:
        if event.seq > self.published:
            self.published = event.seq

    @property
    def epoch(self) -> str:
        return self.store.epoch

    def frame(self, event: Event) -> bytes:
        """The event as a text frame; built once per event, whatever the number of sockets
        (the bus hands each socket a commit's events in turn: the frames of the last
        ``FRAMES_KEPT`` events are kept)."""
        frame = self._frames.get(event.seq)
        if frame is None:
            if len(self._frames) >= FRAMES_KEPT:
                self._frames.clear()
            frame = self._frames[event.seq] = text_frame(event.data)
        return frame

    # -- who may follow what ---------------------------------------------------------------

    async def resolve(self, user_id: str, target: Target) -> None:
        """Raise unless ``user_id`` may follow ``target``; another user's stream is a 404."""
        if target.kind == "userId":
            if target.id != user_id:
                raise NotFound(f"no events of user {target.id} are visible to you")
            return
        job = await self.store.get_job(target.id)
        if job is None or job.user_id != user_id:
            raise JobNotFound(f"no job {target.id}")

    async def resync_reason(self, since: int | None, epoch: str | None) -> str | None:
        """Why a cursor cannot be resumed (``epoch``, ``pruned``, ``ahead``), or None."""
        if epoch is not None and epoch != self.store.epoch:
            return "epoch"
        if since is None:
            return None
        if since < await self.store.pruned_through():
            return "pruned"
        # Against the store's ceiling, not ``published``: a backlog may hand out an event
        # that is committed but not yet published, and a client may resume from it at once.
        if since > await self.store.seq_ceiling():
            return "ahead"
        return None

    # -- sockets ---------------------------------------------------------------------------

    def add(self, sock: Closable) -> None:
        """Track an open socket, so shutdown closes it."""
        self.sockets.add(sock)

    def admit(self, sock: Closable, user_id: str) -> bool:
        """Count a socket against its user's limit; False when the user is at the limit."""
        count = self._per_user.get(user_id, 0)
        if count >= self.max_connections_per_user or self.closing:
            return False
        self._per_user[user_id] = count + 1
        sock.user_id = sys.intern(user_id)
        return True

    def release(self, sock: Closable) -> None:
        """Forget a socket that has ended (and give its slot back to its user)."""
        self.sockets.discard(sock)
        user_id, sock.user_id = sock.user_id, None
        if user_id is not None:
            left = self._per_user.get(user_id, 1) - 1
            if left > 0:
                self._per_user[user_id] = left
            else:
                self._per_user.pop(user_id, None)

    def connections_of(self, user_id: str) -> int:
        return self._per_user.get(user_id, 0)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a short job (closing a socket) in the background, keeping a reference to it."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def shutdown(self) -> None:
        """Answer every long-poll now and close every socket with 1001 (resume elsewhere)."""
        self.closing = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        for box in list(self.pollers):
            box.close()
        closes = [s.close(CLOSE_GOING_AWAY, "the server is shutting down") for s in self.sockets]
        if closes:
            log.info("closing %d WebSocket connection(s)", len(closes))
            await asyncio.gather(*closes, return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
