"""Stored user ids on PostgreSQL: reported at a node's start, merged or renamed by
``server.py user merge|rename`` once every node of the schema is stopped (issue 17: what
SQLite's data dir can do, the shared schema can do too)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest

from jobserver import pguserdata
from jobserver.pdf.pg_uploads import PgUploads
from jobserver.store.pg_schema import LIVE_SPACE
from jobserver.store.postgres import PostgresStore
from tests.conftest import PG_URL
from tests.pgcluster import make_node, schema
from tests.security.helpers import run_cli, seed_spellings

__all__ = ["schema"]  # the fixture: a schema of its own, dropped afterwards


async def _seed(name: str) -> None:
    await seed_spellings(PostgresStore(PG_URL, node_id=f"{name}-seed", schema=name))


def _env(name: str) -> dict[str, str]:
    return {"JOBSERVER_DATABASE_URL": PG_URL, "JOBSERVER_DATABASE_SCHEMA": name}


def test_ids_that_would_merge_are_reported_and_merged_on_postgres(
    tmp_path: Path, schema: str
) -> None:
    asyncio.run(_seed(schema))
    data = tmp_path / "cli"
    data.mkdir()
    node = make_node(tmp_path, schema, "a", "--demo-jobs", jobs=None).start()
    try:
        assert len(node.get("/api/jobs", node.token("ALICE"))["jobs"]) == 1  # alice's own
        merge = run_cli(data, "user", "merge", "ALICE", "alice", env=_env(schema))
        assert merge.returncode == 1 and "stop every node" in merge.stderr, merge.stderr
    finally:
        node.stop()
    log = node.log.read_text()
    assert "'ALICE', 'Alice'" in log and "user merge" in log
    listed = run_cli(data, "user", "list", env=_env(schema))
    assert "stored users to merge into alice: ALICE, Alice" in listed.stdout, listed.stderr
    nobody = run_cli(data, "user", "merge", "nobody", "alice", env=_env(schema))
    assert nobody.returncode == 1 and "no jobs or notes" in nobody.stderr
    taken = run_cli(data, "user", "rename", "Alice", "alice", env=_env(schema))
    assert taken.returncode == 1 and "merge" in taken.stderr
    for old in ("ALICE", "Alice"):
        done = run_cli(data, "user", "merge", old, "alice", env=_env(schema))
        assert done.returncode == 0, done.stderr
        assert "jobs" in done.stdout and "events" in done.stdout
    assert "stored users to merge" not in run_cli(data, "user", "list", env=_env(schema)).stdout
    node = make_node(tmp_path, schema, "b", "--demo-jobs", jobs=None).start()
    try:
        token = node.token("alice")
        jobs = node.get("/api/jobs", token)["jobs"]
        assert len(jobs) == 4 and {j["userId"] for j in jobs} == {"alice"}
        # Two of them shared the key k1: ALICE's job kept its job, not the key.
        assert sorted(str(j.get("idempotencyKey")) for j in jobs).count("k1") <= 1
        events = node.get("/api/events?since=0&timeout=0", token)["events"]
        assert len(events) == 4 and {e["userId"] for e in events} == {"alice"}
    finally:
        node.stop()
    assert "user merge" not in node.log.read_text()


def test_rename_keeps_a_stored_user_apart_on_postgres(
    tmp_path: Path, schema: str
) -> None:
    asyncio.run(_seed(schema))
    data = tmp_path / "cli"
    data.mkdir()
    done = run_cli(data, "user", "rename", "ALICE", "alice.old", env=_env(schema))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("renamed 'ALICE' to 'alice.old': "), done.stdout
    node = make_node(tmp_path, schema, "a", "--demo-jobs", jobs=None).start()
    try:
        assert len(node.get("/api/jobs", node.token("alice.old"))["jobs"]) == 2
        assert len(node.get("/api/jobs", node.token("alice"))["jobs"]) == 1
    finally:
        node.stop()


def test_no_node_starts_while_a_move_holds_the_schema(
    tmp_path: Path, schema: str
) -> None:
    with psycopg.connect(PG_URL, autocommit=True) as held:
        held.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (LIVE_SPACE, schema))
        node = make_node(tmp_path, schema, "a", "--demo-jobs", jobs=None)
        with pytest.raises(RuntimeError):
            node.start(timeout=20)
        assert "user merge or rename" in node.log.read_text()
    node = make_node(tmp_path, schema, "b", "--demo-jobs", jobs=None).start()
    node.stop()


async def test_a_merge_of_two_owners_of_one_upload_keeps_it_owned_once(
    tmp_path: Path, schema: str
) -> None:
    """Two spellings that uploaded the same PDF each own it (``upload_owners``, keyed by
    the file and the user): merging them leaves the new id owning it once, and the old
    id's other uploads moved, instead of the merge failing on the table's key."""
    await _seed(schema)
    uploads = PgUploads(PG_URL, schema, tmp_path / "uploads")
    await uploads.open()
    both, own = "a" * 64, "b" * 64
    try:
        for sha256, user in ((both, "alice"), (both, "ALICE"), (own, "ALICE")):
            await uploads.add_owner(sha256, user)
        moved = await pguserdata.move_user(PG_URL, schema, "ALICE", "alice", rename=False)
        assert moved["jobs"] == 2
        assert await uploads.owns(both, "alice") and await uploads.owns(own, "alice")
        assert not await uploads.owns(both, "ALICE") and not await uploads.owns(own, "ALICE")
    finally:
        await uploads.close()
