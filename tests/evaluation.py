"""The notes evaluation: defects counted in the offline notes of real PDFs (tests/corpus.py).

Each check is made from the document's own text, independently of how the generator works:

- ``link``: a URL, DOI or e-mail address in the summary or a key point;
- ``citation``: a bibliographic citation string there ("Thyroid 2017;27(11):1341-1346",
  "12(3), 45-67", "pp. 12-34");
- ``bibliography``: a summary or key-point sentence taken from the references section;
- ``garbled``: a summary or key-point sentence with missing glyphs or mostly not words;
- ``repeat``: two key points that say the same thing, or a key point repeating the summary;
- ``title``: a title that is a domain, a URL, a file name or a placeholder;
- ``keyword``: a keyword with a URL fragment, one that is not a phrase of the text, or a
  word broken by a lost ligature ("erently");
- ``header``: a running header or footer, or a file name, among the detected sections.

    python -m tests.evaluation     # the table of defects per document, and the totals
"""

from __future__ import annotations

import re
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from jobserver.config import Settings
from jobserver.errors import JobError
from jobserver.pdf import ocr
from jobserver.pdf.extract import Document, Limits, read_all
from jobserver.pdf.notes import NotesContent
from tests import corpus

CHECKS = ("link", "citation", "bibliography", "garbled", "repeat", "title", "keyword", "header")
LIMITS = Limits(500, 4_000_000)

URL = re.compile(r"(?i)\b(?:https?://|ftp://|www\.)\S+|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|gov"
                 r"|edu|int|io|de|fr|uk|at|ch|eu|info)(?:/\S*)?\b")  # fmt: skip
DOI = re.compile(r"(?i)\b(?:doi:?\s*)?10\.\d{4,9}/\S+")
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
CITATION = re.compile(
    r"\b(?:1[89]|20)\d\d\s*;\s*\d+\s*(?:\(\d+\))?\s*:\s*\d+"  # 2017;27(11):1341
    r"|\b\d+\s*\(\d+(?:[-\u2013]\d+)?\)\s*[:,]\s*\d+\s*[-\u2013]\s*\d+"  # 27(11), 1341-1346
    r"|\bpp?\.\s*\d+\s*[-\u2013]\s*\d+"  # pp. 12-34
    r"|\bet al\.\s*\(?(?:1[89]|20)\d\d\)?[,.]"  # Smith et al. (2005),
)
REFERENCES = re.compile(
    r"(?im)^\s*(?:\d+\.?\s+)?(?:references|bibliography|literature cited|works cited|literatur"
    r"|literaturverzeichnis|bibliographie|références)\s*$"
)
URL_FRAGMENTS = frozenset(
    ("www", "http", "https", "html", "htm", "com", "org", "net", "gov", "edu", "doi", "pubmed",
     "ncbi", "nlm", "nih", "pdf", "url")
)
LIGATURES = ("ff", "fi", "fl", "ffi", "ffl")
FILE_NAME = re.compile(r"(?i)\.(?:pdf|docx?|tex|txt|indd|ps|rtf|odt|xlsx?|pptx?)\b")
PLACEHOLDER = re.compile(r"(?i)^(?:untitled|document|microsoft word\b.*|adobe photoshop pdf"
                         r"|binder\d*|title|none|unknown)$")  # fmt: skip
WORD = re.compile(r"\w+")


def normal(text: str) -> str:
    """Text as a reader sees it: ligatures expanded, words broken at line ends joined."""
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"(\w)[\ufffe\u00ad-]\s*\n\s*(\w)", r"\1\2", text)
    return " ".join(text.replace("\ufffe", "-").split())


@dataclass
class Result:
    """One document's notes (or the error that stopped them) and its defects."""

    name: str
    kind: str
    pages: int = 0
    notes: NotesContent | None = None
    error: str | None = None
    seconds: float = 0.0
    defects: dict[str, list[str]] = field(default_factory=dict)

    def count(self, check: str) -> int:
        return len(self.defects.get(check, []))


def _running_lines(doc: Document) -> set[str]:
    """Lines found among the first or last three of at least 40% of the pages (4 or more)."""
    pages = [[" ".join(ln.split()) for ln in p.splitlines() if ln.strip()] for p in doc.pages]
    if len(pages) < 4:
        return set()
    seen: Counter[str] = Counter()
    for lines in pages:
        seen.update({re.sub(r"\d+", "#", ln) for ln in lines[:3] + lines[-3:]})
    return {ln for ln, n in seen.items() if n >= 0.4 * len(pages) and len(ln) > 2}


def _bibliography(doc: Document) -> str:
    """The text after the last references heading (normalised), or ''."""
    text = "\n".join(doc.pages)
    found = list(REFERENCES.finditer(text))
    return normal(text[found[-1].end():]) if found else ""


def _broken(word: str, vocabulary: Counter[str]) -> bool:
    """A word of the text that is another word of it with a ligature's letters lost (a word
    twenty times as common as that other one is taken as a word of its own: "check")."""
    w = word.lower()
    if len(w) < 4:
        return False
    return any(0 < vocabulary[w] <= 20 * vocabulary[w[:i] + lig + w[i:]]
               for lig in LIGATURES for i in range(len(w) + 1))  # fmt: skip


def _in_text(phrase: str, text: str) -> bool:
    """``phrase`` is words of ``text``, where the text may have lost a ligature's letters
    (a keyword with the word repaired still counts as written)."""
    parts = re.split(r"(ffi|ffl|ff|fi|fl)", phrase)
    pattern = "".join(re.escape(p) if i % 2 == 0 else f"(?:{p}| ?)" for i, p in enumerate(parts))
    return re.search(r"(?<!\w)" + pattern + r"(?!\w)", text) is not None


def _similar(a: str, b: str) -> bool:
    x, y = set(WORD.findall(a.lower())), set(WORD.findall(b.lower()))
    return bool(x and y) and len(x & y) / len(x | y) > 0.6


def defects(doc: Document, notes: NotesContent) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {c: [] for c in CHECKS}
    text = normal("\n".join(doc.pages))
    lower = text.lower()
    vocabulary = Counter(WORD.findall(lower))
    bibliography = _bibliography(doc)
    picked = [notes.summary, *(p.text for p in notes.key_points)]
    for sentence in picked:
        if URL.search(sentence) or DOI.search(sentence) or EMAIL.search(sentence):
            found["link"].append(sentence)
        if CITATION.search(sentence):
            found["citation"].append(sentence)
        if "\ufffd" in sentence or "\ufffe" in sentence:
            found["garbled"].append(sentence)
        else:
            letters = sum(c.isalpha() for c in sentence)
            if letters < 0.6 * len(sentence.replace(" ", "")):
                found["garbled"].append(sentence)
    for point in notes.key_points:
        probe = normal(point.text)
        if bibliography and len(probe) > 30 and probe[:80] in bibliography:
            found["bibliography"].append(point.text)
    if bibliography:
        for sentence in re.split(r"(?<=[.!?])\s+", notes.summary):
            probe = normal(sentence)
            if len(probe) > 30 and probe[:80] in bibliography:
                found["bibliography"].append(sentence)
    points = [p.text for p in notes.key_points]
    for i, a in enumerate(points):
        if any(_similar(a, b) for b in points[:i]) or normal(a) in normal(notes.summary):
            found["repeat"].append(a)
    title = notes.title.strip()
    if (URL.fullmatch(title) or (URL.search(title) and len(title.split()) <= 2)
            or FILE_NAME.search(title) or PLACEHOLDER.match(title) or not title):  # fmt: skip
        found["title"].append(title)
    for keyword in notes.keywords:
        words = WORD.findall(keyword.lower())
        if set(words) & URL_FRAGMENTS or URL.search(keyword):
            found["keyword"].append(f"{keyword} (URL fragment)")
        elif not _in_text(normal(keyword).lower(), lower):
            found["keyword"].append(f"{keyword} (not in the text)")
        elif any(_broken(w, vocabulary) for w in words):
            found["keyword"].append(f"{keyword} (broken word)")
    if notes.sections_from == "headings":
        running = _running_lines(doc)
        for section in notes.sections:
            key = re.sub(r"\d+", "#", " ".join(section.title.split()))
            if key in running or FILE_NAME.search(section.title):
                found["header"].append(section.title)
    return {k: v for k, v in found.items() if v}


Generate = Callable[[Document], NotesContent]
Read = Callable[[str], Document]


def read(path: str) -> Document:
    """As a parser process reads it: OCR for image-only pages (tesseract is installed by
    scripts/system-deps), with the default parse time limit."""
    doc = read_all(path, LIMITS, lambda page, pages: None)
    return ocr.with_text(path, doc, time.monotonic() + 0.7 * Settings().pdf_timeout_seconds)


def evaluate(docs: tuple[corpus.Doc, ...], paths: dict[str, Path], generate: Generate,
             reader: Read = read) -> list[Result]:  # fmt: skip
    results = []
    for doc in docs:
        result = Result(doc.name, doc.kind)
        try:
            document = reader(str(paths[doc.name]))
        except JobError as exc:
            result.error = exc.code
            results.append(result)
            continue
        result.pages = len(document.pages)
        start = time.process_time()  # CPU time: the machine may be busy with others' work
        result.notes = generate(document)
        result.seconds = time.process_time() - start
        result.defects = defects(document, result.notes)
        results.append(result)
    return results


def table(results: list[Result]) -> str:
    head = f"{'document':18s} {'kind':9s} {'pages':>5s} " + " ".join(f"{c[:7]:>7s}" for c in CHECKS)
    lines = [head, "-" * len(head)]
    for r in results:
        cells = " ".join(f"{r.count(c):7d}" for c in CHECKS) if r.error is None else r.error
        lines.append(f"{r.name:18s} {r.kind:9s} {r.pages:5d} {cells}")
    totals = " ".join(f"{sum(r.count(c) for r in results):7d}" for c in CHECKS)
    lines.append(f"{'total':18s} {'':9s} {sum(r.pages for r in results):5d} {totals}")
    failed = [r.name for r in results if r.error]
    if failed:
        lines.append(f"no notes: {', '.join(failed)}")
    return "\n".join(lines)


def main() -> int:
    from jobserver.pdf.offline import build_notes

    paths = corpus.fetch()
    results = evaluate(corpus.DOCS, paths, build_notes)
    print(table(results))
    if "-v" in sys.argv:
        for r in results:
            for check, items in r.defects.items():
                for item in items:
                    print(f"{r.name}: {check}: {item[:160]!r}")
    pages = sum(r.pages for r in results if r.notes)
    seconds = sum(r.seconds for r in results)
    print(f"generator: {seconds * 1000 / max(1, pages):.2f} ms (CPU) per page over {pages} pages")
    if "-n" in sys.argv:
        for r in results:
            if r.notes is not None:
                n = r.notes
                print(f"\n== {r.name}: {n.title!r}\n  summary: {n.summary[:300]!r}")
                print(f"  keywords: {', '.join(n.keywords)}")
                print(f"  sections ({n.sections_from}): {[s.title for s in n.sections[:8]]}")
                for kp in n.key_points[:4]:
                    print(f"  - p{kp.page}: {kp.text[:150]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
