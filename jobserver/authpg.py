"""Sign-in state in PostgreSQL (issue 17): accounts, sessions, revocations and the token secret
shared by every node, so a token or session cookie issued by one node works on all of them.

The tables are ``auth.db``'s (``authdb.SCHEMA``), made in the store's schema under the
migration lock. A revocation commits with ``NOTIFY jobserver_revoked`` (its id as payload):
every node adds it to its in-memory set when it hears it (milliseconds), and each node reads
the whole set again every ``RELOAD_SECONDS`` and while its listening connection is down, so a
lost notification delays a sign-out elsewhere by at most that long. Times are the database's
clock, never a node's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from .authdb import SCHEMA, Account
from .errors import ServiceUnavailable
from .sessions import Session, SessionStore
from .store.pg_schema import migrate
from .tables import Tables

log = logging.getLogger(__name__)

T = TypeVar("T")
CHANNEL = "jobserver_revoked"
RELOAD_SECONDS = 1.0  # how late a lost notification can make a sign-out elsewhere
RECENT_SECONDS = 60.0
NOW = "extract(epoch from clock_timestamp())"
AUTH_TABLES = Tables(name="auth", create=SCHEMA)
META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
LIVE = f"revoked_at IS NULL AND expires_at > {NOW}"
# The auth tables with a user_id (``rename_account`` moves them, not a move of stored data).
USER_TABLES = ("accounts", "sessions")


async def connect(url: str, schema: str) -> asyncpg.Connection:
    """A connection to ``schema`` (made when missing), with the auth tables migrated."""
    try:
        conn = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise ServiceUnavailable(f"cannot reach PostgreSQL: {exc}") from None
    try:
        with contextlib.suppress(asyncpg.UniqueViolationError):
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'SET search_path TO "{schema}"')
        with contextlib.suppress(asyncpg.UniqueViolationError):  # another node, at once
            await conn.execute(META)
        await migrate(conn, [AUTH_TABLES])
    except BaseException:
        await conn.close()
        raise
    return conn


async def shared_secret(conn: Any) -> str:
    """The token secret every node signs with, made by the first node that asks."""
    await conn.execute(
        "INSERT INTO meta (key, value) VALUES ('token_secret', $1) ON CONFLICT DO NOTHING",
        secrets.token_urlsafe(48),
    )
    return str(await conn.fetchval("SELECT value FROM meta WHERE key='token_secret'"))


def _session(row: Any) -> Session:
    return Session(str(row[0]), str(row[1]), str(row[2]), float(row[3]))


class PgAuthDb:
    """``authdb.AuthDb``'s operations, async, on PostgreSQL (a pool or one connection)."""

    def __init__(self, db: Any) -> None:
        self.db = db

    async def accounts(self) -> list[Account]:
        rows = await self.db.fetch(
            "SELECT user_id, created_at, changed_at FROM accounts ORDER BY user_id"
        )
        return [Account(str(u), float(c), float(ch)) for u, c, ch in rows]

    async def has_accounts(self) -> bool:
        return bool(await self.db.fetchval("SELECT EXISTS (SELECT 1 FROM accounts)"))

    async def password_hash(self, user_id: str) -> str | None:
        value = await self.db.fetchval(
            "SELECT password_hash FROM accounts WHERE user_id=$1", user_id
        )
        return None if value is None else str(value)

    async def add_account(self, user_id: str, password_hash: str) -> bool:
        status = await self.db.execute(
            "INSERT INTO accounts (user_id, password_hash, created_at, changed_at) "
            f"VALUES ($1, $2, {NOW}, {NOW}) ON CONFLICT DO NOTHING", user_id, password_hash,
        )  # fmt: skip
        return bool(status.endswith(" 1"))

    async def set_password(self, user_id: str, password_hash: str) -> bool:
        status = await self.db.execute(
            f"UPDATE accounts SET password_hash=$1, changed_at={NOW} WHERE user_id=$2",
            password_hash, user_id,
        )  # fmt: skip
        return bool(status.endswith(" 1"))

    async def remove_account(self, user_id: str) -> bool:
        async with self._transaction() as conn:
            status = await conn.execute("DELETE FROM accounts WHERE user_id=$1", user_id)
            await _revoke_user(conn, user_id)
        return bool(status.endswith(" 1"))

    async def rename_account(self, old: str, new: str) -> None:
        async with self._transaction() as conn:
            await conn.execute(
                f"UPDATE accounts SET user_id=$1, changed_at={NOW} WHERE user_id=$2 "
                "AND NOT EXISTS (SELECT 1 FROM accounts WHERE user_id=$1)", new, old,
            )  # fmt: skip
            await _revoke_user(conn, old)

    async def start_session(self, user_id: str, method: str, expires_at: float) -> Session:
        sid = secrets.token_urlsafe(18)
        await self.db.execute(
            "INSERT INTO sessions (id, user_id, method, created_at, expires_at) "
            f"VALUES ($1, $2, $3, {NOW}, $4)", sid, user_id, method, expires_at,
        )  # fmt: skip
        return Session(sid, user_id, method, expires_at)

    async def session(self, sid: str) -> Session | None:
        row = await self.db.fetchrow(
            f"SELECT id, user_id, method, expires_at FROM sessions WHERE id=$1 AND {LIVE}", sid
        )
        return None if row is None else _session(row)

    async def sessions_of(self, user_id: str) -> list[Session]:
        rows = await self.db.fetch(
            f"SELECT id, user_id, method, expires_at FROM sessions WHERE user_id=$1 AND {LIVE} "
            "ORDER BY created_at", user_id,
        )  # fmt: skip
        return [_session(r) for r in rows]

    async def revoke_session(self, sid: str) -> None:
        """One statement, as ``_revoke_user``: announced when it ended the session."""
        await self.db.execute(
            f"WITH ended AS (UPDATE sessions SET revoked_at={NOW} WHERE id=$1 "
            "AND revoked_at IS NULL RETURNING id) SELECT pg_notify($2, id) FROM ended",
            sid, CHANNEL,
        )  # fmt: skip

    async def revoke_token(self, jti: str, expires_at: float) -> None:
        """One statement: announced when the id was not revoked already."""
        await self.db.execute(
            "WITH added AS (INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) "
            "ON CONFLICT DO NOTHING RETURNING jti) SELECT pg_notify($3, jti) FROM added",
            jti, expires_at, CHANNEL,
        )  # fmt: skip

    async def revoke_user(self, user_id: str) -> list[str]:
        return await _revoke_user(self.db, user_id)

    async def revoked(self) -> set[str]:
        rows = await self.db.fetch(
            f"SELECT id FROM sessions WHERE revoked_at IS NOT NULL AND expires_at > {NOW} "
            f"UNION ALL SELECT jti FROM revoked_tokens WHERE expires_at > {NOW}"
        )
        return {str(r[0]) for r in rows}

    async def prune(self) -> None:
        async with self._transaction() as conn:
            await conn.execute(f"DELETE FROM sessions WHERE expires_at <= {NOW}")
            await conn.execute(f"DELETE FROM revoked_tokens WHERE expires_at <= {NOW}")

    @contextlib.asynccontextmanager
    async def _transaction(self) -> Any:
        if isinstance(self.db, asyncpg.Pool):
            async with self.db.acquire() as conn, conn.transaction():
                yield conn
        else:
            async with self.db.transaction():
                yield self.db


async def _revoke_user(conn: Any, user_id: str) -> list[str]:
    """One statement: the sessions ended, each announced (the notices go at its commit)."""
    rows = await conn.fetch(
        f"WITH ended AS (UPDATE sessions SET revoked_at={NOW} WHERE user_id=$1 "
        "AND revoked_at IS NULL RETURNING id) SELECT id, pg_notify($2, id) FROM ended",
        user_id, CHANNEL,
    )  # fmt: skip
    return [str(r[0]) for r in rows]


class PgSessions(SessionStore):
    """The session store shared by every node.

    Args:
        url: the database (it may hold a password: never logged).
        schema: the store's schema; the auth tables live beside the jobs.
        node_id: named in ``pg_stat_activity``.
    """

    db: PgAuthDb

    def __init__(self, url: str, schema: str, node_id: str = "") -> None:
        super().__init__(PgAuthDb(None))
        self.url = url
        self.schema = schema
        self.node_id = node_id
        self.secret = ""
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        # Ids revoked here or heard of lately (monotonic time): a reload's snapshot may not
        # have them yet, so it does not drop them.
        self._recent: dict[str, float] = {}
        # Told each id revoked by another node (the app ends its live sockets there too).
        self.revoked_elsewhere: Callable[[str], object] | None = None

    async def open(self) -> None:
        """Migrate, read the shared secret, the revocations, and start listening."""
        if self._pool is not None:
            return
        conn = await connect(self.url, self.schema)
        try:
            self.secret = await shared_secret(conn)
        finally:
            await conn.close()
        settings = {"search_path": self.schema,
                    "application_name": f"jobserver-auth:{self.node_id}"[:63]}  # fmt: skip
        self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=2,
                                               server_settings=settings)  # fmt: skip
        self.db = PgAuthDb(self._pool)
        await self.db.prune()
        await self._listen()
        self._revoked = await self.db.revoked()
        self._watcher = asyncio.create_task(self._watch(), name="pg-auth-watch")

    async def close(self) -> None:
        await super().close()
        if self._listener is not None and not self._listener.is_closed():
            await self._listener.close()
        if self._pool is not None:
            await self._pool.close()

    async def _listen(self) -> None:
        listener = await asyncpg.connect(self.url)
        await listener.add_listener(CHANNEL, self._heard)
        self._listener = listener

    def _heard(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        if payload in self._revoked:
            return
        self._revoked.add(payload)
        self._recent[payload] = time.monotonic()
        if self.revoked_elsewhere is not None:
            try:
                self.revoked_elsewhere(payload)
            except Exception:
                log.exception("ending a session signed out elsewhere failed")

    async def _watch(self) -> None:
        """Read the whole set again now and then (a notification may have been lost, the
        listening connection cut), and listen again when it was."""
        while True:
            await asyncio.sleep(RELOAD_SECONDS)
            try:
                if self._listener is None or self._listener.is_closed():
                    await self._listen()
                revoked = await self.db.revoked()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("reading revoked sessions failed: %r", exc)
                continue
            for token_id in revoked - self._revoked:
                self._heard(None, 0, CHANNEL, token_id)
            # What expired goes; what was revoked a moment ago may not be in the snapshot.
            young = time.monotonic() - RECENT_SECONDS
            self._recent = {k: t for k, t in self._recent.items() if t > young}
            self._revoked = revoked | self._recent.keys()

    async def _run(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise ServiceUnavailable(f"the sign-in database is unreachable: {exc}") from None

    def _revoke_here(self, token_id: str) -> None:
        super()._revoke_here(token_id)
        self._recent[token_id] = time.monotonic()


class BlockingPgAuth:
    """``PgAuthDb`` for the ``server.py user ...`` commands, which are not async: each call
    runs on a loop of its own, over one connection."""

    def __init__(self, url: str, schema: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._conn = self._loop.run_until_complete(connect(url, schema))
        self._db = PgAuthDb(self._conn)

    def _call(self, name: str, *args: Any) -> Any:
        method: Callable[..., Awaitable[Any]] = getattr(self._db, name)
        return self._loop.run_until_complete(method(*args))

    def close(self) -> None:
        self._loop.run_until_complete(self._conn.close())
        self._loop.close()

    def accounts(self) -> list[Account]:
        result: list[Account] = self._call("accounts")
        return result

    def password_hash(self, user_id: str) -> str | None:
        result: str | None = self._call("password_hash", user_id)
        return result

    def add_account(self, user_id: str, password_hash: str) -> bool:
        return bool(self._call("add_account", user_id, password_hash))

    def set_password(self, user_id: str, password_hash: str) -> bool:
        return bool(self._call("set_password", user_id, password_hash))

    def remove_account(self, user_id: str) -> bool:
        return bool(self._call("remove_account", user_id))

    def rename_account(self, old: str, new: str) -> None:
        self._call("rename_account", old, new)

    def sessions_of(self, user_id: str) -> list[Session]:
        result: list[Session] = self._call("sessions_of", user_id)
        return result

    def revoke_user(self, user_id: str) -> list[str]:
        result: list[str] = self._call("revoke_user", user_id)
        return result


def blocking_secret(url: str, schema: str) -> str:
    """The shared token secret, read from outside any event loop (``server.py token``)."""

    async def read() -> str:
        conn = await connect(url, schema)
        try:
            return await shared_secret(conn)
        finally:
            await conn.close()

    return asyncio.run(read())
