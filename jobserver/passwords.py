"""Password hashing with Argon2id (argon2-cffi), run off the event loop, a few at a time."""

from __future__ import annotations

import asyncio
import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .errors import InvalidPayload

MIN_LENGTH = 8
MAX_LENGTH = 1024  # a longer one only costs the server hashing time
# Hashes at once: each takes 64 MiB and most of a core for a fraction of a second, so a burst
# of sign-ins waits its turn instead of taking the machine.
CONCURRENT = 2

_hasher = PasswordHasher()  # RFC 9106's second recommended profile: t=3, 64 MiB, p=4


@functools.cache
def _dummy() -> str:
    """Verified against when the account does not exist, so an unknown name takes as long as
    a wrong password and the time of the answer does not tell which names have accounts."""
    return _hasher.hash("no account has this password")


def check_password(password: object) -> str:
    if not isinstance(password, str) or not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise InvalidPayload(f"password must be {MIN_LENGTH} to {MAX_LENGTH} characters long")
    return password


def hash_password(password: str) -> str:
    """The Argon2id hash of ``password`` (blocking: for the command line)."""
    return _hasher.hash(check_password(password))


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _dummy(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


class Verifier:
    """Checks passwords on worker threads, at most ``CONCURRENT`` at once."""

    def __init__(self) -> None:
        self._slots = asyncio.Semaphore(CONCURRENT)

    async def verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored`` (None: no such account, always False)."""
        async with self._slots:
            return await asyncio.to_thread(_verify, stored, password)
