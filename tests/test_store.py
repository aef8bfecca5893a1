"""The Store contract (``tests/store_contract.py``), run against each backend."""

from __future__ import annotations

from tests.store_contract import StoreContract


class TestSqliteStore(StoreContract):
    backend = "sqlite"


class TestPostgresStore(StoreContract):
    backend = "postgres"
