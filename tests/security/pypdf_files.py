"""pypdf's own encryption test files (``resources/encryption/`` of its sdist), for the tests.

They are fetched once with pip from PyPI (the sdist of the pypdf version the tests install)
and cached under ``~/.cache/jobserver-tests/``; the files are pypdf's, not copied into this
repository.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

# The user password of each file that has one (from the qpdf commands in pypdf's tests);
# every other file opens with an empty user password.
USER_PASSWORDS = {
    "r2-user-password.pdf": "asdfzxcv",
    "r3-user-password.pdf": "asdfzxcv",
    "r4-user-password.pdf": "asdfzxcv",
    "r4-aes-user-password.pdf": "asdfzxcv",
    "r5-user-password.pdf": "asdfzxcv",
    "r6-user-password.pdf": "asdfzxcv",
    "r6-both-passwords.pdf": "foo",
    "r6-cleartext-metadata.pdf": "foo",
}


def encryption_files() -> list[Path]:
    """The PDFs of pypdf's ``resources/encryption/``, fetched and unpacked once."""
    version = importlib.metadata.version("pypdf")
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = home / "jobserver-tests" / f"pypdf-{version}" / "encryption"
    if not folder.is_dir():
        with tempfile.TemporaryDirectory() as temp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                 "--no-binary", ":all:", f"pypdf=={version}",
                 "--dest", temp],
                check=True, capture_output=True, timeout=300,
            )  # fmt: skip
            (sdist,) = Path(temp).glob("pypdf-*.tar.gz")
            unpacked = Path(temp) / "encryption"
            unpacked.mkdir()
            with tarfile.open(sdist) as tar:
                for member in tar.getmembers():
                    parts = Path(member.name).parts
                    if parts[1:3] == ("resources", "encryption") and member.name.endswith(".pdf"):
                        member.name = parts[-1]
                        tar.extract(member, unpacked, filter="data")
            folder.parent.mkdir(parents=True, exist_ok=True)
            os.replace(unpacked, folder)  # whole or not at all
    return sorted(folder.glob("*.pdf"))
