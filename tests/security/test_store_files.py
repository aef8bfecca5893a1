"""The store's files (issue 13, findings 2 and 8): an empty or damaged database, a read-only
data folder, private modes, and a writer that cannot be started for a while."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from jobserver.errors import DatabaseDamaged, ServiceUnavailable
from jobserver.store import NewJob, sqlite_link
from jobserver.store.sqlite import SqliteStore
from tests.liveserver import ROOT, SECRET, LiveServer, make_pdf


def run_server(data_dir: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``server.py`` on a data folder it must refuse: it exits by itself."""
    return subprocess.run(
        [sys.executable, str(ROOT / "server.py"), "--data-dir", str(data_dir), "--port", "0"],
        cwd=ROOT, env={**os.environ, "JOBSERVER_SECRET": SECRET},
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The refusal: exit code 1 and one line on stderr, no traceback."""
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_an_empty_database_file_refuses_to_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "jobserver.db").write_bytes(b"")
    line = one_line(run_server(data))
    assert line.startswith("error: the database") and "is empty (0 bytes)" in line
    assert (data / "jobserver.db").stat().st_size == 0  # not made into a new, empty log


def corrupt_a_page(path: Path) -> None:
    """Garbage over one page of the jobs table, as a bad disk sector leaves it."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        leaves = [r[0] for r in conn.execute(
            "SELECT pageno FROM dbstat WHERE name='jobs' AND pagetype='leaf' ORDER BY pageno")]
    assert len(leaves) > 5
    with path.open("r+b") as f:
        f.seek(size * (leaves[len(leaves) // 2] - 1) + 16)
        f.write(os.urandom(size - 32))


def test_a_damaged_database_after_an_unclean_stop_refuses_to_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = LiveServer(data, "--demo-jobs").start()
    token = server.token("alice")
    body = b'{"type": "demo.sleep", "delaySeconds": 3600, "payload": {"note": "%s"}}'
    try:
        for i in range(300):
            request = urllib.request.Request(
                server.url + "/api/jobs", data=body % (b"x" * 200 + str(i).encode()),
                headers={"Authorization": f"Bearer {token}"}, method="POST",
            )  # fmt: skip
            with urllib.request.urlopen(request, timeout=10) as resp:
                assert resp.status == 202
    finally:
        server.kill()  # unclean: the file is checked at the next start
    wait_unlocked(data)
    corrupt_a_page(data / "jobserver.db")
    line = one_line(run_server(data))
    assert line.startswith("error: the database") and "is damaged" in line, line
    assert line.endswith("(DATABASE_DAMAGED)"), line


def wait_unlocked(data: Path) -> None:
    """The killed server's writer lets go of the file once it has read end-of-file."""
    deadline = time.monotonic() + 20
    with (data / "jobserver.lock").open("rb") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(lock, fcntl.LOCK_UN)
                return
            except BlockingIOError:
                assert time.monotonic() < deadline, "the old writer still holds the file"
                time.sleep(0.05)


async def test_reads_of_a_damaged_file_answer_503_with_a_code_and_the_store_says_why(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    store = SqliteStore(path)
    await store.open()
    for i in range(300):
        await store.enqueue(NewJob(type="t", user_id="u1", payload={"pad": "x" * 200, "i": i}))
    await store.close()
    corrupt_a_page(path)
    store = SqliteStore(path, check_seconds=0)  # as after a clean stop: not checked
    await store.open()
    try:
        with pytest.raises(DatabaseDamaged) as caught:
            await store.list_jobs("u1", None, 500, 0)
        assert caught.value.status == 503 and caught.value.code == "DATABASE_DAMAGED"
        assert store.problem is not None and "damaged" in store.problem
    finally:
        await store.close()


@contextlib.contextmanager
def read_only_mount(source: Path | None = None) -> Iterator[Path]:
    """A read-only folder even for root: a read-only tmpfs, or ``source`` bound read-only."""
    target = Path(tempfile.mkdtemp(prefix="jobserver-ro-"))
    if source is None:
        cmds = [["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(target)]]
    else:
        cmds = [["mount", "--bind", str(source), str(target)],
                ["mount", "-o", "remount,ro,bind", str(target)]]  # fmt: skip
    if os.geteuid() != 0:
        pytest.skip("a read-only mount needs root (CI runs as root)")
    try:
        for cmd in cmds:
            subprocess.run(cmd, check=True, capture_output=True, timeout=30)
        yield target
    finally:
        subprocess.run(["umount", str(target)], capture_output=True, timeout=30)
        target.rmdir()


def test_a_read_only_data_folder_gives_one_clear_line(tmp_path: Path) -> None:
    with read_only_mount() as empty:
        line = one_line(run_server(empty))
    assert line.startswith(f"error: cannot write to the data folder {empty}"), line
    assert "Read-only file system" in line and line.endswith("(DATA_DIR_UNUSABLE)"), line
    # A data folder with a database in it, whose volume became read-only.
    data = tmp_path / "data"
    server = LiveServer(data).start()
    assert server.terminate() == 0
    with read_only_mount(data) as frozen:
        line = one_line(run_server(frozen))
    assert line.startswith(f"error: cannot write to the data folder {frozen}"), line


async def test_files_and_folders_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = LiveServer(data, env={"JOBSERVER_SECRET": ""}).start()  # the secret made on disk
    try:
        pdf = make_pdf(tmp_path / "a.pdf", "Private files")
        async with aiohttp.ClientSession() as session:
            form = aiohttp.FormData()
            form.add_field("file", pdf.read_bytes(), filename="a.pdf",
                           content_type="application/pdf")  # fmt: skip
            headers = {"Authorization": f"Bearer {server.token('alice')}"}
            async with session.post(f"{server.url}/api/jobs", data=form, headers=headers) as r:
                assert r.status == 202, await r.text()
                sha = (await r.json())["payload"]["sha256"]
        files = ["jobserver.db", "jobserver.db-wal", "jobserver.db-shm", "jobserver.lock",
                 "secret.key", f"uploads/{sha}.pdf"]  # fmt: skip
        modes = {name: stat.S_IMODE((data / name).stat().st_mode) for name in files}
        assert modes == dict.fromkeys(files, 0o600)
        for folder in (data, data / "uploads"):
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    finally:
        server.stop()


async def test_writes_fail_at_once_while_no_writer_starts_and_work_again_once_one_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store never gives up: today's gave up after 5 failed starts, for good."""
    monkeypatch.setattr(sqlite_link, "RESTART_MAX_PAUSE_SECONDS", 0.2)
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    try:
        executable = sys.executable
        monkeypatch.setattr(sys, "executable", "/nonexistent/python")  # e.g. a venv rebuilt
        pid = store.writer_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        async with asyncio.timeout(10):  # failed at once, not queued behind the restarts
            while store.problem is None or "no writer" not in store.problem:
                await asyncio.sleep(0.05)
            while True:
                try:
                    await store.enqueue(NewJob(type="t", user_id="u1"))
                except ServiceUnavailable:
                    break
                await asyncio.sleep(0.05)
        await asyncio.sleep(3)  # far more failed starts than the 5 after which it gave up
        monkeypatch.setattr(sys, "executable", executable)  # the cause is mended
        async with asyncio.timeout(10):
            while True:
                with contextlib.suppress(ServiceUnavailable):
                    _, [event] = await store.enqueue(NewJob(type="t", user_id="u1"))
                    break
                await asyncio.sleep(0.05)
        assert store.problem is None and store.writer_restarts == 1
        assert [e.seq for e in await store.events_after(0)] == list(range(1, event.seq + 1))
    finally:
        await store.close()
