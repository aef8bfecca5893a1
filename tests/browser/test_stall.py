"""A WebSocket that stays open but stops delivering, in Chromium against the real server: the
client (jobclient.js) notices within 5 s, long-polls without losing an event, and opens a new
socket. The path is a proxy (tests/netcut.py) whose ``stall()`` drops every byte of the
connections open at that moment while keeping them open."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import Session
from tests.liveserver import LiveServer
from tests.netcut import BackgroundProxy

FOLLOW = """async (token) => {
  const { createJobClient } = await import('/static/jobclient.js');
  const client = createJobClient({ token, storageKey: 'stall' });
  const log = window.__log = { states: [], events: [] };
  client.on({
    onConnectionChange: (state) => log.states.push([state, performance.now()]),
    onEvent: (e) => log.events.push(e),
  });
  window.__client = client;
  await client.connect();
  const who = await client.api.whoAmI();
  client.subscribe({ userId: who.userId });
  const job = await client.api.createJob({ type: 'demo.sleep',
    payload: { seconds: 12, steps: 40 } });
  return [job.jobId, job.lastSeq];
}"""


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("stall") / "data", "--demo-jobs").start()
    yield live
    live.stop()


@pytest.fixture
def proxy(demo_server: LiveServer) -> Iterator[BackgroundProxy]:
    proxy = BackgroundProxy(demo_server.port)
    yield proxy
    proxy.close()


def log(page: Any) -> Any:
    return page.evaluate("window.__log")


def test_a_stalled_socket_turns_to_polling_within_5s_and_loses_no_event(
    browser: Browser, demo_server: LiveServer, proxy: BackgroundProxy
) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(proxy.url + "/healthz")
        token = demo_server.token(f"stall-{uuid.uuid4().hex[:6]}")
        job_id, snapshot_seq = page.evaluate(FOLLOW, token)
        page.wait_for_function("window.__log.states.some(([s]) => s === 'live')")
        page.wait_for_function("window.__log.events.filter((e) => e.seq).length >= 4")
        stalled_at = page.evaluate("performance.now()")
        assert proxy.call("stall") >= 1  # the socket (and any idle keep-alive connection)
        page.wait_for_function("window.__client.usingPolling()", timeout=10_000)
        seen = log(page)
        polling_at = next(t for s, t in seen["states"] if s == "polling" and t > stalled_at)
        assert polling_at - stalled_at <= 5_000, f"polling after {polling_at - stalled_at} ms"
        assert proxy.proxy.dropped > 0  # frames really were lost on the stalled socket
        # A new socket replaces the stalled one, and the job is followed to its end.
        page.wait_for_function(
            "window.__log.events.some((e) => e.type === 'job.completed')", timeout=30_000
        )
        page.wait_for_function("window.__client.isConnected()")
        seen = log(page)
        stats = page.evaluate("window.__client.stats")
        assert stats["stalls"] == 1
        assert [s for s, _ in seen["states"]][-2:] == ["polling", "live"]
        page.evaluate("window.__client.disconnect()")
    finally:
        context.close()
    # Every event the server stored for the job, once each and in order; those up to the
    # snapshot createJob returned may be stood for by it (the client counts it as delivered).
    stored = demo_server.get(f"/api/events?jobId={job_id}&since=0&timeout=0", token)["events"]
    all_seqs = [e["seq"] for e in stored]
    delivered = [e["seq"] for e in seen["events"] if e["jobId"] == job_id]
    assert delivered == sorted(set(delivered)) and set(delivered) <= set(all_seqs)
    assert [s for s in delivered if s > snapshot_seq] == [s for s in all_seqs if s > snapshot_seq]
    assert len(all_seqs) >= 42 and all_seqs[-1] in delivered


def test_the_pages_indicator_says_polling_within_5s_of_a_stall_then_live_again(
    make_session: Callable[..., Session], demo_server: LiveServer, proxy: BackgroundProxy
) -> None:
    through_proxy = SimpleNamespace(url=proxy.url)  # the page reaches the server via the proxy
    s = make_session(through_proxy).open()
    indicator = s.page.locator("#connection")
    # Every state the indicator shows, with its time: Polling may last only until the new
    # socket opens (a few hundred ms), shorter than a poll of the DOM would catch.
    s.page.evaluate("""() => {
      const box = document.querySelector('#connection');
      window.__shown = [];
      new MutationObserver(() => window.__shown.push([box.dataset.state, performance.now()]))
        .observe(box, { attributes: true, attributeFilter: ['data-state'] });
    }""")
    stalled_at = s.page.evaluate("performance.now()")
    assert proxy.call("stall") >= 1
    s.page.wait_for_function("window.__shown.some(([state]) => state === 'polling')",
                             timeout=10_000)  # fmt: skip
    shown = s.page.evaluate("window.__shown")
    polling_at = next(t for state, t in shown if state == "polling")
    assert polling_at - stalled_at <= 5_000, f"Polling shown {polling_at - stalled_at} ms after"
    expect(indicator).to_have_attribute("data-state", "live", timeout=20_000)
