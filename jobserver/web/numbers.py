"""Whole numbers sent by clients (query strings, JSON, WebSocket messages): checked, or a 400."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidPayload

# str.isdigit() is true for "²" (which int() refuses) and for other scripts' digits (which it
# reads): only ASCII digits count, and few enough of them that int() never refuses them.
MAX_DIGITS = 19
BIGGEST = 2**63 - 1  # SQLite's largest integer


def whole(value: Any, name: str, low: int, high: int, *, code: str | None = None) -> int:
    """``value`` as an int from ``low`` to ``high``: an int, or a string of ASCII digits."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= MAX_DIGITS:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidPayload(f"{name} must be a whole number from {low} to {high}", code=code)
    return value
