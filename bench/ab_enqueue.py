"""A/B of the enqueue latency case (``run.py --cases enqueue``): two commits, interleaved.

Each round runs each side's own ``userpath.run_latency`` (its own ``server.py`` with the
progress load, its own client) in a process of its own, the order alternating (AB, BA, ...)
as in ``ab.py``, whose worktrees it uses. Prints each run and the medians of POST/GET p50 and
of the paced p99; a shared machine moves the absolute times, the ratios less.

    python bench/ab_enqueue.py --base main --rounds 6
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from ab import add_side_args, run_code, sides_of
from report import fmt

RUN = ("import harness, userpath; harness.emit_result(userpath.run_latency({pairs}, "
       "{rate}, {paced}, {load}))")  # fmt: skip


def run_side(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    code = RUN.format(pairs=args.pairs, rate=args.rate, paced=args.paced, load=args.load)
    return run_code(root, code, 600)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_side_args(parser, 6)
    parser.add_argument("--pairs", type=int, default=500, help="sequential POST/GET pairs")
    parser.add_argument("--rate", type=float, default=200.0, help="paced POSTs/s")
    parser.add_argument("--paced", type=float, default=2.0, help="seconds of paced POSTs")
    parser.add_argument("--load", type=float, default=1000.0, help="progress events/s")
    args = parser.parse_args(argv)
    with sides_of(args) as sides:
        runs: dict[str, list[dict[str, Any]]] = {"base": [], "new": []}
        print("\n| round | side | load events/s | POST p50 ms | GET p50 ms | POST/GET p50 "
              "| paced p50 ms | paced p99 ms |")  # fmt: skip
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for n in range(args.rounds):
            for side in ("base", "new") if n % 2 == 0 else ("new", "base"):
                r = run_side(sides[side], args)
                runs[side].append(r)
                print(f"| {n + 1} | {side} | {fmt(r['load_events_per_s'])} | "
                      f"{fmt(r['post_p50_ms'], 2)} | {fmt(r['get_p50_ms'], 2)} | "
                      f"{fmt(r['post_over_get_p50'], 2)} | {fmt(r['paced_p50_ms'], 2)} | "
                      f"{fmt(r['paced_p99_ms'], 1)} |", flush=True)  # fmt: skip
        print()
        for side, got in runs.items():
            ratio = statistics.median(r["post_over_get_p50"] for r in got)
            p99 = statistics.median(r["paced_p99_ms"] for r in got)
            print(f"{side}: median POST/GET p50 {fmt(ratio, 2)}, median paced p99 "
                  f"{fmt(p99, 1)} ms")  # fmt: skip
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
