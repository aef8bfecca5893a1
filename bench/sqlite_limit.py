"""The SQLite ceiling on this disk: rows/s with synchronous=FULL, one row per commit and 100.

Plain sqlite3 with no event loop, WAL and synchronous=FULL as the store uses; rows the size of
an event. Our write path is compared with this.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import RUN_DIR, emit_result

ROW = os.urandom(200).hex().encode()  # about the size of one job.progress event


def measure(db: Path, batch: int, max_rows: int, max_seconds: float) -> dict[str, Any]:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, data BLOB)")
    rows = commits = 0
    t0 = time.perf_counter()
    deadline = t0 + max_seconds
    while rows < max_rows and time.perf_counter() < deadline:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO events (data) VALUES (?)", [(ROW,)] * batch)
        conn.execute("COMMIT")
        rows += batch
        commits += 1
    elapsed = time.perf_counter() - t0
    conn.close()
    return {
        "rows": rows,
        "commits": commits,
        "seconds": elapsed,
        "rows_per_s": rows / elapsed,
        "commits_per_s": commits / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per mode")
    parser.add_argument("--rows", type=int, default=200_000, help="most rows per mode")
    args = parser.parse_args()
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="sqlite-", dir=RUN_DIR))
    try:
        single = measure(workdir / "single.db", 1, args.rows, args.seconds)
        batched = measure(workdir / "batched.db", 100, args.rows, args.seconds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    emit_result(
        {
            "system": "sqlite3",
            "sqlite_version": sqlite3.sqlite_version,
            "single_rows_per_s": single["rows_per_s"],
            "batch100_rows_per_s": batched["rows_per_s"],
            "single": single,
            "batch100": batched,
        }
    )


if __name__ == "__main__":
    main()
