"""The network cases: fan-out, idle connections and long-poll, each server against its clients.

Every measurement starts a fresh server process and separate client processes; the
orchestrator (this module, in the run.py process) only starts, triggers and collects.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

from harness import PEERS_PYTHON, Process, free_port, percentile, processes, rss_bytes

USER = "bench"
OUR_STREAMS = 8  # concurrent bench.emit jobs that make our stream at full speed


def http(method: str, url: str, body: Any = None, token: str = "") -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"{}")


@dataclass
class Server:
    """A running server process of one system: ``ours``, ``bare`` or ``socketio``."""

    system: str
    proc: Process
    url: str
    token: str = ""

    @classmethod
    def start(cls, system: str) -> Server:
        port = free_port()
        python = PEERS_PYTHON if system == "socketio" else sys.executable
        proc = Process(python, f"server_{system}.py", ["--port", str(port)])
        server = cls(system, proc, f"http://127.0.0.1:{port}")
        try:
            proc.wait_ready(60)
            if system == "ours":
                server.token = http("POST", server.url + "/api/session", {"userId": USER})["token"]
        except Exception:
            proc.stop()
            raise
        return server

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = http("GET", self.url + "/bench/stats")
        return result

    def listeners(self, kind: str = "sockets") -> int:
        """Our bus subscribers, or the baseline's open sockets / waiting polls (``kind``)."""
        stats = self.stats()
        return int(stats.get("subscribers", stats.get(kind, 0)))

    def emit(self, count: int, interval: float) -> int:
        """Start the event stream; returns how many streams (end markers) it has."""
        if self.system != "ours":
            http("POST", self.url + "/bench/emit", {"count": count, "interval": interval})
            return 1
        streams = OUR_STREAMS if interval == 0 and count >= OUR_STREAMS else 1
        for _ in range(streams):
            job = {
                "type": "bench.emit",
                "payload": {"count": count // streams, "interval": interval},
            }
            http("POST", self.url + "/api/jobs", job, self.token)
        return streams

    def wait_listeners(self, n: int, timeout: float, kind: str = "sockets") -> int:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            seen = self.listeners(kind)
            if seen >= n:
                break
            time.sleep(0.1)
        return seen


def _client_groups(clients: int, per_process: int) -> list[int]:
    groups = [per_process] * (clients // per_process)
    if clients % per_process:
        groups.append(clients % per_process)
    return groups


def _ws_clients(server: Server, n: int, mode: str, streams: int, timeout: float) -> Process:
    return Process(
        sys.executable,
        "ws_clients.py",
        [
            "--url",
            server.url,
            "--protocol",
            server.system,
            "--mode",
            mode,
            "--clients",
            str(n),
            "--streams",
            str(streams),
            "--token",
            server.token,
            "--user",
            USER,
            "--timeout",
            str(timeout),
        ],
    )


def fanout(
    system: str, clients: int, events: int, interval: float, timeout: float = 120.0
) -> dict[str, Any]:
    """One stream of ``events`` events (every ``interval`` s, or flat out) to ``clients``."""
    server = Server.start(system)
    streams = OUR_STREAMS if system == "ours" and interval == 0 and events >= OUR_STREAMS else 1
    groups = [
        _ws_clients(server, n, "fanout", streams, timeout)
        for n in _client_groups(clients, 500 if clients > 500 else clients)
    ]
    with processes(server.proc, *groups):
        connected = sum(g.wait_ready(90)["connected"] for g in groups)
        listeners = server.wait_listeners(clients, 30)
        started = time.time()
        server.emit(events, interval)
        results = [g.result(timeout + 30) for g in groups]
    latencies = [lat for r in results for lat in r["latencies_ms"]]
    received = sum(r["received"] for r in results)
    firsts = [r["first_emit"] for r in results if r["first_emit"]]
    lasts = [r["last_recv"] for r in results if r["last_recv"]]
    window = (max(lasts) - min(firsts)) if firsts and lasts else float("nan")
    return {
        "system": system,
        "clients": clients,
        "connected": connected,
        "listeners": listeners,
        "events": events,
        "interval": interval,
        "streams": streams,
        "expected": (events // streams) * streams * clients,
        "received": received,
        "done": sum(r["done"] for r in results),
        "closed_early": sum(r["closed_early"] for r in results),
        "trigger_to_first_ms": (min(firsts) - started) * 1000 if firsts else None,
        "window_s": window,
        "deliveries_per_s": received / window if window > 0 else float("nan"),
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p99_ms": percentile(latencies, 99),
        "latency_max_ms": max(latencies) if latencies else float("nan"),
    }


def connections(system: str, clients: int, timeout: float = 180.0) -> dict[str, Any]:
    """Server RSS growth per idle WebSocket (ours: signed in by cookie and subscribed)."""
    server = Server.start(system)
    with processes(server.proc):
        warm = _ws_clients(server, 50, "idle", 1, 30)  # first sockets allocate shared pools
        with processes(warm):
            warm.wait_ready(60)
            warm.result(30)
        time.sleep(0.5)
        before = rss_bytes(server.proc.pid)
        groups = [_ws_clients(server, n, "idle", 1, timeout) for n in _client_groups(clients, 2500)]
        with processes(*groups):
            connected = sum(g.wait_ready(timeout)["connected"] for g in groups)
            listeners = server.wait_listeners(clients, 30)
            time.sleep(1.0)
            after = rss_bytes(server.proc.pid)
            held = [g.result(60) for g in groups]
    return {
        "system": system,
        "clients": clients,
        "connected": connected,
        "listeners": listeners,
        "rss_before_mb": before / 2**20,
        "rss_after_mb": after / 2**20,
        "bytes_per_connection": (after - before) / max(1, connected),
        "closed_by_server": sum(r["closed_early"] for r in held),
        "connect_s": max(r["connect_s"] for r in held),
    }


def longpoll(system: str, clients: int, timeout: float = 60.0) -> dict[str, Any]:
    """``clients`` long-polls waiting at once, woken by one event: emit-to-receive times."""
    server = Server.start(system)
    with processes(server.proc):
        since = 0
        if system == "ours":
            # The event comes from a job already running, held at a gate, so the polls see
            # only it: its queued and started events are behind their cursor.
            job = {"type": "bench.emit", "payload": {"count": 1, "gate": True}}
            http("POST", server.url + "/api/jobs", job, server.token)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                since = int(http("GET", server.url + "/api/meta", token=server.token)["seq"])
                if since >= 2:
                    break
                time.sleep(0.05)
        per_process = 500 if clients > 500 else clients
        groups = [
            Process(
                sys.executable,
                "poll_clients.py",
                [
                    "--url",
                    server.url,
                    "--protocol",
                    "ours" if system == "ours" else "bare",
                    "--clients",
                    str(n),
                    "--since",
                    str(since),
                    "--user",
                    USER,
                    "--token",
                    server.token,
                    "--wait",
                    str(timeout),
                ],
            )
            for n in _client_groups(clients, per_process)
        ]
        with processes(*groups):
            for g in groups:
                g.wait_ready(60)
            waiting = server.wait_listeners(clients, 20, "pollers")
            if system == "ours":
                http("POST", server.url + "/bench/go")
            else:
                http("POST", server.url + "/bench/poll-emit")
            results = [g.result(timeout + 40) for g in groups]
    latencies = [lat for r in results for lat in r["latencies_ms"]]
    return {
        "system": system,
        "clients": clients,
        "waiting": waiting,
        "woken": sum(r["woken"] for r in results),
        "errors": sum(r["error_count"] for r in results),
        "wake_p50_ms": percentile(latencies, 50),
        "wake_p99_ms": percentile(latencies, 99),
        "wake_max_ms": max(latencies) if latencies else float("nan"),
    }
