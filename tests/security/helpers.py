"""Running ``server.py`` as a process for the sign-in tests, with or without a secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.liveserver import ROOT

START_TIMEOUT = 60


def run_cli(data_dir: Path, *args: str, stdin: str = "", env: dict[str, str] | None = None,
            timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """``python server.py ARGS`` to completion (a command, or a server that refuses to start)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("JOBSERVER_")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, str(ROOT / "server.py"), *args, "--data-dir", str(data_dir)],
        input=stdin, capture_output=True, text=True, cwd=ROOT, env=environ, timeout=timeout,
    )  # fmt: skip


def add_account(data_dir: Path, name: str, password: str) -> None:
    done = run_cli(data_dir, "user", "add", name, stdin=password + "\n")
    assert done.returncode == 0, done.stderr
