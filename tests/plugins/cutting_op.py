"""A storage module whose one write op counts its runs, then ends its own connection (as
``pg_terminate_backend`` from an operator would, mid-transaction): tests/test_pg_store.py."""

from __future__ import annotations

from typing import Any

from jobserver.tables import write_op

RUNS: list[int] = []


@write_op("test.cut_own_connection")
def cut_own_connection(tx: Any) -> None:
    RUNS.append(1)
    tx.execute("SELECT pg_terminate_backend(pg_backend_pid())")
