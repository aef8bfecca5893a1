"""The HTTP access log: one structured line per request, without query strings or headers."""

from __future__ import annotations

import logging

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from .keys import USER


class AccessLog(AbstractAccessLogger):
    """Logs method, path, status, duration, peer and user; never the query (it may hold a token)."""

    @property
    def enabled(self) -> bool:
        # aiohttp then neither times requests nor calls ``log`` (e.g. at --log-level WARNING).
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        millis = round(time * 1000, 1)
        self.logger.info(
            "%s %s %d %.1fms", request.method, request.path, response.status, millis,
            extra={"method": request.method, "path": request.path, "httpStatus": response.status,
                   "durationMs": millis, "remote": request.remote, "userId": request.get(USER)},
        )  # fmt: skip
