"""Notes generators: the offline one (notes already made in the parser process) and the Protocol."""

from __future__ import annotations

from typing import Protocol

from .extract import Document
from .notes import NotesContent
from .offline import GENERATOR


class NotesGenerator(Protocol):
    """Turns a parsed document into notes; the offline draft is always there to fall back on.

    ``name`` keys the notes cache: notes from one generator are never served for another.
    ``needs_text`` asks the parser to send the document's text along with the draft.
    """

    @property
    def name(self) -> str: ...

    @property
    def needs_text(self) -> bool: ...

    @property
    def label(self) -> str:
        """How the generating stage is described to people."""
        ...

    async def generate(self, draft: NotesContent, document: Document | None) -> NotesContent: ...


class OfflineGenerator:
    """The default: the deterministic notes the parser process built right after extraction."""

    name = GENERATOR
    needs_text = False
    label = "Generating notes"

    async def generate(self, draft: NotesContent, document: Document | None) -> NotesContent:
        return draft
