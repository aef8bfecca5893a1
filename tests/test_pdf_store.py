"""The Store's notes methods, run against every backend (the `store` fixture is parametrised)."""

from __future__ import annotations

import asyncio
import time

from jobserver.notes import KeyPoint, Note, NotesContent, Section
from jobserver.store import Store

SHA = "ab" * 32


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
    await store.save_note(saved)
    assert await store.get_note("n1") == saved
    assert await store.get_note("missing") is None


async def test_saving_a_note_again_replaces_it(store: Store) -> None:
    await store.save_note(note("n1", "alice", 1000.0, title="First"))
    await store.save_note(note("n1", "alice", 1000.0, title="Second"))
    got = await store.get_note("n1")
    assert got is not None and got.content.title == "Second"
    assert len(await store.list_notes("alice", 10, 0)) == 1


async def test_notes_are_listed_per_user_newest_first_and_paged(store: Store) -> None:
    await asyncio.gather(*(store.save_note(note(f"a{i}", "alice", 1000.0 + i)) for i in range(5)))
    await store.save_note(note("b1", "bob", 2000.0))
    first = await store.list_notes("alice", 3, 0)
    rest = await store.list_notes("alice", 3, 3)
    assert [n.id for n in first] == ["a4", "a3", "a2"] and [n.id for n in rest] == ["a1", "a0"]
    assert [n.id for n in await store.list_notes("bob", 10, 0)] == ["b1"]
    assert await store.list_notes("carol", 10, 0) == []


async def test_cached_notes_are_keyed_by_content_hash_and_generator(store: Store) -> None:
    assert await store.cached_notes(SHA, "offline") is None
    await store.cache_notes(SHA, content())
    await store.cache_notes(SHA, content(title="By a model", generator="llm:m"))
    assert await store.cached_notes(SHA, "offline") == content()
    llm = await store.cached_notes(SHA, "llm:m")
    assert llm is not None and llm.title == "By a model"
    assert await store.cached_notes("cd" * 32, "offline") is None


async def test_pruning_the_cache_forgets_only_notes_cached_before_the_cutoff(
    store: Store,
) -> None:
    await store.cache_notes("old1", content(generator="offline"))
    await store.cache_notes("old2", content(generator="offline"))
    await store.save_note(note("n1", "alice", 1000.0))  # a user's note is never pruned
    await asyncio.sleep(0.02)
    cutoff = time.time()
    await asyncio.sleep(0.02)
    await store.cache_notes("new", content(generator="offline"))

    assert await store.prune_cached_notes(cutoff, limit=1) == 1  # at most limit at a time
    assert await store.prune_cached_notes(cutoff) == 1
    assert await store.prune_cached_notes(cutoff) == 0
    for gone in ("old1", "old2"):
        assert await store.cached_notes(gone, "offline") is None
    assert await store.cached_notes("new", "offline") is not None
    assert await store.get_note("n1") is not None
