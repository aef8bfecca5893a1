"""The data folder: private (folders 0700, files 0600) and writable, or one clear line why not."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DataDirUnusable

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """``path`` and any missing parents, made readable by this user only."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    return path


def create_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_EXCL) -> int:
    """Open ``path`` with ``flags``, creating it readable by this user only; the descriptor."""
    return os.open(path, flags, FILE_MODE)


def tighten(path: Path) -> None:
    """Take group and other access away from a file or folder this server made earlier."""
    try:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            path.chmod(mode & 0o700)
    except FileNotFoundError:
        pass


def prepare(data_dir: Path) -> None:
    """Make the data folder (0700) and prove a file can be made in it: DataDirUnusable if not."""
    probe = data_dir / f".probe-{os.getpid()}"
    try:
        private_dir(data_dir)
        os.close(create_private(probe))
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise DataDirUnusable(
            f"cannot write to the data folder {data_dir} ({reason}); "
            "give the server a writable folder with --data-dir"
        ) from None
