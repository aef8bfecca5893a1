"""User ids: one normal form (NFKC, case-folded) restricted to a small safe set of characters."""

from __future__ import annotations

import re
import unicodedata

from .errors import InvalidPayload

MAX_LENGTH = 64
# After normalisation: lowercase ASCII letters, digits and . _ @ -, starting with a letter or
# a digit. Nothing that needs quoting in a URL, a log line or a file name; no look-alikes.
SAFE = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")
RULE = (
    f"1 to {MAX_LENGTH} characters: letters a-z, digits, '.', '_', '@' or '-', starting with a "
    "letter or a digit (capitals are the same as small letters)"
)


def normalise(user_id: str) -> str:
    """The one spelling of a name: Unicode NFKC, then case-folded (``ALICE`` -> ``alice``)."""
    return unicodedata.normalize("NFKC", user_id).casefold()


def is_safe(user_id: str) -> bool:
    """Whether ``user_id`` is already in normal form and within the safe set."""
    return SAFE.fullmatch(user_id) is not None


def check_user_id(user_id: object, field: str = "userId") -> str:
    """The normal form of a user id a client sent; InvalidPayload when it is not allowed."""
    if isinstance(user_id, str) and len(user_id) <= 4 * MAX_LENGTH:
        normal = normalise(user_id)
        if is_safe(normal):
            return normal
    raise InvalidPayload(f"{field} must be {RULE}")
