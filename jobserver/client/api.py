"""The one place the client talks to the server: JSON requests, streamed uploads, the socket."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import aiohttp

from .errors import (
    JobServerClientError,
    NetworkError,
    ProtocolError,
    Unauthorized,
    api_error,
)


class TokenProvider(Protocol):
    """Returns a fresh bearer token; called before the first request and after a 401."""

    def __call__(self) -> Awaitable[str]: ...


FormFactory = Callable[[], aiohttp.FormData]


def _error_of(status: int, body: bytes) -> JobServerClientError:
    try:
        error = json.loads(body)["error"]
        refused = api_error(status, str(error["code"]), str(error["message"]))
        if isinstance(error.get("index"), int):
            refused.index = error["index"]
        return refused
    except (ValueError, KeyError, TypeError):
        text = body[:200].decode(errors="replace").strip()
        return api_error(status, f"HTTP_{status}", text or f"HTTP {status}")


class Http:
    """HTTP and WebSocket access to one server, with its bearer token.

    Args:
        base_url: the server's URL (a path prefix, as behind a proxy, is kept).
        token: a bearer token, from any sign-in method.
        token_provider: called for a token when there is none, and once again after a 401
            (an expired token), so a program can plug in its own source of tokens.
        session: an aiohttp session to use (it stays open); by default one of our own.
        timeout: seconds a request may take, unless the call says otherwise.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        token_provider: TokenProvider | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.token_provider = token_provider
        self.timeout = timeout
        self._session = session
        self._own_session = session is None

    def url(self, path: str) -> str:
        return self.base_url + path

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No cookie jar: the bearer token alone says who we are, never a cookie that
            # POST /api/session set for another user.
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def _headers(self, auth: bool) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if auth and not self.token and self.token_provider is not None:
            self.token = await self.token_provider()
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    async def refresh(self) -> bool:
        """A new token from the provider after a 401; False when there is no provider."""
        if self.token_provider is None:
            return False
        self.token = await self.token_provider()
        return True

    def network_error(self, exc: BaseException) -> NetworkError:
        if isinstance(exc, TimeoutError):
            return NetworkError("TIMEOUT", f"{self.base_url} did not answer in time")
        detail = str(exc) or type(exc).__name__
        return NetworkError("NETWORK", f"cannot reach {self.base_url}: {detail}")

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        form: FormFactory | None = None,
        params: Mapping[str, str | int | float] | None = None,
        timeout: float | None = None,
        auth: bool = True,
    ) -> Any:
        """The answer's JSON; an ``ApiError`` for an error answer, ``NetworkError`` for none.

        ``form`` builds the multipart body; it is called again if the request is repeated
        with a refreshed token, so a streamed file can be read from its start again.
        """
        repeated = refreshed = False
        while True:
            try:
                status, body = await self._send(
                    method, path, json_body, form, params, timeout, auth
                )
            except NetworkError as exc:
                # A kept-alive connection the server closed meanwhile (it restarted, or timed
                # the connection out): a read is repeated once on a new one; a write is the
                # caller's to repeat (with an idempotency key, safely).
                stale = isinstance(exc.__cause__, aiohttp.ServerDisconnectedError)
                if stale and method == "GET" and not repeated:
                    repeated = True
                    continue
                raise
            if status == 401 and auth and not refreshed and await self.refresh():
                refreshed = True
                continue
            if status >= 400:
                raise _error_of(status, body)
            try:
                return json.loads(body) if body else None
            except ValueError:
                raise ProtocolError(
                    "PROTOCOL", f"{method} {path} answered {status} with a body that is not JSON"
                ) from None

    async def _send(
        self,
        method: str,
        path: str,
        json_body: Mapping[str, Any] | None,
        form: FormFactory | None,
        params: Mapping[str, str | int | float] | None,
        timeout: float | None,
        auth: bool,
    ) -> tuple[int, bytes]:
        headers = await self._headers(auth)
        kwargs: dict[str, Any] = {}
        if json_body is not None:
            kwargs["data"] = json.dumps(json_body)
            headers["Content-Type"] = "application/json"
        elif form is not None:
            kwargs["data"] = form()
        try:
            async with self._client().request(
                method, self.url(path), headers=headers, params=params,
                timeout=aiohttp.ClientTimeout(total=timeout or self.timeout), **kwargs,
            ) as resp:  # fmt: skip
                return resp.status, await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise self.network_error(exc) from exc

    async def websocket(self, path: str, heartbeat: float) -> aiohttp.ClientWebSocketResponse:
        """An open WebSocket, authenticated by the bearer header (a 401 refreshes once)."""
        for attempt in (0, 1):
            headers = await self._headers(True)
            headers.pop("Accept")
            url = "ws" + self.url(path)[len("http") :]
            try:
                return await self._client().ws_connect(
                    url, headers=headers, heartbeat=heartbeat, autoping=True
                )
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status == 401:
                    if attempt == 0 and await self.refresh():
                        continue
                    raise Unauthorized("UNAUTHORIZED", "the token was refused", 401) from None
                raise NetworkError(
                    "NETWORK", f"the WebSocket at {url} was refused ({exc.status})", exc.status
                ) from None
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise self.network_error(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

