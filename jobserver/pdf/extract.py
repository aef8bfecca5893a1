"""Text extraction with pypdf, run inside a parser process: pages, metadata title, outline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pypdf import PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError, LimitReachedError

from ..errors import (
    CORRUPT_PDF,
    ENCRYPTED_PDF,
    NO_TEXT,
    PARSE_MEMORY,
    TEXT_TOO_LARGE,
    TOO_MANY_PAGES,
    JobError,
)
from ..notes import Section

MAX_OUTLINE_ENTRIES = 500
# Fewer letters and digits than this in the whole document: it has no usable text layer.
MIN_TEXT_CHARS = 16

PageReport = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Limits:
    """What one parse may cost (time and memory are enforced around the process).

    Args:
        max_pages: most pages a document may have.
        max_text_chars: most characters of text a document may yield.
    """

    max_pages: int
    max_text_chars: int


@dataclass(frozen=True, slots=True)
class Document:
    """The text of a PDF, page by page, and what it says about itself.

    Args:
        pages: each page's extracted text, in order.
        meta_title: the title in the document's metadata, if any.
        outline: the document's outline (bookmarks), flattened with levels.
    """

    pages: tuple[str, ...]
    meta_title: str | None = None
    outline: tuple[Section, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {
            "pages": list(self.pages),
            "metaTitle": self.meta_title,
            "outline": [[s.level, s.title, s.page] for s in self.outline],
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Document:
        return cls(
            pages=tuple(str(p) for p in data["pages"]),
            meta_title=data.get("metaTitle"),
            outline=tuple(Section(str(t), p, int(lv)) for lv, t, p in data.get("outline", ())),
        )


def _corrupt(exc: BaseException) -> JobError:
    detail = str(exc).strip() or type(exc).__name__
    message = f"The file is damaged or is not a valid PDF ({detail[:200]})"
    return JobError(CORRUPT_PDF, message, recoverable=False)


def _limit(exc: LimitReachedError) -> JobError:
    detail = str(exc)
    if any(word in detail.lower() for word in ("cycle", "loop", "depth", "recursion")):
        return _corrupt(exc)
    return JobError(
        PARSE_MEMORY,
        "The PDF expands to more data than the parser is allowed to hold "
        f"(a compressed stream or table past a safety limit: {detail[:160]})",
        recoverable=False,
    )


def open_reader(path: str) -> PdfReader:
    """Open ``path`` and unlock it if it needs no password; ENCRYPTED_PDF otherwise."""
    reader = PdfReader(path, strict=False)
    if reader.is_encrypted:
        try:
            unlocked = bool(reader.decrypt(""))
        except (DependencyError, NotImplementedError):
            raise JobError(
                ENCRYPTED_PDF,
                "The PDF is encrypted with a method this server cannot open; "
                "save an unprotected copy and upload that",
                recoverable=False,
            ) from None
        if not unlocked:
            raise JobError(
                ENCRYPTED_PDF,
                "The PDF is password protected; remove the password and upload it again",
                recoverable=False,
            )
    return reader


def _meta_title(reader: PdfReader) -> str | None:
    try:
        meta = reader.metadata
        title = meta.title if meta is not None else None
    except Exception:  # a broken Info dictionary only costs us the title
        return None
    return str(title).strip() or None if title else None


def _outline(reader: PdfReader) -> tuple[Section, ...]:
    try:
        items = reader.outline
    except Exception:  # a broken outline only costs us the sections from it
        return ()
    out: list[Section] = []

    def walk(nodes: list[Any], level: int) -> None:
        for node in nodes:
            if len(out) >= MAX_OUTLINE_ENTRIES:
                return
            if isinstance(node, list):
                walk(node, level + 1)
                continue
            title = " ".join(str(getattr(node, "title", "") or "").split())
            if not title:
                continue
            try:
                number = reader.get_destination_page_number(node)
                page = number + 1 if number is not None and number >= 0 else None
            except Exception:
                page = None
            out.append(Section(title, page, level))

    walk(list(items), 1)
    return tuple(out)


def extract(path: str, limits: Limits, report: PageReport) -> Document:
    """Read every page's text, calling ``report(page, pages)`` after each; JobError on failure.

    MemoryError is left to the caller: the process that hit it is replaced.
    """
    try:
        reader = open_reader(path)
        pages = len(reader.pages)
    except JobError:
        raise
    except LimitReachedError as exc:
        raise _limit(exc) from None
    except FileNotDecryptedError:
        raise JobError(ENCRYPTED_PDF, "The PDF is password protected", recoverable=False) from None
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise _corrupt(exc) from None
    if pages > limits.max_pages:
        raise JobError(
            TOO_MANY_PAGES,
            f"The PDF has {pages} pages; this server reads at most {limits.max_pages}",
            recoverable=False,
        )
    if pages == 0:
        raise JobError(CORRUPT_PDF, "The PDF has no pages", recoverable=False)
    texts: list[str] = []
    total = failed = 0
    last_error: Exception | None = None
    for number in range(pages):
        try:
            text = reader.pages[number].extract_text()
        except LimitReachedError as exc:
            raise _limit(exc) from None
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:  # one unreadable page should not lose the rest
            failed, last_error, text = failed + 1, exc, ""
        total += len(text)
        if total > limits.max_text_chars:
            raise JobError(
                TEXT_TOO_LARGE,
                f"The PDF holds more than {limits.max_text_chars} characters of text "
                f"(past that by page {number + 1} of {pages})",
                recoverable=False,
            )
        texts.append(text)
        report(number + 1, pages)
    if failed == pages and last_error is not None:
        raise _corrupt(last_error)
    if sum(ch.isalnum() for text in texts for ch in text) < MIN_TEXT_CHARS:
        raise JobError(
            NO_TEXT,
            f"No text found in the PDF's {pages} page(s): it looks like scanned images or "
            "pictures only. Run it through OCR (text recognition) first, then upload it again",
            recoverable=False,
        )
    return Document(tuple(texts), _meta_title(reader), _outline(reader))
