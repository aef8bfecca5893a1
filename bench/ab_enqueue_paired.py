"""A/B of the enqueue latency case with both sides' servers running at once, paired.

``ab_enqueue.py`` runs one side, then the other: on a shared machine the load of other work
moves between the two runs, and a side's ratio moves with it (from 2 to 4 between rounds of
one commit). Here each round starts both sides' ``server.py --demo-jobs`` (each from its own
checkout, each with its own progress load: 5 ``demo.sleep`` jobs, ``--load`` events/s in
all) and one client alternates between them: a POST/GET pair to one, then to the other
(A B B A ...), then POSTs paced at ``--rate``/s to one, then to the other (the order
alternating by round). Both see the same moments of the machine; a round's new/base ratio is
what counts.

    python bench/ab_enqueue_paired.py --base main --rounds 4
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ab import add_side_args, sides_of
from harness import RUN_DIR, percentile
from report import fmt
from user_ours import job, post, session
from userpath import our_server

LOADERS = 5


async def measure(ends: list[tuple[str, str]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Pairs alternating between the servers, then paced POSTs to each, under the load."""
    noop = job(0)
    seconds = args.pairs * 2 * 0.02 + args.paced * 2 + 10
    steps = int(args.load / LOADERS * seconds)
    load = {"type": "demo.sleep", "payload": {"seconds": seconds, "steps": steps}}
    https = [session(url, token) for url, token in ends]
    try:
        loaders = [[(await post(h, load))["jobId"] for _ in range(LOADERS)] for h in https]
        await asyncio.sleep(1.0)
        posts: list[list[float]] = [[], []]
        gets: list[list[float]] = [[], []]
        for i in range(args.pairs):
            for side in (0, 1) if i % 2 == 0 else (1, 0):
                http = https[side]
                t = time.perf_counter()
                job_id = (await post(http, noop))["jobId"]
                posts[side].append(time.perf_counter() - t)
                t = time.perf_counter()
                async with http.get(f"/api/jobs/{job_id}") as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"GET /api/jobs/{{id}} answered {resp.status}")
                gets[side].append(time.perf_counter() - t)
        paced: list[list[float]] = [[], []]

        async def timed(side: int) -> None:
            t = time.perf_counter()
            await post(https[side], noop)
            paced[side].append(time.perf_counter() - t)

        for side in (0, 1) if args.round % 2 == 0 else (1, 0):  # one side at a time
            tasks = []
            start = time.perf_counter()
            for i in range(int(args.rate * args.paced)):
                delay = start + i / args.rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(timed(side)))
            await asyncio.gather(*tasks)
        for http, ids in zip(https, loaders, strict=True):
            for job_id in ids:
                async with http.post(f"/api/jobs/{job_id}/cancel") as resp:
                    await resp.read()
    finally:
        for http in https:
            await http.close()
    out = []
    for side in (0, 1):
        post_p50 = percentile(posts[side], 50) * 1000
        get_p50 = percentile(gets[side], 50) * 1000
        out.append({"post_p50_ms": post_p50, "get_p50_ms": get_p50,
                    "post_over_get_p50": post_p50 / get_p50,
                    "paced_p99_ms": percentile(paced[side], 99) * 1000})  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_side_args(parser, 4)
    parser.add_argument("--pairs", type=int, default=500, help="POST/GET pairs per side")
    parser.add_argument("--rate", type=float, default=200.0, help="paced POSTs/s per side")
    parser.add_argument("--paced", type=float, default=2.0, help="seconds of paced POSTs")
    parser.add_argument("--load", type=float, default=1000.0, help="progress events/s per side")
    args = parser.parse_args(argv)
    with sides_of(args) as sides:
        names = ("base", "new")
        runs: dict[str, list[dict[str, Any]]] = {"base": [], "new": []}
        print("\n| round | side | POST p50 ms | GET p50 ms | POST/GET p50 | paced p99 ms |")
        print("|---|---|---:|---:|---:|---:|")
        for n in range(args.rounds):
            RUN_DIR.mkdir(parents=True, exist_ok=True)
            dirs = [Path(tempfile.mkdtemp(prefix="ab-paired-", dir=RUN_DIR)) for _ in names]
            try:
                base, new = our_server(dirs[0], sides["base"]), our_server(dirs[1], sides["new"])
                with base as a, new as b:
                    args.round = n
                    got = asyncio.run(measure([a, b], args))
            finally:
                for d in dirs:
                    shutil.rmtree(d, ignore_errors=True)
            for side, r in zip(names, got, strict=True):
                runs[side].append(r)
                print(f"| {n + 1} | {side} | {fmt(r['post_p50_ms'], 2)} | "
                      f"{fmt(r['get_p50_ms'], 2)} | {fmt(r['post_over_get_p50'], 2)} | "
                      f"{fmt(r['paced_p99_ms'], 1)} |", flush=True)  # fmt: skip
        print()
        for side, got_runs in runs.items():
            ratio = statistics.median(r["post_over_get_p50"] for r in got_runs)
            p99 = statistics.median(r["paced_p99_ms"] for r in got_runs)
            print(f"{side}: median POST/GET p50 {fmt(ratio, 2)}, median paced p99 "
                  f"{fmt(p99, 1)} ms")  # fmt: skip
        per_round = [n["post_over_get_p50"] / b["post_over_get_p50"]
                     for b, n in zip(runs["base"], runs["new"], strict=True)]  # fmt: skip
        print(f"new/base POST/GET ratio per round: {', '.join(fmt(x, 3) for x in per_round)}; "
              f"median {fmt(statistics.median(per_round), 3)}")
        for key in ("post_p50_ms", "get_p50_ms", "paced_p99_ms"):
            each = [n[key] / b[key] for b, n in zip(runs["base"], runs["new"], strict=True)]
            print(f"new/base {key} per round: {', '.join(fmt(x, 3) for x in each)}; "
                  f"median {fmt(statistics.median(each), 3)}")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
