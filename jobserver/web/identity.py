"""The sign-in state of one app: methods, sessions, token checks, throttles, live sessions.

Built first at start (``identity_ctx``): a server with no usable sign-in method refuses to
start before it opens anything else. ``end`` signs a session out everywhere it is live: its
WebSockets are closed with 1008 and its waiting long-polls are answered at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ..auth import Authenticator, signing_secret
from ..authdb import AuthDb, LocalSessions
from ..authpg import PgSessions
from ..config import Settings
from ..jwks import JwksKeys
from ..passwords import Verifier
from ..sessions import SessionStore
from ..signin import Methods, decide, warn
from ..store.postgres import node_id
from ..throttle import FailureThrottle

log = logging.getLogger(__name__)

Ender = Callable[[], None]


@dataclass(slots=True)
class Identity:
    """Everything sign-in needs at run time.

    Args:
        methods: the sign-in methods that are on.
        sessions: the session store (revocations known in memory).
        auth: verifies tokens.
        verifier: checks passwords off the event loop.
        per_account: failed password sign-ins per account.
        per_address: failed password sign-ins per client address.
    """

    methods: Methods
    sessions: SessionStore
    auth: Authenticator
    verifier: Verifier
    per_account: FailureThrottle
    per_address: FailureThrottle
    _live: dict[str, set[Ender]] = field(default_factory=dict)

    def track(self, token_id: str | None, ender: Ender) -> None:
        """Remember a live socket or long-poll of a session, to end it at sign-out."""
        if token_id is not None:
            self._live.setdefault(token_id, set()).add(ender)

    def untrack(self, token_id: str | None, ender: Ender) -> None:
        if token_id is None:
            return
        enders = self._live.get(token_id)
        if enders is not None:
            enders.discard(ender)
            if not enders:
                del self._live[token_id]

    def end(self, token_id: str) -> int:
        """End every live socket and long-poll of a session; how many there were."""
        enders = self._live.pop(token_id, set())
        for ender in enders:
            try:
                ender()
            except Exception:
                log.exception("ending a signed-out connection failed")
        return len(enders)


async def open_identity(settings: Settings) -> Identity:
    """Open the sign-in database (``auth.db``, or PostgreSQL's tables when the store is
    there), decide the methods (SignInNotConfigured when there is none) and the signing secret
    (``auth.signing_secret``)."""
    sessions: SessionStore
    if settings.database_url:
        shared = PgSessions(settings.database_url, settings.database_schema, node_id(settings))
        sessions = shared
    else:
        sessions = LocalSessions(AuthDb(settings.data_dir))
    try:
        await sessions.open()
        methods = decide(settings, await sessions.has_accounts())
    except BaseException:
        await sessions.close()
        raise
    secret = signing_secret(settings, lambda: shared.secret)
    warn(settings, methods)
    jwks = JwksKeys(settings.jwks_url) if settings.jwks_url else None
    auth = Authenticator(
        secret, sessions, jwks, audience=settings.jwt_audience, issuer=settings.jwt_issuer,
        user_claim=settings.jwt_user_claim,
    )  # fmt: skip
    window = settings.signin_failure_window_seconds
    identity = Identity(
        methods, sessions, auth, Verifier(),
        FailureThrottle(settings.signin_failures_per_account, window),
        FailureThrottle(settings.signin_failures_per_address, window),
    )  # fmt: skip
    if isinstance(sessions, PgSessions):  # signed out on another node: end it here too
        sessions.revoked_elsewhere = identity.end
    return identity
