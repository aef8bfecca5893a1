"""Issue 13, item 1: stored users whose ids would merge are reported, and merged on request."""

from __future__ import annotations

import asyncio
from pathlib import Path

from jobserver.store.sqlite import SqliteStore
from tests.liveserver import LiveServer
from tests.security.helpers import run_cli, seed_spellings


async def _seed(db: Path) -> None:
    await seed_spellings(SqliteStore(db))


def test_ids_that_would_merge_are_reported_and_merged_by_the_admin(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    asyncio.run(_seed(data / "jobserver.db"))
    live = LiveServer(data, "--demo-jobs").start()
    try:
        token = live.token("ALICE")
        assert len(live.get("/api/jobs", token)["jobs"]) == 1  # only alice's own, for now
        merge = run_cli(data, "user", "merge", "ALICE", "alice")
        assert merge.returncode == 1 and "stop it first" in merge.stderr  # nothing changed
    finally:
        live.stop()
    log = live.log.read_text()
    assert "'ALICE', 'Alice'" in log and "user merge" in log
    assert "no jobs or notes" in run_cli(data, "user", "merge", "nobody", "alice").stderr
    taken = run_cli(data, "user", "rename", "Alice", "alice")
    assert taken.returncode == 1 and "merge" in taken.stderr
    for old in ("ALICE", "Alice"):
        done = run_cli(data, "user", "merge", old, "alice")
        assert done.returncode == 0, done.stderr
        assert "jobs" in done.stdout and "events" in done.stdout
    assert "stored users to merge" not in run_cli(data, "user", "list").stdout
    live = LiveServer(data, "--demo-jobs").start()
    try:
        token = live.token("alice")
        jobs = live.get("/api/jobs", token)["jobs"]
        assert len(jobs) == 4 and {j["userId"] for j in jobs} == {"alice"}
        events = live.get("/api/events?since=0&timeout=0", token)["events"]
        assert len(events) == 4 and {e["userId"] for e in events} == {"alice"}
    finally:
        live.stop()
    assert "user merge" not in live.log.read_text()


def test_rename_keeps_a_stored_user_apart_under_a_new_id(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    asyncio.run(_seed(data / "jobserver.db"))
    done = run_cli(data, "user", "rename", "ALICE", "alice.old")
    assert done.returncode == 0, done.stderr
    live = LiveServer(data, "--demo-jobs").start()
    try:
        assert len(live.get("/api/jobs", live.token("alice.old"))["jobs"]) == 2
        assert len(live.get("/api/jobs", live.token("alice"))["jobs"]) == 1
    finally:
        live.stop()
