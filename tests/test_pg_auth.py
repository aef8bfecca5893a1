"""The shared session store on PostgreSQL (jobserver/authpg.py) against the real database."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import psycopg
import pytest

from jobserver import authpg
from jobserver.authpg import CHANNEL, PgSessions
from tests.pgcluster import URL, schema

__all__ = ["schema"]  # the fixture: a schema of its own, dropped afterwards


async def wait_until(check: Any, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


async def test_a_revocation_heard_by_notify_outlives_a_reload_that_lacks_it(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reload's snapshot may predate a revocation heard a moment ago: the id stays
    revoked. Here the snapshot never has it (only the notification was sent)."""
    monkeypatch.setattr(authpg, "RELOAD_SECONDS", 0.05)
    sessions = PgSessions(URL, schema, node_id=f"{schema}-a")
    await sessions.open()
    try:
        reloads = 0
        read = sessions.db.revoked

        async def counted() -> set[str]:
            nonlocal reloads
            got = await read()
            reloads += 1
            return got

        sessions.db.revoked = counted  # type: ignore[method-assign]
        token_id = f"{schema}-jti"
        with psycopg.connect(URL, autocommit=True) as conn:
            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, token_id))
        await wait_until(lambda: sessions.is_revoked(token_id), "the notification")
        assert token_id not in await read()  # the snapshot lacks it
        heard_at = reloads
        await wait_until(lambda: reloads >= heard_at + 2, "two reloads")
        assert sessions.is_revoked(token_id)
        assert await sessions.get(token_id) is None
    finally:
        await sessions.close()


async def test_ending_a_user_s_sessions_is_one_statement_heard_by_every_node(
    schema: str,
) -> None:
    """``revoke_user`` ends and announces the sessions in one statement (``RETURNING``): the
    node that ran it refuses them at once, another node hears each by NOTIFY."""
    here = PgSessions(URL, schema, node_id=f"{schema}-a")
    there = PgSessions(URL, schema, node_id=f"{schema}-b")
    await here.open()
    await there.open()
    try:
        expires = time.time() + 600
        alice = [await here.start("alice", "password", expires) for _ in range(2)]
        bob = await here.start("bob", "password", expires)
        assert await here.revoke_user("alice") == 2
        assert await here.revoke_user("alice") == 0  # none left open
        for session in alice:
            assert here.is_revoked(session.id) and await here.get(session.id) is None
        await wait_until(lambda: all(there.is_revoked(s.id) for s in alice), "the notices")
        assert not here.is_revoked(bob.id) and await there.get(bob.id) == bob
    finally:
        await there.close()
        await here.close()


async def test_a_revoked_session_or_token_is_announced_once_and_heard_by_every_node(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``revoke_session`` and ``revoke_token`` are each one statement with its NOTIFY: another
    node refuses the id at once (no reload runs in this test), and a second revocation of
    the same id, which changes nothing, announces nothing."""
    monkeypatch.setattr(authpg, "RELOAD_SECONDS", 600.0)  # only a NOTIFY can tell `there`
    here = PgSessions(URL, schema, node_id=f"{schema}-a")
    there = PgSessions(URL, schema, node_id=f"{schema}-b")
    await here.open()
    await there.open()
    heard: list[str] = []
    listener = await asyncpg.connect(URL)
    await listener.add_listener(CHANNEL, lambda *args: heard.append(args[3]))
    try:
        session = await here.start("alice", "password", time.time() + 600)
        token_id = f"{schema}-jti"
        for _ in range(2):
            await here.revoke(session.id)
            await here.revoke_token(token_id, time.time() + 600)
        await wait_until(lambda: there.is_revoked(session.id), "the session's notice")
        await wait_until(lambda: there.is_revoked(token_id), "the token's notice")
        assert await there.get(session.id) is None
        with psycopg.connect(URL, autocommit=True) as conn:  # notices come in commit order
            conn.execute("SELECT pg_notify(%s, 'last')", (CHANNEL,))
        await wait_until(lambda: "last" in heard, "the last notice")
        assert heard == [session.id, token_id, "last"]
    finally:
        await listener.close()
        await there.close()
        await here.close()
