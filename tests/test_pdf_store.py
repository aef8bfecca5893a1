"""The PDF plugin's tables and write ops (``pdf/storage.py``) on a real store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from jobserver.pdf import storage
from jobserver.pdf.notes import KeyPoint, Note, NotesContent, Section
from jobserver.store import Store
from jobserver.store.sqlite import SqliteStore

SHA = "ab" * 32


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A store that runs the PDF plugin's storage module, as the server does."""
    s = SqliteStore(tmp_path / "store.db", storage=[storage.__name__])
    await s.open()
    yield s
    await s.close()


def content(title: str = "Bees", generator: str = "offline") -> NotesContent:
    return NotesContent(
        title=title,
        summary="Bees make honey. Hives need care.",
        key_points=(KeyPoint("Bees make honey.", 1), KeyPoint("Hives need care.", 3)),
        sections=(Section("Introduction", 1, 1), Section("Hive design", 2, 2), Section("End")),
        keywords=("bee", "hive", "PDF"),
        page_count=3,
        generator=generator,
        sections_from="outline",
    )


def note(note_id: str, user: str, created_at: float, title: str = "Bees") -> Note:
    return Note(note_id, user, note_id, SHA, "bees.pdf", content(title), created_at)


async def test_a_saved_note_reads_back_whole(store: Store) -> None:
    saved = note("n1", "alice", 1000.0)
    await storage.save_note(store, saved)
    assert await storage.get_note(store, "n1") == saved
    assert await storage.get_note(store, "missing") is None


async def test_saving_a_note_again_replaces_it(store: Store) -> None:
    await storage.save_note(store, note("n1", "alice", 1000.0, title="First"))
    await storage.save_note(store, note("n1", "alice", 1000.0, title="Second"))
    got = await storage.get_note(store, "n1")
    assert got is not None and got.content.title == "Second"
    assert len(await storage.list_notes(store, "alice", 10, 0)) == 1


async def test_notes_are_listed_per_user_newest_first_and_paged(store: Store) -> None:
    await asyncio.gather(
        *(storage.save_note(store, note(f"a{i}", "alice", 1000.0 + i)) for i in range(5))
    )
    await storage.save_note(store, note("b1", "bob", 2000.0))
    first = await storage.list_notes(store, "alice", 3, 0)
    rest = await storage.list_notes(store, "alice", 3, 3)
    assert [n.id for n in first] == ["a4", "a3", "a2"] and [n.id for n in rest] == ["a1", "a0"]
    assert [n.id for n in await storage.list_notes(store, "bob", 10, 0)] == ["b1"]
    assert await storage.list_notes(store, "carol", 10, 0) == []


async def test_cached_notes_are_keyed_by_content_hash_and_generator(store: Store) -> None:
    assert await storage.cached_notes(store, SHA, "offline") is None
    await storage.cache_notes(store, SHA, content())
    await storage.cache_notes(store, SHA, content(title="By a model", generator="llm:m"))
    assert await storage.cached_notes(store, SHA, "offline") == content()
    llm = await storage.cached_notes(store, SHA, "llm:m")
    assert llm is not None and llm.title == "By a model"
    assert await storage.cached_notes(store, "cd" * 32, "offline") is None


async def test_pruning_the_cache_forgets_only_notes_cached_before_the_cutoff(
    store: Store,
) -> None:
    await storage.cache_notes(store, "old1", content(generator="offline"))
    await storage.cache_notes(store, "old2", content(generator="offline"))
    await storage.save_note(store, note("n1", "alice", 1000.0))  # a user's note is never pruned
    await asyncio.sleep(0.02)
    cutoff = time.time()
    await asyncio.sleep(0.02)
    await storage.cache_notes(store, "new", content(generator="offline"))

    assert await storage.prune_cache(store, cutoff, limit=1) == 1  # at most limit at a time
    assert await storage.prune_cache(store, cutoff) == 1
    assert await storage.prune_cache(store, cutoff) == 0
    for gone in ("old1", "old2"):
        assert await storage.cached_notes(store, gone, "offline") is None
    assert await storage.cached_notes(store, "new", "offline") is not None
    assert await storage.get_note(store, "n1") is not None


async def test_retention_runs_the_plugins_cache_step_with_its_age(tmp_path: Path) -> None:
    """The PDF plugin's retention step forgets cached notes older than the retention age."""
    from jobserver.config import Settings
    from jobserver.plugins import Server, load
    from jobserver.retention import Retention

    settings = Settings(data_dir=tmp_path / "data")
    plugins = load(settings)
    s = SqliteStore(settings.db_path, storage=plugins.storage_modules)
    await s.open()
    try:
        server = Server(web.Application(), settings, s, None)  # type: ignore[arg-type]
        steps = [(n, lambda c, step=step: step(server, c)) for n, step in plugins.retention_steps]
        await storage.cache_notes(s, "f1", content(generator="offline"))
        retention = Retention(s, max_age_seconds=60, prune_interval=1, checkpoint_interval=1,
                              steps=steps)  # fmt: skip
        await retention.prune()
        assert await storage.cached_notes(s, "f1", "offline") is not None  # a moment ago
        await retention.prune(now=time.time() + 120)
        assert await storage.cached_notes(s, "f1", "offline") is None
        assert retention.pruned["cached notes"] == 1
    finally:
        await s.close()
