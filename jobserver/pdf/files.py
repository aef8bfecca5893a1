"""Where uploads live: ``<data dir>/uploads/<sha256>.pdf``, named by their content."""

from __future__ import annotations

import re
from pathlib import Path

UPLOADS = "uploads"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_sha256(value: object) -> bool:
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def uploads_dir(data_dir: Path) -> Path:
    return data_dir / UPLOADS


def stored_name(sha256: str, suffix: str = ".pdf") -> str:
    """The name of the file kept for content hash ``sha256`` (a job's payload names only the
    hash, never a path)."""
    if not is_sha256(sha256):
        raise ValueError("not a sha256 hex digest")
    return sha256 + suffix


def upload_path(data_dir: Path, sha256: str) -> Path:
    """The stored file with content hash ``sha256`` in the data dir's uploads folder."""
    return uploads_dir(data_dir) / stored_name(sha256)
