"""The sign-in database (``<data dir>/auth.db``): accounts with password hashes, and sessions.

A file of its own beside the job store: sign-ins and sign-outs are rare writes that must not
queue behind the job store's writer, and the ``server.py user ...`` commands can change it
while the server runs. The server keeps the set of revoked sessions in memory (a token check
costs no query) and reloads it when another process commits (``PRAGMA data_version``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from .sessions import Session, SessionStore

FILENAME = "auth.db"
SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    user_id TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    changed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    method TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    revoked_at REAL
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id);
CREATE TABLE IF NOT EXISTS revoked_tokens (jti TEXT PRIMARY KEY, expires_at REAL NOT NULL);
"""
WATCH_SECONDS = 1.0  # how often the server looks for revocations made by another process

T = TypeVar("T")
P = ParamSpec("P")


@dataclass(frozen=True, slots=True)
class Account:
    user_id: str
    created_at: float
    changed_at: float


class AuthDb:
    """Blocking access to ``auth.db``; the server calls it from one thread of its own.

    Args:
        data_dir: the server's data folder (the file is created 0600 when missing).
    """

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = data_dir / FILENAME
        with contextlib.suppress(FileExistsError):
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA busy_timeout=5000")
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def data_version(self) -> int:
        """Changes when another connection commits to the file."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    # -- accounts ---------------------------------------------------------------------------

    def accounts(self) -> list[Account]:
        rows = self.conn.execute(
            "SELECT user_id, created_at, changed_at FROM accounts ORDER BY user_id"
        )
        return [Account(str(u), float(c), float(ch)) for u, c, ch in rows]

    def has_accounts(self) -> bool:
        return self.conn.execute("SELECT 1 FROM accounts LIMIT 1").fetchone() is not None

    def password_hash(self, user_id: str) -> str | None:
        row = self.conn.execute(
            "SELECT password_hash FROM accounts WHERE user_id=?", (user_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def add_account(self, user_id: str, password_hash: str) -> bool:
        """False when the account exists already."""
        now = time.time()
        try:
            self.conn.execute(
                "INSERT INTO accounts (user_id, password_hash, created_at, changed_at) "
                "VALUES (?, ?, ?, ?)",
                (user_id, password_hash, now, now),
            )
        except sqlite3.IntegrityError:
            return False
        return True

    def set_password(self, user_id: str, password_hash: str) -> bool:
        """False when there is no such account."""
        cur = self.conn.execute(
            "UPDATE accounts SET password_hash=?, changed_at=? WHERE user_id=?",
            (password_hash, time.time(), user_id),
        )
        return cur.rowcount > 0

    def remove_account(self, user_id: str) -> bool:
        """Remove the account and end its sessions; False when there was none."""
        with self._transaction() as conn:
            cur = conn.execute("DELETE FROM accounts WHERE user_id=?", (user_id,))
            self._revoke_user(conn, user_id)
        return cur.rowcount > 0

    def rename_account(self, old: str, new: str) -> None:
        """Move ``old``'s account (if any, and ``new`` has none) and end ``old``'s sessions."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE OR IGNORE accounts SET user_id=?, changed_at=? WHERE user_id=?",
                (new, time.time(), old),
            )
            self._revoke_user(conn, old)

    # -- sessions ---------------------------------------------------------------------------

    def start_session(self, user_id: str, method: str, expires_at: float) -> Session:
        sid = secrets.token_urlsafe(18)
        self.conn.execute(
            "INSERT INTO sessions (id, user_id, method, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (sid, user_id, method, time.time(), expires_at),
        )
        return Session(sid, user_id, method, expires_at)

    def session(self, sid: str) -> Session | None:
        """The session if it is neither revoked nor expired."""
        row = self.conn.execute(
            "SELECT id, user_id, method, expires_at FROM sessions "
            "WHERE id=? AND revoked_at IS NULL AND expires_at>?",
            (sid, time.time()),
        ).fetchone()
        return None if row is None else Session(str(row[0]), str(row[1]), str(row[2]), row[3])

    def sessions_of(self, user_id: str) -> list[Session]:
        rows = self.conn.execute(
            "SELECT id, user_id, method, expires_at FROM sessions "
            "WHERE user_id=? AND revoked_at IS NULL AND expires_at>? ORDER BY created_at",
            (user_id, time.time()),
        )
        return [Session(str(a), str(b), str(c), float(d)) for a, b, c, d in rows]

    def revoke_session(self, sid: str) -> None:
        self.conn.execute(
            "UPDATE sessions SET revoked_at=? WHERE id=? AND revoked_at IS NULL",
            (time.time(), sid),
        )

    def revoke_token(self, jti: str, expires_at: float) -> None:
        """Deny a token we did not issue (it has a ``jti`` but no session) until it expires."""
        self.conn.execute(
            "INSERT OR IGNORE INTO revoked_tokens (jti, expires_at) VALUES (?, ?)",
            (jti, expires_at),
        )

    def revoke_user(self, user_id: str) -> list[str]:
        """End every session of ``user_id``; the ids of those that were open."""
        return self._revoke_user(self.conn, user_id)

    @staticmethod
    def _revoke_user(conn: sqlite3.Connection, user_id: str) -> list[str]:
        rows = conn.execute(
            "UPDATE sessions SET revoked_at=? WHERE user_id=? AND revoked_at IS NULL RETURNING id",
            (time.time(), user_id),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def revoked(self) -> set[str]:
        """Ids of revoked sessions and tokens that have not expired yet."""
        now = time.time()
        rows = self.conn.execute(
            "SELECT id FROM sessions WHERE revoked_at IS NOT NULL AND expires_at>? "
            "UNION ALL SELECT jti FROM revoked_tokens WHERE expires_at>?",
            (now, now),
        )
        return {str(r[0]) for r in rows}

    def prune(self) -> None:
        """Forget sessions and revocations that have expired."""
        now = time.time()
        with self._transaction() as conn:
            conn.execute("DELETE FROM sessions WHERE expires_at<=?", (now,))
            conn.execute("DELETE FROM revoked_tokens WHERE expires_at<=?", (now,))


class ThreadedAuthDb:
    """``AuthDb``'s session queries (``sessions.Queries``), each run on one thread of its own,
    never on the loop.

    Args:
        db: the opened sign-in database.
    """

    def __init__(self, db: AuthDb) -> None:
        self.sync = db
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="authdb")

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        call = functools.partial(fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    async def close(self) -> None:
        await self.run(self.sync.close)
        self._thread.shutdown(wait=True)

    async def start_session(self, user_id: str, method: str, expires_at: float) -> Session:
        return await self.run(self.sync.start_session, user_id, method, expires_at)

    async def session(self, sid: str) -> Session | None:
        return await self.run(self.sync.session, sid)

    async def revoke_session(self, sid: str) -> None:
        await self.run(self.sync.revoke_session, sid)

    async def revoke_token(self, jti: str, expires_at: float) -> None:
        await self.run(self.sync.revoke_token, jti, expires_at)

    async def revoke_user(self, user_id: str) -> list[str]:
        return await self.run(self.sync.revoke_user, user_id)

    async def has_accounts(self) -> bool:
        return await self.run(self.sync.has_accounts)

    async def password_hash(self, user_id: str) -> str | None:
        return await self.run(self.sync.password_hash, user_id)


class LocalSessions(SessionStore):
    """The session store over ``auth.db``; it reads the revoked ids again when another process
    (``server.py user ...``) commits.

    Args:
        db: the opened sign-in database (owned: ``close`` closes it).
    """

    db: ThreadedAuthDb

    def __init__(self, db: AuthDb) -> None:
        super().__init__(ThreadedAuthDb(db))
        self._version = -1

    async def open(self) -> None:
        await self.db.run(self.db.sync.prune)
        await self._reload()
        self._watcher = asyncio.create_task(self._watch(), name="authdb-watch")

    async def close(self) -> None:
        await super().close()
        await self.db.close()

    async def _reload(self) -> None:
        def read() -> tuple[int, set[str]]:
            return self.db.sync.data_version(), self.db.sync.revoked()

        self._version, self._revoked = await self.db.run(read)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            try:
                if await self.db.run(self.db.sync.data_version) != self._version:
                    await self._reload()
            except sqlite3.Error:
                continue  # busy or briefly unreadable: the next look will do
