"""What only the SQLite backend does: one server per file, durable pragmas, a bounded WAL.

The backend-neutral store tests are the contract (``tests/store_contract.py``, run by
``tests/test_store.py``); its writer process is tested in ``tests/test_sqlite_writer.py``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from jobserver.errors import ServiceUnavailable
from jobserver.store import NewJob
from jobserver.store.sqlite import SqliteStore


async def test_one_process_owns_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    first = SqliteStore(path)
    await first.open()
    with pytest.raises(ServiceUnavailable, match="another jobserver process"):
        await SqliteStore(path, lock_wait=0.2).open()
    await first.close()
    second = SqliteStore(path, lock_wait=0.2)
    await second.open()  # once the first has let go
    await second.close()


async def test_open_jobs_by_user_counts_queued_and_active_jobs(tmp_path: Path) -> None:
    """Where the job quota starts on SQLite (``JobQuota.load``): finished jobs do not count."""
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    try:
        for user in ("u1", "u1", "u2"):
            await store.enqueue(NewJob(type="t", user_id=user, delay_seconds=3600))
        await store.enqueue(NewJob(type="t", user_id="u2"))
        [(running, _)] = await store.claim(1, 30.0)
        job, _ = await store.enqueue(NewJob(type="t", user_id="u3"))
        await store.cancel(job.id, "u3")
        assert running.user_id == "u2"
        assert await store.open_jobs_by_user() == {"u1": 2, "u2": 2}
    finally:
        await store.close()


async def test_a_checkpoint_fails_once_closed(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "s.db")
    await s.open()
    await s.checkpoint()
    await s.close()
    with pytest.raises(ServiceUnavailable):
        await s.checkpoint()


async def test_sqlite_pragmas_are_durable(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "s.db")
    await s.open()
    settings = await s.settings()  # the writer process's own connection
    assert settings["journal_mode"] == "wal"
    assert settings["synchronous"] == 2  # FULL
    assert settings["busy_timeout"] == 5000
    await s.close()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


async def test_wal_stays_bounded_under_steady_load(tmp_path: Path) -> None:
    """Writers and readers never stop, yet each checkpoint brings the WAL back to (near) zero."""
    path = tmp_path / "s.db"
    store = SqliteStore(path)
    await store.open()
    wal = path.with_name(path.name + "-wal")
    pad = {"pad": "x" * 2000}
    sizes: list[int] = []
    after: list[int] = []
    stop = asyncio.Event()

    async def writer(user: str) -> None:
        while not stop.is_set():
            job, _ = await store.enqueue(NewJob(type="t", user_id=user, payload=pad))
            await store.cancel(job.id, None)

    async def reader() -> None:
        while not stop.is_set():
            await store.list_jobs("w0", None, 20, 0)
            await store.events_after(0, user_id="w1", limit=50)

    tasks = [asyncio.create_task(writer(f"w{i}")) for i in range(4)]
    tasks.append(asyncio.create_task(reader()))
    try:
        for _ in range(6):
            await asyncio.sleep(0.4)
            sizes.append(wal.stat().st_size)
            after.append(await store.checkpoint())
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await store.close()
    assert max(sizes) > 100_000, sizes  # the load really wrote to the WAL
    # Truncated (0) unless a reader was mid-query; then bounded by what one interval writes.
    assert min(after) == 0 and max(after) <= max(sizes), (sizes, after)
    assert not wal.exists() or wal.stat().st_size == 0




async def test_payload_named_reads_the_index_its_key_s_plugin_declares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``payload_named`` (a refused upload's question) looks its values up in
    ``jobs_payload_sha256``, made for the PDF plugin's ``payload_index``: no scan of the jobs."""
    path = tmp_path / "s.db"
    store = SqliteStore(path, storage=["jobserver.pdf.storage"])
    await store.open()
    asked: list[tuple[str, tuple[object, ...]]] = []
    read = store._reads.read

    async def recorded(sql: str, params: Any = ()) -> list[Any]:
        asked.append((sql, tuple(params)))
        return await read(sql, params)

    try:
        for n in range(3):
            await store.enqueue(NewJob(type="t", user_id="u", payload={"sha256": f"s{n}"}))
        monkeypatch.setattr(store._reads, "read", recorded)
        assert await store.payload_named("sha256", ["s1", "nope"]) == {"s1"}
    finally:
        await store.close()
    [(sql, params)] = asked
    with sqlite3.connect(path) as conn:
        plan = " ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    assert plan.startswith("SEARCH jobs USING") and "INDEX jobs_payload_sha256" in plan, plan
