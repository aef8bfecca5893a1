"""A/B of the engine's job throughput: two commits' own code, interleaved, in one run.

Each side is a git worktree (checked out under ``bench/.peers/ab/``; ``--new`` defaults to
this checkout as it is); each round runs that side's own ``bench/jobs_ours.py`` (the
in-process section of ``run.py``: queue, worker pool and store wired as the server wires them)
in a process of its own with that side's package first on the path. The order alternates
each round (AB, BA, ...) so a drift of the machine's speed falls on both sides alike. Prints
each round, the medians and new/base, and whether it meets ``--need``; the worktrees it
made are removed at the end.

    python bench/ab.py --base 4a12f4e --rounds 5 --progress 10
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness import BENCH, PEERS_DIR, ROOT, parse_result
from report import fmt

AB_DIR = PEERS_DIR / "ab"


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def checkout(commit: str, made: list[Path]) -> tuple[Path, str]:
    """A detached worktree of ``commit`` (added to ``made``); its path and full id."""
    full = git("rev-parse", "--verify", f"{commit}^{{commit}}")
    path = AB_DIR / full[:12]
    if not (path / "bench" / "jobs_ours.py").exists():
        AB_DIR.mkdir(parents=True, exist_ok=True)
        git("worktree", "add", "--force", "--detach", str(path), full)
        made.append(path)
    return path, full


def describe_here() -> str:
    head = git("rev-parse", "--short=12", "HEAD")
    dirty = git("status", "--porcelain", "--", "jobserver", "bench")
    return head + (" with uncommitted changes" if dirty else "")


def run_side(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One run of ``root``'s own jobs_ours.py, with ``root``'s package first on the path."""
    cmd = [sys.executable, str(root / "bench" / "jobs_ours.py"), "--jobs", str(args.jobs),
           "--progress", str(args.progress), "--concurrency", str(args.concurrency)]  # fmt: skip
    env = {"PYTHONPATH": f"{root / 'bench'}:{root}", "PYTHONUNBUFFERED": "1",
           "PATH": "/usr/bin:/bin"}  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{root}: exit code {proc.returncode}:\n{proc.stderr[-3000:]}")
    result = parse_result(proc.stdout)
    if not result.get("all_durable_and_delivered"):
        raise RuntimeError(f"{root}: not every event was persisted and delivered: {result}")
    # CPU time of the run's processes (the writer's too: its parent waits for it), which the
    # other load on a shared machine changes much less than the wall-clock rate.
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result["cpu_ms_per_job"] = cpu * 1000 / args.jobs
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_side_args(parser, 5)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--progress", type=int, default=10, choices=(0, 10))
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--need", type=float, default=0.95, help="the lowest new/base median")
    parser.add_argument("--json", type=Path, help="also write every run here")
    args = parser.parse_args(argv)
    made: list[Path] = []
    try:
        return compare(args, made)
    finally:
        for path in made:
            git("worktree", "remove", "--force", str(path))


def add_side_args(parser: argparse.ArgumentParser, rounds: int) -> None:
    """The options every A/B here takes: the two sides and the number of rounds."""
    parser.add_argument("--base", required=True, help="the commit to compare against")
    parser.add_argument("--new", default="", help="a commit; default: this checkout as it is")
    parser.add_argument("--rounds", type=int, default=rounds)


@contextlib.contextmanager
def sides_of(args: argparse.Namespace) -> Iterator[dict[str, Path]]:
    """The base and new trees of ``args`` (see ``checkout_sides``), worktrees removed after."""
    made: list[Path] = []
    try:
        yield checkout_sides(args.base, args.new, made)[0]
    finally:
        for path in made:
            git("worktree", "remove", "--force", str(path))


def run_code(root: Path, code: str, timeout: float) -> dict[str, Any]:
    """The result ``code`` emits, run with ``root``'s package (and its bench/) first."""
    env = {"PYTHONPATH": f"{root / 'bench'}:{root}", "PYTHONUNBUFFERED": "1",
           "PATH": "/usr/bin:/bin"}  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], cwd=root / "bench", env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{root}: exit code {proc.returncode}:\n{proc.stderr[-3000:]}")
    return parse_result(proc.stdout)


def checkout_sides(
    base: str, new: str, made: list[Path]
) -> tuple[dict[str, Path], dict[str, str]]:
    """The base and new trees (``new`` empty: this checkout as it is) and their names."""
    base_root, base_id = checkout(base, made)
    if new:
        new_root, new_id = checkout(new, made)
        new_name = new_id[:12]
    else:
        new_root, new_name = ROOT, describe_here()
    print(f"base {base_id[:12]} ({base_root})\nnew  {new_name} ({new_root})")
    return {"base": base_root, "new": new_root}, {"base": base_id, "new": new_name}


def compare(args: argparse.Namespace, made: list[Path]) -> int:
    sides, names = checkout_sides(args.base, args.new, made)
    runs: dict[str, list[dict[str, Any]]] = {"base": [], "new": []}
    print(f"{args.jobs} jobs, {args.progress} progress events each, concurrency "
          f"{args.concurrency}, {args.rounds} rounds, order alternating\n")  # fmt: skip
    print("| round | order | base jobs/s | new jobs/s | new/base | base CPU ms/job "
          "| new CPU ms/job |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|")
    started = time.monotonic()
    for n in range(args.rounds):
        order = ("base", "new") if n % 2 == 0 else ("new", "base")
        got = {}
        for side in order:
            got[side] = run_side(sides[side], args)
            runs[side].append(got[side])
        b, w = got["base"]["jobs_per_s"], got["new"]["jobs_per_s"]
        cb, cw = got["base"]["cpu_ms_per_job"], got["new"]["cpu_ms_per_job"]
        print(f"| {n + 1} | {order[0]} first | {fmt(b)} | {fmt(w)} | {fmt(w / b, 2)} | "
              f"{fmt(cb, 2)} | {fmt(cw, 2)} |", flush=True)  # fmt: skip
    base = statistics.median(r["jobs_per_s"] for r in runs["base"])
    new = statistics.median(r["jobs_per_s"] for r in runs["new"])
    lag = {s: max(r.get("lag_p99_ms", 0.0) for r in runs[s]) for s in runs}
    cpu = {s: statistics.median(r["cpu_ms_per_job"] for r in runs[s]) for s in runs}
    print(f"\nmedian jobs/s: base {fmt(base)}, new {fmt(new)}; new/base {fmt(new / base, 3)} "
          f"(need >= {args.need}): {'met' if new / base >= args.need else 'NOT met'}")  # fmt: skip
    print(f"median CPU ms per job: base {fmt(cpu['base'], 2)}, new {fmt(cpu['new'], 2)}; "
          f"base/new {fmt(cpu['base'] / cpu['new'], 3)} (above 1: the new code costs less)")
    print(f"loop lag p99, worst run: base {fmt(lag['base'], 1)} ms, new {fmt(lag['new'], 1)} ms; "
          f"{time.monotonic() - started:.0f} s in all")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({**names, "runs": runs}))
    return 0 if new / base >= args.need else 1


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    raise SystemExit(main())
