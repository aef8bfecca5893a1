"""Log lines about jobs and subscriptions, with structured fields.

How each job ends is logged at INFO/WARNING (a bus tap). Every event emitted and every
subscription is logged at DEBUG on loggers of their own, which the debug switch turns on
(``--debug``); ``--log-level DEBUG`` shows them too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

import orjson

from .models import Event, EventType

log = logging.getLogger(__name__)
events_log = logging.getLogger("jobserver.events")
subscriptions_log = logging.getLogger("jobserver.subscriptions")

OUTCOMES: Final = {
    EventType.COMPLETED: logging.INFO,
    EventType.CANCELLED: logging.INFO,
    EventType.RETRYING: logging.WARNING,
    EventType.FAILED: logging.WARNING,
}


def fields(body: dict[str, Any]) -> dict[str, Any]:
    """The log fields of an event's wire body (the same names as on the wire)."""
    out: dict[str, Any] = {
        "seq": body.get("seq"),
        "event": body.get("type"),
        "jobId": body.get("jobId"),
        "userId": body.get("userId"),
        "jobType": body.get("jobType"),
        "status": body.get("status"),
        "stage": body.get("stage"),
        "progress": body.get("progress"),
        "attempt": body.get("attempt"),
    }
    result = body.get("result")
    if isinstance(result, dict):
        if "processingTimeMs" in result:
            out["processingTimeMs"] = result["processingTimeMs"]
        if "cacheHit" in result:
            out["cacheHit"] = result["cacheHit"]
    error = body.get("error")
    if isinstance(error, dict):
        out["errorCode"] = error.get("code")
    return out


def on_event(event: Event) -> None:
    """The bus tap: how a job ended; with debug on, every event."""
    level = OUTCOMES.get(event.type)
    if level is not None and not log.isEnabledFor(level):
        level = None  # nobody would see it: skip decoding the event
    debug = events_log.isEnabledFor(logging.DEBUG)
    if level is None and not debug:
        return
    body = orjson.loads(event.data)
    if debug:
        events_log.debug(
            "event %s: %s", event.type.value, body.get("message", ""), extra=fields(body)
        )
    if level is not None:
        verb = event.type.value.removeprefix("job.")
        log.log(level, "job %s: %s", verb, body.get("message", ""), extra=fields(body))


def subscription(
    action: str,
    transport: str,
    user_id: str | None,
    target: Mapping[str, str],
    since: int | None = None,
) -> None:
    """Log a subscribe or unsubscribe (``action``) over ``transport`` ("ws", "longpoll")."""
    if subscriptions_log.isEnabledFor(logging.DEBUG):
        what = " ".join(f"{k}={v}" for k, v in target.items())
        subscriptions_log.debug(
            "%s %s over %s", action, what, transport,
            extra={"userId": user_id, "transport": transport, "since": since,
                   "target": dict(target)},
        )  # fmt: skip


@contextmanager
def debug_logging(enabled: bool) -> Iterator[None]:
    """While inside, log every event and every subscription (when ``enabled``)."""
    loggers = (events_log, subscriptions_log)
    saved = [lg.level for lg in loggers]
    if enabled:
        for lg in loggers:
            lg.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        for lg, level in zip(loggers, saved, strict=True):
            lg.setLevel(level)
