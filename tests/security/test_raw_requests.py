"""Requests sent byte by byte over a raw socket: malformed HTTP that never reaches the app,
uploads the client cancels halfway, and a refused upload racing another user's upload of the
same bytes. The real server as a process; its log must hold no ERROR for any of it.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.liveserver import LiveServer, make_pdf


@pytest.fixture(scope="module")
def info_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # INFO, so the test sees the lines a client abort is logged with (and that none is ERROR).
    data = tmp_path_factory.mktemp("raw") / "data"
    server = LiveServer(data, "--demo-jobs", "--log-level", "INFO").start()
    yield server
    server.stop()


Answer = tuple[int, dict[str, str], bytes]


def exchange(live: LiveServer, raw: bytes, timeout: float = 10.0) -> Answer:
    """Send ``raw`` on a new connection; the status, headers and body of the answer."""
    with socket.create_connection(("127.0.0.1", live.port), timeout=timeout) as sock:
        sock.sendall(raw)
        return read_response(sock)


def read_response(sock: socket.socket) -> Answer:
    data = b""
    deadline = time.monotonic() + 10
    while b"\r\n\r\n" not in data and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def log_lines(live: LiveServer) -> list[dict[str, object]]:
    lines = []
    for line in live.log.read_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def assert_no_errors(live: LiveServer) -> None:
    bad = [line for line in log_lines(live) if line["level"] in ("ERROR", "CRITICAL")]
    assert not bad, bad
    assert "Traceback" not in live.log.read_text()


MALFORMED = {
    "a NUL byte in a header": (
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Note: a\x00b\r\n\r\n", "MALFORMED_REQUEST"),
    "not a request line": (b"GARBAGE\r\n\r\n", "MALFORMED_REQUEST"),
    "a bad HTTP version": (b"GET / HTTP/9.x\r\nHost: 127.0.0.1\r\n\r\n", "MALFORMED_REQUEST"),
    "a header past max_header_bytes": (
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
        "HEADERS_TOO_LARGE"),
    "a request line past max_header_bytes": (
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "HEADERS_TOO_LARGE"),
    "more than max_headers header lines": (
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n", "HEADERS_TOO_LARGE"),
    "a bad chunk size": (
        b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\n", "MALFORMED_REQUEST"),
}  # fmt: skip


def test_malformed_http_answers_json_400_with_a_code_and_logs_no_error(
    info_live: LiveServer,
) -> None:
    for name, (raw, code) in MALFORMED.items():
        status, headers, body = exchange(info_live, raw)
        assert status == 400, (name, status, body)
        assert headers["content-type"].startswith("application/json"), (name, headers)
        assert json.loads(body)["error"]["code"] == code, (name, body)
    time.sleep(1.2)  # the refusal summary is written at most once a second
    with urllib.request.urlopen(info_live.url + "/metrics", timeout=10) as resp:
        metrics = resp.read().decode()
    assert 'http_refusals_total{reason="malformed"} 7.0' in metrics
    assert any("malformed" in str(line["message"]) and line["level"] == "WARNING"
               for line in log_lines(info_live))  # fmt: skip
    assert_no_errors(info_live)


def multipart_head(live: LiveServer, token: str, boundary: str, length: int) -> bytes:
    return (
        f"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\n"
        f"Authorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def file_part(boundary: str, content: bytes) -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
    ).encode() + content + b"\r\n"


def field_part(boundary: str, name: str, value: str) -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
    ).encode()


def wait_for(check: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_an_upload_the_client_cancels_halfway_leaves_no_file_and_no_error(
    info_live: LiveServer,
) -> None:
    token = info_live.token("canceller")
    uploads = info_live.data_dir / "uploads"
    boundary = uuid.uuid4().hex
    half = file_part(boundary, b"%PDF-1.4\n" + b"x" * 1_000_000)
    with socket.create_connection(("127.0.0.1", info_live.port), timeout=10) as sock:
        sock.sendall(multipart_head(info_live, token, boundary, 2 * len(half)) + half)
        # Half the body is in: the server is writing it to a partial file.
        assert wait_for(lambda: any(uploads.glob(".incoming-*")))
    # The client closed its socket (a cancel, a reload, a closed tab).
    assert wait_for(lambda: not any(uploads.glob(".incoming-*")))
    assert not list(uploads.glob("*.pdf"))
    assert wait_for(lambda: any("client closed the connection" in str(line["message"])
                                for line in log_lines(info_live)))  # fmt: skip
    aborted = [line for line in log_lines(info_live)
               if "client closed the connection" in str(line["message"])]  # fmt: skip
    assert aborted[0]["level"] == "INFO"
    assert_no_errors(info_live)


def upload(live: LiveServer, token: str, content: bytes) -> tuple[int, dict[str, object]]:
    boundary = uuid.uuid4().hex
    body = file_part(boundary, content) + f"--{boundary}--\r\n".encode()
    status, _, answer = exchange(live, multipart_head(live, token, boundary, len(body)) + body)
    return status, json.loads(answer)


def test_a_refused_upload_keeps_the_file_another_users_job_got_meanwhile(
    info_live: LiveServer, tmp_path: Path
) -> None:
    # Before: the refused upload had stored the file first, so it deleted it, and the other
    # user's accepted job then had no file to read.
    content = make_pdf(tmp_path / "shared.pdf", "Shared bytes", tag="race").read_bytes()
    first, second = info_live.token("racer1"), info_live.token("racer2")
    uploads = info_live.data_dir / "uploads"
    boundary = uuid.uuid4().hex
    head_part = file_part(boundary, content)
    rest = field_part(boundary, "maxAttempts", "many") + f"--{boundary}--\r\n".encode()
    with socket.create_connection(("127.0.0.1", info_live.port), timeout=10) as sock:
        length = len(head_part) + len(rest)
        split = rest.index(b"\r\n\r\n") + 4  # the field's headers, not yet its value
        sock.sendall(multipart_head(info_live, first, boundary, length) + head_part)
        time.sleep(0.3)  # aiohttp finds a part's end only in data that comes after it
        sock.sendall(rest[:split])
        assert wait_for(lambda: len(list(uploads.glob("*.pdf"))) == 1)  # the first stored it
        status, answer = upload(info_live, second, content)
        assert status == 202, answer
        job_id = answer["jobId"]
        sock.sendall(rest[split:])  # then the first is refused
        status, _, body = read_response(sock)
    assert status == 400 and json.loads(body)["error"]["code"] == "INVALID_PAYLOAD", body
    assert len(list(uploads.glob("*.pdf"))) == 1  # kept: the second user's job needs it

    def finished() -> bool:
        job = info_live.get(f"/api/jobs/{job_id}", second)
        return job["status"] in ("completed", "failed")

    assert wait_for(finished, 60)
    assert info_live.get(f"/api/jobs/{job_id}", second)["status"] == "completed"
    assert_no_errors(info_live)
