"""The SQLite file on disk: made whole and private (0600), refused when empty or damaged.

Runs in the writer process. A new file is set up under a temporary name and renamed into
place, so a file at the store's path has always been set up: an empty one was cut short by
something else, and is refused rather than silently replaced by a new, empty job log. After
an unclean stop the file gets SQLite's ``quick_check``, cut off after a time limit so a big
file cannot hold the start for long.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from ..datadir import create_private, tighten
from ..errors import DatabaseDamaged

log = logging.getLogger(__name__)

# SQLite's primary result codes that mean the file itself is bad.
SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26
SQLITE_INTERRUPT = 9
SQLITE_FULL = 13
CHECK_ERRORS = 5  # quick_check stops after this many problems; the first ones say enough
# meta key the writer sets to "1" when it stops cleanly (end of its pipe) and "0" on start.
CLEAN_STOP = "clean_stop"


def try_lock(path: Path) -> int | None:
    """Take the store's lock file (beside it, made private) without waiting: its descriptor
    (closing it lets go), or None while another process holds it."""
    lock = path.with_suffix(".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    tighten(lock)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def is_damage(exc: sqlite3.Error) -> bool:
    """``exc`` says the file is not a (sound) SQLite database."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return code in (SQLITE_CORRUPT, SQLITE_NOTADB)


def siblings(path: Path) -> tuple[Path, Path, Path]:
    """The database file and the WAL and shared-memory files SQLite keeps beside it."""
    return path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def damaged(path: Path, detail: str) -> DatabaseDamaged:
    detail = " ".join(detail.split())  # quick_check's report has line breaks: one line
    return DatabaseDamaged(
        f"the database {path} is damaged ({detail}); the server will not start on it. "
        f"Restore it from a backup, or move it and its -wal file away to start a new, "
        "empty job log"
    )


def connect(path: Path, *, first: bool, check_seconds: float) -> sqlite3.Connection:
    """A connection to ``path`` that never creates it, except on the store's first start.

    ``first``: the server is starting (not a writer started again after one died): a
    missing file is made, an empty one refused, and one left by an unclean stop checked.
    """
    if first:
        if not path.exists():
            _create(path)
        elif path.stat().st_size == 0:
            raise DatabaseDamaged(
                f"the database {path} is empty (0 bytes): it was cut short or replaced, and "
                "the server will not start a new job log in its place. Restore it from a "
                "backup, or delete it to start a new, empty one"
            )
        for file in siblings(path):
            tighten(file)  # made 0644 by an earlier release
    conn = _open(path)
    if first:
        try:
            _check(conn, path, check_seconds)
        except BaseException:
            conn.close()
            raise
    return conn


def _open(path: Path) -> sqlite3.Connection:
    # mode=rw: a writer started again while the file is gone (storage unmounted, folder
    # moved) fails and is tried again, instead of starting a new, empty log.
    uri = path.resolve().as_uri() + "?mode=rw"
    return sqlite3.connect(uri, uri=True, isolation_level=None)


def _create(path: Path) -> None:
    """An empty database at ``path``, set to WAL, made beside it and renamed into place."""
    temp = path.with_name(path.name + ".new")
    for file in siblings(temp):
        file.unlink(missing_ok=True)  # a creation cut short
    os.close(create_private(temp))  # SQLite gives the -wal and -shm files the same mode
    conn = sqlite3.connect(temp, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")  # writes the first page: never 0 bytes again
    finally:
        conn.close()  # the last connection: the WAL is checkpointed and removed
    temp.replace(path)


def _check(conn: sqlite3.Connection, path: Path, seconds: float) -> None:
    """DatabaseDamaged if the file is not sound; ``quick_check`` only after an unclean stop."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key=?", (CLEAN_STOP,)).fetchone()
    except sqlite3.DatabaseError as exc:
        if is_damage(exc):
            raise damaged(path, str(exc)) from None
        row = None  # no meta table yet (a new file): the check is quick
    if (row is not None and row[0] == "1") or seconds <= 0:
        return
    started = time.monotonic()
    # The check is one long step inside SQLite: only an interrupt from another thread cuts
    # it off (a progress handler is not called until it ends).
    timer = threading.Timer(seconds, conn.interrupt)
    timer.start()
    try:
        rows = conn.execute(f"PRAGMA quick_check({CHECK_ERRORS})").fetchall()
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF == SQLITE_INTERRUPT:
            log.warning(
                "the database check after an unclean stop was cut off after %.0fs "
                "(%d MB); the rest of %s is not checked",
                seconds, path.stat().st_size // 1_000_000, path,
            )  # fmt: skip
            return
        raise damaged(path, str(exc)) from None
    finally:
        timer.cancel()
    problems = [str(r[0]) for r in rows]
    if problems != ["ok"]:
        raise damaged(path, "; ".join(problems))
    log.info("checked %s after an unclean stop in %.1fs: ok", path, time.monotonic() - started)
