"""Issue 13, item 1: an identity provider's RS256/ES256 tokens, verified against its JWKS URL.

The provider is an aiohttp server on 127.0.0.1 publishing keys made in the test.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.conftest import MakeApi

ISSUER = "https://idp.example.test/"
AUDIENCE = "jobserver"


class Provider:
    """Signing keys, and the JWKS document that publishes their public halves."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.fetches = 0

    def jwks(self) -> dict[str, Any]:
        rsa_jwk = RSAAlgorithm.to_jwk(self.rsa.public_key(), as_dict=True)
        ec_jwk = ECAlgorithm.to_jwk(self.ec.public_key(), as_dict=True)
        return {"keys": [{**rsa_jwk, "kid": "r1", "use": "sig", "alg": "RS256"},
                         {**ec_jwk, "kid": "e1", "use": "sig", "alg": "ES256"}]}  # fmt: skip

    def token(self, alg: str = "RS256", kid: str = "r1", key: Any = None, **claims: Any) -> str:
        body = {"sub": "Carol@Example.com", "iss": ISSUER, "aud": AUDIENCE,
                "exp": int(time.time()) + 300, **claims}  # fmt: skip
        signer = key or (self.rsa if alg == "RS256" else self.ec)
        return jwt.encode(body, signer, algorithm=alg, headers={"kid": kid})


@pytest.fixture
async def provider(aiohttp_server: Any) -> tuple[Provider, str]:
    idp = Provider()

    async def jwks(request: web.Request) -> web.Response:
        idp.fetches += 1
        return web.json_response(idp.jwks())

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", jwks)
    server = await aiohttp_server(app, host="127.0.0.1")
    return idp, str(server.make_url("/.well-known/jwks.json"))


async def test_rs256_and_es256_tokens_of_the_provider_are_accepted(
    make_api: MakeApi, provider: tuple[Provider, str]
) -> None:
    idp, url = provider
    api = await make_api("alice", open_signin=True, jwks_url=url, jwt_audience=AUDIENCE,
                         jwt_issuer=ISSUER)
    for alg, kid in (("RS256", "r1"), ("ES256", "e1")):
        bearer = {"Authorization": f"Bearer {idp.token(alg, kid)}"}
        status, body = await api.get("/api/session", headers=bearer)
        assert (status, body) == (200, {"userId": "carol@example.com"})
    # The page trades one for a session of this server, with the cookie and sign-out.
    status, body = await api.post("/api/session", json={"token": idp.token()},
                                  headers={"Authorization": ""})  # fmt: skip
    assert status == 200 and body["userId"] == "carol@example.com" and body["method"] == "jwks"
    status, methods = await api.get("/api/session/methods")
    assert "jwks" in methods["methods"]
    assert idp.fetches == 1  # the key set is cached, not fetched per request


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("wrong-key", "INVALID_TOKEN"),
        ("unknown-kid", "INVALID_TOKEN"),
        ("expired", "TOKEN_EXPIRED"),
        ("audience", "INVALID_TOKEN"),
        ("issuer", "INVALID_TOKEN"),
        ("user-id", "INVALID_TOKEN"),
        ("alg-none", "INVALID_TOKEN"),
    ],
)
async def test_tokens_the_provider_did_not_sign_for_us_are_refused(
    make_api: MakeApi, provider: tuple[Provider, str], case: str, code: str
) -> None:
    idp, url = provider
    api = await make_api("alice", open_signin=True, jwks_url=url, jwt_audience=AUDIENCE,
                         jwt_issuer=ISSUER)
    token = {
        "wrong-key": lambda: idp.token(key=idp.other),
        "unknown-kid": lambda: idp.token(kid="nope"),
        "expired": lambda: idp.token(exp=int(time.time()) - 60),
        "audience": lambda: idp.token(aud="another-app"),
        "issuer": lambda: idp.token(iss="https://evil.example/"),
        "user-id": lambda: idp.token(sub="auth0|1234 5"),
        "alg-none": lambda: jwt.encode(
            {"sub": "carol", "exp": int(time.time()) + 60}, None, algorithm="none"
        ),
    }[case]()
    status, body = await api.get("/api/session", headers={"Authorization": f"Bearer {token}"})
    assert status == 401 and body["error"]["code"] == code, body


async def test_a_provider_that_cannot_be_reached_is_a_503_not_a_crash(make_api: MakeApi) -> None:
    api = await make_api("alice", open_signin=True, jwks_url="http://127.0.0.1:9/jwks.json")
    token = Provider().token()
    status, body = await api.get("/api/session", headers={"Authorization": f"Bearer {token}"})
    assert status == 503 and body["error"]["code"] == "JWKS_UNAVAILABLE"
    assert (await api.get("/api/session"))[0] == 200  # the server's own sessions still work
