"""Shared fixtures: real SQLite files under tmp_path, the real app over real sockets."""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pytest
from aiohttp.test_utils import TestClient

from jobserver.app import create_app
from jobserver.config import Settings
from jobserver.handlers import Registry
from jobserver.store import Store
from jobserver.store.postgres import PostgresStore
from jobserver.store.sqlite import SqliteStore

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
TEST_SECRET = "test-secret-0123456789abcdef0123456789"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", port=0, demo_jobs=True, concurrency=8,
        lease_seconds=5.0, shutdown_grace_seconds=2.0, secret=TEST_SECRET,
    )  # fmt: skip


# -- stores, per backend --------------------------------------------------------------------


class Committed(Protocol):
    """Whether the event ``seq`` has committed, read independently of the store under test."""

    def __call__(self, seq: int) -> bool: ...

    def close(self) -> None: ...


class PostgresCommitted:
    """Reads the events table on a connection of its own (psycopg, not the store's asyncpg)."""

    def __init__(self, store: Store) -> None:
        assert isinstance(store, PostgresStore)
        options = f"-c search_path={store.schema}"
        self._conn = psycopg.connect(PG_URL, autocommit=True, options=options)

    def __call__(self, seq: int) -> bool:
        row = self._conn.execute("SELECT 1 FROM events WHERE seq=%s", (seq,)).fetchone()
        return row is not None

    def close(self) -> None:
        self._conn.close()


def pg_schema(root: Path, name: str) -> str:
    """A schema of its own per test and store name (the test's tmp_path tells tests apart)."""
    return "t_" + hashlib.sha256(f"{root}/{name}".encode()).hexdigest()[:16]


def drop_pg_schema(root: Path, name: str) -> None:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{pg_schema(root, name)}" CASCADE')


class SqliteCommitted:
    """Reads the file on a connection of its own (not the store's)."""

    def __init__(self, store: Store) -> None:
        assert isinstance(store, SqliteStore)
        self._conn = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)

    def __call__(self, seq: int) -> bool:
        row = self._conn.execute("SELECT 1 FROM events WHERE seq=?", (seq,)).fetchone()
        return row is not None

    def close(self) -> None:
        self._conn.close()


@dataclass(frozen=True)
class Backend:
    """How the store tests make a store of one backend.

    Args:
        make: ``make(tmp_path, name, **options)``: a new, unopened store; the same name in
            the same test is the same data (a reopened store), another name a new store.
        committed: an independent reading of the store's commits.
        drop: ``drop(tmp_path, name)`` removes what a store kept outside tmp_path.
    """

    make: Callable[..., Store]
    committed: Callable[[Store], Committed]
    drop: Callable[[Path, str], None] = lambda root, name: None


# The backends the ``store`` fixture runs each test on; a contract class names its own.
BACKENDS: dict[str, Backend] = {
    "sqlite": Backend(
        make=lambda root, name, **options: SqliteStore(root / f"{name}.db", **options),
        committed=SqliteCommitted,
    ),
    "postgres": Backend(
        # The node id is the schema's own: the node-id lock is the database's, and tests
        # running at once (pytest -n) each have their store's schema.
        make=lambda root, name, **options: PostgresStore(
            PG_URL, node_id=f"{pg_schema(root, name)}-{options.pop('node_id', 'n1')}",
            schema=pg_schema(root, name), **options,
        ),
        committed=PostgresCommitted,
        drop=drop_pg_schema,
    ),
}
MakeStore = Callable[..., Awaitable[Store]]


@pytest.fixture(params=list(BACKENDS))
def backend_name(request: pytest.FixtureRequest) -> str:
    """Which backend ``store`` is (a contract test class sets its own)."""
    return str(request.param)


@pytest.fixture
async def make_store(backend_name: str, tmp_path: Path) -> AsyncIterator[MakeStore]:
    """``await make_store(name="store", **options)``: an open store of the backend; every one
    made is closed at the end."""
    opened: list[Store] = []
    names: set[str] = set()
    backend = BACKENDS[backend_name]

    async def make(name: str = "store", **options: Any) -> Store:
        names.add(name)
        store = backend.make(tmp_path, name, **options)
        await store.open()
        opened.append(store)
        return store

    yield make
    for store in reversed(opened):
        await store.close()
    for name in names:
        backend.drop(tmp_path, name)


@pytest.fixture
async def store(make_store: MakeStore) -> Store:
    """One store per backend; the tests that take it run against each."""
    return await make_store()


@pytest.fixture
def committed(backend_name: str, store: Store) -> Iterator[Committed]:
    reading = BACKENDS[backend_name].committed(store)
    yield reading
    reading.close()


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
