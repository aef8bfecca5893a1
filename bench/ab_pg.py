"""A/B of issue 17's one-node user's path on PostgreSQL: two commits, interleaved, one run.

Each round runs each side's own ``pgpath.run_ours`` (``run.py --cases pg``'s jobserver row:
its own ``server.py --demo-jobs`` node on a fresh schema, a producer POSTing one job at a
time, a WebSocket watcher) in a process of its own, for each asked case (no-op jobs, then
jobs with 10 progress updates), the side order alternating each round (AB, BA, ...) as in
``ab.py``, whose worktrees it uses. Prints every run, then per case the medians of jobs/s
and new/base: a shared machine moves the absolute rates, the ratio of one run less.

    python bench/ab_pg.py --base main --rounds 5
    python bench/ab_pg.py --base main --new pgspeed --rounds 5 --progress 0 --jobs 1000
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from ab import add_side_args, run_code, sides_of
from report import fmt

RUN = "import harness, pgpath; harness.emit_result(pgpath.run_ours({nodes}, {progress}, {jobs}))"


def run_side(root: Path, nodes: int, progress: int, jobs: int) -> dict[str, Any]:
    return run_code(root, RUN.format(nodes=nodes, progress=progress, jobs=jobs), 900)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_side_args(parser, 5)
    parser.add_argument("--jobs", type=int, default=500, help="jobs per run (run.py's pg_jobs)")
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--progress", type=int, nargs="+", default=[0, 10],
                        help="progress updates per job, one case each")  # fmt: skip
    args = parser.parse_args(argv)
    with sides_of(args) as sides:
        runs: dict[tuple[int, str], list[float]] = {}
        print(f"\n{args.nodes} node(s), {args.jobs} jobs a run, POSTs one at a time\n")
        print("| round | progress | side | jobs/s | enqueue/s |")
        print("|---|---:|---|---:|---:|")
        for n in range(args.rounds):
            for progress in args.progress:
                for side in ("base", "new") if n % 2 == 0 else ("new", "base"):
                    r = run_side(sides[side], args.nodes, progress, args.jobs)
                    runs.setdefault((progress, side), []).append(r["jobs_per_s"])
                    print(f"| {n + 1} | {progress} | {side} | {fmt(r['jobs_per_s'])} | "
                          f"{fmt(r['enqueue_per_s'])} |", flush=True)  # fmt: skip
        print()
        for progress in args.progress:
            base = statistics.median(runs[(progress, "base")])
            new = statistics.median(runs[(progress, "new")])
            print(f"progress {progress}: median jobs/s base {fmt(base)}, new {fmt(new)}; "
                  f"new/base {fmt(new / base, 3)}")  # fmt: skip
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
