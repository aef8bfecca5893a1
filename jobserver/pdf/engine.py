"""The PDF engine, PDFium (pypdfium2): opening a file, each page's text and line font sizes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from ..errors import CORRUPT_PDF, ENCRYPTED_PDF, JobError
from .notes import Section

MAX_OUTLINE_ENTRIES = 500
MAX_OUTLINE_DEPTH = 8
# PDFium marks a hyphen it found at a line's end (a word maybe broken across lines) this way.
LINE_END_HYPHEN = "\ufffe"


def corrupt(exc: BaseException) -> JobError:
    detail = str(exc).strip() or type(exc).__name__
    message = f"The file is damaged or is not a valid PDF ({detail[:200]})"
    return JobError(CORRUPT_PDF, message, recoverable=False)


def open_pdf(path: str) -> pdfium.PdfDocument:
    """Open ``path``; a file whose user password is empty opens, one that needs a password
    is ENCRYPTED_PDF, anything PDFium cannot read CORRUPT_PDF."""
    try:
        return pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        code = getattr(exc, "err_code", None)
        if code == pdfium_c.FPDF_ERR_PASSWORD:
            raise JobError(
                ENCRYPTED_PDF,
                "The PDF is password protected; remove the password and upload it again",
                recoverable=False,
            ) from None
        if code == pdfium_c.FPDF_ERR_SECURITY:
            raise JobError(
                ENCRYPTED_PDF,
                "The PDF is encrypted with a method this server cannot open; "
                "save an unprotected copy and upload that",
                recoverable=False,
            ) from None
        raise corrupt(exc) from None


@contextmanager
def _text_page(doc: pdfium.PdfDocument, index: int) -> Iterator[pdfium.PdfTextPage]:
    page = doc[index]
    try:
        text_page = page.get_textpage()
        try:
            yield text_page
        finally:
            text_page.close()
    finally:
        page.close()


def page_text(doc: pdfium.PdfDocument, index: int) -> tuple[str, tuple[float, ...]]:
    """Page ``index`` (0-based): its text with ``\\n`` line breaks, and each line's font size
    (of its first character, in points) for telling titles and headings from body text."""
    with _text_page(doc, index) as text_page:
        raw = text_page.get_text_range()
        handle = text_page.raw
        sizes: list[float] = []
        start = 0
        for line in raw.split("\n"):
            size = pdfium_c.FPDFText_GetFontSize(handle, start) if line.strip() else 0.0
            sizes.append(round(float(size), 1))
            start += len(line) + 1
    return raw.replace("\r\n", "\n").replace("\r", ""), tuple(sizes)


def meta_title(doc: pdfium.PdfDocument) -> str | None:
    try:
        title = doc.get_metadata_value("Title")
    except Exception:  # a broken Info dictionary only costs us the title
        return None
    return " ".join(title.split()) or None


def outline(doc: pdfium.PdfDocument) -> tuple[Section, ...]:
    out: list[Section] = []
    try:
        for item in doc.get_toc(max_depth=MAX_OUTLINE_DEPTH):
            if len(out) >= MAX_OUTLINE_ENTRIES:
                break
            title = " ".join(str(item.get_title() or "").split())
            if not title:
                continue
            index = item.get_dest().get_index() if item.get_dest() is not None else None
            page = index + 1 if index is not None and index >= 0 else None
            out.append(Section(title, page, item.level + 1))
    except Exception:  # a broken outline only costs us the sections from it
        return tuple(out)
    return tuple(out)
