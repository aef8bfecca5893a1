"""User ids already in a job store: which would merge under normalisation, and moving them.

Data written before user ids were normalised may hold ``ALICE`` and ``alice`` as two users.
Signing in now always gives ``alice``, so ``ALICE``'s jobs and notes stay where they are,
unreachable, until an administrator runs ``server.py user merge ALICE alice`` (or ``rename``
to keep them apart). The start-up report lists every such id; nothing is changed by itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from .errors import Refused
from .store.sqlite_file import try_lock
from .userids import is_safe, normalise

log = logging.getLogger(__name__)

# The events log is as old as the jobs it belongs to: jobs name every user it names.
SKIP_SCAN = frozenset({"events"})


class ServerRunning(Refused):
    """Another process (a running server) owns the job store."""

    code = "SERVER_RUNNING"


def table_columns(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """Every table of the store (SQLite's own left out) and its columns, in order."""
    names = [str(r[0]) for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
    )]  # fmt: skip
    return {n: [str(c[1]) for c in conn.execute(f'PRAGMA table_info("{n}")')] for n in names}


def user_tables(conn: sqlite3.Connection) -> list[str]:
    """Tables with a ``user_id`` column (whichever tables this and later versions add)."""
    return [name for name, columns in table_columns(conn).items() if "user_id" in columns]


def stored_ids(conn: sqlite3.Connection) -> set[str]:
    ids: set[str] = set()
    for table in user_tables(conn):
        if table not in SKIP_SCAN:
            ids.update(str(r[0]) for r in conn.execute(f'SELECT DISTINCT user_id FROM "{table}"'))
    return ids


def unreachable(ids: set[str]) -> dict[str, list[str]]:
    """For each normal form, the stored ids that are not it (their data cannot be reached).

    ``{"alice": ["ALICE", "Alice"]}``: ``ALICE`` and ``Alice`` would merge into ``alice``
    (whether or not ``alice`` has data of its own). An id whose normal form is outside the
    safe set is listed under ``""``: it can only be renamed.
    """
    found: dict[str, list[str]] = defaultdict(list)
    for user_id in sorted(ids):
        normal = normalise(user_id)
        if user_id != normal or not is_safe(normal):
            found[normal if is_safe(normal) else ""].append(user_id)
    return dict(found)


def unreachable_in(db_path: Path) -> dict[str, list[str]]:
    """``unreachable`` for the job store at ``db_path``, read-only ({} when there is none)."""
    if not db_path.exists():
        return {}
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return unreachable(stored_ids(conn))
    finally:
        conn.close()


def report(db_path: Path) -> dict[str, list[str]]:
    """Log the stored ids that normalisation left unreachable; nothing changes."""
    return log_unreachable(unreachable_in(db_path))


def log_unreachable(found: dict[str, list[str]]) -> dict[str, list[str]]:
    """Log ``unreachable``'s findings (either backend's), each with the command that ends it."""
    for normal, ids in found.items():
        if normal:
            log.warning(
                "user ids %s now sign in as %r: their data stays apart until "
                "`python server.py user merge OLD %s` (or `user rename OLD NEW`)",
                ", ".join(map(repr, ids)), normal, normal,
            )  # fmt: skip
        else:
            log.warning(
                "user ids %s are not allowed any more: their data stays apart until "
                "`python server.py user rename OLD NEW`", ", ".join(map(repr, ids)),
            )  # fmt: skip
    return found


@contextlib.contextmanager
def owned(db_path: Path) -> Iterator[sqlite3.Connection]:
    """A write connection to a job store no server is running on (its lock taken)."""
    fd = try_lock(db_path)
    if fd is None:
        raise ServerRunning("the server is running on this data dir: stop it first")
    try:
        conn = sqlite3.connect(db_path, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout=5000")
            yield conn
        finally:
            conn.close()
    finally:
        os.close(fd)


def move(conn: sqlite3.Connection, old: str, new: str) -> dict[str, int]:
    """Give everything of ``old`` to ``new`` in one transaction; rows moved per table.

    An idempotency key both used is dropped from ``old``'s job (it keeps its job, not the key).
    """
    moved: dict[str, int] = {}
    conn.execute("BEGIN IMMEDIATE")
    try:
        tables = user_tables(conn)
        if "jobs" in tables:
            conn.execute(
                "UPDATE jobs SET idempotency_key=NULL WHERE user_id=? AND idempotency_key IN "
                "(SELECT idempotency_key FROM jobs WHERE user_id=? "
                "AND idempotency_key IS NOT NULL)",
                (old, new),
            )
        for table in tables:
            if table == "events":
                # Each stored event names its user in its JSON too: what clients are sent.
                sql = ("UPDATE events SET user_id=?, data=CAST(json_set(CAST(data AS TEXT), "
                       "'$.userId', ?) AS BLOB) WHERE user_id=?")  # fmt: skip
                cur = conn.execute(sql, (new, new, old))
            else:
                cur = conn.execute(f'UPDATE "{table}" SET user_id=? WHERE user_id=?', (new, old))
            moved[table] = cur.rowcount
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return moved


def has_data(conn: sqlite3.Connection, user_id: str) -> bool:
    for table in user_tables(conn):
        if conn.execute(f'SELECT 1 FROM "{table}" WHERE user_id=? LIMIT 1', (user_id,)).fetchone():
            return True
    return False
