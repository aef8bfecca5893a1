"""The async client: sign in, enqueue, upload, read, list, cancel, retry, wait and follow jobs."""

from __future__ import annotations

import asyncio
import builtins
import mimetypes
import os
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import quote

import aiohttp

from .api import Http, TokenProvider
from .errors import ProtocolError, WaitTimeout
from .follow import TRANSPORTS, Follow, Transport
from .models import Job, JobEvent, JobPage, Meta, Resync, event_from_wire

UPLOAD_TIMEOUT = 300.0  # seconds an upload may take as a whole


class Client:
    """A client of one jobserver, for programs that hand it work and follow that work.

    Use it as ``async with Client(url, token=...) as client:`` (or call ``close()``). Every
    call that the server refuses raises an ``ApiError`` subclass carrying the server's
    ``code``; a server that cannot be reached raises ``NetworkError``.

    Args:
        base_url: the server's URL, e.g. ``http://127.0.0.1:8080``.
        token: a bearer token from any sign-in method: ``Client.sign_in``, ``python
            server.py token USER``, or one your own application mints.
        token_provider: an async callable returning a token, asked when there is none and
            once more after a 401 (an expired token), for tokens that come and go.
        user_id: the user the token names, when known (``follow()`` of your own user asks
            the server otherwise).
        session: an aiohttp session to share (it is not closed by ``close()``).
        timeout: seconds each request may take (uploads: 300).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        token_provider: TokenProvider | None = None,
        user_id: str | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.http = Http(
            base_url, token, token_provider=token_provider, session=session, timeout=timeout
        )
        self.user_id = user_id
        self._follows: weakref.WeakSet[Follow] = weakref.WeakSet()
        self._refresh_token = ""
        self._refreshing = False  # the token provider is ours: the refresh token's

    @property
    def base_url(self) -> str:
        return self.http.base_url

    @property
    def token(self) -> str | None:
        return self.http.token

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop every follower this client started and close its HTTP session."""
        await asyncio.gather(*(f.aclose() for f in builtins.list(self._follows)))
        await self.http.close()

    # ---- signing in -----------------------------------------------------------------------

    @classmethod
    async def sign_in(
        cls,
        base_url: str,
        user_id: str | None = None,
        *,
        password: str | None = None,
        token: str | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 30.0,
    ) -> Client:
        """A client signed in through ``POST /api/session`` (see ``open_session``). A refused
        sign-in raises ``ApiError`` (``SIGNIN_DISABLED``, ``BAD_CREDENTIALS``...)."""
        client = cls(base_url, session=session, timeout=timeout)
        try:
            await client.open_session(user_id, password=password, token=token)
        except BaseException:
            await client.close()
            raise
        return client

    async def open_session(
        self, user_id: str | None = None, *, password: str | None = None, token: str | None = None
    ) -> str:
        """Sign this client in; the user id the server signed in.

        By name alone (open sign-in, on by default only for a server on one's own machine),
        by name and ``password`` (a server with accounts), or with a ``token`` that your
        application or identity provider issued (a server that exchanges those for a
        session). When the server answers with a refresh token, the client renews its access
        token with it (``POST /api/session/refresh``) after a 401, unless a ``token_provider``
        was given.
        """
        body = {k: v for k, v in (("userId", user_id), ("password", password), ("token", token))
                if v is not None}  # fmt: skip
        if not body:
            raise ValueError("sign in with a user_id (and a password) or a token")
        data = await self.http.request("POST", "/api/session", json_body=body, auth=False)
        if not isinstance(data, dict) or not isinstance(data.get("token"), str):
            raise ProtocolError("PROTOCOL", "POST /api/session answered without a token")
        self.http.token = data["token"]
        self.user_id = str(data.get("userId") or user_id or "") or None
        refresh = data.get("refreshToken")
        if isinstance(refresh, str) and refresh:
            self._refresh_token = refresh
            if self.http.token_provider is None or self._refreshing:
                self.http.token_provider = self._refreshed
                self._refreshing = True
        return self.user_id or ""

    async def _refreshed(self) -> str:
        data = await self.http.request(
            "POST", "/api/session/refresh", json_body={"refreshToken": self._refresh_token},
            auth=False,
        )  # fmt: skip
        if not isinstance(data, dict) or not isinstance(data.get("token"), str):
            raise ProtocolError("PROTOCOL", "POST /api/session/refresh answered without a token")
        return str(data["token"])

    async def sign_out(self) -> None:
        """End the session on the server (``DELETE /api/session``) and forget the token."""
        await self.http.request("DELETE", "/api/session")
        self.http.token = None
        if self._refreshing:
            self.http.token_provider = None
            self._refreshing = False

    async def whoami(self) -> str:
        """The user id the token names (``GET /api/session``)."""
        data = await self.http.request("GET", "/api/session")
        if not isinstance(data, dict) or not isinstance(data.get("userId"), str):
            raise ProtocolError("PROTOCOL", "GET /api/session answered without a userId")
        self.user_id = data["userId"]
        return self.user_id

    async def meta(self) -> Meta:
        """``GET /api/meta``: stage display names, statuses, event types, job types, head."""
        return Meta.from_wire(await self.http.request("GET", "/api/meta"))

    # ---- jobs -----------------------------------------------------------------------------

    async def submit(
        self,
        type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        max_attempts: int | None = None,
        delay_seconds: float | None = None,
        idempotency_key: str | None = None,
        label: str | None = None,
    ) -> Job:
        """Enqueue a job of ``type`` (``POST /api/jobs``); the job as queued.

        With an ``idempotency_key`` already used by one of your jobs, that job comes back
        instead of a new one. ``label`` is the job's short title in lists (by default the
        job type makes one).
        """
        body: dict[str, Any] = {"type": type, "payload": dict(payload or {})}
        if label is not None:
            body["label"] = label
        if max_attempts is not None:
            body["maxAttempts"] = max_attempts
        if delay_seconds is not None:
            body["delaySeconds"] = delay_seconds
        if idempotency_key is not None:
            body["idempotencyKey"] = idempotency_key
        return Job.from_wire(await self.http.request("POST", "/api/jobs", json_body=body))

    async def submit_many(self, jobs: Iterable[Mapping[str, Any]]) -> builtins.list[Job]:
        """Enqueue up to 1,000 jobs in one request and one commit, all or nothing; each
        job is ``{"type", "payload", "maxAttempts", "delaySeconds", "idempotencyKey",
        "label"}`` as ``POST /api/jobs`` takes it (only ``type`` is required). Returns every
        job in order; ``job.created`` is False for one an idempotency key matched.

        One refused job refuses them all: the ``ApiError``'s ``index`` names it.
        """
        body = {"jobs": [dict(job) for job in jobs]}
        return _batch(await self.http.request("POST", "/api/jobs", json_body=body))

    async def upload(
        self,
        path: str | os.PathLike[str],
        *,
        type: str | None = None,
        filename: str | None = None,
        content_type: str | None = None,
        max_attempts: int | None = None,
        idempotency_key: str | None = None,
        timeout: float = UPLOAD_TIMEOUT,
    ) -> Job:
        """Upload a file as a job (multipart ``POST /api/jobs``); the job.

        ``type`` names the job type that takes the file (``POST /api/jobs?type=``); without
        it the server's first such type does, ``pdf-notes`` on a server with the PDF plugin.
        The file is streamed from disk in chunks, never read into memory whole.
        """
        files = [(Path(path), filename or Path(path).name)]
        reply = await self._upload(files, type, content_type, max_attempts, idempotency_key,
                                   timeout)  # fmt: skip
        return Job.from_wire(reply)

    async def upload_many(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        type: str | None = None,
        max_attempts: int | None = None,
        idempotency_key: str | None = None,
        timeout: float = UPLOAD_TIMEOUT,
    ) -> builtins.list[Job]:
        """Upload several files in one request (up to 100): one job per file, in order, made
        in one commit, all or nothing (a refused file's ``ApiError.index`` names it). With an
        ``idempotency_key``, the n-th file's job is keyed ``<key>.<n>``."""
        files = [(Path(p), Path(p).name) for p in paths]
        if not files:
            raise ValueError("upload_many needs at least one file")
        reply = await self._upload(files, type, None, max_attempts, idempotency_key, timeout)
        if len(files) == 1:
            return [Job.from_wire(reply)]
        return _batch(reply)

    async def _upload(
        self,
        files: builtins.list[tuple[Path, str]],
        type: str | None,
        content_type: str | None,
        max_attempts: int | None,
        idempotency_key: str | None,
        timeout: float,
    ) -> Any:
        opened: builtins.list[IO[bytes]] = []

        def form() -> aiohttp.FormData:
            data = aiohttp.FormData()
            for source, name in files:
                handle = source.open("rb")  # a fresh one for each try: aiohttp may close it
                opened.append(handle)
                mime = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
                data.add_field("file", handle, filename=name, content_type=mime)
            if max_attempts is not None:
                data.add_field("maxAttempts", str(max_attempts))
            if idempotency_key is not None:
                data.add_field("idempotencyKey", idempotency_key)
            return data

        params = {"type": type} if type is not None else None
        try:
            return await self.http.request(
                "POST", "/api/jobs", form=form, params=params, timeout=timeout
            )
        finally:
            for handle in opened:
                handle.close()

    async def get(self, job_id: str) -> Job:
        """One of your jobs (``GET /api/jobs/{id}``); ``NotFound`` (``JOB_NOT_FOUND``) else."""
        return Job.from_wire(await self.http.request("GET", f"/api/jobs/{quote(job_id)}"))

    async def list(
        self, *, status: str | None = None, limit: int = 50, offset: int = 0,
        q: str | None = None,
    ) -> JobPage:  # fmt: skip
        """One page of your jobs, newest first (``GET /api/jobs``); ``limit`` up to 200;
        ``q``: only those whose label or type contains it (any case). The page carries the
        ``total`` and the ``counts`` per status."""
        params: dict[str, str | int | float] = {"limit": limit, "offset": offset}
        if status is not None:
            params["status"] = status
        if q:
            params["q"] = q
        return JobPage.from_wire(await self.http.request("GET", "/api/jobs", params=params))

    async def iter_jobs(
        self, *, status: str | None = None, page_size: int = 100
    ) -> AsyncGenerator[Job, None]:
        """All your jobs, newest first, page after page. A job queued meanwhile shifts the
        pages; it is not yielded twice."""
        seen: set[str] = set()
        offset: int | None = 0
        while offset is not None:
            page = await self.list(status=status, limit=page_size, offset=offset)
            for job in page.jobs:
                if job.jobId not in seen:
                    seen.add(job.jobId)
                    yield job
            offset = page.nextOffset

    async def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job; ``Conflict`` (``ILLEGAL_TRANSITION``) if finished."""
        path = f"/api/jobs/{quote(job_id)}/cancel"
        return Job.from_wire(await self.http.request("POST", path))

    async def retry(self, job_id: str) -> Job:
        """Run a failed or cancelled job again; ``Conflict`` for any other job."""
        path = f"/api/jobs/{quote(job_id)}/retry"
        return Job.from_wire(await self.http.request("POST", path))

    async def remove(self, job_id: str) -> Job:
        """Remove a finished job (``DELETE /api/jobs/{id}``: a ``job.removed`` event; it
        leaves your lists); ``Conflict`` while it is queued or running."""
        return Job.from_wire(await self.http.request("DELETE", f"/api/jobs/{quote(job_id)}"))

    async def remove_finished(self, *, status: str | None = None) -> int:
        """Remove all your finished jobs, or those of ``status`` (completed, failed or
        cancelled); how many went."""
        params: dict[str, str | int | float] = {} if status is None else {"status": status}
        reply = await self.http.request("DELETE", "/api/jobs", params=params)
        return int(reply["removed"])

    async def events(self, job_id: str) -> builtins.list[JobEvent]:
        """Every event of one job, oldest first, from the stored log
        (``GET /api/jobs/{id}/events``, page after page): its timeline, kept as long as it is."""
        out: builtins.list[JobEvent] = []
        after: int | None = 0
        while after is not None:
            reply = await self.http.request(
                "GET", f"/api/jobs/{quote(job_id)}/events", params={"after": after, "limit": 1000}
            )
            out += [event_from_wire(e) for e in reply["events"]]
            after = reply["nextAfter"]
        return out

    # ---- following ------------------------------------------------------------------------

    def follow(
        self,
        *,
        job_id: str | None = None,
        user_id: str | None = None,
        since: int | None = None,
        epoch: str | None = None,
        transports: tuple[Transport, ...] = TRANSPORTS,
        **options: Any,
    ) -> Follow:
        """Events of one job (``job_id``) or of a user (default: yours), after ``since``
        (default: from now on), over the WebSocket and by long-poll while it is down.

        Use ``async with client.follow(...) as events: async for item in events:``. Items are
        ``JobEvent`` (a subclass per type) or ``Resync``; see ``Follow`` for ``options``.
        """
        if job_id is not None and user_id is not None:
            raise ValueError("follow a job_id or a user_id, not both")
        kind: Literal["userId", "jobId"] = "jobId" if job_id is not None else "userId"
        target = job_id or user_id or self.user_id
        resolve: Callable[[], Awaitable[str]] | None = None if target else self.whoami
        follow = Follow(
            self.http, kind, target or "", since=since, epoch=epoch, transports=transports,
            resolve=resolve, **options,
        )  # fmt: skip
        self._follows.add(follow)
        return follow

    async def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        transports: tuple[Transport, ...] = TRANSPORTS,
        **options: Any,
    ) -> Job:
        """Wait until the job is completed, failed or cancelled, and return it.

        Raises ``WaitTimeout`` (a ``TimeoutError``, code ``TIMEOUT``) after ``timeout``
        seconds; a failed job is returned, not raised (see ``job.error``).
        """
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                return await self._wait(job_id, transports, options)
        except TimeoutError:
            if deadline.expired():
                raise WaitTimeout(
                    "TIMEOUT", f"job {job_id} did not finish within {timeout:g} s"
                ) from None
            raise

    async def _wait(
        self, job_id: str, transports: tuple[Transport, ...], options: dict[str, Any]
    ) -> Job:
        job = await self.get(job_id)
        if job.finished:
            return job
        async with self.follow(
            job_id=job_id, since=job.lastSeq, transports=transports, **options
        ) as events:
            async for item in events:
                if isinstance(item, Resync):
                    job = await self.get(job_id)  # what we missed: read the job instead
                    if job.finished:
                        return job
                    continue
                job = job.with_event(item)
                if job.removed:
                    return job  # the server would answer 404 now
                if job.finished:
                    latest = await self.get(job_id)
                    return latest if latest.finished else job
        raise ProtocolError("PROTOCOL", f"the events of job {job_id} ended before it did")


def _batch(reply: Any) -> builtins.list[Job]:
    """The jobs of a batch answer (``{"jobs": [...]}``), in order."""
    if not isinstance(reply, Mapping) or not isinstance(reply.get("jobs"), builtins.list):
        raise ProtocolError("PROTOCOL", f"not a batch of jobs: {str(reply)[:200]}")
    return [Job.from_wire(job) for job in reply["jobs"]]
