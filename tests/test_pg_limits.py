"""Issue 17: request limits are cluster-wide on PostgreSQL. Each node counts the live nodes
of its schema and allows its share, so two nodes behind a balancer that alternates a client
between them allow it the configured burst in all, not twice it."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from tests.liveserver import LiveServer
from tests.pgcluster import URL, call, make_node, schema, start_all, stop_all, wait_for
from tests.security.helpers import run_cli

__all__ = ["schema"]  # the fixture: a schema of its own, dropped afterwards

BURST = 10  # requests a user may make at once, in all
LIMITS = {"JOBSERVER_REQUESTS_PER_SECOND_PER_USER": "0.001",  # no refill to speak of
          "JOBSERVER_REQUEST_BURST_PER_USER": str(BURST)}  # fmt: skip


def _live_nodes(node: LiveServer) -> float:
    with urllib.request.urlopen(node.url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    found = re.search(r"^(?:\w+_)?live_nodes (\S+)$", text, re.MULTILINE)
    assert found is not None, text
    return float(found.group(1))


def test_two_nodes_share_a_users_request_burst(tmp_path: Path, schema: str) -> None:
    nodes = [make_node(tmp_path, schema, name, "--demo-jobs", jobs=None, env=LIMITS)
             for name in ("a", "b")]  # fmt: skip
    start_all(nodes)
    try:
        for node in nodes:
            wait_for(lambda n=node: _live_nodes(n) == 2, 30, "each node to count two")
        token = nodes[0].token("rita")
        allowed = refused = 0
        for i in range(4 * BURST):
            status, body = call(nodes[i % 2], "GET", "/api/jobs", token)
            if status == 200:
                allowed += 1
            else:
                assert status == 429 and body["error"]["code"] == "RATE_LIMITED", body
                refused += 1
        assert allowed == BURST, (allowed, refused)  # each node's half; old code: both whole
    finally:
        stop_all(nodes)


def test_a_node_alone_allows_the_whole_burst_again(tmp_path: Path, schema: str) -> None:
    a, b = (make_node(tmp_path, schema, name, "--demo-jobs", jobs=None, env=LIMITS)
            for name in ("a", "b"))  # fmt: skip
    start_all([a, b])
    try:
        wait_for(lambda: _live_nodes(a) == 2, 30, "A to count two")
        b.stop()
        wait_for(lambda: _live_nodes(a) == 1, 30, "A to count itself alone")
        token = a.token("rory")
        statuses = [call(a, "GET", "/api/jobs", token)[0] for _ in range(BURST + 2)]
        assert statuses.count(200) == BURST and statuses.count(429) == 2, statuses
    finally:
        stop_all([a, b])


def test_two_nodes_share_an_accounts_sign_in_failures(tmp_path: Path, schema: str) -> None:
    env = {"JOBSERVER_DATABASE_URL": URL, "JOBSERVER_DATABASE_SCHEMA": schema}
    made = run_cli(tmp_path / "cli", "user", "add", "alice", stdin="a good password\n", env=env)
    assert made.returncode == 0, made.stderr
    failures = {"JOBSERVER_SIGNIN_FAILURES_PER_ACCOUNT": "4"}  # 2 on each of two nodes
    nodes = [make_node(tmp_path, schema, name, "--demo-jobs", jobs=None, env=failures)
             for name in ("a", "b")]  # fmt: skip
    start_all(nodes)
    try:
        for node in nodes:
            wait_for(lambda n=node: _live_nodes(n) == 2, 30, "each node to count two")
        wrong = {"userId": "alice", "password": "not the password"}
        statuses = [call(nodes[i % 2], "POST", "/api/session", body=wrong)[0] for i in range(6)]
        assert statuses == [401] * 4 + [429] * 2, statuses  # old code: 8 failures allowed
    finally:
        stop_all(nodes)
