"""Running ``server.py`` as a process for the sign-in tests, with or without a secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from jobserver.store import NewJob, Store
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


async def seed_spellings(store: Store) -> None:
    """Into ``store`` (opened here, then closed): jobs as the code before user ids were
    normalised could store them, three spellings of alice (two jobs share the key k1)."""
    await store.open()
    try:
        for user, key in (("alice", "k1"), ("ALICE", "k1"), ("Alice", None), ("ALICE", None)):
            await store.enqueue(NewJob(type="demo.sleep", user_id=user, idempotency_key=key,
                                       delay_seconds=3600))  # fmt: skip
    finally:
        await store.close()
