"""The PDF plugin's tables: users' saved notes and notes cached by file content hash.

Declared with ``tables.Tables`` and ``tables.write_op``, so every store backend makes them,
migrates them and runs their writes inside its own transactions (a note commits with the
job's "saving" event). Reads go through ``Store.fetch``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from ..store import Store
from ..tables import Tables, Tx, write_op
from .notes import Note, NotesContent

SAVE_NOTE = "pdf-notes.save_note"
CACHE_NOTES = "pdf-notes.cache_notes"
PRUNE_CACHE = "pdf-notes.prune_cache"

TABLES = Tables(
    name="pdf-notes",
    version=1,
    create="""
CREATE TABLE IF NOT EXISTS notes (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    filename TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS notes_user ON notes (user_id, created_at);
CREATE TABLE IF NOT EXISTS notes_cache (
    content_hash TEXT NOT NULL,
    generator TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (content_hash, generator)
);
CREATE INDEX IF NOT EXISTS notes_cache_age ON notes_cache (created_at)
""",
    # A refused upload asks whether a job names the files it stored (upload_store.py).
    payload_index=("sha256",),
)

NOTE_COLUMNS = "id, user_id, job_id, content_hash, filename, content, created_at"


@write_op(SAVE_NOTE)
def _save_note(tx: Tx, row: tuple[Any, ...]) -> None:
    # A retried job keeps one note: the newer replaces it.
    tx.execute(
        f"INSERT INTO notes ({NOTE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO "
        "UPDATE SET content_hash=excluded.content_hash, filename=excluded.filename, "
        "content=excluded.content, created_at=excluded.created_at",
        row,
    )


@write_op(CACHE_NOTES)
def _cache_notes(tx: Tx, row: tuple[Any, ...]) -> None:
    tx.execute(
        "INSERT INTO notes_cache (content_hash, generator, content, created_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (content_hash, generator) DO UPDATE SET "
        "content=excluded.content, created_at=excluded.created_at",
        row,
    )


@write_op(PRUNE_CACHE)
def _prune_cache(tx: Tx, before: float, limit: int) -> int:
    cursor = tx.execute(
        "DELETE FROM notes_cache WHERE (content_hash, generator) IN (SELECT content_hash, "
        "generator FROM notes_cache WHERE created_at < ? LIMIT ?)",
        (before, limit),
    )
    return int(cursor.rowcount)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _note(row: tuple[Any, ...]) -> Note:
    return Note(
        id=row[0], user_id=row[1], job_id=row[2], content_hash=row[3], filename=row[4],
        content=NotesContent.from_wire(orjson.loads(row[5])), created_at=row[6],
    )  # fmt: skip


async def save_note(store: Store, note: Note) -> None:
    """Keep ``note`` (replacing one with the same id: a retried job keeps one note)."""
    await store.write(SAVE_NOTE, (
        note.id, note.user_id, note.job_id, note.content_hash, note.filename,
        _json(note.content.to_wire()), note.created_at,
    ))  # fmt: skip


async def get_note(store: Store, note_id: str) -> Note | None:
    """The note, whoever owns it; the routes turn another user's note into a 404."""
    rows = await store.fetch(f"SELECT {NOTE_COLUMNS} FROM notes WHERE id=?", (note_id,))
    return _note(rows[0]) if rows else None


async def list_notes(store: Store, user_id: str, limit: int, offset: int) -> list[Note]:
    """``user_id``'s notes, newest first."""
    rows = await store.fetch(
        f"SELECT {NOTE_COLUMNS} FROM notes WHERE user_id=? "
        "ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
        (user_id, limit, offset),
    )
    return [_note(r) for r in rows]


async def cache_notes(store: Store, content_hash: str, content: NotesContent) -> None:
    """Remember ``content`` as made from the file ``content_hash`` by ``content.generator``."""
    row = (content_hash, content.generator, _json(content.to_wire()), time.time())
    await store.write(CACHE_NOTES, row)


async def cached_notes(store: Store, content_hash: str, generator: str) -> NotesContent | None:
    """Notes ``generator`` already made from the file ``content_hash``, for any user."""
    rows = await store.fetch(
        "SELECT content FROM notes_cache WHERE content_hash=? AND generator=?",
        (content_hash, generator),
    )
    return NotesContent.from_wire(orjson.loads(rows[0][0])) if rows else None


async def notes_made_since(store: Store, content_hash: str, since: float) -> NotesContent | None:
    """The newest notes any generator made from the file ``content_hash`` since ``since``
    (what a parse on another node made, whichever generator it ended with)."""
    rows = await store.fetch(
        "SELECT content FROM notes_cache WHERE content_hash=? AND created_at>=? "
        "ORDER BY created_at DESC LIMIT 1",
        (content_hash, since),
    )
    return NotesContent.from_wire(orjson.loads(rows[0][0])) if rows else None


async def prune_cache(store: Store, before: float, *, limit: int = 1000) -> int:
    """Forget up to ``limit`` cached notes made before ``before``; how many went. Saved notes
    are the users' and stay: a file uploaded again after that is only read again."""
    count: int = await store.write(PRUNE_CACHE, before, limit)
    return count
