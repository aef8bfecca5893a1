"""Who uploaded each file: ``<uploads folder>/<sha256>.owners``, one user id a line.

A job may name an upload by hash only if its user sent those bytes (the content cache
still serves a second user who uploads the same file). The record sits beside the file and
shares its name, so retention removes both together. (On PostgreSQL without a shared
folder, the records are a table: ``pg_uploads.py``.)
"""

from __future__ import annotations

import os
from pathlib import Path

from .files import stored_name, uploads_dir


def owners_file(folder: Path, sha256: str) -> Path:
    return folder / stored_name(sha256, ".owners")


def owns_in(folder: Path, sha256: str, user_id: str) -> bool:
    """Whether ``user_id`` uploaded the file with this hash (and the record is still kept)."""
    try:
        lines = owners_file(folder, sha256).read_text("utf-8").splitlines()
    except FileNotFoundError:
        return False
    return user_id in lines


def add_owner_in(folder: Path, sha256: str, user_id: str) -> None:
    """Record that ``user_id`` uploaded this file; a line appended once per user."""
    if "\n" in user_id or "\r" in user_id:
        raise ValueError("a user id is one line")
    path = owners_file(folder, sha256)
    if owns_in(folder, sha256, user_id):
        os.utime(path)  # fresh again, like the file: retention keeps young records
        return
    # O_APPEND: one short write per line, so two users' lines never interleave.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        out.write(user_id + "\n")


def owns(data_dir: Path, sha256: str, user_id: str) -> bool:
    """``owns_in`` the data dir's uploads folder."""
    return owns_in(uploads_dir(data_dir), sha256, user_id)


def add_owner(data_dir: Path, sha256: str, user_id: str) -> None:
    """``add_owner_in`` the data dir's uploads folder."""
    add_owner_in(uploads_dir(data_dir), sha256, user_id)
