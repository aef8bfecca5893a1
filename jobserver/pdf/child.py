"""The PDF parser's work in a worker process (``procs/child.py``): ``extract`` and ``warm_up``.

``ParsePool`` calls ``extract`` with a document's path, the share of its pages this process
reads (every ``stride``-th from ``offset``) and the limits; each page read is sent to the
server as it comes. The first process of a document also writes the notes: the server
forwards it the other shares' pages, and an ``abort`` frame if one of them failed.
"""

from __future__ import annotations

import io
import time
from typing import Any

from ..errors import PARSE_CRASHED, JobError
from ..procs.context import ProcessContext
from . import ocr
from .extract import (
    Limits,
    PageText,
    assemble,
    extract_share,
    page_from_wire,
    page_to_wire,
)
from .offline import build_notes, warm_up_notes

DEFAULT_TIMEOUT = 120.0
OCR_SHARE = 0.7  # of the parse's time limit, at most, from its start to the end of OCR


def warm_up() -> None:
    """Load the engine and the notes generator's libraries now, so the first parse is not
    slower: a one-page PDF made here is read and turned into notes."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument.new()
    pdf.new_page(200, 200).close()
    buffer = io.BytesIO()
    pdf.save(buffer)
    pdf.close()
    doc = pdfium.PdfDocument(buffer.getvalue())
    doc[0].get_textpage().get_text_range()
    doc.close()
    warm_up_notes()


def _others(ctx: ProcessContext, texts: dict[int, PageText], pages: int) -> None:
    """Read the pages the other parsers of this document read, forwarded by the server."""
    while len(texts) < pages:
        message = ctx.receive()
        if message.get("type") == "abort":
            raise JobError(PARSE_CRASHED, "Stopped: another parser of this file failed",
                           recoverable=True)  # fmt: skip
        texts[int(message["page"])] = page_from_wire(message)


def extract(ctx: ProcessContext) -> dict[str, Any]:
    """Read this process's share of the pages; with ``notes``, also write the notes.

    The first parser of a document gets ``notes``: after its own share it reads the other
    shares' pages from its input (the server forwards them as they come) and writes the
    notes at once, with no further round trip.
    """
    started = time.monotonic()
    request = ctx.payload
    limits = Limits(int(request["maxPages"]), int(request["maxTextChars"]))
    texts: dict[int, PageText] = {}

    def report(page: PageText) -> None:
        texts[page.page] = page
        ctx.send({"type": "page", **page_to_wire(page)})

    share = extract_share(str(request["path"]), limits, report,
                          stride=int(request["stride"]), offset=int(request["offset"]))  # fmt: skip
    outline = [[s.level, s.title, s.page] for s in share.outline]
    answer: dict[str, Any] = {"pages": share.pages, "metaTitle": share.meta_title,
                              "outline": outline}  # fmt: skip
    if request.get("notes"):
        _others(ctx, texts, share.pages)
        ctx.send({"type": "generating"})
        doc = assemble(share, texts)
        # OCR of image-only pages may use most of what is left of the parse's time limit.
        deadline = started + OCR_SHARE * float(request.get("timeout") or DEFAULT_TIMEOUT)
        doc = ocr.with_text(str(request["path"]), doc, deadline)
        answer["notes"] = build_notes(doc).to_wire()
    return answer
