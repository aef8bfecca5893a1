"""Identity: the tokens this server issues and accepts, and the server secret that signs them.

A sign-in starts a session (``authdb.py``) and gets two HS256 tokens naming it (``sid``): a
short access token and a refresh token (``typ: refresh``) that lives as long as the session.
Tokens an application mints with the shared secret, and RS256/ES256 tokens of an identity
provider (``jwks.py``), are accepted too; a revoked session or token id (``sid`` or ``jti``)
is refused. User ids are normalised on the way in (``userids.py``).

Verifying a token's signature costs more than the rest of a small request, and a client sends
the same token with every request, so a verified access token is remembered (``TokenCache``):
the next request with it skips the signature, but is still refused once the token expires and
at once when its session is signed out (revocations are checked on every request, from memory).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from .config import Settings
from .datadir import private_dir
from .errors import InvalidPayload, Unauthorized
from .jwks import ALGORITHMS, JwksKeys
from .sessions import SessionStore
from .userids import check_user_id

ALGORITHM = "HS256"
REFRESH = "refresh"
CACHE_SIZE = 4096  # verified tokens remembered (oldest forgotten first)
CACHE_SECONDS = 300.0  # a remembered token is verified again after this long (JWKS key changes)


def signing_secret(settings: Settings, database_secret: Callable[[], str]) -> str:
    """The one secret tokens are signed with: the configured one, else on PostgreSQL the one
    the database keeps for every node (``database_secret``, asked only then), else the one kept
    in the data dir (made on first run)."""
    if settings.secret:
        return settings.secret
    if settings.database_url:
        return database_secret()
    path = settings.data_dir / "secret.key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    private_dir(settings.data_dir)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    return value


def issue_token(
    secret: str, user_id: str, ttl_seconds: float, *, sid: str | None = None, kind: str = ""
) -> str:
    """An HS256 token for ``user_id``; with ``sid`` it belongs to that session."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": check_user_id(user_id), "iat": now,
                              "exp": now + int(ttl_seconds)}  # fmt: skip
    if sid is not None:
        claims["sid"] = sid
    if kind:
        claims["typ"] = kind
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid token says the caller is.

    Args:
        user_id: the normalised user id.
        token_id: what signing out revokes: the session (``sid``) or the token (``jti``).
        session: whether ``token_id`` is a session of this server.
        expires_at: when the token expires (epoch seconds).
    """

    user_id: str
    token_id: str | None
    session: bool
    expires_at: float


class TokenCache:
    """Access tokens verified lately, and who each names, until ``CACHE_SECONDS`` or the
    token's expiry, whichever is sooner; at most ``size`` of them.

    Args:
        size: most tokens remembered.
    """

    __slots__ = ("_entries", "size")

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._entries: dict[str, tuple[Principal, float]] = {}

    def get(self, token: str, now: float) -> Principal | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        if now >= entry[1]:
            del self._entries[token]
            return None
        return entry[0]

    def put(self, token: str, principal: Principal, now: float) -> None:
        if len(self._entries) >= self.size:
            del self._entries[next(iter(self._entries))]  # the oldest
        self._entries[token] = (principal, min(principal.expires_at, now + CACHE_SECONDS))

    def forget(self, token: str) -> None:
        self._entries.pop(token, None)


def _invalid(message: str = "the token is not valid") -> Unauthorized:
    return Unauthorized(message, code="INVALID_TOKEN")


def _revoked() -> Unauthorized:
    return Unauthorized("this session was signed out; sign in again", code="TOKEN_REVOKED")


class Authenticator:
    """Verifies every token a request or a socket presents.

    Args:
        secret: the HS256 key (this server's sessions and applications' tokens).
        sessions: where revoked sessions and tokens are known.
        jwks: an identity provider's keys, when ``jwks_url`` is set.
        audience: the ``aud`` a JWKS-verified token must carry (empty: not checked).
        issuer: the ``iss`` a JWKS-verified token must carry (empty: not checked).
        user_claim: the claim of a JWKS-verified token that names the user.
    """

    def __init__(
        self,
        secret: str,
        sessions: SessionStore,
        jwks: JwksKeys | None = None,
        *,
        audience: str = "",
        issuer: str = "",
        user_claim: str = "sub",
    ) -> None:
        self.secret = secret
        self.sessions = sessions
        self.jwks = jwks
        self.audience = audience
        self.issuer = issuer
        self.user_claim = user_claim
        self.cache = TokenCache()

    async def verify(self, token: str) -> Principal:
        """The caller an access token names; Unauthorized when it is not valid."""
        now = time.time()
        known = self.cache.get(token, now)
        if known is not None:
            if known.token_id is not None and self.sessions.is_revoked(known.token_id):
                self.cache.forget(token)
                raise _revoked()
            return known
        claims, user_claim = await self._decode(token)
        if claims.get("typ") == REFRESH:
            raise _invalid("a refresh token only refreshes: send it to /api/session/refresh")
        principal = self._principal(claims, user_claim)
        self.cache.put(token, principal, now)
        return principal

    async def verify_refresh(self, token: str) -> Principal:
        """The session a refresh token names, if it is still open."""
        claims, user_claim = await self._decode(token)
        sid = claims.get("sid")
        if claims.get("typ") != REFRESH or not isinstance(sid, str):
            raise _invalid("this is not a refresh token")
        principal = self._principal(claims, user_claim)
        session = await self.sessions.get(sid)
        if session is None or session.user_id != principal.user_id:
            raise Unauthorized("the session has ended; sign in again", code="TOKEN_REVOKED")
        return principal

    async def _decode(self, token: str) -> tuple[dict[str, Any], str]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _invalid() from None
        alg = header.get("alg")
        options: Any = {"require": ["exp"]}
        try:
            if alg == ALGORITHM:
                claims = jwt.decode(token, self.secret, algorithms=[ALGORITHM], options=options)
                return claims, "sub"
            if alg in ALGORITHMS and self.jwks is not None:
                kid = header.get("kid")
                key = await self.jwks.key(kid if isinstance(kid, str) else None)
                if self.audience:
                    options["require"].append("aud")
                if self.issuer:
                    options["require"].append("iss")
                options["verify_aud"] = bool(self.audience)
                claims = jwt.decode(
                    token, key, algorithms=list(ALGORITHMS), options=options,
                    audience=self.audience or None, issuer=self.issuer or None,
                )  # fmt: skip
                return claims, self.user_claim
        except jwt.ExpiredSignatureError:
            raise Unauthorized(
                "the token has expired; sign in again", code="TOKEN_EXPIRED"
            ) from None
        except jwt.PyJWTError:
            raise _invalid() from None
        raise _invalid()

    def _principal(self, claims: dict[str, Any], user_claim: str) -> Principal:
        try:
            user_id = check_user_id(claims.get(user_claim), user_claim)
        except InvalidPayload as exc:
            raise _invalid(f"the token's {exc.message}") from None
        sid, jti = claims.get("sid"), claims.get("jti")
        token_id = sid if isinstance(sid, str) else jti if isinstance(jti, str) else None
        # Asked on every use (a cache of verified tokens too): on PostgreSQL the set follows
        # the other nodes' sign-outs (authpg.py).
        if token_id is not None and self.sessions.is_revoked(token_id):
            raise _revoked()
        return Principal(user_id, token_id, isinstance(sid, str), float(claims["exp"]))
