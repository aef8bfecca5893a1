"""Issue 13, item 1: open sign-in (anyone can be anyone) only where the server runs locally."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import jwt
import pytest

from jobserver.config import Settings
from jobserver.signin import SignInNotConfigured, decide, is_loopback, local_only
from tests.conftest import MakeApi
from tests.liveserver import SECRET, LiveServer
from tests.security.helpers import run_cli


def call(url: str, method: str = "GET", body: Any = None, token: str = "") -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_loopback_means_only_this_machine_and_no_proxy() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("") and not is_loopback("192.168.1.5")
    assert local_only(Settings(host="127.0.0.1"))
    assert not local_only(Settings(host="127.0.0.1", behind_proxy=True))
    assert not local_only(Settings(host="0.0.0.0"))
    on = decide(Settings(host="127.0.0.1"), has_accounts=False)
    assert on.open and not (on.password or on.token or on.jwks)
    # Accounts or an identity provider turn the default off even on loopback.
    assert not decide(Settings(host="127.0.0.1"), has_accounts=True).open
    assert not decide(Settings(jwks_url="http://127.0.0.1:1/jwks"), has_accounts=False).open
    with pytest.raises(SignInNotConfigured):
        decide(Settings(host="0.0.0.0"), has_accounts=False)
    with pytest.raises(SignInNotConfigured):
        decide(Settings(host="127.0.0.1", open_signin=False), has_accounts=False)


def test_impersonation_refused_off_loopback_without_a_method(tmp_path: Path) -> None:
    """The server does not start (so never listens) rather than let anyone be anyone."""
    for flags in (["--host", "0.0.0.0"], ["--host", "127.0.0.1", "--behind-proxy"]):
        done = run_cli(tmp_path / "data", *flags, "--port", "0")
        assert done.returncode == 1, done.stdout + done.stderr
        assert "no sign-in method" in done.stderr and "user add" in done.stderr
        assert "listening" not in done.stdout


def test_open_signin_beyond_this_machine_takes_the_flag_and_is_warned(tmp_path: Path) -> None:
    live = LiveServer(tmp_path / "data", "--behind-proxy", "--open-signin", "--log-format",
                      "text", env={"JOBSERVER_SECRET": ""})  # fmt: skip
    live.start()
    try:
        status, body = call(live.url + "/api/session", "POST", {"userId": "mallory"})
        assert status == 200 and body["userId"] == "mallory"
        assert call(live.url + "/api/session/methods")[1]["openSignin"] is True
    finally:
        live.stop()
    assert "anyone can sign in as any user" in live.log.read_text()


def test_with_a_shared_secret_only_application_tokens_sign_in(tmp_path: Path) -> None:
    live = LiveServer(tmp_path / "data", "--behind-proxy").start()  # JOBSERVER_SECRET is set
    try:
        status, body = call(live.url + "/api/session", "POST", {"userId": "alice"})
        assert status == 403 and body["error"]["code"] == "SIGNIN_DISABLED"
        assert call(live.url + "/api/session/methods")[1]["methods"] == ["token"]
        minted = jwt.encode({"sub": "Alice", "exp": int(time.time()) + 60}, SECRET, "HS256")
        assert call(live.url + "/api/session", token=minted) == (200, {"userId": "alice"})
        # The page exchanges such a token for a session of its own (cookie, sign-out).
        status, body = call(live.url + "/api/session", "POST", {"token": minted})
        assert status == 200 and body["userId"] == "alice" and body["method"] == "token"
        forged = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, "x" * 40, "HS256")
        status, body = call(live.url + "/api/session", "POST", {"token": forged})
        assert status == 401 and body["error"]["code"] == "INVALID_TOKEN"
    finally:
        live.stop()


async def test_a_local_server_keeps_open_signin_and_says_so(make_api: MakeApi) -> None:
    api = await make_api("alice")  # 127.0.0.1, no accounts: open sign-in by default
    status, body = await api.get("/api/session/methods", headers={"Authorization": ""})
    assert status == 200 and body["openSignin"] is True and "open" in body["methods"]
    status, meta = await api.get("/api/meta")
    assert meta["signin"]["openSignin"] is True
