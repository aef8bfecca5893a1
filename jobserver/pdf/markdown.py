"""A note as a Markdown document, for download."""

from __future__ import annotations

import re

from .notes import Note


def _page(page: int | None) -> str:
    return f" (p. {page})" if page else ""


def _escape(text: str) -> str:
    """Keep text from turning into Markdown structure (headings, lists) where it lands."""
    return re.sub(r"([\\`*_\[\]<>#|])", r"\\\1", " ".join(text.split()))


def to_markdown(note: Note) -> str:
    content = note.content
    lines = [f"# {_escape(content.title)}", ""]
    pages = f"{content.page_count} page" + ("" if content.page_count == 1 else "s")
    lines += [f"*{_escape(note.filename)}, {pages}, notes by {content.generator}*", ""]
    lines += ["## Summary", "", _escape(content.summary) or "(none)", ""]
    if content.key_points:
        lines += ["## Key points", ""]
        lines += [f"- {_escape(p.text)}{_page(p.page)}" for p in content.key_points]
        lines.append("")
    if content.sections:
        lines += ["## Sections", ""]
        lines += [
            f"{'  ' * (max(1, s.level) - 1)}- {_escape(s.title)}{_page(s.page)}"
            for s in content.sections
        ]
        lines.append("")
    if content.keywords:
        lines += ["## Keywords", "", ", ".join(_escape(k) for k in content.keywords), ""]
    return "\n".join(lines)


def download_name(note: Note) -> tuple[str, str]:
    """The download's file name, after the uploaded file's (two PDFs with the same generated
    title still download apart): as written (for ``filename*``), and in ASCII."""
    stem = re.sub(r"\.pdf$", "", note.filename, flags=re.IGNORECASE)
    stem = re.sub(r'[\x00-\x1f\x7f/\\"]+', "-", stem).strip(" .-")[:120] or "notes"
    ascii_stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.")[:80] or "notes"
    return f"{stem}.md", f"{ascii_stem}.md"
