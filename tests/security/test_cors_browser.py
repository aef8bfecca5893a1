"""A single-page app on another origin, in Chromium: listed in ``allowed_origins`` it imports
``jobclient.js`` from the server and uses the JSON API, long-poll and WebSocket with a bearer
token; a page on an origin not listed cannot read a thing and makes no job."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import BrowserContext

from tests.liveserver import LiveServer
from tests.security.conftest import EvilSite

BLANK = "<!doctype html><title>app</title>"
# The app's own code: the client from the server's origin, a job followed to completion.
FOLLOW = """async ([server, token, transports]) => {
  const { createJobClient } = await import(server + '/static/jobclient.js');
  const client = createJobClient({ baseUrl: server, token, storageKey: 'x' + Math.random() });
  const states = [];
  const done = new Promise((resolve) => client.on({
    onConnectionChange: (s) => states.push(s),
    onJobCompleted: (e) => resolve(e),
    onJobFailed: (e) => resolve(e),
  }));
  await client.connect({ transports });
  const job = await client.api.createJob({ type: 'demo.sleep', payload: { seconds: 0.2 } });
  client.trackJob(job.jobId);
  const event = await done;
  const page = await client.api.listJobs();
  let refused = null;
  try { await client.api.createJob({ type: 'no.such.type' }); } catch (err) { refused = err.code; }
  client.disconnect();
  return { type: event.type, jobs: page.jobs.length, states, refused };
}"""
PLAIN_FETCH = """async ([server, token]) => {
  try {
    const r = await fetch(server + '/api/jobs', { method: 'POST',
      headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' },
      body: JSON.stringify({ type: 'demo.sleep', payload: { seconds: 0 } }) });
    return 'read ' + r.status;
  } catch (err) { return err.name; }
}"""


@pytest.fixture(scope="module")
def sites() -> Iterator[tuple[EvilSite, EvilSite]]:
    app, other = EvilSite(), EvilSite()
    app.pages["/"] = other.pages["/"] = BLANK
    yield app, other
    app.close()
    other.close()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, sites: tuple[EvilSite, EvilSite]
) -> Iterator[LiveServer]:
    live = LiveServer(
        tmp_path_factory.mktemp("cors") / "data", "--demo-jobs",
        env={"JOBSERVER_ALLOWED_ORIGINS": sites[0].url},
    ).start()  # fmt: skip
    yield live
    live.stop()


@pytest.mark.parametrize("transports", [["websocket", "polling"], ["polling"]])
def test_a_listed_origin_follows_a_job_with_a_bearer_token(
    context: BrowserContext, server: LiveServer, sites: tuple[EvilSite, EvilSite],
    transports: list[str],
) -> None:  # fmt: skip
    token = server.token(f"spa-{uuid.uuid4().hex[:8]}")
    page = context.new_page()
    page.goto(sites[0].url + "/")
    result: Any = page.evaluate(FOLLOW, [server.url, token, transports])
    assert result["type"] == "job.completed"
    assert result["jobs"] == 1
    assert result["refused"] == "UNKNOWN_JOB_TYPE"  # an error's code is readable too
    assert result["states"][-1] == "idle"
    assert ("live" if "websocket" in transports else "polling") in result["states"]


def test_an_unlisted_origin_reads_nothing_and_makes_no_job(
    context: BrowserContext, server: LiveServer, sites: tuple[EvilSite, EvilSite]
) -> None:
    user = f"victim-{uuid.uuid4().hex[:8]}"
    token = server.token(user)
    page = context.new_page()
    page.goto(sites[1].url + "/")
    assert page.evaluate(PLAIN_FETCH, [server.url, token]) == "TypeError"  # CORS refused
    assert server.get("/api/jobs", token)["jobs"] == []  # the preflight stopped the POST
    listed = context.new_page()
    listed.goto(sites[0].url + "/")
    assert listed.evaluate(PLAIN_FETCH, [server.url, token]) == "read 202"
