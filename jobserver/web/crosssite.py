"""Cross-site defences: the Host header must name this server, and cookie writes its own pages.

Two checks, in one middleware that runs before authentication:

- **Host** (DNS rebinding): a page on ``evil.example`` whose name an attacker points at
  127.0.0.1 reaches a local server with ``Host: evil.example``. Only the names in
  ``allowed_hosts`` are answered (by default localhost, 127.0.0.1, [::1] and the configured
  host), and always the address the connection arrived on: a Host that is that IP literal is
  the server's own origin, not a rebound name.
- **Origin** (CSRF, login CSRF): a browser attaches the session cookie to a request that a page
  on another port of the same host sends (that is "same-site", so ``SameSite=Strict`` does not
  stop it). A state-changing request that is not signed with a bearer header (a page cannot
  set one cross-origin without CORS) and that carries ``Sec-Fetch-Site`` or ``Origin`` must
  come from the server's own origin or a listed one. Requests with neither header do not come
  from a browser page (curl, programs) and pass, as in Go's ``CrossOriginProtection``.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from yarl import URL

from ..config import Settings
from ..errors import Forbidden, HostNotAllowed

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# Sec-Fetch-Site values that are not another page: the server's own page, or the user typing
# the address or following a bookmark.
OWN_SITES = frozenset({"same-origin", "none"})
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


def host_name(authority: str) -> str:
    """The host of a ``Host`` header or an allowed_hosts entry: lower case, no port, no dot at
    the end, an IPv6 address without its brackets."""
    value = authority.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else ""
    if value.count(":") > 1:
        return value  # a bare IPv6 address, as allowed_hosts may list it
    return value.partition(":")[0].rstrip(".")


def _local_address(request: web.Request) -> str:
    """The IP address the connection arrived on (an IPv4 one mapped into IPv6 unwrapped)."""
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if not isinstance(sockname, tuple) or not sockname:
        return ""
    address = str(sockname[0]).lower()
    if address.startswith("::ffff:") and "." in address:
        return address[7:]
    return address


class HostCheck:
    """Which ``Host`` headers this server answers.

    Args:
        allowed: the ``allowed_hosts`` setting; empty means the local names and ``listen``.
        listen: the address the server listens on (skipped when it is a wildcard).
    """

    def __init__(self, allowed: tuple[str, ...], listen: str) -> None:
        entries = [host_name(entry) for entry in allowed]
        self.any = "*" in entries
        names = {entry for entry in entries if not entry.startswith("*.")}
        if not allowed:
            names.update(LOCAL_NAMES)
            if host_name(listen) not in WILDCARD_HOSTS:
                names.add(host_name(listen))
        self.names = frozenset(names)
        self.domains = tuple(entry[1:] for entry in entries if entry.startswith("*."))

    def allows(self, request: web.Request) -> bool:
        if self.any:
            return True
        host = host_name(request.headers.get("Host", ""))
        if not host:
            return False
        if host in self.names or host == _local_address(request):
            return True
        return any(host.endswith(domain) or host == domain[1:] for domain in self.domains)


def _origin_key(origin: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) of an Origin or an allowed_origins entry, default port filled in."""
    try:
        url = URL(origin.strip().rstrip("/").lower())
    except ValueError:
        return None
    if url.scheme not in ("http", "https") or not url.host:
        return None
    return url.scheme, url.host, url.port


def origin_allowed(request: web.Request, allowed: tuple[str, ...], *, credentials: bool) -> bool:
    """The request's Origin is absent, the server's own (same host and port as the Host
    header), or listed; ``*`` in the list admits any Origin only when ``credentials`` (the
    session cookie) will not be used for the request.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    key = _origin_key(origin)
    if key is None:
        return "*" in allowed and not credentials  # "null": a sandboxed or file: page
    if key in {_origin_key(entry) for entry in allowed if entry != "*"}:
        return True
    try:
        # The Host header itself: request.host would be cached on the request for as long
        # as a WebSocket lives.
        own = URL.build(scheme=key[0], authority=request.headers.get("Host", ""))
    except ValueError:
        return False
    if (key[1], key[2]) == ((own.host or "").lower(), own.port):
        return True
    return "*" in allowed and not credentials


def _bearer(request: web.Request) -> bool:
    return request.headers.get("Authorization", "")[:7].lower() == "bearer "


def write_allowed(request: web.Request, allowed: tuple[str, ...]) -> bool:
    """A state-changing request may be made with the cookie from where it comes (see above)."""
    if request.method in SAFE_METHODS or _bearer(request):
        return True
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site.strip().lower() in OWN_SITES:
        return True
    if site is None and "Origin" not in request.headers:
        return True  # not sent by a browser page
    return "Origin" in request.headers and origin_allowed(request, allowed, credentials=True)


def cross_site_middleware(settings: Settings) -> Middleware:
    """Refuse other hosts' names (421 HOST_NOT_ALLOWED) and other pages' cookie writes (403)."""
    hosts = HostCheck(settings.allowed_hosts, settings.host)
    origins = settings.allowed_origins

    @web.middleware
    async def cross_site(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not hosts.allows(request):
            raise HostNotAllowed(
                "this server does not answer to that Host name; add it to allowed_hosts"
            )
        if not write_allowed(request, origins):
            raise Forbidden(
                "a page from another origin may not send this request with the session "
                "cookie; add its origin to allowed_origins or send a bearer token",
                code="ORIGIN_NOT_ALLOWED",
            )
        return await handler(request)

    return cross_site
