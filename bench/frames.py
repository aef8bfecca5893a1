"""The store writer's hot path in each frame codec: should it share the worker processes' JSON?

    python bench/frames.py [--rounds N]

What crosses the writer's pipe per batch under the progress case: one request frame of 128
progress ops (as ``SqliteStore.progress`` makes them) and one reply with their outcomes and
128 committed event rows (``sqlite_writer.EventRow``: the event's JSON as bytes). Each codec
packs the request, reads it back, packs the reply and reads it back, as both ends would:

- ``pickle (own)``: the writer's frames as they were before ``framing.py`` (the baseline);
- ``pickle (framing.py)``: the same through the shared framing module, as the writer runs now;
- ``json (framing.py)``: the worker processes' codec, which cannot carry bytes or tuples, so
  the JSON fields go as text and tuples come back as lists to be rebuilt.

Prints the median microseconds per batch of each and its ratio to the baseline, in one run
(rounds interleave the codecs in a shuffled order).
"""

from __future__ import annotations

import argparse
import asyncio
import pickle
import random
import statistics
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobserver import framing  # noqa: E402

BATCH = 128
HEADER = struct.Struct(">I")


def request() -> list[tuple[Any, ...]]:
    meta = orjson.dumps({"page": 3, "pages": 20})
    return [("progress", f"{i:032x}", f"token-{i:026x}", "counting", 10.0 + i % 80,
             f"Step {i} of 200", meta, None) for i in range(BATCH)]  # fmt: skip


def reply() -> tuple[Any, ...]:
    wire = orjson.dumps({"seq": 1, "type": "job.progress", "jobId": "0" * 32, "userId": "alice",
                         "jobType": "demo.sleep", "status": "active", "stage": "processing",
                         "progress": 42.0, "message": "Step 42 of 200", "metadata": {},
                         "attempt": 1, "attempts": 1, "maxAttempts": 3, "label": "",
                         "timestamp": "2026-12-03T12:00:00.000Z"})  # fmt: skip
    events = [(1000 + i, "job.progress", f"{i:032x}", "alice", wire) for i in range(BATCH)]
    outcomes = [(True, 1000 + i) for i in range(BATCH)]
    return (1, outcomes, events, 1000 + BATCH)


def own_pack(value: Any) -> bytes:
    body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


async def own_read(stream: asyncio.StreamReader) -> Any:
    (size,) = HEADER.unpack(await stream.readexactly(HEADER.size))
    return pickle.loads(await stream.readexactly(size))


def to_json(value: Any) -> Any:
    """What a JSON frame would have to carry instead: bytes as text."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    return value


def from_json_request(ops: list[list[Any]]) -> list[tuple[Any, ...]]:
    return [(*op[:6], op[6].encode(), op[7]) for op in ops]


def from_json_reply(value: list[Any]) -> tuple[Any, ...]:
    count, outcomes, events, durable = value
    return (count, [tuple(o) for o in outcomes],
            [(s, t, j, u, d.encode()) for s, t, j, u, d in events], durable)  # fmt: skip


Case = Callable[[], Any]


def cases() -> dict[str, Case]:
    req, rep = request(), reply()

    async def through(pack: Callable[[Any], bytes], read: Callable[..., Any], value: Any) -> Any:
        stream = asyncio.StreamReader()
        stream.feed_data(pack(value))
        return await read(stream)

    async def own() -> None:
        await through(own_pack, own_read, req)
        await through(own_pack, own_read, rep)

    async def shared_pickle() -> None:
        def pack(v: Any) -> bytes:
            return framing.pack(v, framing.PICKLE)

        async def read(s: asyncio.StreamReader) -> Any:
            return await framing.read(s, framing.PICKLE)

        await through(pack, read, req)
        await through(pack, read, rep)

    async def shared_json() -> None:
        def pack(v: Any) -> bytes:
            return framing.pack(to_json(v), framing.JSON)

        async def read(s: asyncio.StreamReader) -> Any:
            return await framing.read(s, framing.JSON)

        from_json_request(await through(pack, read, req))
        from_json_reply(await through(pack, read, rep))

    return {"pickle (own)": own, "pickle (framing.py)": shared_pickle,
            "json (framing.py)": shared_json}  # fmt: skip


async def measure(case: Case, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        await case()
    return (time.perf_counter() - start) / repeat * 1e6


async def main(rounds: int, repeat: int) -> None:
    found: dict[str, list[float]] = {}
    for _ in range(rounds):  # interleaved: each round measures every codec once, in any order
        order = list(cases().items())
        random.shuffle(order)
        for name, case in order:
            found.setdefault(name, []).append(await measure(case, repeat))
    base = statistics.median(found["pickle (own)"])
    print(f"writer frames, a batch of {BATCH} progress ops and their reply; median of {rounds} "
          f"rounds of {repeat} batches")  # fmt: skip
    print(f"{'codec':<22} {'us/batch':>9} {'vs own pickle':>14}")
    for name in cases():
        median = statistics.median(found[name])
        print(f"{name:<22} {median:>9.1f} {median / base:>13.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.repeat))
