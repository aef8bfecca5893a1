"""The user's path for Huey on a SQLite file: the consumer's module and the producer.

The consumer runs as Huey's docs run it, ``huey_consumer user_huey.huey -w 1 -k thread``;
this module gives it the ``huey`` instance (file and fsync from ``BENCH_HUEY_DB`` and
``BENCH_HUEY_FSYNC``), the tasks and a completion signal that counts into the marks file.
Run as a script it is the producer: tasks are enqueued one at a time (Huey's API has no
batch enqueue). Progress is imitated with a committed SQLite write per step.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from typing import Any

from harness import Marks, emit_result, produced, producer_args
from huey import SqliteHuey, signals

FSYNC = {"default": None, "on": True, "off": False}[os.environ.get("BENCH_HUEY_FSYNC", "default")]
DB = os.environ.get("BENCH_HUEY_DB", "huey.db")
huey = SqliteHuey("bench", filename=DB, fsync=FSYNC)
_local = threading.local()
_lock = threading.Lock()
_marks: Marks | None = None


def _progress_conn() -> sqlite3.Connection:
    conn: sqlite3.Connection | None = getattr(_local, "conn", None)
    if conn is None:
        # Huey's own pragmas: WAL, synchronous as configured.
        conn = sqlite3.connect(DB + "-progress", isolation_level=None, timeout=5)
        conn.execute("PRAGMA journal_mode=WAL")
        if FSYNC is not None:
            conn.execute(f"PRAGMA synchronous={2 if FSYNC else 0}")
        conn.execute("CREATE TABLE IF NOT EXISTS progress (task TEXT, step INTEGER, data TEXT)")
        _local.conn = conn
    return conn


@huey.task()
def noop() -> None:
    return None


@huey.task(context=True)
def progress10(task: Any = None) -> None:
    conn = _progress_conn()
    for step in range(1, 11):
        conn.execute(
            "INSERT INTO progress VALUES (?, ?, ?)", (task.id, step, f'{{"progress": {step * 10}}}')
        )


@huey.signal(signals.SIGNAL_COMPLETE)
def _completed(signal: str, task: Any) -> None:
    global _marks
    with _lock:
        if _marks is None:
            _marks = Marks.from_env()
        _marks.count()


def main() -> None:
    args = producer_args(__doc__).parse_args()
    if args.mode != "one":
        raise SystemExit("huey: only one at a time (no batch or async enqueue)")
    import user_huey  # tasks are named by their module: not __main__, as the consumer sees

    fn = user_huey.progress10 if args.progress else user_huey.noop
    marks = Marks(os.environ["BENCH_MARKS"])
    fn()  # the warm-up task
    marks.wait("warm", 30)
    t0 = time.time()
    for _ in range(args.jobs):
        fn()
    emit_result(produced(args.jobs, args.mode, t0, time.time()))


if __name__ == "__main__":
    main()
