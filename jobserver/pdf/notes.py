"""The notes model: a document's generated notes, a user's saved note, and their wire format."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..models import iso


@dataclass(frozen=True, slots=True)
class KeyPoint:
    """One key point and the page (1-based) it came from."""

    text: str
    page: int


@dataclass(frozen=True, slots=True)
class Section:
    """One section of the document: from its outline, or a detected heading.

    Args:
        title: the section's title as the document gives it.
        page: 1-based page it starts on, when known.
        level: 1 for top-level sections, 2 for their children, and so on.
    """

    title: str
    page: int | None = None
    level: int = 1


@dataclass(frozen=True, slots=True)
class NotesContent:
    """What was generated from one document; shared by every note made from the same file.

    Args:
        title: from the document's metadata, else its first heading.
        summary: a few sentences.
        key_points: the sentences that carry the document, each with its page.
        sections: the outline when there is one, else detected headings.
        keywords: frequent meaningful terms, most significant first.
        page_count: pages in the document.
        generator: which generator wrote the notes (``offline`` or ``llm:<model>``).
        sections_from: ``outline`` or ``headings``.
    """

    title: str
    summary: str
    key_points: tuple[KeyPoint, ...] = ()
    sections: tuple[Section, ...] = ()
    keywords: tuple[str, ...] = ()
    page_count: int = 0
    generator: str = "offline"
    sections_from: str = "headings"

    def to_wire(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "summary": self.summary,
            "keyPoints": [{"text": p.text, "page": p.page} for p in self.key_points],
            "sections": [{"title": s.title, "page": s.page, "level": s.level}
                         for s in self.sections],
            "keywords": list(self.keywords),
            "pageCount": self.page_count,
            "generator": self.generator,
            "sectionsFrom": self.sections_from,
        }  # fmt: skip

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> NotesContent:
        return cls(
            title=str(data["title"]),
            summary=str(data["summary"]),
            key_points=tuple(KeyPoint(str(p["text"]), int(p["page"])) for p in data["keyPoints"]),
            sections=tuple(_section(s) for s in data["sections"]),
            keywords=tuple(str(k) for k in data["keywords"]),
            page_count=int(data["pageCount"]),
            generator=str(data["generator"]),
            sections_from=str(data.get("sectionsFrom", "headings")),
        )


def _section(data: dict[str, Any]) -> Section:
    page = data.get("page")
    return Section(str(data["title"]), None if page is None else int(page), int(data["level"]))


@dataclass(frozen=True, slots=True)
class Note:
    """One user's note, made by one job from one uploaded file.

    Args:
        id: the note's id (the id of the job that made it, so a retried job keeps one note).
        user_id: owner; only this user sees the note.
        job_id: the job that made it.
        content_hash: sha256 of the uploaded file.
        filename: the name the file was uploaded under.
        content: the generated notes.
        created_at: epoch seconds.
    """

    id: str
    user_id: str
    job_id: str
    content_hash: str
    filename: str
    content: NotesContent
    created_at: float = field(default_factory=time.time)

    def summary_wire(self) -> dict[str, Any]:
        """The note as listed: enough to show it in a list, without its body."""
        return {
            "noteId": self.id,
            "jobId": self.job_id,
            "title": self.content.title,
            "filename": self.filename,
            "pageCount": self.content.page_count,
            "contentHash": self.content_hash,
            "createdAt": iso(self.created_at),
        }

    def to_wire(self) -> dict[str, Any]:
        return {**self.summary_wire(), "userId": self.user_id, **self.content.to_wire()}
