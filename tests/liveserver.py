"""End-to-end helpers: the real server as a process, a gate for its LLM calls, and test PDFs.

``LiveServer`` runs ``python server.py`` on a free 127.0.0.1 port with its own data dir.
``LlmGate`` is an OpenAI-style chat-completions endpoint on 127.0.0.1 that the server is
pointed at (``--llm-url``): while the test holds it, a real ``pdf-notes`` job waits in its
"generating" stage; once released it answers 503, so the server falls back to its own
offline notes. That lets a test act in the middle of a real job (drop the WebSocket, go
offline, reload) without sleeping and hoping.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-secret-0123456789abcdef0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LiveServer:
    """``python server.py`` as a subprocess; ``url`` once it answers.

    Args:
        data_dir: the server's own data folder.
        args: extra command-line flags.
    """

    def __init__(
        self, data_dir: Path, *args: str, pdf_workers: int = 1, env: dict[str, str] | None = None,
        nofile: tuple[int, int] | None = None,
    ) -> None:  # fmt: skip
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"server-{self.port}.log"
        self.args = args
        self.pdf_workers = pdf_workers
        self.env = env or {}
        self.nofile = nofile  # (soft, hard) descriptor limits of the server process
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> LiveServer:
        cmd = [
            sys.executable, str(ROOT / "server.py"), "--host", "127.0.0.1",
            "--port", str(self.port), "--data-dir", str(self.data_dir),
            "--pdf-workers", str(self.pdf_workers), "--log-level", "WARNING", *self.args,
        ]  # fmt: skip
        env = {**os.environ, "JOBSERVER_SECRET": SECRET, **self.env}
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log,
                                         preexec_fn=self._limits if self.nofile else None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited early:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server did not answer in {timeout}s:\n{self.log.read_text()}")

    def _limits(self) -> None:
        assert self.nofile is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, self.nofile)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, as a service manager would; the exit code (0 after a graceful stop)."""
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as in a crash."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            self.proc.wait(10)

    def token(self, user: str) -> str:
        """Open sign-in, as a program would do it."""
        request = urllib.request.Request(
            self.url + "/api/session", data=json.dumps({"userId": user}).encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as resp:
            token: str = json.load(resp)["token"]
            return token

    def get(self, path: str, token: str) -> Any:
        request = urllib.request.Request(
            self.url + path, headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.load(resp)


class LlmGate:
    """A chat-completions endpoint that holds each call while the test says so (bounded)."""

    def __init__(self, max_hold: float = 60.0) -> None:
        self.max_hold = max_hold
        self._open = threading.Event()
        self._open.set()
        self.held = 0  # calls waiting right now
        self.calls = 0
        self._lock = threading.Lock()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with gate._lock:
                    gate.calls += 1
                    gate.held += 1
                try:
                    gate._open.wait(gate.max_hold)
                finally:
                    with gate._lock:
                        gate.held -= 1
                body = b'{"error": {"message": "the test gate does not write notes"}}'
                self.send_response(503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def wait_held(self, timeout: float = 30.0) -> None:
        """Wait until a job's call is being held (the job is in its generating stage)."""
        deadline = time.monotonic() + timeout
        while self.held == 0:
            if time.monotonic() > deadline:
                raise TimeoutError("no LLM call arrived at the gate")
            time.sleep(0.05)

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()


SENTENCES = [
    "A job server accepts work from clients and runs it in the background on a pool of workers.",
    "Each job moves through stages such as reading, extracting and generating before it ends.",
    "Progress events are stored with a sequence number so that clients can resume after a drop.",
    "Long polling serves clients that cannot keep a WebSocket open through their proxy.",
    "Exponential backoff with jitter spreads reconnecting clients over time instead of in bursts.",
    "Idempotency keys let a client retry an upload without creating a second job by mistake.",
    "The notes cache keeps the result for each file hash, so the same document is read once.",
    "Workers renew their leases while they run, and a lost lease hands the job to another worker.",
    "Cancellation stops a running job at its next checkpoint and records who cancelled it.",
    "Backpressure bounds the memory each slow subscriber may hold on the server side.",
    "Retention prunes finished jobs after a number of days while keeping the notes they made.",
    "Structured logs carry the job identifier so that one request can be followed end to end.",
]


def make_pdf(path: Path, title: str, *, pages: int = 3, tag: str = "") -> Path:
    """A small text PDF: a title, an outlined heading per page, distinct sentences to note."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_title(title)
    topics = ["Background", "Method", "Results", "Discussion", "Conclusion"]
    for number in range(pages):
        pdf.add_page()
        topic = topics[number % len(topics)]
        if number == 0:
            pdf.set_font("Helvetica", "B", 20)
            pdf.multi_cell(0, 10, title, new_x="LMARGIN", new_y="NEXT")
        pdf.start_section(f"{number + 1}. {topic}")
        pdf.set_font("Helvetica", "B", 15)
        pdf.multi_cell(0, 9, f"{number + 1}. {topic}", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=11)
        lines = [SENTENCES[(number * 4 + i) % len(SENTENCES)] for i in range(4)]
        if tag:
            lines.append(f"This copy was made for test run {tag} on page {number + 1}.")
        pdf.multi_cell(0, 6, " ".join(lines), new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))
    return path


def make_corrupt_pdf(path: Path, tag: str = "") -> Path:
    """Starts like a PDF (so the upload is accepted) but cannot be parsed."""
    path.write_bytes(b"%PDF-1.7\n" + f"this is not really a PDF {tag}\n".encode() * 40)
    return path


def call(node: LiveServer, method: str, path: str, token: str | None = None,
         body: Any = None, data: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:  # fmt: skip
    """One request; (status, JSON body), errors included. ``body`` is sent as JSON, else
    ``data`` as is (with its ``headers``)."""
    head = dict(headers or {})
    if token is not None:
        head["Authorization"] = f"Bearer {token}"
    if body is not None:
        data = json.dumps(body).encode()
        head["Content-Type"] = "application/json"
    request = urllib.request.Request(node.url + path, method=method, data=data, headers=head)
    try:
        with urllib.request.urlopen(request, timeout=20) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
