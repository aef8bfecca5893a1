"""The user's path for jobserver: a producer over HTTP and a WebSocket watcher, each a process.

``produce`` enqueues no-op or 10-progress ``demo.sleep`` jobs over HTTP (``one`` at a time on
one keep-alive connection, 100 ``inflight`` at once, or ``batch``es of 1,000 per request);
``watch`` subscribes to the user over ``/ws`` and counts ``job.completed`` into the marks
file (and progress events per second); ``latency`` times ``POST /api/jobs`` against
``GET /api/jobs/{id}`` while other jobs report progress, then POSTs paced at a fixed rate;
``lag`` (issue 17) subscribes to the user on one node for ``--seconds`` and times each
progress event from its ``timestamp`` (taken as the writing node made its batch, before the
commit) to its arrival here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections import Counter
from datetime import datetime
from typing import Any

import aiohttp
import orjson
from harness import (
    Marks,
    await_stdin_eof,
    emit_ready,
    emit_result,
    percentile,
    produced,
    producer_args,
)

INFLIGHT = 100
BATCH = 1000


def job(progress: int) -> dict[str, Any]:
    return {"type": "demo.sleep", "payload": {"seconds": 0, "steps": progress}}


def session(url: str, token: str, limit: int = 0) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        base_url=url,
        connector=aiohttp.TCPConnector(limit=limit),
        headers={"Authorization": f"Bearer {token}"},
        json_serialize=lambda v: orjson.dumps(v).decode(),
        timeout=aiohttp.ClientTimeout(total=60),
    )


async def post(http: aiohttp.ClientSession, body: dict[str, Any]) -> dict[str, Any]:
    async with http.post("/api/jobs", json=body) as resp:
        data: dict[str, Any] = orjson.loads(await resp.read())
        if resp.status not in (200, 202):
            raise RuntimeError(f"POST /api/jobs answered {resp.status}: {data}")
        return data


async def produce(args: argparse.Namespace) -> dict[str, Any]:
    body, n = job(args.progress), args.jobs
    marks = Marks(args.marks)
    async with session(args.url, args.token) as http:
        await post(http, body)  # the warm-up job: connection made, server and watcher awake
        await marks.wait_async("warm", 30)
        t0 = time.time()
        async with asyncio.timeout(args.timeout):
            if args.mode == "one":
                for _ in range(n):
                    await post(http, body)
            elif args.mode == "inflight":
                left = iter(range(n))

                async def lane() -> None:
                    for _ in left:
                        await post(http, body)

                await asyncio.gather(*(lane() for _ in range(min(INFLIGHT, n))))
            elif args.mode == "batch":
                for start in range(0, n, BATCH):
                    await post(http, {"jobs": [body] * min(BATCH, n - start)})
            else:
                raise SystemExit(f"unknown mode {args.mode}")
        t1 = time.time()
    return produced(n, args.mode, t0, t1)


async def watch(args: argparse.Namespace) -> dict[str, Any]:
    marks = Marks(args.marks, args.total)
    per_second: Counter[int] = Counter()
    origin = args.url.rstrip("/")
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(
            "ws" + origin[4:] + "/ws",
            headers={"Origin": origin, "Cookie": f"jobserver_token={args.token}"},
            max_msg_size=0,
        )
        await ws.send_bytes(orjson.dumps({"type": "subscribe", "userId": args.user}))
        while True:
            msg = orjson.loads((await ws.receive(timeout=30)).data)
            if msg.get("type") == "subscribed":
                break
            if msg.get("type") == "error":
                raise RuntimeError(f"subscribe refused: {msg}")
        emit_ready({"subscribed": True})
        completed = 0

        async def read() -> None:
            nonlocal completed
            async for msg in ws:
                if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    break
                kind = orjson.loads(msg.data).get("type")
                if kind == "job.completed":
                    completed += 1
                    marks.count()
                elif kind == "job.progress":
                    per_second[int(time.time())] += 1

        reader = asyncio.create_task(read())
        await asyncio.wait([reader, await_stdin_eof()], timeout=args.timeout,
                           return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        await ws.close()
    return {"completed": completed, "progress_per_second": sorted(per_second.items())}


async def lag(args: argparse.Namespace) -> dict[str, Any]:
    """Emit-to-receive of the progress events another node commits, for ``--seconds``."""
    lags: list[float] = []
    origin = args.url.rstrip("/")
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(
            "ws" + origin[4:] + "/ws", headers={"Authorization": f"Bearer {args.token}"},
            max_msg_size=0,
        )  # fmt: skip
        await ws.send_bytes(orjson.dumps({"type": "subscribe", "userId": args.user}))
        emit_ready({"subscribed": True})
        t0 = time.time()
        end = time.monotonic() + args.seconds
        while (left := end - time.monotonic()) > 0:
            try:
                msg = await ws.receive(timeout=left)
            except TimeoutError:
                break
            now = time.time()
            if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                raise RuntimeError(f"the socket closed: {msg}")
            event = orjson.loads(msg.data)
            if event.get("type") == "job.progress":
                stamp = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
                lags.append((now - stamp.timestamp()) * 1000)
        took = time.time() - t0
        await ws.close()
    if not lags:
        raise RuntimeError("no progress event arrived")
    return {
        "events": len(lags),
        "events_per_s": len(lags) / took,
        "lag_p50_ms": percentile(lags, 50),
        "lag_p99_ms": percentile(lags, 99),
        "lag_max_ms": max(lags),
    }


async def latency(args: argparse.Namespace) -> dict[str, Any]:
    """Progress load first, then sequential POST/GET pairs, then POSTs paced at ``rate``/s."""
    noop = job(0)
    load_jobs = 5  # below the default concurrency (8), so no-op jobs still find a slot
    seconds = args.pairs * 0.02 + args.paced_seconds + 10
    steps = int(args.events_per_s / load_jobs * seconds)
    load = {"type": "demo.sleep", "payload": {"seconds": seconds, "steps": steps}}
    async with session(args.url, args.token) as http:
        loaders = [(await post(http, load))["jobId"] for _ in range(load_jobs)]
        await asyncio.sleep(1.0)  # the load is running
        posts, gets = [], []
        a0 = time.time()
        async with asyncio.timeout(args.timeout):
            for _ in range(args.pairs):
                t = time.perf_counter()
                job_id = (await post(http, noop))["jobId"]
                posts.append(time.perf_counter() - t)
                t = time.perf_counter()
                async with http.get(f"/api/jobs/{job_id}") as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"GET /api/jobs/{{id}} answered {resp.status}")
                gets.append(time.perf_counter() - t)
        a1 = time.time()
        paced: list[float] = []

        async def timed() -> None:
            t = time.perf_counter()
            await post(http, noop)
            paced.append(time.perf_counter() - t)

        count = int(args.rate * args.paced_seconds)
        tasks = []
        start = time.perf_counter()
        b0 = time.time()
        async with asyncio.timeout(args.timeout):
            for i in range(count):
                delay = start + i / args.rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(timed()))
            await asyncio.gather(*tasks)
        b1 = time.time()
        late = time.perf_counter() - start - count / args.rate
        for job_id in loaders:
            async with http.post(f"/api/jobs/{job_id}/cancel") as resp:
                await resp.read()
    ms = [x * 1000 for x in posts]
    gs = [x * 1000 for x in gets]
    ps = [x * 1000 for x in paced]
    return {
        "pairs": args.pairs,
        "post_p50_ms": percentile(ms, 50),
        "post_p99_ms": percentile(ms, 99),
        "get_p50_ms": percentile(gs, 50),
        "get_p99_ms": percentile(gs, 99),
        "post_over_get_p50": percentile(ms, 50) / percentile(gs, 50),
        "rate": args.rate,
        "events_per_s_asked": args.events_per_s,
        "paced": count,
        "paced_p50_ms": percentile(ps, 50),
        "paced_p99_ms": percentile(ps, 99),
        "paced_max_ms": max(ps),
        "paced_late_s": late,
        "windows": [[a0, a1], [b0, b1]],
    }


def main() -> None:
    parser = producer_args(__doc__)
    parser.add_argument("role", choices=("produce", "watch", "latency", "lag"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--user", default="bench")
    parser.add_argument("--marks", default="")
    parser.add_argument("--total", type=int, default=0, help="watch: completions to expect")
    parser.add_argument("--pairs", type=int, default=500, help="latency: POST/GET pairs")
    parser.add_argument("--rate", type=float, default=200.0, help="latency: paced POSTs/s")
    parser.add_argument("--paced-seconds", type=float, default=5.0)
    parser.add_argument("--events-per-s", type=float, default=1000.0, help="latency: load")
    parser.add_argument("--seconds", type=float, default=10.0, help="lag: how long to listen")
    args = parser.parse_args()
    role = {"produce": produce, "watch": watch, "latency": latency, "lag": lag}[args.role]
    emit_result(asyncio.run(role(args)))


if __name__ == "__main__":
    main()
