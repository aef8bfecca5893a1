"""The publish-order checks of the store contract catch a store that breaks the order.

Each double is a real SQLite store broken in one way: the contract's checks
(``tests/store_contract.py``), run on the contract's workload, fail on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from jobserver.models import Event, EventType
from jobserver.store.sqlite import SqliteStore
from tests.conftest import SqliteCommitted
from tests.store_contract import (
    PublishLog,
    check_only_committed_published,
    check_published_before_answered,
    check_seq_order,
    publish_workload,
)


class PublishesEarly(SqliteStore):
    """A broken backend: it hands a completion's event to the listener before it commits (and
    skips that seq when the commit comes). Everything else it does right."""

    def on_commit(self, publish: Callable[[list[Event]], None]) -> None:
        self._listener = publish
        self._early: set[int] = set()
        super().on_commit(lambda events: publish([e for e in events if e.seq not in self._early]))

    async def complete(self, job_id: str, token: str, result: dict[str, object]) -> Event:
        guess = await self.head_seq() + 1  # the seq it will most likely get
        self._early.add(guess)
        self._listener([Event(guess, EventType.COMPLETED, job_id, "?", b"{}")])
        return await super().complete(job_id, token, result)


class PublishesLate(SqliteStore):
    """A broken backend: it hands events over a little after their writers heard back."""

    def on_commit(self, publish: Callable[[list[Event]], None]) -> None:
        def later(events: list[Event]) -> None:
            asyncio.get_running_loop().call_later(0.01, publish, events)

        super().on_commit(later)


class PublishesOutOfOrder(SqliteStore):
    """A broken backend: it hands each batch's events over newest first."""

    def on_commit(self, publish: Callable[[list[Event]], None]) -> None:
        super().on_commit(lambda events: publish(events[::-1]))


async def broken_log(store: SqliteStore) -> PublishLog:
    await store.open()
    committed = SqliteCommitted(store)
    try:
        return await publish_workload(store, committed)
    finally:
        committed.close()
        await store.close()


async def test_a_store_that_publishes_before_commit_fails_the_contract(tmp_path: Path) -> None:
    log = await broken_log(PublishesEarly(tmp_path / "store.db"))
    with pytest.raises(AssertionError, match="before they were durable"):
        check_only_committed_published(log)


async def test_a_store_that_answers_before_it_publishes_fails_the_contract(
    tmp_path: Path,
) -> None:
    log = await broken_log(PublishesLate(tmp_path / "store.db"))
    with pytest.raises(AssertionError, match="answered before they were published"):
        check_published_before_answered(log)
    check_only_committed_published(log)  # late, but nothing early


async def test_a_store_that_publishes_out_of_order_fails_the_contract(tmp_path: Path) -> None:
    log = await broken_log(PublishesOutOfOrder(tmp_path / "store.db"))
    with pytest.raises(AssertionError, match="out of seq order"):
        check_seq_order(log)
