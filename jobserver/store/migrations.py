"""Versioned schema migrations for SQLite: the core's tables and every plugin's, at start-up.

Each set of ``Tables`` keeps its version in ``meta`` (``schema:<name>``). A new database gets
the current DDL at once; an older one runs the migrations from its version, each set in one
transaction with its new version, so a crash mid-way leaves it at the old version or the new.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence

from ..errors import JobServerError
from ..tables import Tables
from .schema import payload_index

log = logging.getLogger(__name__)


class SchemaTooNew(JobServerError):
    code = "SCHEMA_TOO_NEW"
    status = 503


def _version(conn: sqlite3.Connection, tables: Tables) -> int:
    has_meta = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
    ).fetchone()
    if has_meta:
        row = conn.execute(
            "SELECT value FROM meta WHERE key=?", (f"schema:{tables.name}",)
        ).fetchone()
        if row is not None:
            return int(row[0])
    if tables.legacy_table and conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (tables.legacy_table,)
    ).fetchone():
        return tables.legacy_version
    return 0


def steps(tables: Tables, current: int) -> list[str]:
    """The DDL that brings ``tables`` from the database's version ``current`` to this code's
    (none when they are there), for either backend. A database whose tables are newer than
    this code refuses to open (SchemaTooNew) rather than be written wrongly."""
    if current > tables.version:
        raise SchemaTooNew(
            f"the database's {tables.name} tables are at version {current}, newer than "
            f"this server's {tables.version}: run the release that wrote it, or a newer one"
        )
    if current == tables.version:
        return []
    if current == 0:
        return [tables.create]
    return [tables.migrations[n] for n in range(current + 1, tables.version + 1)]


def migrated(tables: Tables, current: int) -> None:
    """Say so when existing tables were migrated (a new database's were only made)."""
    if current:
        log.warning("migrated the %s tables from version %d to %d", tables.name, current,
                    tables.version)  # fmt: skip


def migrate(conn: sqlite3.Connection, all_tables: Sequence[Tables]) -> dict[str, int]:
    """Bring every set of tables to its current version (``steps``); returns
    ``{name: version}``. ``all_tables`` starts with the core's (it makes ``meta``)."""
    versions: dict[str, int] = {}
    for tables in all_tables:
        current = _version(conn, tables)
        script = ";\n".join(steps(tables, current))
        if script:
            try:
                conn.executescript(
                    f"BEGIN IMMEDIATE;\n{script};\n"
                    f"INSERT INTO meta (key, value) VALUES ('schema:{tables.name}', "
                    f"'{tables.version}') ON CONFLICT (key) DO UPDATE SET value=excluded.value;\n"
                    "COMMIT;"
                )
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise
            migrated(tables, current)
        for key in tables.payload_index:
            conn.execute(payload_index(key))
        versions[tables.name] = tables.version
    return versions
