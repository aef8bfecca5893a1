"""Who uploaded each file: ``<data dir>/uploads/<sha256>.owners``, one user id a line.

A job may name an upload by hash only if its user sent those bytes (the content cache
still serves a second user who uploads the same file). The record sits beside the file and
shares its name, so retention removes both together.
"""

from __future__ import annotations

import os
from pathlib import Path

from .files import upload_path


def owners_path(data_dir: Path, sha256: str) -> Path:
    return upload_path(data_dir, sha256).with_suffix(".owners")


def owns(data_dir: Path, sha256: str, user_id: str) -> bool:
    """Whether ``user_id`` uploaded the file with this hash (and the record is still kept)."""
    try:
        lines = owners_path(data_dir, sha256).read_text("utf-8").splitlines()
    except FileNotFoundError:
        return False
    return user_id in lines


def add_owner(data_dir: Path, sha256: str, user_id: str) -> None:
    """Record that ``user_id`` uploaded this file; a line appended once per user."""
    if "\n" in user_id or "\r" in user_id:
        raise ValueError("a user id is one line")
    path = owners_path(data_dir, sha256)
    if owns(data_dir, sha256, user_id):
        os.utime(path)  # fresh again, like the file: retention keeps young records
        return
    # O_APPEND: one short write per line, so two users' lines never interleave.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        out.write(user_id + "\n")
