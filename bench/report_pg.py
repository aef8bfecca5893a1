"""The report's PostgreSQL section (issue 17): the user's path on one and two nodes against
procrastinate and SAQ on the same PostgreSQL, cross-node emit-to-receive, and the verdicts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pgpath import NOTE_OURS, PEERS
from report import Row, Target, fmt, metric, ratio, table

Results = dict[str, dict[str, list[dict[str, Any]]]]
ONE_NODE = "jobserver 1 node"


def _median(row: Row | None, key: str = "jobs_per_s") -> float:
    return math.nan if row is None else metric(row.runs, key)["median"]


def _faster(rows: Sequence[Row]) -> Row | None:
    scored = [(v, r) for r in rows if not math.isnan(v := _median(r))]
    return max(scored, key=lambda x: x[0])[1] if scored else None


def section_pg(results: Results, jobs: int, targets: list[Target]) -> list[str]:
    cases = [c for c in ("pg-0", "pg-10", "pg-lag") if results.get(c)]
    if not cases:
        return []  # not run (--cases)
    out = ["## PostgreSQL: one and two nodes (issue 17)", ""]
    out.append(
        f"The user's path on PostgreSQL 127.0.0.1 (default settings: synchronous commit, so "
        f"every acknowledged job is durable): {jobs:,} jobs, one enqueue at a time by a "
        "producer in its own process, each worker in a process of its own started by its own "
        "command line, timed from the first enqueue to the last completion; every run on a "
        "fresh schema. On 2 cores shared with PostgreSQL, two nodes need not be faster."
    )
    peer_labels = {p.label for p in PEERS}
    for progress in ("0", "10"):
        rows = [Row(label, runs) for label, runs in results.get(f"pg-{progress}", {}).items()]
        if not rows:
            continue
        faster = _faster([r for r in rows if r.label in peer_labels])
        base = [faster] if faster is not None else []
        title = "no-op jobs" if progress == "0" else "jobs with 10 progress updates each"
        enq = ("enqueue/s", lambda r: fmt(_median(r, "enqueue_per_s")))
        out += ["", f"### {title}", "", table(rows, "jobs_per_s", "jobs/s", base, extra=[enq])]
        one = next((r for r in rows if r.label == ONE_NODE), None)
        r = ratio(_median(one), _median(faster))
        targets.append(Target(
            17,
            f"PostgreSQL, one defer at a time, {title}: one node at least 2x the faster of "
            "procrastinate and SAQ",
            f"{fmt(_median(one))} jobs/s = {fmt(r, 2)}x {faster.label if faster else '?'} "
            f"({fmt(_median(faster))})",
            None if math.isnan(r) else r >= 2.0,
        ))  # fmt: skip
    lag = results.get("pg-lag", {})
    runs = next(iter(lag.values()), [])
    if runs:
        out += ["", "### Cross-node emit-to-receive", ""]
        out.append(
            "Node A runs one `demo.sleep` job reporting progress at 100 events/s; node B is "
            "started after A claimed it, and a WebSocket client of B (its own process) times "
            "each event from its `timestamp` (taken as A made the batch, before the commit) "
            "to its arrival."
        )
        out += ["", "| run | events | events/s | p50 ms | p99 ms | max ms |",
                "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for i, run in enumerate(runs, 1):
            if "error" in run:
                out.append(f"| {i} | failed: `{run['error'].splitlines()[-1][:120]}` |")
                continue
            out.append(
                f"| {i} | {run['events']} | {fmt(run['events_per_s'])} | "
                f"{fmt(run['lag_p50_ms'], 1)} | {fmt(run['lag_p99_ms'], 1)} | "
                f"{fmt(run['lag_max_ms'], 1)} |"
            )
        p99 = metric(runs, "lag_p99_ms")
        targets.append(Target(
            17,
            "cross-node emit-to-receive p99 (committed on A, received by a client of B) under "
            "100 ms at 100 events/s",
            f"{fmt(p99['median'], 1)} ms (median of {p99['n']} runs, worst "
            f"{fmt(p99['max'], 1)} ms)",
            None if math.isnan(p99["median"]) else p99["median"] < 100.0,
        ))  # fmt: skip
    out += ["", f"- jobserver 1 node, jobserver 2 nodes: {NOTE_OURS}"]
    out += [f"- {p.label}: {p.note}" for p in PEERS]
    return out
