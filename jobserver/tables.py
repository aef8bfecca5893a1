"""What a plugin declares to keep data of its own: tables with versioned migrations, write ops.

A plugin's storage module holds module-level ``Tables`` and ``@write_op`` functions. Every
store backend imports that module where it writes (SQLite: in its writer process), creates
or migrates the tables at start-up, and runs the ops inside its own transactions, so a
plugin's rows commit together with the job events written beside them.

SQL here must run on every backend: ``?`` placeholders, standard DDL, and upserts written as
``INSERT ... ON CONFLICT (...) DO UPDATE``.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

PAYLOAD_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")


class Tx(Protocol):
    """The transaction a write op runs in (SQLite: the writer's connection)."""

    def execute(self, sql: str, params: Any = ..., /) -> Any: ...


@dataclass(frozen=True, slots=True)
class Tables:
    """A plugin's tables and how to bring an older copy of them up to date.

    Args:
        name: the namespace its version is kept under (e.g. ``pdf-notes``).
        create: the DDL of the current version, ``IF NOT EXISTS`` throughout, so running it
            over tables made before versions were kept changes nothing.
        version: the current version.
        migrations: ``{n: script}`` takes version ``n - 1`` to ``n``.
        legacy_table: a table that tells, when no version was recorded, that these tables
            were made by a release from before versions were kept ...
        legacy_version: ... and so are at this version (then ``migrations`` run from it).
        payload_index: keys of the jobs' payloads the plugin finds jobs by
            (``Store.payload_named``): each backend indexes the jobs that have one, in its
            own words, at every start (``IF NOT EXISTS``; not versioned).
    """

    name: str
    create: str
    version: int = 1
    migrations: Mapping[int, str] = field(default_factory=dict)
    legacy_table: str = ""
    legacy_version: int = 1
    payload_index: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        missing = [n for n in range(2, self.version + 1) if n not in self.migrations]
        if missing:
            raise ValueError(f"tables {self.name!r} have no migration to version {missing[0]}")
        for key in self.payload_index:
            payload_key(key)


def payload_key(key: str) -> str:
    """``key`` if it may be written into SQL as a payload key (a plain name), else ValueError:
    an index is used only by a query that names its key as the index does, not as a
    parameter."""
    if not PAYLOAD_KEY.fullmatch(key):
        raise ValueError(f"a payload key to look jobs up by must be a plain name: {key!r}")
    return key


@dataclass(frozen=True, slots=True)
class WriteOp:
    name: str
    run: Callable[..., Any]

    def __call__(self, tx: Tx, *args: Any) -> Any:
        return self.run(tx, *args)


def write_op(name: str) -> Callable[[Callable[..., Any]], WriteOp]:
    """Declare ``fn(tx, *args)`` as the write op ``name``: ``store.write(name, *args)`` runs
    it in the store's next transaction and returns what it returns (plain data only)."""

    def declare(fn: Callable[..., Any]) -> WriteOp:
        return WriteOp(name, fn)

    return declare


def declared_in(module: types.ModuleType) -> tuple[list[Tables], dict[str, WriteOp]]:
    """The tables and write ops a storage module declares."""
    tables = [v for v in vars(module).values() if isinstance(v, Tables)]
    ops = {v.name: v for v in vars(module).values() if isinstance(v, WriteOp)}
    return tables, ops
