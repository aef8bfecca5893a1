"""Answering a write's caller: its ``done`` callback, or its future; shared by every backend."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def answer(
    done: Callable[[Any, BaseException | None], None] | None,
    future: asyncio.Future[Any] | None,
    ok: bool,
    value: Any,
) -> None:
    """Call ``done`` with (result, None) or (None, error); else resolve ``future`` once. A
    callback that raises is logged: it must not stop the other callers being answered."""
    if done is not None:
        try:
            done(value, None) if ok else done(None, value)
        except Exception:
            log.exception("a write's completion callback failed")
    elif future is not None and not future.done():
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
