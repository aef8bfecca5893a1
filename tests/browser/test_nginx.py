"""The page through nginx in front of two nodes on one PostgreSQL (issue 17): one origin, with
``/ws`` on node B and ``/api`` (and the rest) on node A, as a load balancer without sticky
sessions may split them. The nginx config is ops/nginx-jobserver.conf itself, its
upstreams pointed at the two nodes; Debian's nginx runs as a child process of the test.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Session
from tests.liveserver import ROOT, LiveServer, free_port, make_pdf
from tests.pgcluster import URL, make_node, start_all, stop_all, wait_for

EXAMPLE = ROOT / "ops" / "nginx-jobserver.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def site_config(port: int, api: int, ws: int) -> str:
    """The example config with its upstreams on this machine's two nodes."""
    text = EXAMPLE.read_text()

    def upstream(name: str, node_port: int) -> None:
        nonlocal text
        block = re.compile(r"(upstream " + name + r" \{\n)(.*?)(\n\})", re.S)
        match = block.search(text)
        assert match, f"no upstream {name} in {EXAMPLE}"
        body = re.sub(r"server [^;]+;", "", match.group(2))  # keep its other directives
        body = re.sub(r"\n\s*\n", "\n", body)
        text = text[: match.start()] + match.group(1) + f"    server 127.0.0.1:{node_port};\n" + \
            body + match.group(3) + text[match.end() :]  # fmt: skip

    upstream("jobserver", api)
    upstream("jobserver_ws", ws)
    text, n = re.subn(r"listen 80;", f"listen 127.0.0.1:{port};", text)
    assert n == 1
    return text


class Nginx:
    """``nginx`` in the foreground with a config of its own under ``root``; ``url`` once up."""

    def __init__(self, root: Path, api: int, ws: int) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.access = root / "access.log"
        root.mkdir(parents=True, exist_ok=True)
        (root / "site.conf").write_text(site_config(self.port, api, ws))
        temp = " ".join(f"{k}_temp_path {root / k};" for k in
                        ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))  # fmt: skip
        (root / "nginx.conf").write_text(
            f"daemon off;\nmaster_process off;\npid {root / 'nginx.pid'};\n"
            f"error_log {root / 'error.log'} warn;\nevents {{ worker_connections 256; }}\n"
            "http {\n  log_format routed '$request_method $uri $upstream_addr $status';\n"
            f"  access_log {self.access} routed;\n  {temp}\n"
            f"  include {root / 'site.conf'};\n}}\n"
        )  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Nginx:
        conf = str(self.root / "nginx.conf")
        args = [NGINX, "-p", str(self.root), "-e", str(self.root / "error.log"), "-c", conf]
        check = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        with (self.root / "stderr.log").open("wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=out)
        wait_for(self._answers, 15, "nginx to answer")
        return self

    def _answers(self) -> bool:
        import urllib.request

        assert self.proc is not None and self.proc.poll() is None, self.log()
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def log(self) -> str:
        return "\n".join(p.read_text() for p in self.root.glob("*.log") if p.exists())

    def routed(self) -> list[tuple[str, str, str, str]]:
        """(method, path, upstream, status) of each request so far."""
        lines = self.access.read_text().splitlines()
        return [(a, b, c, d) for a, b, c, d in (line.split(" ", 3) for line in lines)]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer]]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    root = tmp_path_factory.mktemp("nodes")
    pair = [make_node(root, schema, name, "--concurrency", "4") for name in "ab"]
    try:
        start_all(pair)
        yield pair[0], pair[1]
    finally:
        stop_all(pair)
        with psycopg.connect(URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="module")
def nginx(
    nodes: tuple[LiveServer, LiveServer], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Nginx]:
    api, ws = nodes
    proxy = Nginx(tmp_path_factory.mktemp("nginx"), api.port, ws.port).start()
    yield proxy
    proxy.stop()


def test_the_page_through_nginx_with_ws_on_one_node_and_api_on_another(
    make_session: Callable[..., Session], nginx: Nginx, nodes: tuple[LiveServer, LiveServer],
    tmp_path: Path,
) -> None:  # fmt: skip
    api, ws = nodes
    front = copy.copy(api)  # the page and the test's own calls go through nginx
    front.url = nginx.url
    s = make_session(front).open()
    title = "Two Nodes Behind One Origin"
    pdf = make_pdf(tmp_path / "two-nodes.pdf", title, pages=2, tag=uuid.uuid4().hex[:10])
    s.upload(pdf)
    row = s.wait_row("two-nodes.pdf", "completed")
    history = [e for e in s.history() if e["id"] == s.job_id("two-nodes.pdf")]
    assert any(e["status"] == "active" for e in history), history  # seen live, not reloaded
    row.get_by_role("link", name="View notes of two-nodes.pdf").click()
    expect(s.page.locator("#notes-title")).to_have_text(title)

    s.page.goto("about:blank")  # nginx logs a WebSocket once it closes
    wait_for(lambda: any(r[1] == "/ws" for r in nginx.routed()), 15, "the socket's log line")
    routed = nginx.routed()
    sockets = [r for r in routed if r[1] == "/ws"]
    api_calls = [r for r in routed if r[1].startswith("/api/")]
    assert sockets and all(r[2] == f"127.0.0.1:{ws.port}" and r[3] == "101" for r in sockets)
    assert api_calls and all(r[2] == f"127.0.0.1:{api.port}" for r in api_calls)
    assert any(r[0] == "POST" and r[1] == "/api/jobs" for r in api_calls), api_calls
    polls = [r for r in api_calls if r[1] == "/api/events"]
    assert not polls, "the page fell back to long-polling: its WebSocket did not hold"
