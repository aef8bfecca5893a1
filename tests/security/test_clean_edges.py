"""Clean edges (issue 13, findings 8-10): malformed input is a 400 with a code, a full disk a
507, refused and half-written uploads leave nothing, a slow socket gets its 4000, and the
README's API example works as written."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from jobserver.web import connection
from jobserver.web.keys import GATEWAY, SETTINGS
from tests import pdfs
from tests.conftest import ApiClient, MakeApi
from tests.liveserver import ROOT, LiveServer
from tests.test_ops import scrape, value
from tests.test_ws import connect, eventually, next_json
from tests.test_ws_backpressure import FLOOD, QUICK, slow_client
from tests.wsraw import CLOSE, PING

UNICODE_DIGITS = ["²", "١٢", "٣", "\U0001d7d7", "9" * 5000, str(2**70)]


async def post_form(api: ApiClient, parts: list[tuple[str, Any]]) -> tuple[int, Any]:
    form = aiohttp.FormData()
    for name, data in parts:
        if isinstance(data, bytes):
            form.add_field(name, data, filename="a.pdf", content_type="application/pdf")
        else:
            form.add_field(name, data)
    return await api.post("/api/jobs", data=form)


async def post_raw(api: ApiClient, body: bytes, content_type: str) -> tuple[int, Any]:
    return await api.post("/api/jobs", data=body, headers={"Content-Type": content_type})


async def test_unicode_digits_and_huge_numbers_answer_400_with_a_code(make_api: MakeApi) -> None:
    api = await make_api()
    for digits in UNICODE_DIGITS:
        for path in (f"/api/jobs?limit={digits}", f"/api/jobs?offset={digits}",
                     f"/api/events?since={digits}&timeout=0"):  # fmt: skip
            status, body = await api.get(path)
            assert status == 400 and body["error"]["code"] in ("INVALID_PAYLOAD",
                                                               "INVALID_MESSAGE"), (path, body)
        job = {"type": "demo.sleep", "payload": {"seconds": 0}, "maxAttempts": digits}
        status, body = await api.post("/api/jobs", json=job)
        assert status == 400 and body["error"]["code"] == "INVALID_PAYLOAD", body
        status, body = await post_form(api, [("file", pdfs.text_pdf(1)),
                                             ("maxAttempts", digits)])  # fmt: skip
        assert status == 400 and body["error"]["code"] == "INVALID_PAYLOAD", body
    ws = await connect(api)
    try:
        for digits in UNICODE_DIGITS:
            await ws.send_json({"type": "subscribe", "userId": "alice", "since": digits})
            reply = await next_json(ws)
            assert reply["type"] == "error" and reply["code"] == "INVALID_MESSAGE", reply
        await ws.send_json({"type": "ping"})  # the socket is still open (not 1011)
        assert (await next_json(ws))["type"] == "pong"
    finally:
        await ws.close()


BOUNDARY = "b0undary"
PDF_PART = (
    f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.pdf\"\r\n"
    "Content-Type: application/pdf\r\n\r\n"
).encode()


async def test_malformed_multipart_framing_answers_400(make_api: MakeApi) -> None:
    api = await make_api()
    cases = [
        (b"--x\r\n\r\n", "multipart/form-data"),  # no boundary
        (b"this is not multipart at all", f"multipart/form-data; boundary={BOUNDARY}"),
        (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"a\x07\x00b\"\r\n\r\nx\r\n"
         f"--{BOUNDARY}--\r\n".encode(), f"multipart/form-data; boundary={BOUNDARY}"),
        (f"--{BOUNDARY}\r\nno colon here\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode(),
         f"multipart/form-data; boundary={BOUNDARY}"),
        (PDF_PART + pdfs.text_pdf(1) + f"\r\n--{BOUNDARY}\r\nContent-Disposition: form-data"
         "\r\n\r\n2\r\n--nope".encode(), f"multipart/form-data; boundary={BOUNDARY}"),
        (f"--{BOUNDARY}\r\n".encode(), f"multipart/form-data; boundary=\"{'x' * 80}\""),
    ]  # fmt: skip
    for body, content_type in cases:
        status, answer = await post_raw(api, body, content_type)
        assert status == 400 and answer["error"]["code"] in ("MALFORMED_REQUEST",
                                                             "INVALID_PAYLOAD"), answer
    assert (await api.get("/api/jobs"))[0] == 200  # and the server goes on


def uploads(api: ApiClient) -> list[str]:
    path = api.app[SETTINGS].data_dir / "uploads"
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


async def test_a_refused_upload_leaves_no_file(make_api: MakeApi) -> None:
    api = await make_api()
    big = pdfs.text_pdf(40)
    other = pdfs.text_pdf(41)
    for fields in ([("file", big), ("maxAttempts", "abc")],
                   [("file", big), ("idempotencyKey", "k" * 300)],
                   [("file", big), ("file", other), ("maxAttempts", "0")]):  # fmt: skip
        status, body = await post_form(api, fields)
        assert status == 400, body
        assert uploads(api) == [], body  # deleted at once, not at the retention sweep
    # A refused second upload of a file already stored leaves the stored one alone.
    status, _ = await post_form(api, [("file", big)])
    assert status == 202
    kept = uploads(api)
    status, _ = await post_form(api, [("file", big), ("maxAttempts", "0")])
    assert status == 400 and uploads(api) == kept


async def test_uploads_cut_short_by_a_crash_are_swept_at_start(
    make_api: MakeApi, tmp_path: Path
) -> None:
    folder = tmp_path / "data" / "uploads"
    folder.mkdir(parents=True)
    for i in range(3):
        (folder / f".incoming-{i:032x}").write_bytes(b"%PDF-1.7 half")
    (folder / "keep.txt").write_text("not ours to remove")
    api = await make_api()
    assert uploads(api) == ["keep.txt"]


@contextlib.contextmanager
def tiny_disk(path: Path, size: str = "4m") -> Iterator[Path]:
    """``path`` on a tmpfs of ``size``: a disk that fills up for real (needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                   check=True, capture_output=True, timeout=30)  # fmt: skip
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def fill(path: Path) -> Path:
    """A file that takes every free byte of ``path``'s file system."""
    junk = path / "junk"
    with contextlib.suppress(OSError), junk.open("wb", buffering=0) as f:
        while True:
            f.write(b"\0" * 65536)
    return junk


async def test_a_full_disk_answers_507_with_a_code(make_api: MakeApi, tmp_path: Path) -> None:
    with tiny_disk(tmp_path / "disk") as disk:
        api = await make_api(data_dir=disk / "data")
        status, _ = await api.post("/api/jobs", json={"type": "demo.sleep",
                                                      "payload": {"seconds": 0}})  # fmt: skip
        assert status == 202
        junk = fill(disk)
        try:
            status, body = await post_form(api, [("file", pdfs.text_pdf(30))])
            assert status == 507 and body["error"]["code"] == "STORAGE_FULL", body
            assert [n for n in uploads(api) if n.startswith(".incoming")] == []
            pad = "x" * 200_000  # the WAL must grow: SQLite finds the disk full
            status, body = await api.post("/api/jobs", json={"type": "demo.sleep",
                                          "payload": {"seconds": 0, "pad": pad}})  # fmt: skip
            assert status == 507 and body["error"]["code"] == "STORAGE_FULL", body
        finally:
            junk.unlink()
        status, _ = await post_form(api, [("file", pdfs.text_pdf(30))])
        assert status == 202  # room again: it goes on by itself
        await api.client.close()


async def test_a_client_that_stops_reading_gets_4000_and_the_metric_says_overflow(
    make_api: MakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection, "CLOSE_TIMEOUT", 0.5)  # the handshake's wait, shortened
    api = await make_api("alice", ws_queue_size=20)
    gateway = api.app[GATEWAY]
    raw, conn = await slow_client(api)
    for _ in range(4):
        await api.post("/api/jobs", json=FLOOD)
    await eventually(lambda: conn.queue is not None, 20)
    for _ in range(40):
        await api.post("/api/jobs", json=QUICK)
    await eventually(lambda: conn.closer is not None, 20)
    # Not reading until the closing handshake's time is up (the server is done closing):
    # the old server cut the connection then, and what was buffered, the close frame with it,
    # was lost.
    await eventually(lambda: conn.closer is not None and conn.closer.done(), 20)
    frames = 0
    while True:
        opcode, _ = await asyncio.wait_for(raw.frame(), 10)
        if opcode == CLOSE:
            break
        assert opcode != PING
        frames += 1
    assert raw.close_code == 4000
    await raw.close()
    await eventually(lambda: conn not in gateway.sockets)
    _, samples = await scrape(api)
    assert value(samples, "websocket_disconnects_total", reason="overflow") == 1
    assert value(samples, "websocket_disconnects_total", reason="normal") == 0


README_BLOCK = re.compile(r"## Using the API\n.*?```sh\n(.*?)```", re.S)


def run_readme_example(server: LiveServer) -> list[str]:
    """The README's API example, run by bash as written (only the port differs)."""
    text = (ROOT / "README.md").read_text()
    match = README_BLOCK.search(text)
    assert match is not None
    script = match.group(1).replace("localhost:8080", f"localhost:{server.port}")
    lines = script.strip().replace("\\\n", " ").splitlines()
    assert len(lines) == 3
    with tempfile.TemporaryDirectory() as home:
        done = subprocess.run(
            ["bash", "-c", "\necho; echo =====\n".join(lines)], capture_output=True,
            text=True, timeout=60, env={"PATH": os.environ["PATH"], "HOME": home},
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [part.strip() for part in done.stdout.split("=====")][1:]


@pytest.mark.parametrize("demo", [True, False])
def test_the_readme_api_example_works_as_written(tmp_path: Path, demo: bool) -> None:
    server = LiveServer(tmp_path / "data", *(["--demo-jobs"] if demo else [])).start()
    try:
        created, listed = run_readme_example(server)
    finally:
        server.stop()
    job = json.loads(created)
    if demo:
        assert job["type"] == "demo.sleep" and job["status"] == "queued", job
        assert [j["jobId"] for j in json.loads(listed)["jobs"]] == [job["jobId"]]
    else:  # the answer says what this server runs, and how to get the demo types
        assert job["error"]["code"] == "UNKNOWN_JOB_TYPE", job
        assert "pdf-notes" in job["error"]["message"]
        assert "--demo-jobs" in job["error"]["message"]
