"""The worked example's jobs on the page: their own stages shown live, by display name."""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from PIL import Image
from playwright.sync_api import expect

from jobserver.client import SyncClient
from tests.browser.conftest import Session
from tests.liveserver import LiveServer

MakeSession = Callable[..., Session]


class HeldCaptions:
    """A captioning service on 127.0.0.1 that holds each call until the test releases it
    (at most ``max_hold`` seconds), so a job can be seen in its "asking" stage."""

    def __init__(self, max_hold: float = 60.0) -> None:
        self.released = threading.Event()
        self.arrived = threading.Event()
        held = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                held.arrived.set()
                held.released.wait(max_hold)
                body = json.dumps({"caption": "A wide, mostly blue picture", "tags": ["blue"]})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()


def image_payload(name: str) -> dict[str, Any]:
    buffer = io.BytesIO()
    Image.new("RGB", (400, 200), (40, 70, 200)).save(buffer, "PNG")
    return {"image": base64.b64encode(buffer.getvalue()).decode(), "filename": name}


def test_the_example_s_jobs_show_live_with_their_own_stages(
    make_session: MakeSession, tmp_path: Path
) -> None:
    captions = HeldCaptions()
    server = LiveServer(tmp_path / "data", "--jobs", "examples.thumbs",
                        env={"THUMBS_API_URL": captions.url})  # fmt: skip
    try:
        server.start()
        s = make_session(server).open()
        assert s.stage_name("asking") == "Asking the captioning service"
        assert s.stage_name("encoding") == "Encoding the thumbnail"
        with SyncClient(server.url, token=server.token(s.user)) as client:
            # Submitted by another program for this user: the page follows the user.
            client.submit("thumbs.caption", image_payload("sky.png"))
            assert captions.arrived.wait(30)
            row = s.wait_stage("sky.png", "asking")  # shown while the service holds the call
            expect(row.locator(".job-stage")).to_have_text("Asking the captioning service")
            captions.released.set()
            s.wait_row("sky.png", "completed")
            client.submit("thumbs.thumbnail", image_payload("sea.png"))
            s.wait_row("sea.png", "completed")
        shown = {e["stage"] for e in s.history() if e["id"] == s.job_id("sky.png")}
        assert "Asking the captioning service" in shown
    finally:
        server.stop()
        captions.close()
