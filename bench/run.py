"""The benchmark suite: `python bench/run.py [--quick] [--cases ...] [--reps N]`.

Prepares the peers' virtual environment (bench/.peers/venv, from bench/peers.txt), runs every
case in separate processes, repeats each measurement, and writes Markdown tables (median, min,
max, ratio to each baseline of the same run) and the verdict on each speed target of issues
2, 3, 4, 14 and 17 to docs/benchmarks.md (quick runs write to bench/.peers/ unless --out says
where). The user's path (``user``, ``enqueue``) runs every system as its users run it; the
in-process ``throughput`` case is the engine's ceiling; ``pg`` (issue 17, left out of
``--quick`` unless named) runs jobserver on PostgreSQL, one node and two, against
procrastinate and SAQ on the same PostgreSQL.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shlex
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import net
import pgpath
import userpath
from harness import BENCH, PEERS_DIR, PEERS_PYTHON, ROOT, run_script
from report import Row, Target, fmt, metric, ratio, table, targets_table
from report_pg import section_pg
from report_user import section_enqueue, section_user

CASES = (
    "user", "enqueue", "throughput", "fanout", "latency", "connections", "longpoll", "pdf",
    "sqlite", "pg",
)  # fmt: skip
NOT_QUICK = frozenset({"pg"})  # --quick leaves these out unless --cases names them
PEERS_TXT = BENCH / "peers.txt"
PEERS_STAMP = PEERS_DIR / "installed.txt"
NOISE = (
    "The machine has 2 cores shared with other agents working at the same time, so absolute "
    "numbers are noisy; only ratios between systems measured in this same run mean anything. "
    "Servers and their load generators run in separate processes on the same 2 cores."
)


@dataclass
class Plan:
    """Sizes of every case; ``--quick`` shrinks them all."""

    reps: int
    throughput_reps: int  # the job throughput runs are short and the machine's speed drifts
    jobs: int
    fanout: list[tuple[int, int]]  # (clients, events)
    latency_clients: int
    latency_events: int
    connections: list[int]
    pollers: int
    sqlite_seconds: float
    user_jobs: int = 500  # the user's path (its slowest peers ran 11-20 jobs/s here, loaded)
    enqueue_pairs: int = 500  # the enqueue latency case: POST/GET pairs
    enqueue_paced_seconds: float = 5.0  # then POSTs at 200/s for this long
    enqueue_load: float = 1000.0  # progress events/s of other jobs meanwhile
    pg_jobs: int = 500  # issue 17: the user's path on PostgreSQL, per measurement
    pg_lag_seconds: float = 20.0  # cross-node emit-to-receive: how long B's client listens


FULL = Plan(3, 5, 2000, [(100, 800), (1000, 200)], 1000, 50, [1000, 10_000], 1000, 3.0)
QUICK = Plan(1, 1, 100, [(100, 40)], 100, 10, [200], 100, 0.3, 40, 40, 2.5, 300.0, 40, 3.0)


@dataclass
class Context:
    plan: Plan
    quick: bool
    peers: bool
    redis: bool
    postgres: bool
    log: Callable[[str], None]
    results: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    pending: list[tuple[str, str, Callable[[], dict[str, Any]], int]] = field(default_factory=list)
    services: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def record(
        self, case: str, label: str, fn: Callable[[], dict[str, Any]], reps: int | None = None
    ) -> None:
        """Queue one measurement; ``flush`` runs it ``reps`` (default ``plan.reps``) times."""
        self.results.setdefault(case, {}).setdefault(label, [])
        self.pending.append((case, label, fn, reps or self.plan.reps))

    def flush(self) -> None:
        """Run the queued measurements in rounds (each system once per round), so a change in
        the load others put on the machine hits every system alike; errors become results."""
        pending, self.pending = self.pending, []
        for rep in range(max((p[3] for p in pending), default=0)):
            for case, label, fn, reps in pending:
                if rep >= reps:
                    continue
                t0 = time.monotonic()
                try:
                    result = fn()
                except Exception as exc:
                    result = {"error": f"{type(exc).__name__}: {exc}"}
                    self.log(traceback.format_exc()[-1500:])
                self.results[case][label].append(result)
                took = time.monotonic() - t0
                self.log(f"  {case} {label} #{rep + 1}: {summary(result)} ({took:.1f}s)")


def summary(result: dict[str, Any]) -> str:
    if "error" in result:
        return "ERROR " + result["error"][:300]
    keys = (
        "jobs_per_s",
        "lag_p99_ms",
        "deliveries_per_s",
        "latency_p99_ms",
        "bytes_per_connection",
        "wake_p99_ms",
        "single_rows_per_s",
        "batch100_rows_per_s",
    )
    return ", ".join(f"{k}={result[k]:.1f}" for k in keys if isinstance(result.get(k), float))


# -- preparation ----------------------------------------------------------------------------


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def prepare_peers(log: Callable[[str], None]) -> bool:
    """Create or update bench/.peers/venv from bench/peers.txt; False when that fails."""
    wanted = PEERS_TXT.read_text()
    if PEERS_PYTHON.exists() and PEERS_STAMP.exists() and PEERS_STAMP.read_text() == wanted:
        return True
    log("preparing the peers' environment in bench/.peers/venv (pip, from PyPI)")
    try:
        if not PEERS_PYTHON.exists():
            subprocess.run(
                [sys.executable, "-m", "venv", str(PEERS_DIR / "venv")], check=True, timeout=120
            )
        subprocess.run(
            [
                str(PEERS_PYTHON),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "-r",
                str(PEERS_TXT),
            ],
            check=True,
            timeout=600,
            capture_output=True,
            text=True,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        log(f"could not prepare the peers: {exc}")
        return False
    PEERS_STAMP.write_text(wanted)
    return True


# -- cases ----------------------------------------------------------------------------------


OURS_CONCURRENCY = (8, 64)
# Issue 2's speed targets name the peers it measured, with their figures on this kind of
# machine (Huey on a SQLite file about 2,200 no-op jobs/s and 620 with progress, SAQ 2,600,
# arq 3,000 with a 10 ms poll). Huey's figures are those of its default configuration, which
# commits with SQLite's synchronous=FULL like ours; with fsync off it makes no durable write
# at all. That variant is measured and reported beside every target, but the target's
# baseline is the fastest of the peers as the issue configures them.
REFERENCE_ONLY = frozenset({"huey fsync=off"})
PEER_VARIANTS: list[tuple[str, str, list[str], str, str]] = [
    # (label, script, args, service, configuration stated in the notes)
    (
        "huey fsync=off",
        "jobs_huey.py",
        ["--workers", "1", "--fsync", "off"],
        "",
        "SqliteHuey on a file, WAL, synchronous=OFF (fsync=False), 1 thread worker (faster than "
        "4); a reference, not the targets' baseline: nothing it acknowledges is durable",
    ),
    (
        "huey default",
        "jobs_huey.py",
        ["--workers", "1", "--fsync", "default"],
        "",
        "SqliteHuey on a file, WAL, SQLite's default synchronous=FULL, 1 thread worker",
    ),
    (
        "saq",
        "jobs_saq.py",
        ["--concurrency", "50"],
        "redis",
        "Redis (in memory), worker concurrency 50 in the same process; progress by job.update",
    ),
    (
        "arq",
        "jobs_arq.py",
        ["--max-jobs", "50", "--poll-delay", "0.01"],
        "redis",
        "Redis (in memory), burst worker, poll_delay 10 ms, max_jobs 50; progress imitated by a "
        "pipelined SET + PUBLISH",
    ),
    (
        "procrastinate",
        "jobs_procrastinate.py",
        ["--concurrency", "10"],
        "postgres",
        "PostgreSQL 127.0.0.1 (synchronous_commit on), batch defer, async worker concurrency 10, "
        "stops when empty; progress imitated by an INSERT",
    ),
]


def case_throughput(ctx: Context) -> None:
    jobs = str(ctx.plan.jobs)
    for progress in ("0", "10"):
        case = f"throughput-{progress}"
        for conc in OURS_CONCURRENCY[-1:] if ctx.quick else OURS_CONCURRENCY:
            args = ["--jobs", jobs, "--progress", progress, "--concurrency", str(conc)]
            ctx.record(
                case,
                f"jobserver c={conc}",
                lambda a=args: run_script(sys.executable, "jobs_ours.py", a, 300),  # type: ignore[misc]
                ctx.plan.throughput_reps,
            )
        for label, script, extra, service, _ in PEER_VARIANTS:
            if ctx.quick and label in REFERENCE_ONLY:
                continue  # quick mode keeps one configuration per peer: the target's
            why = peer_missing(ctx, service)
            if why:
                ctx.skipped[f"{case} {label}"] = why
                continue
            args = ["--jobs", jobs, "--progress", progress, *extra]
            ctx.record(
                case,
                label,
                lambda s=script, a=args: run_script(PEERS_PYTHON, s, a, 300),  # type: ignore[misc]
                ctx.plan.throughput_reps,
            )


def case_user(ctx: Context) -> None:
    jobs = ctx.plan.user_jobs
    aof: int | None = None
    if ctx.peers and not ctx.quick:
        aof = ctx.services.enter_context(userpath.redis_aof())
    for progress in (0, 10):
        case = f"user-{progress}"
        for mode in userpath.OURS.modes:
            ctx.record(case, f"jobserver {mode}",
                       lambda m=mode, p=progress: userpath.run_ours(m, p, jobs))  # type: ignore[misc]  # fmt: skip
        for peer in userpath.PEERS:
            if ctx.quick and (not peer.baseline or "fsync=off" in peer.label):
                continue  # quick mode: one configuration per peer
            why = peer_missing(ctx, peer.service)
            if why:
                ctx.skipped[f"{case} {peer.label}"] = why
                continue
            for mode in peer.modes[:1] if ctx.quick else peer.modes:
                ctx.record(
                    case, f"{peer.label} {mode}",
                    lambda s=peer, m=mode, p=progress: userpath.run_peer(s, m, p, jobs, aof),  # type: ignore[misc]
                )  # fmt: skip


def case_enqueue(ctx: Context) -> None:
    plan = ctx.plan
    ctx.record("enqueue", "jobserver", lambda: userpath.run_latency(
        plan.enqueue_pairs, 200.0, plan.enqueue_paced_seconds, plan.enqueue_load))  # fmt: skip


def case_pg(ctx: Context) -> None:
    """Issue 17: jobserver on PostgreSQL (one node, two) against procrastinate and SAQ on the
    same PostgreSQL, one defer at a time; cross-node emit-to-receive at 100 events/s."""
    if not ctx.postgres:
        ctx.skipped["pg"] = "no PostgreSQL at 127.0.0.1:5432"
        return
    jobs = ctx.plan.pg_jobs
    for progress in (0, 10):
        case = f"pg-{progress}"
        for count in (1, 2):
            label = f"jobserver {count} node" + ("s" if count > 1 else "")
            ctx.record(case, label,
                       lambda n=count, p=progress: pgpath.run_ours(n, p, jobs))  # type: ignore[misc]  # fmt: skip
        for peer in pgpath.PEERS:
            why = peer_missing(ctx, peer.service)
            if why:
                ctx.skipped[f"{case} {peer.label}"] = why
                continue
            ctx.record(case, peer.label,
                       lambda s=peer, p=progress: userpath.run_peer(s, "one", p, jobs, None))  # type: ignore[misc]  # fmt: skip
    seconds = ctx.plan.pg_lag_seconds
    ctx.record("pg-lag", "jobserver 2 nodes", lambda: pgpath.run_lag(100.0, seconds))


def peer_missing(ctx: Context, service: str) -> str:
    if not ctx.peers:
        return "the peers' environment could not be built"
    if service == "redis-aof" and not shutil.which("redis-server"):
        return "no redis-server binary for the appendonly instance"
    if service.startswith("redis") and not ctx.redis:
        return "no Redis at 127.0.0.1:6379"
    if service == "postgres" and not ctx.postgres:
        return "no PostgreSQL at 127.0.0.1:5432"
    return ""


def ws_systems(ctx: Context) -> list[str]:
    return ["ours", "bare", "socketio"] if ctx.peers else ["ours", "bare"]


def case_fanout(ctx: Context) -> None:
    for clients, events in ctx.plan.fanout:
        for system in ws_systems(ctx):
            ctx.record(
                f"fanout-{clients}",
                system,
                lambda s=system, c=clients, e=events: net.fanout(s, c, e, 0.0),  # type: ignore[misc]
            )


def case_latency(ctx: Context) -> None:
    clients, events = ctx.plan.latency_clients, ctx.plan.latency_events
    for system in ws_systems(ctx):
        ctx.record(
            "latency",
            system,
            lambda s=system: net.fanout(s, clients, events, 0.1),  # type: ignore[misc]
        )


def case_connections(ctx: Context) -> None:
    for n in ctx.plan.connections:
        for system in ("ours", "bare"):
            ctx.record(
                f"connections-{n}",
                system,
                lambda s=system, c=n: net.connections(s, c),  # type: ignore[misc]
            )


def case_longpoll(ctx: Context) -> None:
    for system in ("ours", "bare"):
        ctx.record("longpoll", system, lambda s=system: net.longpoll(s, ctx.plan.pollers))  # type: ignore[misc]


def case_sqlite(ctx: Context) -> None:
    args = ["--seconds", str(ctx.plan.sqlite_seconds)]
    ctx.record(
        "sqlite", "sqlite3", lambda: run_script(sys.executable, "sqlite_limit.py", args, 120)
    )


def case_pdf(ctx: Context) -> None:
    script = BENCH / "pdf_pipeline.py"
    if not script.exists():
        ctx.skipped["pdf"] = "bench/pdf_pipeline.py does not exist yet"
        return
    out = PEERS_DIR / "run" / "pdf.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    def once() -> dict[str, Any]:
        out.unlink(missing_ok=True)
        cmd = [sys.executable, str(script), "--json", str(out)]
        if ctx.quick:
            cmd.append("--quick")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
        if proc.returncode != 0:
            raise RuntimeError(f"pdf_pipeline.py exited {proc.returncode}: {proc.stderr[-2000:]}")
        result: dict[str, Any] = json.loads(out.read_text())
        return result

    # The script repeats its own measurements; run it once.
    runs = ctx.results.setdefault("pdf", {}).setdefault("pdf_pipeline", [])
    try:
        runs.append(once())
        ctx.log("  pdf pipeline: done")
    except Exception as exc:
        runs.append({"error": f"{type(exc).__name__}: {exc}"})
        ctx.log(f"  pdf pipeline: ERROR {exc}")


RUNNERS: dict[str, Callable[[Context], None]] = {
    "user": case_user,
    "enqueue": case_enqueue,
    "throughput": case_throughput,
    "fanout": case_fanout,
    "latency": case_latency,
    "connections": case_connections,
    "longpoll": case_longpoll,
    "pdf": case_pdf,
    "sqlite": case_sqlite,
    "pg": case_pg,
}


# -- the report -----------------------------------------------------------------------------


def rows_of(ctx: Context, case: str, notes: dict[str, str] | None = None) -> list[Row]:
    notes = notes or {}
    return [
        Row(label, runs, notes.get(label, "")) for label, runs in ctx.results.get(case, {}).items()
    ]


def pick(rows: list[Row], label: str) -> Row | None:
    return next((r for r in rows if r.label == label), None)


def median_of(row: Row | None, key: str) -> float:
    return math.nan if row is None else metric(row.runs, key)["median"]


def best(rows: list[Row], key: str, prefix: str, exclude: bool = False) -> Row | None:
    """The row with the highest median ``key`` among labels starting (or not) with prefix."""
    chosen = [r for r in rows if r.label.startswith(prefix) != exclude]
    scored = [(median_of(r, key), r) for r in chosen]
    scored = [(v, r) for v, r in scored if not math.isnan(v)]
    return max(scored, key=lambda x: x[0])[1] if scored else None


def section_throughput(ctx: Context, targets: list[Target]) -> list[str]:
    if not any(case.startswith("throughput") for case in ctx.results):
        return []  # not run (--cases)
    notes = {label: note for label, _, _, _, note in PEER_VARIANTS}
    for conc in OURS_CONCURRENCY:
        notes[f"jobserver c={conc}"] = (
            "SqliteStore (WAL, synchronous=FULL, group commit in its writer process) + EventBus + "
            f"JobQueue + WorkerPool(concurrency={conc}) in one process, the server's bus taps "
            "(metrics, job log; logging not configured, as for the peers), a bus subscriber "
            "counting events"
            + (" (the default concurrency)" if conc == 8 else "")
        )
    out = ["## 3. Engine ceiling: job throughput in one process (issue 2)", ""]
    out.append(
        "Not how users run any of these systems (that is section 1): each system's producer "
        "and worker share one process, so this measures the engine itself. "
        f"{ctx.plan.jobs:,} jobs enqueued through each system's Python API, then processed to "
        "completion; jobs/s over the whole time (enqueue + processing). Ratios are of medians. "
        "The targets' baseline is the fastest peer in the configurations issue 2 quotes figures "
        "for (Huey on a SQLite file about 2,200 no-op jobs/s and 620 with progress: its default, "
        "which fsyncs like ours; SAQ and arq on Redis). `huey fsync=off` (no durable write) is "
        "measured as a reference and its ratio is given beside each target."
    )
    for progress in ("0", "10"):
        rows = rows_of(ctx, f"throughput-{progress}", notes)
        if not rows:
            continue
        peers = [r for r in rows if not r.label.startswith("jobserver")]
        lag = (
            "lag p99 ms (max of runs)",
            lambda r: (
                fmt(metric(r.runs, "lag_p99_ms")["max"], 1)
                if r.label.startswith("jobserver")
                else ""
            ),
        )
        title = "no-op jobs" if progress == "0" else "jobs with 10 progress events each"
        out += ["", f"### {title}", "", table(rows, "jobs_per_s", "jobs/s", peers, extra=[lag])]
        ours = best(rows, "jobs_per_s", "jobserver")
        peer = best([r for r in peers if r.label not in REFERENCE_ONLY], "jobs_per_s", "")
        need = 2.0 if progress == "0" else 4.0
        r = ratio(median_of(ours, "jobs_per_s"), median_of(peer, "jobs_per_s"))
        measured = (
            f"{ours.label if ours else '?'}: {fmt(median_of(ours, 'jobs_per_s'))} jobs/s = "
            f"{fmt(r, 2)}x {peer.label if peer else '?'} ({fmt(median_of(peer, 'jobs_per_s'))})"
        )
        for label in sorted(REFERENCE_ONLY):
            ref = pick(rows, label)
            if ref is not None:
                measured += (
                    f" [for reference, not the target's baseline: "
                    f"{fmt(ratio(median_of(ours, 'jobs_per_s'), median_of(ref, 'jobs_per_s')), 2)}"
                    f"x {label} ({fmt(median_of(ref, 'jobs_per_s'))}), no durable write]"
                )
        if progress == "10" and ours is not None:
            ok = all(
                run.get("all_durable_and_delivered") for run in ours.runs if "error" not in run
            )
            measured += f"; every event durable and delivered: {'yes' if ok else 'NO'}"
        else:
            ok = True
        targets.append(
            Target(
                2,
                f"{title}: at least {need:g}x the fastest peer (as the issue configures them)",
                measured,
                None if math.isnan(r) else bool(r >= need and ok),
            )
        )
        lags = [
            run["lag_p99_ms"]
            for row in rows
            if row.label.startswith("jobserver")
            for run in row.runs
            if "lag_p99_ms" in run
        ]
        if lags:
            targets.append(
                Target(
                    2,
                    f"{title}: event-loop lag p99 under 20 ms meanwhile",
                    f"worst run {max(lags):.1f} ms, median {sorted(lags)[len(lags) // 2]:.1f} ms",
                    max(lags) < 20.0,
                )
            )
    return out


def section_fanout(ctx: Context, targets: list[Target]) -> list[str]:
    if not any(case.startswith(("fanout", "latency")) for case in ctx.results):
        return []  # not run (--cases)
    out = ["## 4. Fan-out over WebSocket", ""]
    out.append(
        "One event stream sent flat out to every subscriber; deliveries/s = events received by "
        "all clients / (last receive - first emit). Latency is emit-to-receive of every "
        "delivery (all clients, all runs of the median). Ours: 8 `bench.emit` jobs of the same "
        "user emit the stream through `ctx.progress`, so each event is persisted (group commit, "
        "fsync) before it is sent and that time is in its latency; subscribers use `/ws` with "
        "the session cookie and `subscribe` to the user. Bare: an aiohttp handler keeps a set of "
        "sockets and a loop awaits `send_str` to each. python-socketio: `AsyncServer` on aiohttp, "
        "`emit` to a room every client joined. Events of the baselines have the same fields and "
        "size as ours. Clients: raw aiohttp WebSocket clients, 500 per process."
    )
    for clients, events in ctx.plan.fanout:
        rows = rows_of(ctx, f"fanout-{clients}")
        if not rows:
            continue
        base = [r for r in rows if r.label != "ours"]
        lat = [
            ("events/s", lambda r, c=clients: fmt(median_of(r, "deliveries_per_s") / c)),
            ("latency p50 ms", lambda r: fmt(metric(r.runs, "latency_p50_ms")["median"], 1)),
            ("latency p99 ms", lambda r: fmt(metric(r.runs, "latency_p99_ms")["median"], 1)),
            ("received/expected", lambda r: received(r)),
        ]
        out += ["", f"### {clients:,} subscribers, {events:,} events", ""]
        out.append(table(rows, "deliveries_per_s", "deliveries/s", base, extra=lat))
        if clients == 1000 or ctx.quick:
            ours = median_of(pick(rows, "ours"), "deliveries_per_s")
            bare = median_of(pick(rows, "bare"), "deliveries_per_s")
            sio = median_of(pick(rows, "socketio"), "deliveries_per_s")
            r1, r2 = ratio(ours, bare), ratio(ours, sio)
            targets.append(
                Target(
                    4,
                    f"fan-out to {clients:,}: deliveries/s at least 0.9x bare aiohttp",
                    f"{fmt(ours)} vs {fmt(bare)} = {fmt(r1, 2)}x",
                    None if math.isnan(r1) else r1 >= 0.9,
                )
            )
            targets.append(
                Target(
                    4,
                    f"fan-out to {clients:,}: deliveries/s at least 3x python-socketio",
                    f"{fmt(ours)} vs {fmt(sio)} = {fmt(r2, 2)}x",
                    None if math.isnan(r2) else r2 >= 3.0,
                )
            )
    rows = rows_of(ctx, "latency")
    if rows:
        n, e = ctx.plan.latency_clients, ctx.plan.latency_events
        out += ["", f"### 10 events/s to {n:,} subscribers ({e} events), emit-to-receive", ""]
        base = [r for r in rows if r.label != "ours"]
        extra = [
            ("p50 ms", lambda r: fmt(metric(r.runs, "latency_p50_ms")["median"], 1)),
            ("received/expected", lambda r: received(r)),
        ]
        out.append(table(rows, "latency_p99_ms", "p99 ms", base, digits=1, extra=extra))
        ours = median_of(pick(rows, "ours"), "latency_p99_ms")
        bare = median_of(pick(rows, "bare"), "latency_p99_ms")
        r = ratio(ours, bare)
        targets.append(
            Target(
                4,
                f"10 events/s to {n:,} clients: p99 at most 1.2x bare aiohttp",
                f"{fmt(ours, 1)} ms vs {fmt(bare, 1)} ms = {fmt(r, 2)}x",
                None if math.isnan(r) else r <= 1.2,
            )
        )
    return out


def received(row: Row) -> str:
    ok = [r for r in row.runs if "error" not in r]
    return f"{sum(r['received'] for r in ok):,}/{sum(r['expected'] for r in ok):,}"


def section_connections(ctx: Context, targets: list[Target]) -> list[str]:
    if not any(case.startswith("connections") for case in ctx.results):
        return []  # not run (--cases)
    out = ["## 5. Memory per idle WebSocket connection", ""]
    out.append(
        "Server RSS after N idle sockets minus RSS before them (after 50 warm-up sockets came "
        "and went), divided by N. Ours: each socket signed in by cookie and subscribed to its "
        "user (as a real client is). Clients: 2,500 per process."
    )
    for n in ctx.plan.connections:
        rows = rows_of(ctx, f"connections-{n}")
        if not rows:
            continue
        base = [r for r in rows if r.label != "ours"]
        extra = [("connected", lambda r: ", ".join(str(x.get("connected", "?")) for x in r.runs))]
        out += ["", f"### {n:,} connections", ""]
        out.append(table(rows, "bytes_per_connection", "bytes/conn", base, extra=extra))
        if n == max(ctx.plan.connections):
            ours = median_of(pick(rows, "ours"), "bytes_per_connection")
            bare = median_of(pick(rows, "bare"), "bytes_per_connection")
            r = ratio(ours, bare)
            targets.append(
                Target(
                    4,
                    f"{n:,} idle WebSockets: memory per connection at most 1.2x bare aiohttp",
                    f"{fmt(ours)} vs {fmt(bare)} bytes = {fmt(r, 2)}x",
                    None if math.isnan(r) else r <= 1.2,
                )
            )
    return out


def section_longpoll(ctx: Context, targets: list[Target]) -> list[str]:
    rows = rows_of(ctx, "longpoll")
    if not rows:
        return []
    n = ctx.plan.pollers
    out = ["## 6. Long-poll wake-up", ""]
    out.append(
        f"{n:,} long-polls wait at once (`GET /api/events?since=<head>&userId=&timeout=60` for "
        "ours, checked waiting on the bus before the event), then one event wakes them all; "
        "latency is receive time minus the event's emit time. Ours: the event is the progress of "
        "a `bench.emit` job held at a gate, so persisting it is part of the time. Bare: an "
        "aiohttp handler awaiting a future that one POST resolves for all."
    )
    base = [r for r in rows if r.label != "ours"]
    extra = [
        ("p50 ms", lambda r: fmt(metric(r.runs, "wake_p50_ms")["median"], 1)),
        ("woken", lambda r: ", ".join(str(x.get("woken", "?")) for x in r.runs)),
    ]
    out += ["", table(rows, "wake_p99_ms", "p99 ms", base, digits=1, extra=extra)]
    ours = median_of(pick(rows, "ours"), "wake_p99_ms")
    bare = median_of(pick(rows, "bare"), "wake_p99_ms")
    targets.append(
        Target(
            4,
            f"{n:,} long-pollers woken by one event: p99 under 200 ms",
            f"{fmt(ours, 1)} ms (bare aiohttp {fmt(bare, 1)} ms, {fmt(ratio(ours, bare), 2)}x)",
            None if math.isnan(ours) else ours < 200,
        )
    )
    return out


def section_pdf(ctx: Context, targets: list[Target]) -> list[str]:
    if "pdf" not in ctx.results and "pdf" not in ctx.skipped:
        return []  # not run (--cases)
    out = ["## 7. PDF pipeline", ""]
    if "pdf" in ctx.skipped:
        out.append(f"Not measured: {ctx.skipped['pdf']}.")
        targets.append(
            Target(
                3,
                "PDF targets (20-page PDF <= 1.2x pypdf; cache hit < 50 ms; "
                "lag p99 < 50 ms while 4 parse)",
                ctx.skipped["pdf"],
                None,
            )
        )
        return out
    runs = ctx.results.get("pdf", {}).get("pdf_pipeline", [])
    result = runs[0] if runs else {"error": "no result"}
    if "error" in result:
        out.append(f"The PDF benchmark failed: `{result['error'][:300]}`")
        targets.append(Target(3, "PDF pipeline targets", "the script failed", None))
        return out
    out.append("From `bench/pdf_pipeline.py` (its own repetitions and baselines).")
    text = result.get("markdown") or result.get("table")
    if isinstance(text, str):
        out += ["", text]
    else:
        out += ["", "```json", json.dumps(result, indent=2)[:6000], "```"]
    for t in result.get("targets", []):
        met = t.get("met")
        targets.append(
            Target(
                3,
                str(t.get("target", t.get("name", "?"))),
                str(t.get("measured", "")),
                met if isinstance(met, bool) else None,
            )
        )
    return out


def section_sqlite(ctx: Context, targets: list[Target]) -> list[str]:
    rows = rows_of(ctx, "sqlite")
    if not rows:
        return []
    row = rows[0]
    out = ["## 8. SQLite limit on this disk", ""]
    out.append(
        "Plain `sqlite3`, WAL, `synchronous=FULL`, rows the size of an event, no event loop: the "
        "ceiling our write path is compared with."
    )
    out += [
        "",
        "| mode | median rows/s | min | max | commits/s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, label in (
        ("single_rows_per_s", "1 row per commit"),
        ("batch100_rows_per_s", "100 rows per commit"),
    ):
        s = metric(row.runs, key)
        commits = s["median"] if key.startswith("single") else s["median"] / 100
        out.append(
            f"| {label} | {fmt(s['median'])} | {fmt(s['min'])} | {fmt(s['max'])} | {fmt(commits)} |"
        )
    ours = [
        run["events_per_s"]
        for label, runs in ctx.results.get("throughput-10", {}).items()
        if label.startswith("jobserver")
        for run in runs
        if "events_per_s" in run
    ]
    if ours:
        single = metric(row.runs, "single_rows_per_s")["median"]
        batch = metric(row.runs, "batch100_rows_per_s")["median"]
        top = max(ours)
        out += [
            "",
            f"Our best events/s in the progress throughput case: {fmt(top)} "
            f"= {fmt(ratio(top, single), 2)}x one-row commits, "
            f"{fmt(ratio(top, batch), 2)}x the 100-row batch ceiling.",
        ]
        huey = ctx.results.get("throughput-10", {}).get("huey fsync=off")
        if huey:
            # What 4x Huey-without-fsync would take: 13 durable events per job (queued,
            # started, 10 progress, completed), each a row with its indexes.
            need = 4 * metric(huey, "jobs_per_s")["median"] * 13
            out += [
                "",
                f"4x `huey fsync=off` in the progress case would mean {fmt(need)} durable "
                f"events/s: {fmt(ratio(need, batch), 2)}x what plain sqlite3 writes in 100-row "
                "commits of bare rows (no indexes, no job logic, no event loop) on this disk.",
            ]
    return out


def versions(ctx: Context) -> list[str]:
    ours = ["aiohttp", "aiosqlite", "orjson", "PyJWT"]
    lines = [
        f"- this project's environment: Python {platform.python_version()}, SQLite "
        f"{sqlite3.sqlite_version}, " + ", ".join(f"{p} {metadata.version(p)}" for p in ours)
    ]
    if ctx.peers:
        code = (
            "import sys, importlib.metadata as m;"
            "print(', '.join(f'{p} {m.version(p)}' for p in sys.argv[1:]))"
        )
        peers = [
            "huey",
            "saq",
            "arq",
            "redis",
            "hiredis",
            "procrastinate",
            "psycopg",
            "python-socketio",
            "python-engineio",
            "aiohttp",
        ]
        got = subprocess.run(
            [str(PEERS_PYTHON), "-c", code, *peers], capture_output=True, text=True, timeout=60
        )
        lines.append(f"- peers' environment (bench/.peers/venv): {got.stdout.strip()}")
    for name, cmd in (
        ("Redis server", ["redis-cli", "-h", "127.0.0.1", "info", "server"]),
        (
            "PostgreSQL",
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-Atc", "select version()"],
        ),
    ):
        try:
            text = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        if name == "Redis server":
            text = next(
                (x.split(":", 1)[1] for x in text.splitlines() if x.startswith("redis_version")), ""
            )
        if text.strip():
            lines.append(f"- {name}: {text.strip().splitlines()[0][:80]}")
    return lines


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((x.split(":", 1)[1].strip() for x in f if x.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), Linux {platform.release()}"


def source_state() -> str:
    """The commit measured, and whether the package had changes not yet committed."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "jobserver", "server.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" with uncommitted changes in jobserver/" if dirty.strip() else "")


def render(ctx: Context, command: str, started: str, elapsed: float, commit: str) -> str:
    targets: list[Target] = []
    body: list[str] = []
    for section in (
        lambda c, t: section_user(c.results, c.plan.user_jobs, t),
        lambda c, t: section_enqueue(c.results.get("enqueue", {}).get("jobserver", []), t),
        lambda c, t: section_pg(c.results, c.plan.pg_jobs, t),
        section_throughput,
        section_fanout,
        section_connections,
        section_longpoll,
        section_pdf,
        section_sqlite,
    ):
        part = section(ctx, targets)
        if part:
            body += ["", *part]
    head = [
        "# Benchmarks",
        "",
        "Written by `bench/run.py` from one real run; do not edit by hand.",
        "",
        f"- command: `{command}`",
        f"- run: {started}, {elapsed / 60:.1f} min"
        + (" (quick mode: every case small, one repetition)" if ctx.quick else ""),
        f"- code measured: {commit or 'not recorded'}",
        f"- machine: {machine()}",
        f"- repetitions per measurement: {ctx.plan.reps} ({ctx.plan.throughput_reps} for job "
        "throughput, whose runs are short), run in rounds (every system once per "
        "round, so load from others hits all alike); tables give median, min and max and "
        "the ratio of medians to each baseline measured in the same run",
        *versions(ctx),
        "",
        NOISE,
        "",
        "## Targets (issues 2, 3, 4, 14, 17)",
        "",
        targets_table(targets),
    ]
    if ctx.skipped:
        head += ["", "Skipped in this run:", ""]
        head += [f"- {k}: {v}" for k, v in ctx.skipped.items()]
    return "\n".join(head + body) + "\n"


# -- main -----------------------------------------------------------------------------------


def rerender(path: Path, out: Path, log: Callable[[str], None]) -> int:
    """Write the report again from the raw results of a run (same numbers, current layout)."""
    raw = json.loads(path.read_text())
    meta = raw["meta"]
    plan = {"throughput_reps": meta["plan"]["reps"], **meta["plan"]}  # older files lack it
    ctx = Context(Plan(**plan), meta["quick"], meta["peers"], True, True, log)
    ctx.results, ctx.skipped = raw["results"], raw["skipped"]
    text = render(ctx, meta["command"], meta["started"], meta["elapsed"], meta.get("commit", ""))
    out.write_text(text)
    log(f"wrote {out} from {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="every case small, once (< 60 s)")
    parser.add_argument(
        "--cases", nargs="+", choices=CASES,
        help="cases to run (default: all; --quick leaves out " + ", ".join(sorted(NOT_QUICK)) + ")",
    )  # fmt: skip
    parser.add_argument("--reps", type=int, help="repetitions per measurement (default 3, quick 1)")
    parser.add_argument(
        "--no-peers", action="store_true", help="skip Huey, SAQ, arq, procrastinate, socketio"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="Markdown report (default docs/benchmarks.md; "
        "quick: bench/.peers/benchmarks-quick.md)",
    )
    parser.add_argument("--json", type=Path, help="also write every raw result here")
    parser.add_argument(
        "--render-from", type=Path, help="only write the report again from a --json file"
    )
    args = parser.parse_args(argv)
    if args.cases is None:
        args.cases = [c for c in CASES if not (args.quick and c in NOT_QUICK)]
    plan = QUICK if args.quick else FULL
    if args.reps:
        reps = max(1, args.reps)
        plan = Plan(**{**plan.__dict__, "reps": reps, "throughput_reps": reps})
    out = args.out or (
        PEERS_DIR / "benchmarks-quick.md" if args.quick else ROOT / "docs" / "benchmarks.md"
    )
    PEERS_DIR.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.render_from:
        return rerender(args.render_from, out, log)
    t0 = time.monotonic()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    commit = source_state()
    peers = not args.no_peers and prepare_peers(log)
    ctx = Context(plan, args.quick, peers, reachable(6379), reachable(5432), log)
    if args.no_peers:
        ctx.skipped["peers"] = "--no-peers"
    for case in CASES:
        if case in args.cases:
            log(f"== {case}")
            try:
                RUNNERS[case](ctx)
                ctx.flush()
            finally:
                ctx.services.close()  # the services a case started (a second Redis)
            if args.json:  # what is done so far survives an interrupted run
                args.json.write_text(json.dumps({"results": ctx.results, "partial": True}))
    command = "python bench/run.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    elapsed = time.monotonic() - t0
    text = render(ctx, command.strip(), started, elapsed, commit)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    if args.json:
        meta = {"command": command.strip(), "started": started, "elapsed": elapsed,
                "quick": args.quick, "plan": plan.__dict__, "peers": peers,
                "commit": commit}  # fmt: skip
        raw = {"results": ctx.results, "skipped": ctx.skipped, "meta": meta}
        args.json.write_text(json.dumps(raw, indent=1))
    print(text)
    log(f"wrote {out} in {time.monotonic() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
