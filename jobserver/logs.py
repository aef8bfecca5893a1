"""Log output for the server entry point: one JSON object per line, or text; secrets scrubbed.

The package itself only calls ``logging.getLogger(__name__)``; ``configure`` is called once by
the command line. Structured fields travel as ``extra={...}`` (jobId, userId, stage, ...).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final, TextIO

import orjson

# Attributes every LogRecord has; anything else on a record came in through ``extra``.
_STANDARD: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")
_PAIR = re.compile(
    r"(?i)\b(token|access_token|secret|password|api_key|apikey|authorization)"
    r"([\"']?\s*[=:]\s*[\"']?)([^\s\"'&,;]+)"
)
REDACTED: Final = "[redacted]"
# What each pattern above needs to find: text with none of these (most log lines) is kept as
# it is after one search instead of three substitutions.
_HINTS = r"eyJ|(?i:bearer|token|secret|password|api_?key|authorization)"


class Redactor:
    """Blanks out tokens (JWTs, bearer values, ``token=...`` pairs) and known secret values.

    Args:
        secrets: exact values never to print (the signing secret, API keys); short ones are
            ignored, as they would blank out ordinary words.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True)
        self._secrets = re.compile("|".join(map(re.escape, values))) if values else None
        self._hints = re.compile("|".join([*map(re.escape, values), _HINTS]))

    def __call__(self, text: str) -> str:
        if self._hints.search(text) is None:
            return text
        if self._secrets is not None:
            text = self._secrets.sub(REDACTED, text)
        text = _JWT.sub(REDACTED, text)
        text = _BEARER.sub(rf"\1 {REDACTED}", text)
        return _PAIR.sub(rf"\1\2{REDACTED}", text)


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a call passed with ``extra=``."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _clean(value: Any, redact: Redactor) -> Any:
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {str(k): _clean(v, redact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v, redact) for v in value]
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the record's extras."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        line: dict[str, Any] = {
            "time": stamp.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": self.redact(record.getMessage()),
        }
        for key, value in extras(record).items():
            if value is not None:  # a field that does not apply is left out
                line.setdefault(key, _clean(value, self.redact))
        if record.exc_info:
            line["exception"] = self.redact(self.formatException(record.exc_info))
        return orjson.dumps(line).decode()


class TextFormatter(logging.Formatter):
    """For people: ``time LEVEL logger message key=value ...``."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = " ".join(f"{k}={v}" for k, v in extras(record).items() if v is not None)
        if fields:
            head, sep, tail = text.partition("\n")  # keep a traceback below the fields
            text = f"{head} {fields}{sep}{tail}"
        return self.redact(text)


def configure(
    fmt: str, level: str, secrets: Iterable[str] = (), stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record to ``stream`` (stderr) as ``fmt`` ("json" or "text")."""
    redact = Redactor(secrets)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(redact) if fmt == "json" else TextFormatter(redact))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)
    return handler
