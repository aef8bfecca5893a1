"""schemathesis over ``GET /api/openapi.json`` against the real server, signed in (so the
routes behind the token are reached) and with multipart bodies (the schema describes the
upload): no answer is a 5xx. A bounded sample here; docs/security.md records a full run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.liveserver import LiveServer

BUDGET_SECONDS = 25  # the suite must stay well under 10 minutes


@pytest.mark.timeout(300)
def test_schemathesis_finds_no_server_error(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data", "--demo-jobs").start()
    try:
        token = server.token("fuzz")
        done = subprocess.run(
            [str(Path(sys.executable).parent / "st"), "run", f"{server.url}/api/openapi.json",
             "--header", f"Authorization: Bearer {token}", "--checks", "not_a_server_error",
             "--max-time", str(BUDGET_SECONDS), "--workers", "2",
             "--request-timeout", "65",  # a long-poll may wait 60 s
             "--no-color"],
            capture_output=True, text=True, timeout=BUDGET_SECONDS + 180,
            cwd=tmp_path,  # its cache of crashes stays out of the repository
        )  # fmt: skip
    finally:
        server.stop()
    summary = done.stdout[-6000:]
    assert done.returncode == 0, summary
    assert "unhandled error" not in server.log.read_text(), server.log.read_text()[-6000:]
    assert " generated" in summary  # it really ran cases
