"""Following events: the WebSocket ``/ws``, long-polling ``/api/events`` while it is down.

A ``Follow`` keeps one cursor, the seq of the last event it handed out, and subscribes (or
polls) from it after every drop, so nothing is missed. Both transports feed one funnel that
hands out only events above the cursor, so an event two transports both bring (while the socket
comes back and a poll is still out) is handed out once, and always in seq order. When the
server cannot replay from the cursor it says ``resync``: the follower hands out a ``Resync`` and
goes on from the server's head. The same rules as ``static/jobclient.js``; the protocol is
docs/websocket.md.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

import aiohttp

from .api import Http
from .errors import (
    JobServerClientError,
    NetworkError,
    ProtocolError,
    ServerUnavailable,
    Unauthorized,
    api_error,
)
from .models import FollowItem, Resync, event_from_wire

Transport = Literal["websocket", "polling"]
TRANSPORTS: Final[tuple[Transport, ...]] = ("websocket", "polling")
State = Literal["connecting", "websocket", "polling", "offline", "closed"]

# The server closes a client that fell too far behind with 4000: resume at once. A socket
# that is refused by policy (1008) needs a new token; every other close backs off.
CLOSE_RESUME: Final = 4000
CLOSE_POLICY: Final = 1008
_RESUBSCRIBE: Final = -1  # our own outcome: reconnect at once with the current cursor
_DATA: Final = (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY)


def backoff_delay(attempt: int, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Exponential backoff with equal jitter: uniform in [ceiling / 2, ceiling]."""
    ceiling: float = min(cap, base * 2.0 ** min(max(attempt, 0), 30))
    return ceiling / 2 + rand() * ceiling / 2


@dataclass(slots=True)
class FollowStats:
    """Counts kept by a ``Follow``.

    Args:
        delivered: events handed out.
        via_websocket: of those, the ones the WebSocket brought first.
        via_polling: of those, the ones a long-poll brought first.
        duplicates: events dropped because the cursor had passed them (brought twice).
        resyncs: ``Resync`` items handed out.
        sockets: WebSockets whose subscription the server confirmed.
        polls: long-poll answers received.
    """

    delivered: int = 0
    via_websocket: int = 0
    via_polling: int = 0
    duplicates: int = 0
    resyncs: int = 0
    sockets: int = 0
    polls: int = 0


class _End:
    pass


_END: Final = _End()


class Follow:
    """An async iterator of one user's or one job's events, from a cursor, across drops.

    Use it as ``async with client.follow(...) as events: async for event in events:``; it
    yields ``JobEvent`` objects (a subclass per event type) and ``Resync``. It raises an
    ``ApiError`` when the server refuses the subscription (``JOB_NOT_FOUND``, a bad token...),
    and a ``NetworkError`` when ``give_up_after`` seconds pass without reaching the server.

    Args:
        http: the client's connection to the server.
        kind: ``userId`` or ``jobId``.
        target: the user's or the job's id.
        since: hand out events after this seq; None means from now on.
        epoch: the event log ``since`` belongs to (checked by the server when given).
        transports: ``("websocket", "polling")`` (the default), or one of them alone.
        poll_timeout: seconds one long-poll may wait for an event (0 to 60).
        backoff_base: first reconnect delay's ceiling, in seconds (doubles per attempt).
        backoff_cap: largest reconnect delay, in seconds.
        heartbeat: seconds between WebSocket pings; a socket without a pong is dropped.
        open_timeout: seconds to open a socket and have its subscription confirmed.
        give_up_after: raise ``NetworkError`` after this long without reaching the server
            (None: keep trying).
        max_buffered: events held for a consumer that does not keep up; past it, reading
            from the server pauses (the server then keeps them, or coalesces progress).
        resolve: finds ``target`` when it is empty (your own user id, asked of the server).
    """

    def __init__(
        self,
        http: Http,
        kind: Literal["userId", "jobId"],
        target: str,
        *,
        since: int | None = None,
        epoch: str | None = None,
        transports: tuple[Transport, ...] = TRANSPORTS,
        poll_timeout: float = 25.0,
        backoff_base: float = 0.5,
        backoff_cap: float = 10.0,
        heartbeat: float = 20.0,
        open_timeout: float = 10.0,
        give_up_after: float | None = None,
        max_buffered: int = 1000,
        resolve: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        wanted = tuple(t for t in TRANSPORTS if t in transports)
        if not wanted or len(wanted) != len(set(transports)):
            raise ValueError(f"transports must be some of {TRANSPORTS}, not {transports!r}")
        self.kind = kind
        self.target = target
        self.cursor = since
        self.epoch = epoch
        self.transports = wanted
        self.state: State = "connecting"
        self.stats = FollowStats()
        self.poll_timeout = poll_timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.heartbeat = heartbeat
        self.open_timeout = open_timeout
        self.give_up_after = give_up_after
        self.max_buffered = max_buffered
        self._http = http
        self._resolve = resolve
        self._random = random.random
        self._queue: asyncio.Queue[FollowItem | BaseException | _End] = asyncio.Queue()
        self._room = asyncio.Event()
        self._room.set()
        self._live = asyncio.Event()
        self._anchored = asyncio.Event()  # the cursor is known: "from now on" has a seq
        self._generation = 0  # bumped by every resync: answers to older requests are stale
        self._last_contact = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._closed = False
        self._policy_retried = False
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    # ---- the consumer's side -------------------------------------------------------------

    def __aiter__(self) -> Follow:
        return self

    async def __anext__(self) -> FollowItem:
        if self._closed and self._queue.empty():
            raise StopAsyncIteration
        self._begin()
        item = await self._queue.get()
        if self._queue.qsize() < self.max_buffered:
            self._room.set()
        if isinstance(item, _End):
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            await self.aclose()
            raise item
        return item

    async def __aenter__(self) -> Follow:
        await self.start()
        return self

    async def start(self) -> None:
        """Connect, and without ``since`` wait until the server has said where "now" is, so
        every event after this returns is handed out (``async with`` does this)."""
        self._begin()
        if self.cursor is None:
            await self._anchored.wait()

    def _begin(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name=f"follow {self.target}")

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop following: close the socket, end the poll; the iterator ends."""
        if self._closed:
            return
        self._closed = True
        self.state = "closed"
        tasks = [t for t in (self._task, self._poller) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._queue.put_nowait(_END)
        self._room.set()
        self._anchored.set()

    @property
    def transport(self) -> Transport | None:
        """The transport events arrive by now (None while neither reaches the server)."""
        if self.state in ("websocket", "polling"):
            return self.state
        return None

    # ---- the funnel every transport delivers through --------------------------------------

    async def _deliver(self, data: Any, via: Transport) -> None:
        event = event_from_wire(data)
        await self._wait_for_room()
        # From here to the put nothing awaits, so events leave in the order they passed.
        if (event.userId if self.kind == "userId" else event.jobId) != self.target:
            return
        if self.cursor is not None and event.seq <= self.cursor:
            self.stats.duplicates += 1
            return
        self.cursor = event.seq
        self.stats.delivered += 1
        if via == "websocket":
            self.stats.via_websocket += 1
        else:
            self.stats.via_polling += 1
        self._put(event)

    async def _resync(self, reason: str, seq: Any, epoch: Any) -> None:
        if not isinstance(seq, int):
            raise ProtocolError("PROTOCOL", f"a resync without a head seq: {seq!r}")
        await self._wait_for_room()
        self._generation += 1
        self.cursor = seq
        if isinstance(epoch, str):
            self.epoch = epoch
        self.stats.resyncs += 1
        self._anchored.set()
        self._put(Resync(reason=str(reason), seq=seq, epoch=self.epoch))

    async def _wait_for_room(self) -> None:
        while self._queue.qsize() >= self.max_buffered:
            self._room.clear()
            await self._room.wait()

    def _put(self, item: FollowItem | BaseException) -> None:
        self._queue.put_nowait(item)

    def _fail(self, exc: BaseException) -> None:
        if not self._closed:
            self._put(exc)
        self._anchored.set()

    def _contact(self) -> None:
        self._last_contact = time.monotonic()

    def _check_give_up(self, exc: JobServerClientError) -> None:
        waited = time.monotonic() - self._last_contact
        if self.give_up_after is not None and waited > self.give_up_after:
            raise exc

    # ---- the supervisor -------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            if not self.target:
                if self._resolve is None:
                    raise ValueError(f"follow needs a {self.kind}")
                self.target = await self._resolve()
            if "websocket" in self.transports:
                await self._socket_loop()
            else:
                await self._poll_loop(until_live=False)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # everything else, so the consumer hears of it
            self._fail(exc)
        finally:
            if self._poller is not None and not self._poller.done():
                self._poller.cancel()

    async def _socket_loop(self) -> None:
        attempt = 0
        while True:
            outcome = await self._socket_once()
            if self._live.is_set():
                attempt = 0
            self._live.clear()
            if outcome == _RESUBSCRIBE:
                continue
            if "polling" in self.transports:
                self._start_polling()
            else:
                self.state = "offline"
            if outcome == CLOSE_RESUME and attempt == 0:
                delay = 0.0
            else:
                delay = backoff_delay(attempt, self.backoff_base, self.backoff_cap, self._random)
            attempt += 1
            await asyncio.sleep(delay)

    def _start_polling(self) -> None:
        if self._poller is None or self._poller.done():
            self.state = "polling"
            self._poller = asyncio.create_task(self._polling(), name=f"poll {self.target}")

    async def _polling(self) -> None:
        try:
            await self._poll_loop(until_live=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc)
            if self._task is not None:
                self._task.cancel()

    def _stop_polling(self) -> None:
        if self._poller is not None and not self._poller.done():
            self._poller.cancel()
        self._poller = None

    # ---- WebSocket ------------------------------------------------------------------------

    def _subscribe_message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "subscribe", self.kind: self.target}
        if self.cursor is not None:
            message["since"] = self.cursor
            if self.epoch is not None:
                message["epoch"] = self.epoch
        return message

    async def _socket_once(self) -> int | None:
        """One socket from opening to its end; its close code (None when it never opened)."""
        try:
            async with asyncio.timeout(self.open_timeout):
                ws = await self._http.websocket("/ws", self.heartbeat)
        except NetworkError as exc:
            self._check_give_up(exc)
            return None
        except TimeoutError as exc:
            self._check_give_up(self._http.network_error(exc))
            return None
        self._ws = ws
        loop = asyncio.get_running_loop()
        try:
            generation = self._generation
            await ws.send_str(json.dumps(self._subscribe_message()))
            confirm_by = loop.time() + self.open_timeout
            while True:
                wait = None if self._live.is_set() else max(0.0, confirm_by - loop.time())
                try:
                    async with asyncio.timeout(wait):
                        msg = await ws.receive()
                except TimeoutError:
                    return None  # never confirmed: a proxy that swallows the socket
                if msg.type not in _DATA:
                    break
                self._contact()
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    raise ProtocolError("PROTOCOL", "a WebSocket message is not JSON") from None
                if await self._on_socket_message(data, generation):
                    return _RESUBSCRIBE
        except (ConnectionError, aiohttp.ClientError):
            return None  # the socket broke while we sent
        finally:
            self._ws = None
            if self._live.is_set():
                self._contact()  # it was live until now
            await ws.close()
        if ws.close_code == CLOSE_POLICY:
            # A token that expired: one new one from the provider, then a refusal is final.
            if not self._policy_retried and await self._http.refresh():
                self._policy_retried = True
                return _RESUBSCRIBE
            raise Unauthorized("UNAUTHORIZED", "the server refused the token on the WebSocket")
        return ws.close_code

    async def _on_socket_message(self, data: Any, generation: int) -> bool:
        """Act on one server message; True when the socket must subscribe again."""
        if not isinstance(data, dict):
            raise ProtocolError("PROTOCOL", f"a WebSocket message is not an object: {data!r}")
        kind = data.get("type")
        if kind == "subscribed":
            if self.epoch is None and isinstance(data.get("epoch"), str):
                self.epoch = data["epoch"]
            if self.cursor is None and isinstance(data.get("seq"), int):
                self.cursor = data["seq"]
            self._anchored.set()
            self._went_live()
        elif kind == "resync":
            if generation != self._generation:
                # Answers a subscription made before another resync moved the cursor: this
                # socket streams from a head that may be past our cursor, so subscribe again.
                return True
            await self._resync(data.get("reason", ""), data.get("seq"), data.get("epoch"))
        elif kind == "error":
            code, message = str(data.get("code", "ERROR")), str(data.get("message", ""))
            status = 404 if code.endswith("NOT_FOUND") else 400
            raise api_error(status, code, message)
        elif kind in ("authenticated", "pong", "unsubscribed"):
            pass
        elif isinstance(data.get("seq"), int) and isinstance(data.get("jobId"), str):
            await self._deliver(data, "websocket")
        return False

    def _went_live(self) -> None:
        self._policy_retried = False
        self._live.set()
        self._stop_polling()
        self.state = "websocket"
        self.stats.sockets += 1

    # ---- long-polling ---------------------------------------------------------------------

    async def _poll_loop(self, *, until_live: bool) -> None:
        failures = 0
        while not (until_live and self._live.is_set()):
            generation = self._generation
            params: dict[str, str | int | float] = {
                self.kind: self.target, "timeout": self.poll_timeout,
            }  # fmt: skip
            if self.cursor is not None:
                params["since"] = self.cursor
                if self.epoch is not None:
                    params["epoch"] = self.epoch
            try:
                reply = await self._http.request(
                    "GET", "/api/events", params=params, timeout=self.poll_timeout + 15.0
                )
            except (NetworkError, ServerUnavailable) as exc:
                self._check_give_up(exc)
                if not self._live.is_set():
                    self.state = "offline"
                delay = backoff_delay(failures, self.backoff_base, self.backoff_cap, self._random)
                failures += 1
                await asyncio.sleep(delay)
                continue
            failures = 0
            self._contact()
            if until_live and self._live.is_set():
                return  # the socket took over while this poll was out; it has these events
            self.state = "polling"
            self.stats.polls += 1
            await self._on_poll_reply(reply, generation)

    async def _on_poll_reply(self, reply: Any, generation: int) -> None:
        if not isinstance(reply, dict) or not isinstance(reply.get("cursor"), int):
            raise ProtocolError("PROTOCOL", f"not an answer of /api/events: {str(reply)[:200]}")
        if generation != self._generation:
            return  # asked with a cursor an answer to another request has replaced
        epoch = reply.get("epoch")
        if reply.get("type") == "resync":
            await self._resync(reply.get("reason", ""), reply["cursor"], epoch)
            return
        if self.epoch is None and isinstance(epoch, str):
            self.epoch = epoch
        elif isinstance(epoch, str) and epoch != self.epoch:
            await self._resync("epoch", reply["cursor"], epoch)
            return
        for data in reply.get("events") or ():
            await self._deliver(data, "polling")
        if self._generation == generation:
            self.cursor = max(self.cursor or 0, reply["cursor"])
            self._anchored.set()

