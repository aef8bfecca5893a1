"""Issue 13, item 1: password accounts made with ``server.py user``, and throttled sign-in."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.liveserver import LiveServer
from tests.security.helpers import add_account, run_cli

PASSWORD = "correct horse battery staple"


def post(url: str, body: Any, token: str = "") -> tuple[int, Any, dict[str, str]]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.load(resp), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc), dict(exc.headers)


def test_user_commands_manage_accounts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    add_account(data, "Alice", PASSWORD)
    again = run_cli(data, "user", "add", "alice", stdin=PASSWORD + "\n")
    assert again.returncode == 1 and "has an account already" in again.stderr
    short = run_cli(data, "user", "add", "bob", stdin="short\n")
    assert short.returncode == 1 and "8 to 1024" in short.stderr
    bad = run_cli(data, "user", "add", "bob smith", stdin=PASSWORD + "\n")
    assert bad.returncode == 1 and "letters a-z" in bad.stderr
    listed = run_cli(data, "user", "list")
    assert listed.returncode == 0 and listed.stdout.startswith("alice\t")
    assert "bob" not in listed.stdout
    assert run_cli(data, "user", "passwd", "ALICE", stdin="another password\n").returncode == 0
    assert run_cli(data, "user", "remove", "alice").returncode == 0
    assert "no accounts" in run_cli(data, "user", "list").stdout
    missing = run_cli(data, "user", "remove", "alice")
    assert missing.returncode == 1 and "no account alice" in missing.stderr
    # The file holding the hashes is for the server's user alone.
    assert (data / "auth.db").stat().st_mode & 0o077 == 0


def test_password_sign_in_off_loopback(tmp_path: Path) -> None:
    data = tmp_path / "data"
    add_account(data, "alice", PASSWORD)
    live = LiveServer(data, "--behind-proxy", env={"JOBSERVER_SECRET": ""}).start()
    try:
        url = live.url + "/api/session"
        status, body, _ = post(url, {"userId": "alice"})
        assert status == 403 and body["error"]["code"] == "SIGNIN_DISABLED"
        status, body, _ = post(url, {"userId": "alice", "password": "wrong password"})
        assert status == 401 and body["error"]["code"] == "BAD_CREDENTIALS"
        status, body, _ = post(url, {"userId": "nobody", "password": PASSWORD})
        assert status == 401 and body["error"]["code"] == "BAD_CREDENTIALS"  # the same answer
        for no_account_has_it in ("short", "x" * 2000):  # not the rule for setting one
            status, body, _ = post(url, {"userId": "alice", "password": no_account_has_it})
            assert (status, body["error"]["message"]) == (401, "wrong name or password")
        status, body, _ = post(url, {"userId": "alice", "password": 12345678})
        assert status == 400 and body["error"]["code"] == "INVALID_PAYLOAD"
        status, body, _ = post(url, {"userId": "ALICE", "password": PASSWORD})
        assert status == 200 and body["userId"] == "alice" and body["method"] == "password"
        assert live.get("/api/session", body["token"]) == {"userId": "alice"}
        # A new password ends the sessions made with the old one (seen within a second).
        assert run_cli(data, "user", "passwd", "alice", stdin="a new password\n").returncode == 0
        assert post(url, {"userId": "alice", "password": PASSWORD})[0] == 401
        ended = _wait_refused(live, body["token"])
        assert ended["error"]["code"] == "TOKEN_REVOKED"
    finally:
        live.stop()


def _wait_refused(live: LiveServer, token: str) -> Any:
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            live.get("/api/session", token)
        except urllib.error.HTTPError as exc:
            return json.load(exc)
        time.sleep(0.2)
    raise AssertionError("the token was still accepted")


def test_password_sign_in_is_throttled_per_account_and_per_address(tmp_path: Path) -> None:
    data = tmp_path / "data"
    add_account(data, "alice", PASSWORD)
    live = LiveServer(data, "--signin-failures-per-account", "3",
                      "--signin-failures-per-address", "5").start()  # fmt: skip
    try:
        url = live.url + "/api/session"
        for _ in range(3):
            assert post(url, {"userId": "alice", "password": "wrong password"})[0] == 401
        # Now even the right password waits: guessing cannot go on at hashing speed.
        status, body, headers = post(url, {"userId": "alice", "password": PASSWORD})
        assert status == 429 and body["error"]["code"] == "SIGNIN_THROTTLED"
        assert int(headers["Retry-After"]) >= 1
        # Other names from the same address: two more failures reach the address limit.
        for name in ("bob", "carol"):
            assert post(url, {"userId": name, "password": "wrong password"})[0] == 401
        status, body, headers = post(url, {"userId": "dave", "password": "wrong password"})
        assert status == 429 and body["error"]["code"] == "SIGNIN_THROTTLED"
        # The server still serves everything else.
        assert live.get("/api/session/methods", "")["methods"] == ["password", "token"]
    finally:
        live.stop()
