"""The blocking client: the async ``Client`` run on an event loop in a thread of its own.

For code without an event loop (a Django or Flask view, a script). Each call blocks until the
async call it wraps is done; it works the same whether or not the calling thread runs a loop
of its own, and the client may be shared by threads.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from .client import Client
from .follow import TRANSPORTS, Follow, FollowStats, State, Transport
from .models import FollowItem, Job, JobEvent, JobPage, Meta

_T = TypeVar("_T")


class _Loop:
    """An event loop running in a daemon thread; ``run`` a coroutine on it and block."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="jobserver-client", daemon=True
        )
        self.thread.start()

    def run(self, awaitable: Awaitable[_T]) -> _T:
        async def call() -> _T:
            return await awaitable

        future = asyncio.run_coroutine_threadsafe(call(), self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # Ctrl-C while waiting: do not leave the call running
            raise

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class SyncFollow:
    """``Follow`` as a blocking iterator: ``with client.follow(...) as events: for e in events``.

    Args:
        loop: the client's loop thread.
        follow: the async follower it drives.
    """

    def __init__(self, loop: _Loop, follow: Follow) -> None:
        self._loop = loop
        self._follow = follow

    def __iter__(self) -> Iterator[FollowItem]:
        return self

    def __next__(self) -> FollowItem:
        try:
            return self._loop.run(self._follow.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def __enter__(self) -> SyncFollow:
        self.start()
        return self

    def start(self) -> None:
        """Connect; without ``since``, wait until "now" has a seq (``with`` does this)."""
        self._loop.run(self._follow.start())

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._loop.loop.is_closed():
            self._loop.run(self._follow.aclose())

    @property
    def cursor(self) -> int | None:
        return self._follow.cursor

    @property
    def epoch(self) -> str | None:
        return self._follow.epoch

    @property
    def state(self) -> State:
        return self._follow.state

    @property
    def stats(self) -> FollowStats:
        return self._follow.stats


class SyncClient:
    """The blocking twin of ``Client``: the same methods and arguments, without ``await``.

    Use it as ``with SyncClient(url, token=...) as client:`` (or call ``close()``).

    Args:
        base_url: the server's URL.
        token: a bearer token from any sign-in method.
        token_provider: a plain callable returning a token (run in a worker thread), asked
            when there is none and once more after a 401.
        user_id: the user the token names, when known.
        timeout: seconds each request may take.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        token_provider: Callable[[], str] | None = None,
        user_id: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._loop = _Loop()

        async def provide() -> str:
            assert token_provider is not None
            return await asyncio.to_thread(token_provider)

        async def make() -> Client:
            return Client(
                base_url, token, token_provider=provide if token_provider else None,
                user_id=user_id, timeout=timeout,
            )  # fmt: skip

        self.client = self._loop.run(make())

    @classmethod
    def sign_in(
        cls,
        base_url: str,
        user_id: str | None = None,
        *,
        password: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
    ) -> SyncClient:
        """A client signed in through ``POST /api/session`` (see ``Client.open_session``)."""
        client = cls(base_url, timeout=timeout)
        try:
            client.open_session(user_id, password=password, token=token)
        except BaseException:
            client.close()
            raise
        return client

    def open_session(
        self, user_id: str | None = None, *, password: str | None = None, token: str | None = None
    ) -> str:
        return self._loop.run(self.client.open_session(user_id, password=password, token=token))

    def sign_out(self) -> None:
        self._loop.run(self.client.sign_out())

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._loop.loop.is_closed():
            self._loop.run(self.client.close())
            self._loop.stop()

    @property
    def token(self) -> str | None:
        return self.client.token

    @property
    def user_id(self) -> str | None:
        return self.client.user_id

    def whoami(self) -> str:
        return self._loop.run(self.client.whoami())

    def meta(self) -> Meta:
        return self._loop.run(self.client.meta())

    def submit(
        self,
        type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        max_attempts: int | None = None,
        delay_seconds: float | None = None,
        idempotency_key: str | None = None,
        label: str | None = None,
    ) -> Job:
        return self._loop.run(self.client.submit(
            type, payload, max_attempts=max_attempts, delay_seconds=delay_seconds,
            idempotency_key=idempotency_key, label=label,
        ))  # fmt: skip

    def submit_many(self, jobs: Iterable[Mapping[str, Any]]) -> builtins.list[Job]:
        return self._loop.run(self.client.submit_many(jobs))

    def upload(
        self,
        path: str | os.PathLike[str],
        *,
        type: str | None = None,
        filename: str | None = None,
        content_type: str | None = None,
        max_attempts: int | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        return self._loop.run(self.client.upload(
            path, type=type, filename=filename, content_type=content_type,
            max_attempts=max_attempts, idempotency_key=idempotency_key,
        ))  # fmt: skip

    def upload_many(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        type: str | None = None,
        max_attempts: int | None = None,
        idempotency_key: str | None = None,
    ) -> builtins.list[Job]:
        return self._loop.run(self.client.upload_many(
            paths, type=type, max_attempts=max_attempts, idempotency_key=idempotency_key
        ))  # fmt: skip

    def get(self, job_id: str) -> Job:
        return self._loop.run(self.client.get(job_id))

    def list(self, *, status: str | None = None, limit: int = 50, offset: int = 0,
             q: str | None = None) -> JobPage:  # fmt: skip
        return self._loop.run(self.client.list(status=status, limit=limit, offset=offset, q=q))

    def iter_jobs(self, *, status: str | None = None, page_size: int = 100) -> Iterator[Job]:
        pages = self.client.iter_jobs(status=status, page_size=page_size)
        try:
            while True:
                try:
                    yield self._loop.run(pages.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            if not self._loop.loop.is_closed():
                self._loop.run(pages.aclose())

    def cancel(self, job_id: str) -> Job:
        return self._loop.run(self.client.cancel(job_id))

    def retry(self, job_id: str) -> Job:
        return self._loop.run(self.client.retry(job_id))

    def remove(self, job_id: str) -> Job:
        return self._loop.run(self.client.remove(job_id))

    def remove_finished(self, *, status: str | None = None) -> int:
        return self._loop.run(self.client.remove_finished(status=status))

    def events(self, job_id: str) -> builtins.list[JobEvent]:
        return self._loop.run(self.client.events(job_id))

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        transports: tuple[Transport, ...] = TRANSPORTS,
        **options: Any,
    ) -> Job:
        return self._loop.run(
            self.client.wait(job_id, timeout=timeout, transports=transports, **options)
        )

    def follow(
        self,
        *,
        job_id: str | None = None,
        user_id: str | None = None,
        since: int | None = None,
        epoch: str | None = None,
        transports: tuple[Transport, ...] = TRANSPORTS,
        **options: Any,
    ) -> SyncFollow:
        async def make() -> Follow:
            return self.client.follow(
                job_id=job_id, user_id=user_id, since=since, epoch=epoch,
                transports=transports, **options,
            )  # fmt: skip

        return SyncFollow(self._loop, self._loop.run(make()))
