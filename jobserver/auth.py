"""Identity: HS256 tokens whose ``sub`` is the user id, and the server secret that signs them."""

from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path

import jwt

from .datadir import private_dir
from .errors import InvalidPayload, Unauthorized

ALGORITHM = "HS256"
USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def load_secret(configured: str, data_dir: Path) -> str:
    """The configured secret, else the one kept in the data dir (made on first run)."""
    if configured:
        return configured
    path = data_dir / "secret.key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    private_dir(data_dir)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    return value


def check_user_id(user_id: object) -> str:
    if not isinstance(user_id, str) or not USER_ID.match(user_id):
        raise InvalidPayload(
            "userId must be 1-64 characters: letters, digits, '.', '_', '@' or '-'"
        )
    return user_id


def issue_token(secret: str, user_id: str, ttl_seconds: int) -> str:
    now = int(time.time())
    claims = {"sub": check_user_id(user_id), "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str) -> str:
    """The user id a valid, unexpired token names; Unauthorized otherwise."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired; sign in again", code="TOKEN_EXPIRED") from None
    except jwt.PyJWTError:
        raise Unauthorized("the token is not valid", code="INVALID_TOKEN") from None
    return check_user_id(claims["sub"])
