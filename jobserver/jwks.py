"""An identity provider's signing keys: a JWKS URL fetched off the event loop and cached."""

from __future__ import annotations

import asyncio
import logging
import math
import time

from jwt import PyJWK, PyJWKClient
from jwt.exceptions import PyJWKClientError, PyJWKSetError

from .errors import ServiceUnavailable, Unauthorized

log = logging.getLogger(__name__)

ALGORITHMS = ("RS256", "ES256")
LIFESPAN = 300.0  # keys are fetched again after this long, to follow the provider's rotation
COOLDOWN = 10.0  # an unknown key id fetches again at most this often (no fetch storms)
FETCH_TIMEOUT = 10.0


class JwksKeys:
    """The signing keys published at ``url``, by key id.

    Args:
        url: the JWKS document (an identity provider's ``jwks_uri``).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._client = PyJWKClient(url, cache_jwk_set=False, timeout=FETCH_TIMEOUT)
        self._keys: dict[str, PyJWK] = {}
        self._fetched = -math.inf
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None) -> PyJWK:
        """The key that signed a token whose header names ``kid``; Unauthorized if none."""
        if self._due(kid):
            async with self._lock:
                if self._due(kid):  # another caller may have fetched meanwhile
                    await self._fetch()
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        found = self._keys.get(kid) if kid is not None else None
        if found is None:
            raise Unauthorized("the token is signed by a key this server does not know",
                               code="INVALID_TOKEN")  # fmt: skip
        return found

    def _due(self, kid: str | None) -> bool:
        age = time.monotonic() - self._fetched
        return age > LIFESPAN or (kid not in self._keys and age > COOLDOWN)

    async def _fetch(self) -> None:
        try:
            jwk_set = await asyncio.to_thread(self._client.get_jwk_set, True)
        except (PyJWKClientError, PyJWKSetError) as exc:
            self._fetched = time.monotonic() - LIFESPAN + COOLDOWN  # try again in a while
            log.warning("could not fetch the JWKS at %s: %s", self.url, exc)
            if not self._keys:
                raise ServiceUnavailable(
                    "the identity provider's keys cannot be fetched right now",
                    code="JWKS_UNAVAILABLE",
                ) from None
            return  # keep verifying with the keys fetched before
        keys = {}
        for jwk in jwk_set.keys:
            if jwk.public_key_use in (None, "sig"):
                keys[jwk.key_id or ""] = jwk
        self._keys = keys
        self._fetched = time.monotonic()
