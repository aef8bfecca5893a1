"""Job throughput of Huey with SqliteHuey on a file (runs in the peers' environment).

Enqueues N tasks, then starts a thread consumer in this process and waits until Huey has
signalled every task complete. Progress is imitated with a committed SQLite write per step.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from harness import RUN_DIR, emit_result, job_args, throughput
from huey import SqliteHuey, signals


def run(
    jobs: int, progress: int, workers: int, fsync: bool | None, timeout: float
) -> dict[str, Any]:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="huey-", dir=RUN_DIR))
    try:
        return _run(workdir, jobs, progress, workers, fsync, timeout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(
    workdir: Path, jobs: int, progress: int, workers: int, fsync: bool | None, timeout: float
) -> dict[str, Any]:
    huey = SqliteHuey("bench", filename=str(workdir / "huey.db"), fsync=fsync)
    progress_db = str(workdir / "progress.db")
    with sqlite3.connect(progress_db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE progress (task TEXT, step INTEGER, data TEXT)")
    local = threading.local()

    def progress_conn() -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is None:
            # Same pragmas as Huey's own connection: WAL, synchronous as configured.
            conn = sqlite3.connect(progress_db, isolation_level=None, timeout=5)
            conn.execute("PRAGMA journal_mode=WAL")
            if fsync is not None:
                conn.execute(f"PRAGMA synchronous={2 if fsync else 0}")
            local.conn = conn
        return conn

    @huey.task()
    def noop() -> None:
        return None

    @huey.task(context=True)
    def progress10(task: Any = None) -> None:
        conn = progress_conn()
        for step in range(1, 11):
            conn.execute(
                "INSERT INTO progress VALUES (?, ?, ?)",
                (task.id, step, f'{{"progress": {step * 10}}}'),
            )

    done = threading.Event()
    lock = threading.Lock()
    count = [0]

    @huey.signal(signals.SIGNAL_COMPLETE)
    def on_complete(signal: str, task: Any) -> None:
        with lock:
            count[0] += 1
            if count[0] >= jobs:
                done.set()

    fn = progress10 if progress else noop
    t0 = time.perf_counter()
    for _ in range(jobs):
        fn()
    t1 = time.perf_counter()
    consumer = huey.create_consumer(
        workers=workers,
        worker_type="thread",
        periodic=False,
        initial_delay=0.001,
        max_delay=0.01,
        check_worker_health=False,
    )
    consumer._set_signal_handlers = lambda: None  # run inside this process, keep our signals
    consumer.start()
    finished = done.wait(timeout)
    t2 = time.perf_counter()
    consumer.stop(graceful=True)
    if not finished:
        raise SystemExit(f"huey: only {count[0]} of {jobs} tasks completed in {timeout}s")
    return throughput(
        "huey",
        f"SqliteHuey file, WAL, fsync={fsync}, {workers} thread workers",
        jobs, progress, t0, t1, t2,
    )  # fmt: skip


def main() -> None:
    parser = job_args(__doc__)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--fsync",
        choices=("default", "on", "off"),
        default="default",
        help="default: SQLite's synchronous=FULL; off: synchronous=OFF",
    )
    args = parser.parse_args()
    fsync = {"default": None, "on": True, "off": False}[args.fsync]
    emit_result(run(args.jobs, args.progress, args.workers, fsync, args.timeout))


if __name__ == "__main__":
    main()
