"""Baseline server: a bare aiohttp WebSocket broadcast loop and a bare long-poll.

Bench-only control routes: POST /bench/emit {count, interval} broadcasts a stream of events
to every socket; POST /bench/poll-emit wakes every waiting long-poll with one event;
GET /bench/stats counts sockets and waiting pollers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

import orjson
from aiohttp import WSMsgType, web
from harness import fake_event, paced, raise_fd_limit, serve_until_stopped

SOCKETS: set[web.WebSocketResponse] = set()
WAITERS: set[asyncio.Future[bytes]] = set()
TASKS: set[asyncio.Task[None]] = set()


async def ws_handler(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    SOCKETS.add(ws)
    try:
        async for msg in ws:
            if msg.type is WSMsgType.ERROR:
                break
    finally:
        SOCKETS.discard(ws)
    return ws


async def broadcast(count: int, interval: float) -> None:
    seq = 0
    async for i in paced(count, interval):
        seq += 1
        data = orjson.dumps(fake_event(seq, i, count)).decode()
        for ws in list(SOCKETS):
            with contextlib.suppress(ConnectionError):
                await ws.send_str(data)


async def emit(request: web.Request) -> web.Response:
    body = await request.json()
    task = asyncio.create_task(broadcast(int(body["count"]), float(body.get("interval", 0))))
    TASKS.add(task)
    task.add_done_callback(TASKS.discard)
    return web.json_response({"started": True}, status=202)


async def poll(request: web.Request) -> web.Response:
    waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    WAITERS.add(waiter)
    try:
        async with asyncio.timeout(float(request.query.get("timeout", "30"))):
            event = await waiter
    except TimeoutError:
        return web.json_response({"events": [], "cursor": 0})
    finally:
        WAITERS.discard(waiter)
    return web.Response(body=event, content_type="application/json")


async def poll_emit(request: web.Request) -> web.Response:
    body = orjson.dumps({"events": [fake_event(1, 0, 1)], "cursor": 1})
    woken = 0
    for waiter in list(WAITERS):
        if not waiter.done():
            waiter.set_result(body)
            woken += 1
    return web.json_response({"woken": woken})


async def stats(request: web.Request) -> web.Response:
    return web.json_response({"sockets": len(SOCKETS), "pollers": len(WAITERS)})


async def serve(port: int) -> None:
    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/poll", poll)
    app.router.add_post("/bench/emit", emit)
    app.router.add_post("/bench/poll-emit", poll_emit)
    app.router.add_get("/bench/stats", stats)
    await serve_until_stopped(web.AppRunner(app, handle_signals=False), port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args: Any = parser.parse_args()
    raise_fd_limit()
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
