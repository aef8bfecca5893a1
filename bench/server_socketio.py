"""Baseline server: python-socketio AsyncServer on aiohttp, broadcasting to one room.

Runs in the peers' environment. POST /bench/emit {count, interval} emits a stream of events
to the room every client joins on connect; GET /bench/stats counts connected clients.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import socketio
from aiohttp import web
from harness import fake_event, paced, raise_fd_limit, serve_until_stopped

ROOM = "bench"


def build() -> tuple[web.Application, Any]:
    sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*")
    app = web.Application()
    sio.attach(app)
    connected: set[str] = set()
    tasks: set[asyncio.Task[None]] = set()

    @sio.event
    async def connect(sid: str, environ: dict[str, Any]) -> None:
        await sio.enter_room(sid, ROOM)
        connected.add(sid)

    @sio.event
    async def disconnect(sid: str, *args: Any) -> None:
        connected.discard(sid)

    async def broadcast(count: int, interval: float) -> None:
        seq = 0
        async for i in paced(count, interval):
            seq += 1
            await sio.emit("event", fake_event(seq, i, count), room=ROOM)

    async def emit(request: web.Request) -> web.Response:
        body = await request.json()
        task = asyncio.create_task(broadcast(int(body["count"]), float(body.get("interval", 0))))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return web.json_response({"started": True}, status=202)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"sockets": len(connected)})

    app.router.add_post("/bench/emit", emit)
    app.router.add_get("/bench/stats", stats)
    return app, sio


async def serve(port: int) -> None:
    app, _ = build()
    await serve_until_stopped(web.AppRunner(app, handle_signals=False), port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    raise_fd_limit()
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
