"""Load generator: N concurrent long-polls in this process, each timed from emit to receive.

``ours``: ``GET /api/events?since=&userId=&timeout=`` with a bearer token; ``bare``: the
baseline's ``GET /poll``. Prints a ready line once every request is under way; each poll's
latency is its receive time minus ``metadata.t`` of the first stamped event it got.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import aiohttp
import orjson
from harness import emit_ready, emit_result, raise_fd_limit


async def poll_once(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> float | None:
    async with session.get(url, headers=headers) as resp:
        body = await resp.read()
        now = time.time()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {body[:200]!r}")
    for event in orjson.loads(body).get("events", []):
        meta = event.get("metadata") or {}
        if event.get("type") == "job.progress" and "t" in meta:
            return now - float(meta["t"])
    return None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit()
    base = args.url.rstrip("/")
    if args.protocol == "ours":
        url = f"{base}/api/events?since={args.since}&userId={args.user}&timeout={args.wait}"
        headers = {"Authorization": f"Bearer {args.token}"}
    else:
        url = f"{base}/poll?timeout={args.wait}"
        headers = {}
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=args.wait + 30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [asyncio.create_task(poll_once(session, url, headers)) for _ in range(args.clients)]
        await asyncio.sleep(0.2)
        emit_ready({"polls": len(tasks)})
        done, pending = await asyncio.wait(tasks, timeout=args.wait + 30)
        for task in pending:
            task.cancel()
    latencies: list[float] = []
    errors: list[str] = []
    empty = 0
    for task in done:
        if task.exception() is not None:
            errors.append(repr(task.exception()))
        elif task.result() is None:
            empty += 1
        else:
            latencies.append(task.result())
    return {
        "clients": args.clients,
        "woken": len(latencies),
        "empty": empty,
        "errors": errors[:5],
        "error_count": len(errors),
        "latencies_ms": [round(lat * 1000, 3) for lat in latencies],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--protocol", choices=("ours", "bare"), required=True)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--since", type=int, default=0)
    parser.add_argument("--user", default="bench")
    parser.add_argument("--token", default="")
    parser.add_argument("--wait", type=float, default=30.0, help="long-poll timeout, seconds")
    emit_result(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
