"""``server.py migrate-to-postgres`` (issue 17): a SQLite data dir moved into PostgreSQL, then
served by a node there: the same jobs, seqs and epoch, notes, accounts, sessions and uploads."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import jwt
import psycopg
import pytest

from jobserver.auth import issue_token
from jobserver.authdb import AuthDb
from jobserver.passwords import hash_password
from jobserver.pdf import storage
from jobserver.pdf.notes import Note, NotesContent
from jobserver.pdf.owners import add_owner
from jobserver.store import NewJob
from jobserver.store.sqlite import SqliteStore
from tests.conftest import PG_URL
from tests.liveserver import ROOT, SECRET, LiveServer
from tests.pdfs import text_pdf
from tests.pgcluster import schema
from tests.test_pg_shared import call

pytestmark = pytest.mark.timeout(120)

__all__ = ["schema"]  # the fixture: a schema of its own, dropped afterwards




def move(data_dir: Path, schema: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JOBSERVER_DATABASE_URL": PG_URL, "JOBSERVER_DATABASE_SCHEMA": schema}
    return subprocess.run(
        [sys.executable, str(ROOT / "server.py"), "migrate-to-postgres", "--data-dir",
         str(data_dir), *args],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


async def sqlite_data_dir(data_dir: Path, pdf: bytes) -> dict[str, object]:
    """A data dir as a SQLite server leaves it: a finished job with a note, a queued one, a
    cached note, an upload and its owner, an account, a live and a signed-out session."""
    store = SqliteStore(data_dir / "jobserver.db", storage=[storage.__name__])
    await store.open()
    try:
        sha = hashlib.sha256(pdf).hexdigest()
        payload = {"sha256": sha, "size": len(pdf)}
        done, _ = await store.enqueue(NewJob(type="pdf-notes", user_id="ada", payload=payload))
        [(claimed, _)] = await store.claim(1, 30)
        await store.complete(claimed.id, str(claimed.lease_token), {"noteId": claimed.id})
        queued, _ = await store.enqueue(NewJob(type="pdf-notes", user_id="ada",
                                               payload={"sha256": sha}, delay_seconds=3600))
        content = NotesContent(title="Moved", summary="It moved.", key_points=(),
                               page_count=1, generator="offline")  # fmt: skip
        await storage.save_note(store, Note(id=done.id, user_id="ada", job_id=done.id,
                                            content_hash=sha, filename="moved.pdf",
                                            content=content))  # fmt: skip
        await storage.cache_notes(store, sha, content)
        epoch = store.epoch
        seqs = [e.seq for e in await store.events_after(0)]
    finally:
        await store.close()
    (data_dir / "uploads").mkdir(exist_ok=True)
    (data_dir / "uploads" / f"{sha}.pdf").write_bytes(pdf)
    add_owner(data_dir, sha, "ada")
    db = AuthDb(data_dir)
    try:
        db.add_account("ada", hash_password("correct horse battery"))
        kept = db.start_session("ada", "password", time.time() + 3600)
        ended = db.start_session("ada", "password", time.time() + 3600)
        db.revoke_session(ended.id)
    finally:
        db.close()
    return {"sha": sha, "epoch": epoch, "seqs": seqs, "done": done.id, "queued": queued.id,
            "kept": kept.id, "ended": ended.id}  # fmt: skip


async def test_a_sqlite_data_dir_moves_into_postgresql_and_a_node_serves_it(
    tmp_path: Path, schema: str,
) -> None:
    data_dir = tmp_path / "old"
    pdf = text_pdf(pages=1, title="Moving Day")
    old = await sqlite_data_dir(data_dir, pdf)
    moved = move(data_dir, schema)
    assert moved.returncode == 0, moved.stderr
    assert "jobs: 2 row(s)" in moved.stdout and "uploads: 1" in moved.stdout, moved.stdout

    with psycopg.connect(PG_URL, options=f"-c search_path={schema}") as conn:
        seqs = [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq")]
        epoch = conn.execute("SELECT value FROM meta WHERE key='epoch'").fetchone()
        chunks = b"".join(r[0] for r in conn.execute(
            "SELECT data FROM upload_chunks WHERE sha256=%s ORDER BY n", (old["sha"],)))
        owners = conn.execute("SELECT user_id FROM upload_owners").fetchall()
        cached = conn.execute("SELECT count(*) FROM notes_cache").fetchone()
    assert seqs == old["seqs"] and epoch == (old["epoch"],)
    assert chunks == pdf and owners == [("ada",)] and cached == (1,)
    assert (data_dir / "uploads" / f"{old['sha']}.pdf").exists()  # a copy: the dir is kept

    again = move(data_dir, schema)
    assert again.returncode == 1 and "has data already" in again.stderr, again.stderr
    replaced = move(data_dir, schema, "--replace")
    assert replaced.returncode == 0, replaced.stderr
    with psycopg.connect(PG_URL, options=f"-c search_path={schema}") as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (2,)

    # A node on the schema, with the secret the SQLite server had.
    node = LiveServer(tmp_path / "node", env={
        "JOBSERVER_DATABASE_URL": PG_URL, "JOBSERVER_DATABASE_SCHEMA": schema,
        "JOBSERVER_SECRET": SECRET,
    }).start()  # fmt: skip
    try:
        kept = issue_token(SECRET, "ada", 600, sid=str(old["kept"]))
        ended = issue_token(SECRET, "ada", 600, sid=str(old["ended"]))
        status, jobs = call(node, "GET", "/api/jobs", kept)
        assert status == 200 and {j["jobId"] for j in jobs["jobs"]} == {old["done"], old["queued"]}
        status, refused = call(node, "GET", "/api/jobs", ended)
        assert status == 401 and refused["error"]["code"] == "TOKEN_REVOKED"
        status, events = call(node, "GET", f"/api/events?since=0&epoch={old['epoch']}", kept)
        assert status == 200 and [e["seq"] for e in events["events"]] == old["seqs"], events
        status, note = call(node, "GET", f"/api/notes/{old['done']}", kept)
        assert status == 200 and note["filename"] == "moved.pdf"
        status, signed_in = call(node, "POST", "/api/session",
                                 body={"userId": "ada", "password": "correct horse battery"})
        assert status == 200, signed_in
        status, job = call(node, "POST", "/api/jobs", signed_in["token"],
                           {"type": "pdf-notes", "payload": {"sha256": old["sha"]}})
        assert status == 202, job  # the moved owner record: ada may name her upload
    finally:
        node.stop()


def test_moving_needs_a_database_url(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "JOBSERVER_DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "server.py"), "migrate-to-postgres", "--data-dir",
         str(tmp_path)], env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and "JOBSERVER_DATABASE_URL" in done.stderr


def test_the_user_commands_work_on_the_database(tmp_path: Path, schema: str) -> None:
    env = {**os.environ, "JOBSERVER_DATABASE_URL": PG_URL, "JOBSERVER_DATABASE_SCHEMA": schema}

    def user(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(ROOT / "server.py"), "user", *args, "--data-dir",
             str(tmp_path / "node")], input=stdin, env=env, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip

    added = user("add", "bea", stdin="a long enough password\n")
    assert added.returncode == 0, added.stderr
    listed = user("list")
    assert listed.returncode == 0 and listed.stdout.startswith("bea\t"), listed.stdout
    assert user("add", "bea", stdin="another password here\n").returncode == 1
    with psycopg.connect(PG_URL, options=f"-c search_path={schema}") as conn:
        assert conn.execute("SELECT user_id FROM accounts").fetchall() == [("bea",)]
    assert not (tmp_path / "node" / "auth.db").exists()  # nothing of it in the data dir
    token = subprocess.run(
        [sys.executable, str(ROOT / "server.py"), "token", "bea", "--data-dir",
         str(tmp_path / "node")], env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert token.returncode == 0, token.stderr
    with psycopg.connect(PG_URL, options=f"-c search_path={schema}") as conn:
        row = conn.execute("SELECT value FROM meta WHERE key='token_secret'").fetchone()
    assert row is not None  # signed with the secret every node reads from the database
    assert jwt.decode(token.stdout.strip(), row[0], algorithms=["HS256"])["sub"] == "bea"
    assert not (tmp_path / "node" / "secret.key").exists()
