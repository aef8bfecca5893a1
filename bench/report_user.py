"""The report's user's-path sections (issue 14): tables, the reasons, and the targets' verdicts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from report import Row, Target, fmt, metric, ratio, table
from userpath import OURS, PEERS

NOTES = {OURS.label: OURS.note, **{p.label: p.note for p in PEERS}}
BASELINE = frozenset(p.label for p in PEERS if p.baseline)
DURABLE = ("huey default", "procrastinate")  # peers whose acknowledgement waits for an fsync
MODES = {
    "one": "one job per call, awaited before the next",
    "inflight": "100 POSTs in flight at once",
    "gather": "every job at once with asyncio.gather",
    "batch": "1,000 jobs per call",
}


def _system(label: str) -> str:
    return label.rsplit(" ", 1)[0]


def _median(row: Row | None, key: str = "jobs_per_s") -> float:
    return math.nan if row is None else metric(row.runs, key)["median"]


def _best(rows: Sequence[Row]) -> Row | None:
    scored = [(v, r) for r in rows if not math.isnan(v := _median(r))]
    return max(scored, key=lambda x: x[0])[1] if scored else None


def section_user(results: dict[str, dict[str, list[dict[str, Any]]]], jobs: int,
                 targets: list[Target]) -> list[str]:  # fmt: skip
    if not any(results.get(f"user-{p}") for p in ("0", "10")):
        return []  # not run (--cases)
    out = ["## 1. The user's path (issue 14)", ""]
    out.append(
        f"Each system run as its users run it: {jobs:,} jobs enqueued by a producer in its own "
        "process through the system's client API (ours: HTTP), run by a worker in another "
        "process started by the system's own command line (ours: `python server.py`), timed "
        "from the first enqueue to the last completion (ours: seen by a WebSocket subscriber "
        "in a third process). A warm-up job runs first; every run starts on fresh storage. "
        "Modes: " + "; ".join(f"`{k}`: {v}" for k, v in MODES.items()) + ". The targets' "
        "baseline is each peer in its fastest configuration measured here, `huey fsync=off` "
        "included; the `aof` rows (Redis that fsyncs its log every second) are references."
    )
    for progress in ("0", "10"):
        rows = [Row(label, runs) for label, runs in results.get(f"user-{progress}", {}).items()]
        if not rows:
            continue
        peers = [r for r in rows if _system(r.label) in BASELINE]
        one = _best([r for r in peers if r.label.endswith(" one")])
        many = _best(peers)
        base = [r for r in (one, many) if r is not None]
        if len(base) == 2 and base[0].label == base[1].label:
            base = base[:1]  # the fastest one-at-a-time row is also the fastest of all
        enq = ("enqueue/s", lambda r: fmt(_median(r, "enqueue_per_s")))
        title = "no-op jobs" if progress == "0" else "jobs with 10 progress events each"
        out += ["", f"### {title}", "", table(rows, "jobs_per_s", "jobs/s", base, extra=[enq])]
        ours = {m: next((r for r in rows if r.label == f"jobserver {m}"), None)
                for m in OURS.modes}  # fmt: skip
        wanted = [("one", one, 1.0 if progress == "0" else 1.5, "one producer, one job at a time"),
                  ("inflight", many, 2.0 if progress == "0" else 5.0, "100 in flight")]  # fmt: skip
        if progress == "0":
            wanted.append(("batch", many, 2.0, "batched, 1,000 per request"))
        durable = _best([r for r in rows if _system(r.label) in DURABLE])
        for mode, peer, need, what in wanted:
            r = ratio(_median(ours[mode]), _median(peer))
            also = (
                f"; against the fastest durable peer, {durable.label} ({fmt(_median(durable))}): "
                f"{fmt(ratio(_median(ours[mode]), _median(durable)), 2)}x"
                if durable is not None
                else ""
            )
            targets.append(Target(
                14,
                f"user's path, {what}, {title}: at least {need:g}x the fastest peer"
                + ("" if mode == "one" else " (any enqueue API)"),
                f"jobserver {mode} {fmt(_median(ours[mode]))} jobs/s = {fmt(r, 2)}x "
                f"{peer.label if peer else '?'} ({fmt(_median(peer))}){also}",
                None if math.isnan(r) else r >= need,
            ))  # fmt: skip
    out += ["", *(f"- {label}: {note}" for label, note in NOTES.items())]
    out += ["", "Why the figures are what they are:", "", *WHY_USER]
    return out


WHY_USER = [
    "- `jobserver one`: every POST waits for its own commit, a WAL fsync in the writer process, "
    "and for a round trip through three processes (producer, server, writer, server, "
    "producer), each hop a process wake-up on 2 cores shared with other agents. A job's claim "
    "and completion are commits too; the writer now holds them (at most as long as its last "
    "commit took) for the next POST to share its commit, so about one fsync per job remains. "
    "Huey's producer writes its SQLite file in its own process (no hop) and, with "
    "`fsync=off`, never waits for the disk; SAQ and arq make one Redis round trip and no disk "
    "write at all. A durable enqueue over HTTP cannot cost less than an fsync plus a round "
    "trip.",
    "- `jobserver inflight`: 100 POSTs at once share commits (group commit), so the fsync is "
    "spread over many jobs; what is left is the server's CPU per request and per event (HTTP "
    "parsing, JSON, the token, the events fanned out to the subscriber), on the same 2 cores "
    "as the producer, the subscriber and the writer, and the worker pool's default of 8 jobs "
    "at once.",
    "- `jobserver batch`: 1,000 jobs per request and per commit make enqueueing nearly free "
    "(see the enqueue/s column); the figure is then the worker pool's own rate at its "
    "default concurrency: each job's claim, start and completion events, written, published "
    "and sent to the subscriber.",
    "- With 10 progress events each, every one of ours is committed (in batches) and sent to "
    "the subscriber before the job completes; `huey default` commits each progress write with "
    "an fsync of its own, `huey fsync=off` none, SAQ and arq write Redis with no disk.",
    "- `aof` rows: `appendfsync everysec` fsyncs the append-only file once a second in the "
    "background, so no acknowledgement waits for the disk (a crash may lose the last second); "
    "it adds only the write of each command to the file.",
    "- procrastinate: each `defer_async` is a PostgreSQL transaction with synchronous commit "
    "(an fsync of the WAL), then a NOTIFY that wakes the worker, which takes jobs one query "
    "at a time.",
]
WHY_ENQUEUE = [
    "Why: a GET reads on a connection of its own (a thread) and never waits for a commit; a "
    "POST waits for the writer, which, while the load's progress events arrive, is usually "
    "committing a batch already: the POST waits for that commit, then its own (the hold "
    "above lets it start at once when it arrives during a hold). So a POST costs a GET plus "
    "one to two fsyncs of this disk, and the ratio is the fsync's time against the HTTP "
    "round trip's. At a fixed rate, the POSTs that arrive while a commit runs wait together "
    "and then share the next commit; the p99 is set by the slowest commits of a disk that "
    "other agents' tests use too, and by how long the server's loop is busy with the load.",
]


def section_enqueue(runs: list[dict[str, Any]], targets: list[Target]) -> list[str]:
    if not runs:
        return []
    ok = [r for r in runs if "error" not in r]
    out = ["## 2. Enqueue latency under load (issue 14)", ""]
    out.append(
        "`python server.py --demo-jobs` with 5 `demo.sleep` jobs reporting progress (the load, "
        "counted by a WebSocket subscriber in its own process) while one client process first "
        "alternates `POST /api/jobs` (a no-op job) and `GET /api/jobs/{id}` of that job on one "
        "keep-alive connection, then POSTs at a fixed rate, each on its own schedule whether "
        "or not the previous one has returned."
    )
    out += ["", "| run | load events/s | POST p50 ms | GET p50 ms | POST/GET p50 | POST p99 ms "
            "| paced POSTs/s | paced p50 ms | paced p99 ms | paced max ms |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for i, r in enumerate(runs, 1):
        if "error" in r:
            out.append(f"| {i} | failed: `{r['error'].splitlines()[-1][:120]}` |")
            continue
        out.append(
            f"| {i} | {fmt(r['load_events_per_s'])} | {fmt(r['post_p50_ms'], 2)} | "
            f"{fmt(r['get_p50_ms'], 2)} | {fmt(r['post_over_get_p50'], 2)} | "
            f"{fmt(r['post_p99_ms'], 1)} | {fmt(r['rate'])} | {fmt(r['paced_p50_ms'], 2)} | "
            f"{fmt(r['paced_p99_ms'], 1)} | {fmt(r['paced_max_ms'], 1)} |"
        )
    out += ["", *WHY_ENQUEUE]
    ratios = metric(ok, "post_over_get_p50")
    p99 = metric(ok, "paced_p99_ms")
    load = metric(ok, "load_events_per_s")
    rate = ok[0]["rate"] if ok else math.nan
    asked = ok[0].get("events_per_s_asked", 1000.0) if ok else 1000.0
    short = (
        f" (the load reached {fmt(load['median'])} of the {fmt(asked)} events/s asked: this "
        "machine produced no more beside the rest)"
        if load["median"] < 0.9 * asked
        else ""
    )
    targets.append(Target(
        14,
        "POST /api/jobs p50 at most 2x GET /api/jobs/{id} p50, while other jobs report 1,000 "
        "progress events/s",
        f"{fmt(ratios['median'], 2)}x (median of {ratios['n']} runs, worst "
        f"{fmt(ratios['max'], 2)}x) at {fmt(load['median'])} load events/s{short}",
        None if math.isnan(ratios["median"]) else ratios["median"] <= 2.0,
    ))  # fmt: skip
    targets.append(Target(
        14,
        f"POST /api/jobs p99 under 10 ms at {fmt(rate)} enqueues/s, under the same load",
        f"{fmt(p99['median'], 1)} ms (median of {p99['n']} runs, worst {fmt(p99['max'], 1)} ms)"
        + short,
        None if math.isnan(p99["median"]) else p99["median"] < 10.0,
    ))  # fmt: skip
    return out
