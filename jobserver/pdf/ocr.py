"""Text for image-only pages: PDFium renders each page, tesseract (a child process) reads it.

Used only when a document has no text layer and ``tesseract`` is installed (Debian's
``tesseract-ocr`` with its ``-eng``, ``-deu`` and ``-fra`` data). The first page is read as
English; when its text is German or French (and that language's data is installed) pages are
read in that language from then on, the first one again. Pages are capped, in number and by
a deadline that keeps the whole parse inside its time limit.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import subprocess
import time

import pypdfium2 as pdfium

from . import engine, language
from .extract import Document, has_text, no_text

MAX_OCR_PAGES = 20
DPI = 150
# tesseract's name of each language the notes generator tells apart.
TESSERACT_LANGS = {"en": "eng", "de": "deu", "fr": "fra", "es": "spa", "it": "ita", "nl": "nld",
                   "pt": "por"}  # fmt: skip
MIN_PAGE_CHARS = 16


@functools.cache
def _installed() -> frozenset[str]:
    binary = shutil.which("tesseract")
    if binary is None:
        return frozenset()
    try:
        listed = subprocess.run([binary, "--list-langs"], capture_output=True, text=True,
                                timeout=30, check=False).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(line.strip() for line in listed.splitlines()[1:] if line.strip())


def available() -> bool:
    """tesseract is installed with English data."""
    return "eng" in _installed()


def _image(doc: pdfium.PdfDocument, index: int) -> bytes:
    """Page ``index`` rendered in grey at DPI, as a PGM image."""
    page = doc[index]
    try:
        bitmap = page.render(scale=DPI / 72, grayscale=True)
        width, height, stride = bitmap.width, bitmap.height, bitmap.stride
        data = bytes(bitmap.buffer)
    finally:
        page.close()
    if stride != width:
        data = b"".join(data[row * stride: row * stride + width] for row in range(height))
    return b"P5\n%d %d\n255\n" % (width, height) + data


def _read(image: bytes, lang: str, timeout: float) -> str:
    env = dict(os.environ, OMP_THREAD_LIMIT="1")  # one core: the other parsers need theirs
    try:
        done = subprocess.run(["tesseract", "stdin", "stdout", "-l", lang], input=image,
                              capture_output=True, timeout=max(1.0, timeout), env=env,
                              check=False)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.decode("utf-8", "replace") if done.returncode == 0 else ""


def recognise(path: str, doc: Document, deadline: float) -> Document:
    """``doc`` with the text of its image-only pages read by OCR, as many as fit before
    ``deadline`` (``time.monotonic()``) and MAX_OCR_PAGES; unchanged without tesseract."""
    if not available():
        return doc
    wanted = [i for i, text in enumerate(doc.pages) if len(text.strip()) < MIN_PAGE_CHARS]
    wanted = wanted[:MAX_OCR_PAGES]
    if not wanted:
        return doc
    pages = list(doc.pages)
    done: list[int] = []
    lang = "eng"
    pdf = engine.open_pdf(path)
    try:
        for index in wanted:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            image = _image(pdf, index)
            text = _read(image, lang, left)
            if not done and lang == "eng":
                found = TESSERACT_LANGS.get(language.detect(text), "eng")
                if found != "eng" and found in _installed() and deadline > time.monotonic():
                    lang = found
                    text = _read(image, lang, deadline - time.monotonic()) or text
            pages[index] = text
            done.append(index + 1)
    finally:
        pdf.close()
    sizes = tuple(() if i + 1 in done else doc.line_sizes(i) for i in range(len(pages)))
    return dataclasses.replace(doc, pages=tuple(pages), sizes=sizes, ocr_pages=tuple(done))


def with_text(path: str, doc: Document, deadline: float) -> Document:
    """``doc`` if it has text; else its pages read by OCR if that finds text; else NO_TEXT."""
    if has_text(doc):
        return doc
    read = recognise(path, doc, deadline)
    if has_text(read):
        return read
    raise no_text(doc, ocr=available())
