"""Text extraction with pypdf, run inside a parser process: pages, metadata title, outline."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
from .notes import Section

MAX_OUTLINE_ENTRIES = 500
# Fewer letters and digits than this in the whole document: it has no usable text layer.
MIN_TEXT_CHARS = 16



@dataclass(frozen=True, slots=True)
class PageText:
    """One page's text (1-based ``page`` of ``pages``); ``error`` when it could not be read."""

    page: int
    pages: int
    text: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Share:
    """What a process learnt besides page texts: the page count, and (offset 0) the rest."""

    pages: int
    meta_title: str | None = None
    outline: tuple[Section, ...] = ()


PageReport = Callable[[PageText], None]


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


def _open(path: str, limits: Limits) -> tuple[PdfReader, int]:
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
    return reader, pages


def too_much_text(limits: Limits, page: int, pages: int) -> JobError:
    return JobError(
        TEXT_TOO_LARGE,
        f"The PDF holds more than {limits.max_text_chars} characters of text "
        f"(past that by page {page} of {pages})",
        recoverable=False,
    )


def extract_share(
    path: str, limits: Limits, report: PageReport, *, stride: int = 1, offset: int = 0
) -> Share:
    """Extract pages ``offset, offset + stride, ...`` (0-based), reporting each as it is read.

    Several processes can share one document this way, each opening it on its own. The share
    with offset 0 also reads the metadata title and the outline. JobError on failure;
    MemoryError is left to the caller (the process that hit it is replaced).
    """
    reader, pages = _open(path, limits)
    total = 0
    for number in range(offset, pages, stride):
        error = None
        try:
            text = reader.pages[number].extract_text()
        except LimitReachedError as exc:
            raise _limit(exc) from None
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:  # one unreadable page should not lose the rest
            text, error = "", str(exc).strip() or type(exc).__name__
        total += len(text)
        if total > limits.max_text_chars:
            raise too_much_text(limits, number + 1, pages)
        report(PageText(number + 1, pages, text, error))
    if offset:
        return Share(pages)
    return Share(pages, _meta_title(reader), _outline(reader))


def assemble(share: Share, texts: Mapping[int, PageText]) -> Document:
    """The document from its pages' texts (by 1-based page); CORRUPT_PDF if none was read."""
    pages = [texts.get(n) for n in range(1, share.pages + 1)]
    errors = [p.error for p in pages if p is not None and p.error is not None]
    if all(p is None or p.error is not None for p in pages):
        raise _corrupt(ValueError(errors[-1] if errors else "no page could be read"))
    return Document(
        tuple(p.text if p is not None else "" for p in pages), share.meta_title, share.outline
    )


def require_text(doc: Document) -> None:
    """NO_TEXT unless the document has some letters or digits: a scan has none."""
    found = 0
    for text in doc.pages:
        found += sum(ch.isalnum() for ch in text.strip()[: MIN_TEXT_CHARS * 16])
        if found >= MIN_TEXT_CHARS:
            return
    raise JobError(
        NO_TEXT,
        f"No text found in the PDF's {len(doc.pages)} page(s): it looks like scanned images or "
        "pictures only. Run it through OCR (text recognition) first, then upload it again",
        recoverable=False,
    )


def extract(path: str, limits: Limits, report: Callable[[int, int], None]) -> Document:
    """The whole document in this process, calling ``report(page, pages)`` after each page."""
    texts: dict[int, PageText] = {}

    def keep(page: PageText) -> None:
        texts[page.page] = page
        report(page.page, page.pages)

    doc = assemble(extract_share(path, limits, keep), texts)
    require_text(doc)
    return doc
