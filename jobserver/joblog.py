"""Job life-cycle log lines with structured fields, fed by a bus tap (every event in debug)."""

from __future__ import annotations

import logging
from typing import Any, Final

import orjson

from .models import Event, EventType

log = logging.getLogger(__name__)

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


class JobLog:
    """Logs how each job ends (completed, failed, retrying, cancelled).

    Args:
        debug: also log every event emitted, progress included (the troubleshooting switch).
    """

    def __init__(self, *, debug: bool = False) -> None:
        self.debug = debug

    def on_event(self, event: Event) -> None:
        level = OUTCOMES.get(event.type)
        if level is None and not self.debug:
            return
        body = orjson.loads(event.data)
        if self.debug:
            log.info("event %s: %s", event.type.value, body.get("message", ""), extra=fields(body))
        elif level is not None:
            verb = event.type.value.removeprefix("job.")
            log.log(level, "job %s: %s", verb, body.get("message", ""), extra=fields(body))
