"""PDFs made for the tests with fpdf2: good ones, hostile ones, and files that are not PDFs."""

from __future__ import annotations

import io
import random
import zlib
from datetime import UTC, datetime

from fpdf import FPDF
from PIL import Image

CREATED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

SECTIONS = [
    ("Introduction", [
        "Urban beekeeping brings honey bees into city gardens, rooftops and community parks.",
        "A healthy colony pollinates fruit trees and flowers across several kilometres.",
        "Beekeepers in cities must know the rules for keeping hives near neighbours.",
    ]),
    ("Hive Design", [
        "The Langstroth hive uses movable frames so the beekeeper can inspect each comb.",
        "Frames hold wax foundation where worker bees build hexagonal cells for brood and honey.",
        "A queen excluder keeps the queen in the brood box while workers store honey above.",
    ]),
    ("Colony Health", [
        "Varroa mites are the most serious threat to honey bee colonies in every region.",
        "Regular inspections of the brood pattern reveal disease before the colony weakens.",
        "Beekeepers count mites on a sticky board and treat the hive when numbers rise.",
    ]),
    ("Honey Harvest", [
        "Honey is harvested when most cells in a frame are capped with fresh wax.",
        "An extractor spins the frames so honey leaves the comb without destroying it.",
        "Filtered honey is stored in clean jars away from moisture and strong smells.",
    ]),
    ("Winter Care", [
        "In winter the colony forms a tight cluster around the queen to keep warm.",
        "Beekeepers leave enough honey in the hive so the bees do not starve before spring.",
        "A mouse guard at the entrance protects the comb while the bees are clustered.",
    ]),
]


def _pdf(title: str | None) -> FPDF:
    pdf = FPDF()
    pdf.set_creation_date(CREATED)  # the same call makes the same bytes (and sha256)
    pdf.set_auto_page_break(True, margin=15)
    if title:
        pdf.set_title(title)
    pdf.set_author("Test Suite")
    return pdf


def _body(pdf: FPDF, sentences: list[str]) -> None:
    pdf.set_font("Helvetica", size=11)
    for n in range(4):
        # Each paragraph rotates the section's sentences, so pages differ but stay on topic.
        rotated = sentences[n % len(sentences):] + sentences[: n % len(sentences)]
        pdf.multi_cell(0, 6, " ".join(rotated))
        pdf.ln(3)


def text_pdf(pages: int = 5, *, title: str | None = "Urban Beekeeping Guide",
             outline: bool = False, seed: int = 0) -> bytes:
    """``pages`` pages of prose under headings; with ``outline``, one bookmark per section."""
    pdf = _pdf(title)
    for page in range(pages):
        heading, sentences = SECTIONS[(page + seed) % len(SECTIONS)]
        pdf.add_page()
        if outline and page < len(SECTIONS):
            pdf.start_section(heading)
        pdf.set_font("Helvetica", "B", 18)
        pdf.cell(0, 12, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
        _body(pdf, sentences)
    return bytes(pdf.output())


def outline_pdf() -> bytes:
    """Five chapters with a two-level outline whose titles differ from the page headings."""
    pdf = _pdf("Beekeeping Handbook")
    for number, (heading, sentences) in enumerate(SECTIONS, start=1):
        pdf.add_page()
        pdf.start_section(f"Chapter {number}: {heading}", level=0)
        pdf.set_font("Helvetica", "B", 18)
        pdf.cell(0, 12, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.start_section(f"{heading} in practice", level=1)
        _body(pdf, sentences)
    return bytes(pdf.output())


def encrypted_pdf() -> bytes:
    pdf = _pdf("Secret Bees")
    pdf.set_encryption(owner_password="owner-secret", user_password="user-secret")
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 6, " ".join(SECTIONS[0][1]))
    return bytes(pdf.output())


def image_only_pdf(pages: int = 2) -> bytes:
    """Pages that are pictures only, as a scanner makes them: no text layer."""
    pdf = _pdf(None)
    for shade in range(pages):
        image = Image.new("RGB", (120, 160), (200 - 40 * shade, 180, 160))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        pdf.add_page()
        pdf.image(buffer, x=10, y=10, w=120)
    return bytes(pdf.output())


def large_pdf(title: str, kilobytes: int = 400) -> bytes:
    """Two pages of prose with a picture of noise (it does not compress) below the first: a
    file larger than one read of an upload part (256 KB). The same title, the same bytes."""
    pdf = _pdf(title)
    for heading, sentences in SECTIONS[:2]:
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 18)
        pdf.cell(0, 12, heading, new_x="LMARGIN", new_y="NEXT")
        _body(pdf, sentences)
        if pdf.page == 1:
            side = int((kilobytes * 1024 / 3) ** 0.5)
            noise = random.Random(title).randbytes(side * side * 3)
            buffer = io.BytesIO()
            Image.frombytes("RGB", (side, side), noise).save(buffer, format="PNG")
            pdf.image(buffer, w=40)
    return bytes(pdf.output())


def truncated_pdf() -> bytes:
    """A real PDF cut off after its header and first object: no pages can be found."""
    return text_pdf(3)[:400]


def corrupt_pdf() -> bytes:
    """The PDF header, then noise."""
    noise = bytes((i * 37 + 11) % 256 for i in range(4000))
    return b"%PDF-1.7\n" + noise


def many_pages_pdf(pages: int) -> bytes:
    """A real document with ``pages`` short pages."""
    pdf = _pdf("Many Pages")
    pdf.set_font("Helvetica", size=10)
    for page in range(pages):
        pdf.add_page()
        pdf.cell(0, 10, f"Page {page + 1} of the long register of hives and their keepers.")
    return bytes(pdf.output())


def _assemble(objects: list[bytes]) -> bytes:
    """A PDF from numbered object bodies (1-based), with a correct xref table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref,
    )
    return bytes(out)


def huge_page_tree_pdf(pages: int = 20_000) -> bytes:
    """A small file whose page tree lists one page object ``pages`` times."""
    return _assemble([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + b"3 0 R " * pages + b"] /Count %d >>" % pages,
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
    ])  # fmt: skip


def bomb_pdf(expanded_mb: int = 400, streams: int = 1) -> bytes:
    """A page drawn by ``streams`` content streams, each ~``expanded_mb`` KB compressed and
    ``expanded_mb`` MB inflated: past a parser's memory cap, PDFium runs out of memory."""
    compressor = zlib.compressobj(9)
    block = b" " * (1024 * 1024)
    packed = b"".join(compressor.compress(block) for _ in range(expanded_mb))
    packed += compressor.flush()
    stream = b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(packed) + packed
    refs = b" ".join(b"%d 0 R" % (5 + i) for i in range(streams))
    return _assemble([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents [%s] "
        b"/Resources << /Font << /F1 4 0 R >> >> >>" % refs,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        *[stream + b"\nendstream"] * streams,
    ])  # fmt: skip


def text_then_bomb_pdf(expanded_mb: int = 100) -> bytes:
    """Page 1 is ordinary text; page 2's content stream inflates to ``expanded_mb`` MB."""
    text = b"BT /F1 12 Tf 72 720 Td (Bees make honey from the nectar of flowers.) Tj ET"
    compressor = zlib.compressobj(9)
    packed = b"".join(compressor.compress(b" " * (1024 * 1024)) for _ in range(expanded_mb))
    packed += compressor.flush()
    page = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>")  # fmt: skip
    return _assemble([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R 4 0 R] /Count 2 >>",
        page % 6,
        page % 7,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(text) + text + b"\nendstream",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(packed) + packed
        + b"\nendstream",
    ])  # fmt: skip


def slow_pdf(megabytes: int = 32, pages: int = 4) -> bytes:
    """A small file whose ``pages`` pages each draw one shared stream of ``megabytes`` MB of
    text operations, one letter over another: PDFium needs over a second a page for 32 MB
    here (about 0.5 GB while it does), so the whole file takes seconds on a fast machine too."""
    return slow_pages_pdf(pages, megabytes)


def slow_pages_pdf(pages: int = 40, megabytes: int = 16) -> bytes:
    """Like ``slow_pdf`` with ``pages`` pages drawing one shared stream of ``megabytes`` MB:
    seconds a page (about 2 s for 16 MB here), so every parser sharing it stays busy."""
    ops = b"BT /F1 12 Tf 10 10 Td (a) Tj ET\n" * (megabytes * 1024 * 1024 // 32)
    packed = zlib.compress(ops, 9)
    kids = b" ".join(b"%d 0 R" % (5 + i) for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(packed) + packed
        + b"\nendstream",
    ]
    for _ in range(pages):
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
                       b"/Resources << /Font << /F1 3 0 R >> >> >>")
    return _assemble(objects)


def not_a_pdf() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"this is a picture, not a document" * 40
