"""One WebSocket client: its subscriptions, and getting each event to it once and in order.

Live events are written straight into the socket's transport from ``deliver`` (the bus calls
it; ``deliver_many`` with the events of one commit, one write for them all), as the frames the
gateway built once for all sockets: no task switch, no re-encoding per client. Only when the
socket cannot take more (its transport buffer is past the high-water mark) or while a backlog
is being sent do events wait in a bounded, coalescing ``Mailbox``; a short-lived flusher task
empties it once the peer reads again. A client still behind when the mailbox overflows is
closed with 4000: it resumes from its last seq.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from ..bus import Mailbox
from ..errors import Forbidden
from ..models import Event
from .gateway import (
    CLOSE_INTERNAL,
    CLOSE_LINGER,
    CLOSE_RESUME,
    CLOSE_TIMEOUT,
    Gateway,
    Target,
    text_frame,
)

log = logging.getLogger(__name__)

PAGE = 500  # backlog events read from the store at a time
PING = b"\x89\x00"  # a final, empty ping frame
REPLAYING = 1 << 62  # a subscription's floor while its backlog is being sent


class Sub:
    """One subscription: it owes the client every matching event after ``start``; those up
    to ``floor`` went out in its backlog, later ones come live."""

    __slots__ = ("floor", "start", "target")

    def __init__(self, target: Target, start: int, floor: int) -> None:
        self.target = target
        self.start = start
        self.floor = floor


class Connection:
    """The state of one authenticated (or authenticating) WebSocket.

    Args:
        gateway: the app's live-delivery hub.
        ws: the prepared WebSocket response.
        transport: the socket's transport, written to directly for events.
        writer: the payload writer ``ws.prepare`` returned (for waiting on drain).
        queue_size: events held for a slow peer before it is closed with 4000.
        max_subscriptions: subscriptions this socket may hold.
    """

    __slots__ = (
        "close_code",
        "closer",
        "dedup_until",
        "flusher",
        "gateway",
        "heard",
        "high_water",
        "max_subscriptions",
        "queue",
        "queue_size",
        "subs",
        "transport",
        "user_id",
        "writer",
        "ws",
    )

    def __init__(
        self,
        gateway: Gateway,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        writer: AbstractStreamWriter,
        *,
        queue_size: int,
        max_subscriptions: int,
    ) -> None:
        self.gateway = gateway
        self.ws = ws
        self.transport = transport
        self.writer = writer
        self.queue_size = queue_size
        self.max_subscriptions = max_subscriptions
        self.high_water = transport.get_write_buffer_limits()[1]
        self.user_id: str | None = None
        self.subs: list[Sub] = []  # a list, not a dict: most sockets hold one, and it is smaller
        self.queue: Mailbox | None = None  # set: someone else owns the socket, events wait
        self.flusher: asyncio.Task[None] | None = None
        self.closer: asyncio.Future[None] | None = None
        self.close_code: int | None = None  # the code this server closed the socket with
        self.dedup_until = 0  # live events up to here may already have gone out in a backlog
        self.heard = True  # anything (a pong, a message) came in since the last heartbeat

    # -- state -----------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.closer is None and not self.ws.closed and not self.transport.is_closing()

    def _congested(self) -> bool:
        return self.transport.get_write_buffer_size() > self.high_water

    def _wanted(self, event: Event) -> bool:
        """True when some subscription owes ``event`` and has not sent it in a backlog."""
        return any(event.seq > sub.floor and sub.target.matches(event) for sub in self.subs)

    def _covered(self, event: Event, new: Target) -> bool:
        """True when another subscription already sends ``event`` (so ``new`` must not)."""
        for sub in self.subs:
            if sub.target != new and event.seq > sub.start and sub.target.matches(event):
                return True
        return False

    def _find(self, target: Target) -> Sub | None:
        for sub in self.subs:
            if sub.target == target:
                return sub
        return None

    # -- delivery (called by the bus; must not block) ----------------------------------------

    def deliver(self, event: Event) -> None:
        queue = self.queue
        if queue is not None:
            queue.deliver(event)
            if queue.overflowed:
                self.close_soon(CLOSE_RESUME, "too far behind: resume from your last seq")
            return
        if event.seq <= self.dedup_until and not self._wanted(event):
            return  # committed before a backlog read and published after it: already sent
        if not self.is_open:
            return
        if self._congested():
            self.queue = queue = Mailbox(self.queue_size)
            queue.deliver(event)
            self.flusher = asyncio.create_task(self._flush())
            return
        self.transport.write(self.gateway.frame(event))

    def deliver_many(self, events: list[Event]) -> None:
        """As ``deliver`` for each, in one write while the socket takes them directly."""
        if self.queue is not None or not self.is_open or self._congested():
            for event in events:
                self.deliver(event)
            return
        frame, dedup = self.gateway.frame, self.dedup_until
        frames = [frame(e) for e in events if e.seq > dedup or self._wanted(e)]
        if frames:
            self.transport.write(b"".join(frames))

    def send(self, message: dict[str, Any]) -> None:
        """A control message (reply, error); it may overtake events still queued."""
        if self.is_open:
            self.transport.write(text_frame(orjson.dumps(message)))

    async def _drain(self) -> None:
        """Wait until the peer has taken enough of the buffer.

        Shielded: all drain() callers share one waiter in aiohttp's protocol, so cancelling
        one of them (the flusher, when the socket closes) would cancel it for the others.
        """
        if self._congested():
            await asyncio.shield(self.writer.drain())

    async def _pump(self) -> None:
        """Send what queued up while the socket was busy, then go back to writing directly."""
        while True:
            queue = self.queue
            if queue is None or queue.overflowed or not self.is_open:
                return
            if self._congested():
                await self._drain()
                continue
            events = queue.drain()
            if not events:
                self.queue = None
                return
            if self.gateway.metrics is not None:  # a slow peer's events waited: how long
                self.gateway.metrics.delivered("ws", events)
            frame = self.gateway.frame
            for event in events:
                if self._wanted(event):
                    self.transport.write(frame(event))

    async def _flush(self) -> None:
        try:
            await self._pump()
        except ConnectionError:
            pass  # the peer is gone; the handler cleans up
        finally:
            self.flusher = None

    async def _own(self) -> bool:
        """Wait until no flusher is running, so a backlog goes out in order; False if closed."""
        while self.flusher is not None:
            await asyncio.wait([self.flusher])
        return self.is_open

    # -- subscriptions -----------------------------------------------------------------------

    async def subscribe(self, target: Target, since: int | None, epoch: str | None) -> None:
        """Reply ``subscribed`` (after ``resync`` if the cursor is stale), then the backlog."""
        assert self.user_id is not None
        gateway = self.gateway
        if self._find(target) is not None:
            self._subscribed(target)  # subscribing twice changes nothing
            return
        if len(self.subs) >= self.max_subscriptions:
            raise Forbidden(
                f"a connection may hold at most {self.max_subscriptions} subscriptions",
                code="TOO_MANY_SUBSCRIPTIONS",
            )
        await gateway.resolve(self.user_id, target)
        reason = await gateway.resync_reason(since, epoch)
        if not await self._own():
            return
        head = gateway.published
        if since is None or reason is not None:
            if reason is not None:
                self.send(
                    {"type": "resync", **target.wire(), "reason": reason,
                     "seq": head, "epoch": gateway.epoch}
                )  # fmt: skip
            self.subs.append(Sub(target, head, head))
            gateway.bus.subscribe(self, user_id=target.user_id, job_id=target.job_id)
            self._subscribed(target)
            return
        await self._replay(target, since)

    async def _replay(self, target: Target, since: int) -> None:
        gateway = self.gateway
        self.queue = Mailbox(self.queue_size)  # live events wait until the backlog is out
        sub = Sub(target, since, REPLAYING)
        self.subs.append(sub)
        gateway.bus.subscribe(self, user_id=target.user_id, job_id=target.job_id)
        self._subscribed(target)
        last = since
        while self.is_open:
            try:
                page = await gateway.store.events_after(
                    last, user_id=target.user_id, job_id=target.job_id, limit=PAGE
                )
            except Exception:
                # Half a backlog is out and cannot be finished: the client resumes from its
                # cursor on a new connection (1011), which is always safe.
                log.exception("reading the backlog of %s failed", target.wire())
                await self.close(CLOSE_INTERNAL, "server error: reconnect and resume")
                return
            if last < await gateway.store.pruned_through():
                # Retention pruned past the cursor mid-backlog: the client reconnects and
                # resumes from what it has, and is told to resync; never a silent gap.
                await self.close(CLOSE_RESUME, "resume from your last seq")
                return
            for event in page:
                if self.is_open and not self._covered(event, target):
                    self.transport.write(text_frame(event.data))
            if page:
                last = page[-1].seq
            if len(page) < PAGE:
                break
            await self._drain()
        sub.floor = last
        self.dedup_until = max(self.dedup_until, last)
        await self._pump()

    def _subscribed(self, target: Target) -> None:
        gateway = self.gateway
        self.send(
            {"type": "subscribed", **target.wire(), "seq": gateway.published,
             "epoch": gateway.epoch}
        )  # fmt: skip

    def unsubscribe(self, target: Target) -> None:
        """Stop a subscription; its events still queued are dropped. Idempotent."""
        sub = self._find(target)
        if sub is not None:
            self.subs.remove(sub)
            self.gateway.bus.unsubscribe(self, user_id=target.user_id, job_id=target.job_id)
        self.send({"type": "unsubscribed", **target.wire()})

    def beat(self) -> None:
        """The gateway's heartbeat: ping a peer that was heard from, cut one that was not."""
        if not self.heard:
            self.transport.abort()  # no pong since the last ping: the peer is gone
            return
        self.heard = False
        if not self.transport.is_closing():
            self.transport.write(PING)

    # -- the end -----------------------------------------------------------------------------

    def detach(self) -> None:
        """Leave the bus and stop the flusher (the handler is ending)."""
        bus = self.gateway.bus
        for sub in self.subs:
            bus.unsubscribe(self, user_id=sub.target.user_id, job_id=sub.target.job_id)
        self.subs.clear()
        if self.queue is not None:
            self.queue.close()
        if self.flusher is not None:
            self.flusher.cancel()
        if self.closer is None and self.transport.get_write_buffer_size():
            self.transport.abort()  # a peer that stopped reading would hold the buffer for ever

    def close_soon(self, code: int, reason: str) -> None:
        """Close from a callback that cannot wait (the bus, a timer)."""
        if self.closer is None:
            self.closer = asyncio.get_running_loop().create_future()
            self.gateway.spawn(self._close(code, reason))

    async def close(self, code: int, reason: str) -> None:
        """Close with ``code``; a peer that does not answer in time is cut off."""
        if self.closer is None:
            self.closer = asyncio.get_running_loop().create_future()
            await self._close(code, reason)
        else:
            await asyncio.shield(self.closer)

    async def _close(self, code: int, reason: str) -> None:
        assert self.closer is not None
        self.close_code = code
        if self.queue is not None:
            self.queue.close()
        if self.flusher is not None:
            self.flusher.cancel()
        deadline = asyncio.get_running_loop().time() + CLOSE_TIMEOUT
        try:
            await self.ws.close(code=code, message=reason.encode(), drain=False)
            # What is still buffered (events, then the close frame) gets until the deadline
            # to reach a slow peer; a dead one would hold it for ever. With a zero high-water
            # mark, drain() returns only once the buffer is empty.
            self.transport.set_write_buffer_limits(high=0)
            async with asyncio.timeout_at(deadline):
                await asyncio.shield(self.writer.drain())
        except Exception:
            log.debug("closing a WebSocket failed", exc_info=True)
        finally:
            if not self.transport.get_write_buffer_size():
                pass
            elif code == CLOSE_RESUME:
                # Too far behind, it may be a peer that stopped reading for a while: what is
                # buffered, 4000 last, stays for it to read (it holds at most a high-water
                # mark of bytes, the queue was dropped) until CLOSE_LINGER; then cut off.
                self.transport.close()
                asyncio.get_running_loop().call_later(CLOSE_LINGER, self.transport.abort)
            else:
                self.transport.abort()
            if not self.closer.done():
                self.closer.set_result(None)
