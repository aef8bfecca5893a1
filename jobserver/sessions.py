"""What both session stores share: revocations answered from memory, the writes behind them.

``authdb.LocalSessions`` keeps sessions in ``auth.db``, ``authpg.PgSessions`` in PostgreSQL for
every node; each supplies only its queries (``Queries``), how it opens, and how it hears of
revocations made elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    user_id: str
    method: str
    expires_at: float


class Queries(Protocol):
    """A backend's sign-in queries, async (``authpg.PgAuthDb``, ``authdb.ThreadedAuthDb``)."""

    async def start_session(self, user_id: str, method: str, expires_at: float) -> Session: ...

    async def session(self, sid: str) -> Session | None:
        """The session if it is neither revoked nor expired."""
        ...

    async def revoke_session(self, sid: str) -> None: ...

    async def revoke_token(self, jti: str, expires_at: float) -> None: ...

    async def revoke_user(self, user_id: str) -> list[str]:
        """End every session of ``user_id`` (one statement); the ids of those that were open."""
        ...

    async def has_accounts(self) -> bool: ...

    async def password_hash(self, user_id: str) -> str | None: ...


class SessionStore(ABC):
    """Where sessions live. ``is_revoked`` is asked on every request, so it answers from memory;
    a session or token revoked here is in that memory before its write is sent; a user's
    sessions (``revoke_user``) once the write says which they were (this node may hear its own
    NOTIFY first and end those sockets a second time, which is harmless).

    Args:
        db: the backend's queries.
    """

    def __init__(self, db: Queries) -> None:
        self.db = db
        self._revoked: set[str] = set()
        self._watcher: asyncio.Task[None] | None = None

    @abstractmethod
    async def open(self) -> None:
        """Read the revoked ids and start watching for revocations made elsewhere."""

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    async def _run(self, call: Awaitable[T]) -> T:
        """One query (a backend may say how its failures reach the client)."""
        return await call

    def _revoke_here(self, token_id: str) -> None:
        self._revoked.add(token_id)  # at once: the next request with it is refused

    async def start(self, user_id: str, method: str, expires_at: float) -> Session:
        return await self._run(self.db.start_session(user_id, method, expires_at))

    async def get(self, sid: str) -> Session | None:
        """The session, unless it was revoked or has expired."""
        if sid in self._revoked:
            return None
        return await self._run(self.db.session(sid))

    async def revoke(self, sid: str) -> None:
        self._revoke_here(sid)
        await self._run(self.db.revoke_session(sid))

    async def revoke_token(self, jti: str, expires_at: float) -> None:
        """Deny a token we did not issue (it has a ``jti`` but no session) until it expires."""
        self._revoke_here(jti)
        await self._run(self.db.revoke_token(jti, expires_at))

    async def revoke_user(self, user_id: str) -> int:
        """End every session of ``user_id``; how many were open."""
        ended = await self._run(self.db.revoke_user(user_id))
        for sid in ended:
            self._revoke_here(sid)
        return len(ended)

    def is_revoked(self, token_id: str) -> bool:
        return token_id in self._revoked

    async def has_accounts(self) -> bool:
        return await self._run(self.db.has_accounts())

    async def password_hash(self, user_id: str) -> str | None:
        return await self._run(self.db.password_hash(user_id))
