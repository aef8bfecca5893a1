"""Load generator: N WebSocket clients in this process, speaking one of three protocols.

``ours``: /ws with Origin and the session cookie, then subscribe to a user;
``bare``: the baseline's /ws, nothing to say; ``socketio``: Engine.IO 4 / Socket.IO 5 over a
raw WebSocket (the same light client for every server, so the clients cost each the same).

Prints a ready line once every client is connected (and subscribed), then in ``fanout`` mode
records, for each event stamped with ``metadata.t``, the time from emit to receive, until each
client has seen ``--streams`` end markers; in ``idle`` mode it only holds the sockets. It
reports when stdin closes, when every client is done, or at ``--timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from typing import Any

import aiohttp
import orjson
from harness import await_stdin_eof, emit_ready, emit_result, raise_fd_limit

ENDED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)


class Client:
    """One connection and what it received."""

    def __init__(self) -> None:
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.received = 0
        self.ends = 0
        self.latencies: list[float] = []
        self.first = 0.0
        self.last = 0.0
        self.first_emit = 0.0
        self.closed_early = False


async def connect(session: aiohttp.ClientSession, args: argparse.Namespace, client: Client) -> None:
    base = args.url.rstrip("/")
    ws_base = "ws" + base[4:]
    if args.protocol == "ours":
        ws = await session.ws_connect(
            ws_base + "/ws",
            headers={"Origin": base, "Cookie": f"jobserver_token={args.token}"},
            max_msg_size=0,
        )
        await ws.send_bytes(orjson.dumps({"type": "subscribe", "userId": args.user}))
        while True:
            msg = orjson.loads((await ws.receive(timeout=30)).data)
            if msg.get("type") == "subscribed":
                break
            if msg.get("type") == "error":
                raise RuntimeError(f"subscribe refused: {msg}")
    elif args.protocol == "bare":
        ws = await session.ws_connect(ws_base + "/ws", max_msg_size=0)
    else:
        ws = await session.ws_connect(
            ws_base + "/socket.io/?EIO=4&transport=websocket", max_msg_size=0
        )
        opened = (await ws.receive(timeout=30)).data
        if not str(opened).startswith("0"):
            raise RuntimeError(f"unexpected Engine.IO open packet {opened!r}")
        await ws.send_str("40")
        while not str((await ws.receive(timeout=30)).data).startswith("40"):
            pass
    client.ws = ws


def event_of(protocol: str, data: Any) -> dict[str, Any] | None:
    """The event object in a frame, or None for control frames."""
    if protocol == "socketio":
        text = data if isinstance(data, str) else data.decode()
        if not text.startswith("42"):
            return None
        packet = orjson.loads(text[2:])
        event: dict[str, Any] = packet[1]
        return event
    parsed: dict[str, Any] = orjson.loads(data)
    return parsed


async def read(args: argparse.Namespace, client: Client) -> None:
    ws = client.ws
    assert ws is not None
    protocol, streams = args.protocol, args.streams
    while client.ends < streams:
        msg = await ws.receive()
        if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            now = time.time()
            if protocol == "socketio" and msg.data == "2":
                await ws.send_str("3")  # Engine.IO ping from the server
                continue
            event = event_of(protocol, msg.data)
            if not event or event.get("type") != "job.progress":
                continue  # our job.completed repeats the last progress metadata
            meta = event.get("metadata")
            if not meta or "t" not in meta:
                continue
            client.received += 1
            client.latencies.append(now - meta["t"])
            if not client.first:
                client.first = now
                client.first_emit = meta["t"]
            client.last = now
            if meta.get("end"):
                client.ends += 1
        elif msg.type in ENDED:
            client.closed_early = True
            return


async def idle(args: argparse.Namespace, client: Client) -> None:
    """Hold the socket; answer Socket.IO pings so the server keeps it."""
    ws = client.ws
    assert ws is not None
    while True:
        msg = await ws.receive()
        if msg.type in ENDED:
            client.closed_early = True
            return
        if args.protocol == "socketio" and msg.data == "2":
            await ws.send_str("3")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit()
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, connect=60, sock_connect=60)
    clients = [Client() for _ in range(args.clients)]
    gate = asyncio.Semaphore(args.connect_parallel)
    errors: list[str] = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def open_one(client: Client) -> None:
            async with gate:
                try:
                    await connect(session, args, client)
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")

        t0 = time.perf_counter()
        async with asyncio.timeout(args.timeout):
            await asyncio.gather(*(open_one(c) for c in clients))
        connect_s = time.perf_counter() - t0
        live = [c for c in clients if c.ws is not None]
        worker = read if args.mode == "fanout" else idle
        readers = [asyncio.create_task(worker(args, c)) for c in live]
        emit_ready({"connected": len(live), "errors": len(errors)})
        # fanout ends when every reader has its end markers; idle when stdin closes.
        until: asyncio.Future[Any] = (
            asyncio.ensure_future(asyncio.gather(*readers))
            if args.mode == "fanout"
            else await_stdin_eof()
        )
        await asyncio.wait([until], timeout=args.timeout)
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for c in live:
            assert c.ws is not None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(c.ws.close(), 2)
    latencies = [lat for c in live for lat in c.latencies]
    firsts = [c.first for c in live if c.first]
    lasts = [c.last for c in live if c.last]
    return {
        "clients": args.clients,
        "connected": len(live),
        "connect_errors": errors[:5],
        "connect_error_count": len(errors),
        "connect_s": connect_s,
        "received": sum(c.received for c in live),
        "done": sum(1 for c in live if c.ends >= args.streams),
        "closed_early": sum(1 for c in live if c.closed_early),
        "first_recv": min(firsts) if firsts else None,
        "first_emit": min((c.first_emit for c in live if c.first_emit), default=None),
        "last_recv": max(lasts) if lasts else None,
        "latencies_ms": [round(lat * 1000, 3) for lat in latencies],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="server base URL, http://127.0.0.1:PORT")
    parser.add_argument("--protocol", choices=("ours", "bare", "socketio"), required=True)
    parser.add_argument("--mode", choices=("fanout", "idle"), default="fanout")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--streams", type=int, default=1, help="end markers to wait for")
    parser.add_argument("--token", default="", help="session token (ours)")
    parser.add_argument("--user", default="bench", help="user to subscribe to (ours)")
    parser.add_argument("--connect-parallel", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=120.0)
    emit_result(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
