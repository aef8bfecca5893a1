"""The command line as people type it: flags given before a subcommand (``server.py --data-dir
X user add NAME``) count, as `--help` lists them first; a port that is taken is one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.liveserver import ROOT, SECRET, LiveServer, call
from tests.security.helpers import run_cli


def _sign_in(live: LiveServer, user: str, password: str) -> int:
    return call(live, "POST", "/api/session", None, {"userId": user, "password": password})[0]


def test_data_dir_before_user_add_is_the_one_the_server_uses(tmp_path: Path) -> None:
    data = tmp_path / "data"
    elsewhere = tmp_path / "cwd"  # ./data, where the flag used to be ignored for
    elsewhere.mkdir()
    done = subprocess.run(
        [sys.executable, str(ROOT / "server.py"), "--data-dir", str(data), "user", "add", "dora"],
        input="correct horse battery\n", text=True, capture_output=True, timeout=60,
        cwd=elsewhere, env={**os.environ, "JOBSERVER_SECRET": SECRET},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not (elsewhere / "data").exists()
    live = LiveServer(data).start()
    try:
        assert _sign_in(live, "dora", "correct horse battery") == 200
    finally:
        live.stop()


def test_port_and_data_dir_before_serve_are_kept(tmp_path: Path) -> None:
    # LiveServer puts --port and --data-dir first; "serve" after them must not undo them.
    live = LiveServer(tmp_path / "data", "serve")
    try:
        live.start(timeout=30)
        assert (tmp_path / "data" / "jobserver.db").exists()
    finally:
        live.stop()


def test_a_port_in_use_is_one_line_and_the_process_exits(tmp_path: Path) -> None:
    """It was a traceback, and the process then hung on the workers it had started."""
    live = LiveServer(tmp_path / "a").start()
    try:
        done = run_cli(tmp_path / "b", "--port", str(live.port), "--log-level", "WARNING")
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        assert done.stderr.strip().splitlines() == [
            f"error: cannot listen on 127.0.0.1:{live.port}: the port is in use "
            "(another server there? choose another --port) (CANNOT_LISTEN)"
        ]
        assert _sign_in(live, "nobody", "x") == 403  # the first server goes on
    finally:
        live.stop()


def test_a_bad_environment_variable_is_named_in_its_one_line(tmp_path: Path) -> None:
    """JOBSERVER_PORT=abc said only "invalid literal for int() with base 10: 'abc'"."""
    done = run_cli(tmp_path / "d", env={"JOBSERVER_PORT": "abc"})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: JOBSERVER_PORT='abc': not a whole number (INVALID_SETTING)"]


def _user_cli(data: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return run_cli(data, "user", *args, stdin=stdin, env={"JOBSERVER_SECRET": SECRET})


def test_each_refused_user_command_is_one_line_with_a_code(tmp_path: Path) -> None:
    """`server.py token` ended its error with the code; `server.py user` gave none."""
    data = tmp_path / "data"
    assert _user_cli(data, "add", "dora", stdin="correct horse battery\n").returncode == 0
    live = LiveServer(data).start()
    try:
        assert _sign_in(live, "dora", "correct horse battery") == 200
        running = _user_cli(data, "merge", "dora", "dot")
        assert running.returncode == 1
        assert running.stderr.strip().endswith("(SERVER_RUNNING)"), running.stderr
    finally:
        live.stop()
    cases = [
        (("add", "dora"), "correct horse battery\n", "ACCOUNT_EXISTS"),
        (("add", "Bad Name"), "correct horse battery\n", "INVALID_PAYLOAD"),
        (("add", "eve"), "short\n", "INVALID_PAYLOAD"),
        (("passwd", "nobody"), "correct horse battery\n", "NO_SUCH_ACCOUNT"),
        (("remove", "nobody"), "", "NO_SUCH_ACCOUNT"),
        (("merge", "dora", "dora"), "", "SAME_USER"),
        (("merge", "nobody", "dora"), "", "NO_USER_DATA"),
    ]
    for args, stdin, code in cases:
        done = _user_cli(data, *args, stdin=stdin)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1, (args, done.stderr)
        assert lines[0].startswith("error: ") and lines[0].endswith(f"({code})"), (args, lines)
    assert _user_cli(tmp_path / "empty", "merge", "a", "b").stderr.strip().endswith(
        "(NO_JOB_STORE)")


def test_a_database_url_that_is_not_postgresql_is_one_line_not_a_traceback(
    tmp_path: Path,
) -> None:
    """JOBSERVER_DATABASE_URL=notaurl ended start-up with asyncpg's ClientConfigurationError
    traceback (and migrate-to-postgres likewise)."""
    for command in ([], ["migrate-to-postgres"]):
        done = run_cli(tmp_path / "d", *command,
                       env={"JOBSERVER_DATABASE_URL": "mysql://user:pw@host/db"})
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines() == [
            "error: JOBSERVER_DATABASE_URL must be a postgresql:// URL (INVALID_SETTING)"
        ], done.stderr


def test_a_refused_migration_is_one_line_with_a_code(tmp_path: Path) -> None:
    """migrate-to-postgres said its refusals without a code, unlike `token` and `user`."""
    for env, code in (({}, "NO_DATABASE_URL"),
                      ({"JOBSERVER_DATABASE_URL": "postgresql://127.0.0.1:1/x"},
                       "NO_JOB_STORE")):  # fmt: skip
        done = run_cli(tmp_path / "none", "migrate-to-postgres", env=env)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1, done.stderr
        assert lines[0].startswith("error: ") and lines[0].endswith(f"({code})"), lines
