"""Shared fixtures: real SQLite files under tmp_path, the real app over real sockets."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from jobserver.app import create_app
from jobserver.config import Settings
from jobserver.handlers import Registry
from jobserver.store.sqlite import SqliteStore

BACKENDS = ["sqlite"]
TEST_SECRET = "test-secret-0123456789abcdef0123456789"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", port=0, demo_jobs=True, concurrency=8,
        lease_seconds=5.0, shutdown_grace_seconds=2.0, secret=TEST_SECRET,
    )  # fmt: skip


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """One store per backend; the shared store tests run against each."""
    s = SqliteStore(tmp_path / "store.db")
    await s.open()
    yield s
    await s.close()


class ApiClient:
    """A real HTTP client for the app, signed in as one user."""

    def __init__(self, client: TestClient[Any, Any], user: str, token: str) -> None:
        self.client = client
        self.user = user
        self.token = token
        self.headers = {"Authorization": f"Bearer {token}"}

    @property
    def app(self) -> Any:
        return self.client.server.app

    async def request(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        headers = {**self.headers, **kw.pop("headers", {})}
        async with self.client.request(method, path, headers=headers, **kw) as resp:
            return resp.status, await resp.json()

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> tuple[int, Any]:
        return await self.request("POST", path, **kw)

    async def as_user(self, user: str) -> ApiClient:
        return await sign_in(self.client, user)


async def sign_in(client: TestClient[Any, Any], user: str) -> ApiClient:
    async with client.post("/api/session", json={"userId": user}) as resp:
        assert resp.status == 200, await resp.text()
        token = (await resp.json())["token"]
    return ApiClient(client, user, token)


MakeApi = Callable[..., Awaitable[ApiClient]]


@pytest.fixture
async def make_api(aiohttp_client: Any, settings: Settings) -> MakeApi:
    """Start the real app (optionally with other settings or job types), signed in as a user."""

    async def make(user: str = "alice", registry: Registry | None = None,
                   **overrides: Any) -> ApiClient:
        s = dataclasses.replace(settings, **overrides)
        app = create_app(s, registry)
        client = await aiohttp_client(app)
        return await sign_in(client, user)

    return make
