"""The command-line client, run as a user would (``python server.py submit``), on a real server."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.liveserver import ROOT, SECRET, LiveServer, LlmGate, make_corrupt_pdf, make_pdf


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("cli") / "data").start()
    yield live
    live.stop()


def submit(*args: str, env: dict[str, str] | None = None,
           timeout: float = 90) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(
        [sys.executable, str(ROOT / "server.py"), "submit", *args],
        cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def _user() -> str:
    return f"cli-{uuid.uuid4().hex[:8]}"


def test_submit_uploads_follows_and_prints_where_the_notes_are(
    server: LiveServer, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex
    a = make_pdf(tmp_path / "alpha.pdf", "Alpha Report", tag=tag)
    b = make_pdf(tmp_path / "beta.pdf", "Beta Report", pages=2, tag=tag)
    user = _user()
    done = submit(str(a), str(b), "--server", server.url, "--user", user)
    assert done.returncode == 0, done.stderr
    token = server.token(user)
    for name, title in (("alpha.pdf", "Alpha Report"), ("beta.pdf", "Beta Report")):
        ready = [line for line in done.stdout.splitlines() if line.startswith(f"{name}: notes")]
        assert len(ready) == 1, done.stdout
        note_id = ready[0].rsplit("#notes/", 1)[1]
        assert ready[0] == f"{name}: notes ready: {server.url}/#notes/{note_id}"
        assert f"{name}: Markdown: {server.url}/api/notes/{note_id}/markdown" in done.stdout
        note = server.get(f"/api/notes/{note_id}", token)
        assert note["title"] == title and note["filename"] == name
    # Not a terminal: the bars are drawn once, finished, on stderr.
    assert "Completed" in done.stderr and "100%" in done.stderr


def test_submit_json_prints_each_event_once_in_order(server: LiveServer, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "events.pdf", "Event Stream", tag=uuid.uuid4().hex)
    done = submit(str(pdf), "--json", "--server", server.url, "--user", _user())
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(events) == len([line for line in lines if line.strip()]) - 2  # + the 2 result lines
    assert events[0]["type"] == "job.queued"
    assert events[-1]["type"] == "job.completed"
    assert {e["jobId"] for e in events} == {events[0]["jobId"]}
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs)), f"repeated or out of order: {seqs}"
    stages = [e["stage"] for e in events]
    assert "extracting" in stages and "generating" in stages and "saving" in stages
    assert events[-1]["result"]["noteId"]


def test_submit_failed_job_exits_nonzero_with_code_and_message(
    server: LiveServer, tmp_path: Path
) -> None:
    broken = make_corrupt_pdf(tmp_path / "broken.pdf", uuid.uuid4().hex)
    good = make_pdf(tmp_path / "fine.pdf", "Fine Document", tag=uuid.uuid4().hex)
    user = _user()
    done = submit(str(broken), str(good), "--server", server.url, "--user", user)
    assert done.returncode == 1, (done.stdout, done.stderr)
    jobs = server.get("/api/jobs", server.token(user))["jobs"]
    failed = next(j for j in jobs if j["payload"]["filename"] == "broken.pdf")
    assert failed["status"] == "failed" and failed["error"]["code"] == "CORRUPT_PDF"
    assert f"broken.pdf: CORRUPT_PDF: {failed['error']['message']}" in done.stderr
    assert "fine.pdf: notes ready" in done.stdout  # the other file still went through


def test_submit_with_a_token_from_the_environment(server: LiveServer, tmp_path: Path) -> None:
    user = _user()
    token = subprocess.run(
        [sys.executable, str(ROOT / "server.py"), "token", user, "--data-dir", str(tmp_path)],
        cwd=ROOT, env={**os.environ, "JOBSERVER_SECRET": SECRET}, capture_output=True,
        text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    pdf = make_pdf(tmp_path / "env.pdf", "Configured By Environment", tag=uuid.uuid4().hex)
    done = submit(str(pdf), env={"JOBSERVER_URL": server.url, "JOBSERVER_TOKEN": token})
    assert done.returncode == 0, done.stderr
    jobs = server.get("/api/jobs", token)["jobs"]
    assert [j["payload"]["filename"] for j in jobs] == ["env.pdf"]
    assert jobs[0]["userId"] == user


def test_token_for_a_bad_name_is_one_line_with_its_code_not_a_traceback(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "server.py"), "token", "no spaces!",
         "--data-dir", str(tmp_path)],
        cwd=ROOT, env={**os.environ, "JOBSERVER_SECRET": SECRET}, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and not done.stdout, (done.stdout, done.stderr)
    assert done.stderr.startswith("error: userId must be") and "(INVALID_PAYLOAD)" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_installed_command_names_itself_in_its_usage() -> None:
    """`jobserver --help` (pip's script) said "usage: server.py", a file the user may not have."""
    script = Path(sys.executable).parent / "jobserver"
    for argv, name in (([str(script)], "jobserver"), ([sys.executable, "server.py"], "server.py")):
        done = subprocess.run([*argv, "submit", "--help"], cwd=ROOT, capture_output=True,
                              text=True, check=True, timeout=60)  # fmt: skip
        assert done.stdout.startswith(f"usage: {name} submit "), done.stdout


def test_submit_usage_and_unreachable_server(server: LiveServer, tmp_path: Path) -> None:
    missing = submit(str(tmp_path / "nope.pdf"), "--server", server.url, "--user", _user())
    assert missing.returncode == 2 and "no such file" in missing.stderr
    pdf = make_pdf(tmp_path / "x.pdf", "Nobody Home")
    nobody = submit(str(pdf), "--user", "x", env={"JOBSERVER_URL": "http://127.0.0.1:9"})
    assert nobody.returncode == 3 and "NETWORK" in nobody.stderr, nobody.stderr
    bad_user = submit(str(pdf), "--server", server.url, "--user", "no spaces allowed")
    assert bad_user.returncode == 2 and "INVALID_PAYLOAD" in bad_user.stderr
    not_pdf = tmp_path / "notes.txt"
    not_pdf.write_text("plain text, not a PDF " * 20)
    rejected = submit(str(not_pdf), "--server", server.url, "--user", _user())
    assert rejected.returncode == 1 and "notes.txt: NOT_A_PDF:" in rejected.stderr


def test_submit_in_a_terminal_shows_a_live_bar_with_the_stage(tmp_path: Path) -> None:
    """In a terminal the bar is redrawn as the job moves: held at "generating", it shows it."""
    gate = LlmGate()
    live = LiveServer(tmp_path / "data", "--llm-url", gate.url).start()
    try:
        gate.hold()
        pdf = make_pdf(tmp_path / "tty.pdf", "Terminal Progress", tag=uuid.uuid4().hex)
        primary, secondary = pty.openpty()
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"}
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "server.py"), "submit", str(pdf),
             "--server", live.url, "--user", _user()],
            cwd=ROOT, env=env, stdin=secondary, stdout=secondary, stderr=secondary,
        )  # fmt: skip
        os.close(secondary)
        screen = b""
        deadline = time.monotonic() + 60
        released = False
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(primary, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                screen += chunk
            if not released and b"Generating notes" in screen:
                gate.release()  # seen live, mid-job: let it finish
                released = True
        assert proc.wait(30) == 0, screen.decode(errors="replace")[-2000:]
        text = screen.decode(errors="replace")
        assert released, f"the bar never showed the held stage:\n{text[-2000:]}"
        assert "\x1b[" in text, "no terminal redraws: not a live bar"
        assert "tty.pdf: notes ready" in text
        os.close(primary)
    finally:
        gate.close()
        live.stop()


def test_markdown_link_printed_by_submit_downloads(server: LiveServer, tmp_path: Path) -> None:
    user = _user()
    pdf = make_pdf(tmp_path / "md.pdf", "Markdown Please", tag=uuid.uuid4().hex)
    done = submit(str(pdf), "--server", server.url, "--user", user)
    assert done.returncode == 0, done.stderr
    url = next(line.split(": Markdown: ")[1] for line in done.stdout.splitlines()
               if ": Markdown: " in line)  # fmt: skip
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {server.token(user)}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/markdown")
        assert resp.read().decode().startswith("# Markdown Please")
