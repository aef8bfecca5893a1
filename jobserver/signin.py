"""Which sign-in methods are on, decided once at start from the settings and the accounts.

Open sign-in (any name, no password) is for trying the server on one's own machine: it is on
by default only while the server is local-only (it listens on a loopback address, no allowed
hosts are set and it is not behind a proxy, where loopback proves nothing) and no real method
is set up. Anywhere else it takes ``--open-signin``, and every start warns about it. Without
it the server refuses to start unless a real method is configured: password accounts
(``server.py user add``), an explicit HS256 ``secret`` shared with an application that mints
tokens, or a ``jwks_url`` whose keys verify an identity provider's RS256/ES256 tokens.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Any

from .config import Settings
from .errors import JobServerError

log = logging.getLogger(__name__)


class SignInNotConfigured(JobServerError):
    code = "SIGNIN_NOT_CONFIGURED"


@dataclass(frozen=True, slots=True)
class Methods:
    """The sign-in methods this server offers.

    Args:
        open: sign in by name alone (``POST /api/session {"userId"}``).
        password: accounts with passwords (``POST /api/session {"userId", "password"}``).
        token: tokens an application mints with the shared HS256 secret.
        jwks: RS256/ES256 tokens verified against ``jwks_url``.
    """

    open: bool
    password: bool
    token: bool
    jwks: bool

    def wire(self) -> dict[str, Any]:
        names = [n for n in ("open", "password", "token", "jwks") if getattr(self, n)]
        return {"methods": names, "openSignin": self.open}


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP (127.0.0.0/8, ::1); not a wildcard such as 0.0.0.0."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def local_only(settings: Settings) -> bool:
    """Only this machine can reach the server directly, and no proxy relays others to it."""
    return is_loopback(settings.host) and not settings.allowed_hosts and not settings.behind_proxy


def decide(settings: Settings, has_accounts: bool) -> Methods:
    """The methods that are on; SignInNotConfigured when none would be."""
    jwks = bool(settings.jwks_url)
    token = bool(settings.secret)
    real = has_accounts or jwks or token
    open_signin = settings.open_signin
    if open_signin is None:
        # An explicit secret alone leaves open sign-in on: tests and scripts pin the secret.
        open_signin = local_only(settings) and not (has_accounts or jwks)
    methods = Methods(open=open_signin, password=has_accounts, token=token, jwks=jwks)
    if not (open_signin or real):
        where = "" if local_only(settings) else " and may be reached from other machines"
        raise SignInNotConfigured(
            f"this server has no sign-in method{where}: add an account "
            "(python server.py user add NAME), set JOBSERVER_SECRET for tokens your "
            "application mints, or JOBSERVER_JWKS_URL for an identity provider's tokens "
            "(--open-signin lets anyone sign in as anyone: only for trying it out)"
        )
    return methods


def warn(settings: Settings, methods: Methods) -> None:
    """Say at every start when anyone can sign in as anyone from beyond this machine."""
    if methods.open and not local_only(settings):
        log.warning(
            "open sign-in is on and the server is reachable from beyond this machine: "
            "anyone can sign in as any user by name (turn it off with --no-open-signin)"
        )
