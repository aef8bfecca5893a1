"""This project's server for the network cases: the real app plus one bench-only job type.

``bench.emit`` (payload ``count``, ``interval``, ``gate``) reports ``count`` progress events,
each stamped with its emit time in ``metadata.t`` just before ``ctx.progress`` (so the time
to persist is part of the measured latency), the last one marked ``metadata.end``. With
``gate`` it waits for ``POST /bench/go`` first. ``GET /bench/stats`` counts bus subscribers
(sockets and waiting long-polls). None of this is in the product.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from harness import RUN_DIR, paced, raise_fd_limit, serve_until_stopped

from jobserver import gctune
from jobserver.app import create_app
from jobserver.config import Settings
from jobserver.handlers import HandlerOptions, JobContext
from jobserver.models import JobStage
from jobserver.plugins import load
from jobserver.web.keys import BUS

GATE: dict[str, asyncio.Event] = {}
LIMITS = {  # lifted so that one bench user may hold every connection and stand for every client
    "ws_max_connections_per_user": 100_000,
    "ws_max_subscriptions": 1000,
    "requests_per_second_per_user": 1_000_000.0,  # 1,000 long-pollers as one user
    "request_burst_per_user": 1_000_000,
}


async def emit(ctx: JobContext) -> Mapping[str, Any]:
    count = int(ctx.payload.get("count", 1))
    interval = float(ctx.payload.get("interval", 0.0))
    if ctx.payload.get("gate"):
        async with asyncio.timeout(300):
            await GATE["go"].wait()
    async for i in paced(count, interval):
        meta = {"t": time.time(), "i": i, "end": i == count - 1}
        await ctx.progress(
            JobStage.PROCESSING, 100.0 * (i + 1) / count, f"Step {i + 1} of {count}", meta
        )
    return {"title": f"{count} events"}


async def go(request: web.Request) -> web.Response:
    GATE["go"].set()
    return web.json_response({"go": True})


async def stats(request: web.Request) -> web.Response:
    return web.json_response({"subscribers": request.app[BUS].subscriber_count()})


async def _tune_gc(app: web.Application) -> None:
    gctune.tune()


async def serve(port: int, data_dir: Path, concurrency: int) -> None:
    GATE["go"] = asyncio.Event()
    base = Settings(
        port=port,
        data_dir=data_dir,
        demo_jobs=True,
        concurrency=concurrency,
        secret="bench-secret-0123456789abcdef0123456789",
        shutdown_grace_seconds=1.0,
    )
    known = {f.name for f in dataclasses.fields(Settings)}
    settings = dataclasses.replace(base, **{k: v for k, v in LIMITS.items() if k in known})
    plugins = load(settings)
    plugins.registry.register("bench.emit", emit, HandlerOptions(timeout=600, max_attempts=1))
    app = create_app(settings, plugins=plugins)
    app.router.add_post("/bench/go", go)
    app.router.add_get("/bench/stats", stats)
    app.on_startup.append(_tune_gc)  # after the store and workers started, as server.py does
    await serve_until_stopped(web.AppRunner(app, handle_signals=False, access_log=None), port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    raise_fd_limit()
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="server-", dir=RUN_DIR))
    try:
        asyncio.run(serve(args.port, data_dir, args.concurrency))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
