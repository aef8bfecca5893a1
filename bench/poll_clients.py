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
from urllib.parse import urlsplit

import orjson
from harness import emit_ready, emit_result, raise_fd_limit


async def poll_once(host: str, port: int, target: str, headers: dict[str, str]) -> float | None:
    """One long-poll over a raw connection: the client must not be what is measured.

    aiohttp's client costs about half a millisecond per response, so a thousand responses
    arriving together queue up behind each other in the client; this reads the status line,
    the headers and the body by Content-Length, and stamps the time before parsing JSON.
    """
    reader, writer = await asyncio.open_connection(host, port)
    try:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{head}\r\n".encode())
        status_and_headers = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in status_and_headers.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await reader.readexactly(length)
        now = time.time()
    finally:
        writer.close()
    status = status_and_headers.split(b" ", 2)[1]
    if status != b"200":
        raise RuntimeError(f"HTTP {status!r}: {body[:200]!r}")
    for event in orjson.loads(body).get("events", []):
        meta = event.get("metadata") or {}
        if event.get("type") == "job.progress" and "t" in meta:
            return now - float(meta["t"])
    return None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit()
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    if args.protocol == "ours":
        target = f"/api/events?since={args.since}&userId={args.user}&timeout={args.wait}"
        headers = {"Authorization": f"Bearer {args.token}"}
    else:
        target = f"/poll?timeout={args.wait}"
        headers = {}
    tasks = [
        asyncio.create_task(poll_once(host, port, target, headers)) for _ in range(args.clients)
    ]
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
