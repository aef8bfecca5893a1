"""Text extraction in a parser process: pages (text, line font sizes), title, outline."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pypdfium2 as pdfium

from ..errors import CORRUPT_PDF, NO_TEXT, TEXT_TOO_LARGE, TOO_MANY_PAGES, JobError
from . import engine
from .notes import Section

# Fewer letters and digits than this in the whole document: it has no usable text layer.
MIN_TEXT_CHARS = 16



@dataclass(frozen=True, slots=True)
class PageText:
    """One page's text (1-based ``page`` of ``pages``); ``error`` when it could not be read."""

    page: int
    pages: int
    text: str
    error: str | None = None
    sizes: tuple[float, ...] = ()  # each line's font size, when the engine gave them


@dataclass(frozen=True, slots=True)
class Share:
    """What a process learnt besides page texts: the page count, and (offset 0) the rest."""

    pages: int
    meta_title: str | None = None
    outline: tuple[Section, ...] = ()


PageReport = Callable[[PageText], None]


def page_to_wire(page: PageText) -> dict[str, Any]:
    return {"page": page.page, "pages": page.pages, "text": page.text, "error": page.error,
            "sizes": list(page.sizes)}  # fmt: skip


def page_from_wire(data: dict[str, Any]) -> PageText:
    sizes = tuple(float(size) for size in data.get("sizes") or ())
    return PageText(int(data["page"]), int(data["pages"]), str(data["text"]), data.get("error"),
                    sizes)  # fmt: skip


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
    sizes: tuple[tuple[float, ...], ...] = ()  # per page, each line's font size (or empty)
    ocr_pages: tuple[int, ...] = ()  # 1-based pages whose text came from OCR

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

    def line_sizes(self, page: int) -> tuple[float, ...]:
        """The font sizes of page ``page``'s lines (0-based), or () when unknown."""
        return self.sizes[page] if page < len(self.sizes) else ()


def _open(path: str, limits: Limits) -> tuple[pdfium.PdfDocument, int]:
    doc = engine.open_pdf(path)
    try:
        pages = len(doc)
    except Exception as exc:
        doc.close()
        raise engine.corrupt(exc) from None
    if pages > limits.max_pages:
        doc.close()
        raise JobError(
            TOO_MANY_PAGES,
            f"The PDF has {pages} pages; this server reads at most {limits.max_pages}",
            recoverable=False,
        )
    if pages == 0:
        doc.close()
        raise JobError(CORRUPT_PDF, "The PDF has no pages", recoverable=False)
    return doc, pages


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
    doc, pages = _open(path, limits)
    try:
        total = 0
        for number in range(offset, pages, stride):
            error = None
            sizes: tuple[float, ...] = ()
            try:
                text, sizes = engine.page_text(doc, number)
            except (MemoryError, KeyboardInterrupt):
                raise
            except Exception as exc:  # one unreadable page should not lose the rest
                text, error = "", str(exc).strip() or type(exc).__name__
            total += len(text)
            if total > limits.max_text_chars:
                raise too_much_text(limits, number + 1, pages)
            report(PageText(number + 1, pages, text, error, sizes))
        if offset:
            return Share(pages)
        return Share(pages, engine.meta_title(doc), engine.outline(doc))
    finally:
        doc.close()


def assemble(share: Share, texts: Mapping[int, PageText]) -> Document:
    """The document from its pages' texts (by 1-based page); CORRUPT_PDF if none was read."""
    pages = [texts.get(n) for n in range(1, share.pages + 1)]
    errors = [p.error for p in pages if p is not None and p.error is not None]
    if all(p is None or p.error is not None for p in pages):
        raise engine.corrupt(ValueError(errors[-1] if errors else "no page could be read"))
    return Document(
        tuple(p.text if p is not None else "" for p in pages), share.meta_title, share.outline,
        tuple(p.sizes if p is not None else () for p in pages),
    )


def has_text(doc: Document) -> bool:
    """Whether the document has some letters or digits: a scan has none."""
    found = 0
    for text in doc.pages:
        found += sum(ch.isalnum() for ch in text.strip()[: MIN_TEXT_CHARS * 16])
        if found >= MIN_TEXT_CHARS:
            return True
    return False


def no_text(doc: Document, *, ocr: bool = False) -> JobError:
    if ocr:
        return JobError(
            NO_TEXT,
            f"No text found in the PDF's {len(doc.pages)} page(s), and text recognition (OCR) "
            "read none either: it looks like scanned images or pictures without legible text",
            recoverable=False,
        )
    return JobError(
        NO_TEXT,
        f"No text found in the PDF's {len(doc.pages)} page(s): it looks like scanned images or "
        "pictures only. Run it through OCR (text recognition) first, then upload it again",
        recoverable=False,
    )


def require_text(doc: Document) -> None:
    """NO_TEXT unless the document has some letters or digits: a scan has none."""
    if not has_text(doc):
        raise no_text(doc)


def read_all(path: str, limits: Limits, report: Callable[[int, int], None]) -> Document:
    """The whole document in this process, calling ``report(page, pages)`` after each page;
    it may have no text (see ``require_text`` and ``ocr.with_text``)."""
    texts: dict[int, PageText] = {}

    def keep(page: PageText) -> None:
        texts[page.page] = page
        report(page.page, page.pages)

    return assemble(extract_share(path, limits, keep), texts)


def extract(path: str, limits: Limits, report: Callable[[int, int], None]) -> Document:
    """``read_all``, then NO_TEXT unless the document has a text layer."""
    doc = read_all(path, limits, report)
    require_text(doc)
    return doc
