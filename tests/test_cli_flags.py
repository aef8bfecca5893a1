"""Flags given before a subcommand (``server.py --data-dir X user add NAME``) count, as `--help`
lists them first: the subcommand's own defaults must not silently put them back to ./data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.liveserver import ROOT, SECRET, LiveServer


def _sign_in(url: str, user: str, password: str) -> int:
    request = urllib.request.Request(
        url + "/api/session", data=json.dumps({"userId": user, "password": password}).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            status: int = resp.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


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
        assert _sign_in(live.url, "dora", "correct horse battery") == 200
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
