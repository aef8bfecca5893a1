"""Metrics and debug logs of live delivery: WebSocket connections, drops, long-poll waiters."""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any

import aiohttp
import pytest

from jobserver.metrics import close_reason
from tests.conftest import ApiClient, MakeApi
from tests.test_ops import Samples, scrape, value
from tests.wsraw import CLOSE, RawWs


async def metric_becomes(api: ApiClient, name: str, want: float, **labels: str) -> Samples:
    """Scrape until ``name{labels}`` equals ``want`` (bounded); the last scrape."""
    async with asyncio.timeout(10):
        while True:
            _, samples = await scrape(api)
            if value(samples, name, **labels) == want:
                return samples
            await asyncio.sleep(0.05)


def test_close_codes_map_to_a_few_reasons() -> None:
    cases = {1000: "normal", 1001: "normal", 1006: "lost", None: "lost", 1008: "policy",
             1009: "too_big", 1013: "too_many", 4000: "overflow", 4902: "client", 3999: "other"}
    assert {code: close_reason(code) for code in cases} == cases


async def test_websocket_connections_and_disconnects_by_reason(make_api: MakeApi) -> None:
    api = await make_api(ws_auth_timeout_seconds=0.3)
    port = api.client.port
    assert port is not None
    clean = await api.client.ws_connect("/ws", headers=api.headers)
    dropped = await RawWs.connect(port, api.headers)
    assert dropped.status == 101
    await metric_becomes(api, "websocket_connections", 2)
    await clean.close()  # 1000
    await dropped.close()  # no close frame at all
    samples = await metric_becomes(api, "websocket_connections", 0)
    samples = await metric_becomes(api, "websocket_disconnects_total", 1, reason="lost")
    assert value(samples, "websocket_disconnects_total", reason="normal") == 1
    silent = await RawWs.connect(port)  # never authenticates: closed with 1008
    assert silent.status == 101
    opcode, _ = await asyncio.wait_for(silent.frame(), 5)
    assert (opcode, silent.close_code) == (CLOSE, 1008)
    silent.send_raw(struct.pack("!H", 1008), CLOSE)  # answer the closing handshake
    samples = await metric_becomes(api, "websocket_disconnects_total", 1, reason="policy")
    assert value(samples, "websocket_connects_total") == 3
    await silent.close()


async def test_long_poll_waiters_and_their_delivery_lag(make_api: MakeApi) -> None:
    api = await make_api()
    _, meta = await api.get("/api/meta")
    poll = asyncio.create_task(api.get(f"/api/events?since={meta['seq']}&timeout=20"))
    await metric_becomes(api, "longpoll_waiters", 1)
    _, job = await api.post("/api/jobs", json={"type": "demo.sleep", "delaySeconds": 60})
    status, page = await asyncio.wait_for(poll, 10)
    assert status == 200 and page["events"][0]["jobId"] == job["jobId"]
    samples = await metric_becomes(api, "longpoll_waiters", 0)
    assert value(samples, "event_fanout_lag_seconds_count", transport="longpoll") == 1


async def test_debug_switch_logs_every_subscription_and_event(
    make_api: MakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="jobserver.subscriptions")
    api = await make_api(debug=True)
    caplog.clear()
    ws = await api.client.ws_connect("/ws", headers=api.headers)
    await ws.receive_json()  # authenticated
    await ws.send_json({"type": "subscribe", "userId": "alice", "since": 0})
    await ws.send_json({"type": "unsubscribe", "userId": "alice"})
    await ws.send_json({"type": "ping"})
    while (await ws.receive_json())["type"] != "pong":
        pass
    await ws.close()
    await api.get("/api/events?timeout=0&jobId=nope")
    _, job = await api.post("/api/jobs", json={"type": "demo.sleep", "payload": {"seconds": 0}})
    subs = [r for r in caplog.records if r.name == "jobserver.subscriptions"]
    got: list[tuple[Any, ...]] = [(r.getMessage(), getattr(r, "transport", None)) for r in subs]
    assert got == [("subscribe userId=alice over ws", "ws"),
                   ("unsubscribe userId=alice over ws", "ws"),
                   ("poll jobId=nope over longpoll", "longpoll")]
    assert all(getattr(r, "userId", None) == "alice" for r in subs)
    async with asyncio.timeout(10):
        while not any(r.name == "jobserver.events" and getattr(r, "jobId", None) == job["jobId"]
                      for r in caplog.records):
            await asyncio.sleep(0.02)


async def test_without_the_debug_switch_subscriptions_are_not_logged(
    make_api: MakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    api = await make_api()
    async with api.client.ws_connect("/ws", headers=api.headers) as ws:
        await ws.receive_json()
        await ws.send_json({"type": "subscribe", "userId": "alice"})
        assert (await ws.receive_json())["type"] == "subscribed"
    assert not [r for r in caplog.records if r.name == "jobserver.subscriptions"]
    assert isinstance(ws, aiohttp.ClientWebSocketResponse)
