"""Text cleaning before the notes generator reads a page: what is body text, and what is not.

Repairs ligatures (code points and glyphs lost in extraction) and words hyphenated across line
ends; drops running headers and footers, page numbers and table-of-contents lines; marks the
references or bibliography section; tells sentences that carry a URL, DOI, e-mail address or
a citation, or that are not prose, so that no summary or key point is taken from them.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Container
from dataclasses import dataclass

from .extract import Document

# Ligature code points, and the control characters TeX's old 7-bit fonts put them at.
_LIGATURE_CHARS = {"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl",
                   "\ufb05": "st", "\ufb06": "st", "\x1b": "ff", "\x1c": "fi", "\x1d": "fl",
                   "\x1e": "ffi", "\x1f": "ffl"}  # fmt: skip
_LIGATURE_CHAR = re.compile("[\ufb00-\ufb06\x1b-\x1f]")
# Accents set as separate characters before their letter (an acute accent, then "e"): put back.
_SPACING_ACCENT = re.compile("([\u00b4\u02c6\u00a8\u02dc\u00b8\u02c7])\\s?([A-Za-z])")
_COMBINING = {"\u00b4": "\u0301", "\u02c6": "\u0302", "\u00a8": "\u0308", "\u02dc": "\u0303",
              "\u00b8": "\u0327", "\u02c7": "\u030c"}  # fmt: skip
_GRAVE = re.compile("`([aeiouAEIOU])")


def expand_ligatures(text: str, *, accents: bool = True) -> str:
    """Ligatures as their letters, and (``accents``) accents set apart from their letters put
    back on them."""
    if _LIGATURE_CHAR.search(text):
        text = _LIGATURE_CHAR.sub(lambda m: _LIGATURE_CHARS[m.group()], text)
    if accents and _SPACING_ACCENT.search(text):
        fixed = _SPACING_ACCENT.sub(lambda m: m.group(2) + _COMBINING[m.group(1)], text)
        if fixed.count("\u0301") >= 3:  # a document set this way uses ` for grave accents too
            fixed = _GRAVE.sub(lambda m: m.group(1) + "\u0300", fixed)
        text = unicodedata.normalize("NFC", fixed)
    return text
LIGATURES = ("ffi", "ffl", "ff", "fi", "fl")
HYPHEN_MARK = "\ufffe"  # PDFium: a hyphen at a line's end

URL = re.compile(
    r"(?i)\b(?:https?://|ftp://|www\.)\S+"
    r"|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|gov|edu|int|io|de|fr|uk|at|ch|eu|info)(?:/\S*)?\b"
)
DOI = re.compile(r"(?i)\b(?:doi:?\s*)?10\.\d{4,9}/\S+")
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
CITATION = re.compile(
    r"\b(?:1[89]|20)\d\d\s*;\s*\d+\s*(?:\(\d+\))?\s*:\s*\d+"  # 2017;27(11):1341
    r"|\b\d+\s*\(\d+(?:[-\u2013]\d+)?\)\s*[:,]\s*\d+\s*[-\u2013]\s*\d+"  # 27(11), 1341-1346
    r"|\bpp?\.\s*\d+\s*[-\u2013]\s*\d+"  # pp. 12-34
    r"|\bet al\.\s*\(?(?:1[89]|20)\d\d\)?"  # Smith et al. (2005)
    r"|\[\d+(?:\s*[,\u2013-]\s*\d+)*\]"  # [12], [3, 4]
    r"|\([^()\d]{2,40}\s(?:1[89]|20)\d\d[a-z]?(?:;[^)]*)?\)"  # (Zeileis 2004)
    r"|\b(?:vol\.|no\.|journal of|proceedings of|in:)\s",
    re.IGNORECASE,
)
REFERENCES = re.compile(
    r"(?i)^(?:[\dIVX]+\.?\s+)?(?:references|bibliography|literature cited|works cited|literatur"
    r"|literaturverzeichnis|quellenverzeichnis|bibliographie|références(?: bibliographiques)?)$"
)
AFTER_REFERENCES = re.compile(r"(?i)^(?:[A-Z]\.?\s+)?(?:appendix|anhang|annexe|index|glossary"
                              r"|affiliation)\b")  # fmt: skip
PAGE_NUMBER = re.compile(
    r"(?i)^[\W_]*(?:page|seite|p\.)?\s*(?:\d+|[ivxlc]+)(?:\s*(?:of|/|von|sur)\s*\d+)?[\W_]*$"
)
TOC_LINE = re.compile(r"(?:\.\s?){4,}\s*\S*\d+\s*$|(?:\.\s){3,}")
FILE_NAME = re.compile(r"(?i)\b\S+\.(?:pdf|docx?|tex|txt|indd|ps|rtf|odt|xlsx?|pptx?|html?)\b")
_WORD = re.compile(r"\w+")
_DIGITS = re.compile(r"\d+")


@dataclass(frozen=True, slots=True)
class Line:
    """One line of body text: where it is, and how large its type is (0.0 when unknown)."""

    text: str
    page: int
    size: float
    references: bool = False  # inside the references or bibliography section


def _running_key(line: str) -> str:
    """Page numbers sit at a line's edges ("Page 3", "Report 2024 - 3"): ignore those digits."""
    line = line.lower()
    if line[:1].isdigit() or line[-1:].isdigit():
        return _DIGITS.sub("#", line)
    return line


def plain_text(doc: Document) -> str:
    """The document's text on one line, lower case, ligatures and broken words joined: what
    a key phrase must be found in, as written."""
    text = expand_ligatures("\n".join(doc.pages), accents=False)  # as written
    text = _BROKEN.sub("", text)
    return " ".join(text.replace(HYPHEN_MARK, "-").split()).lower()


_BROKEN = re.compile(r"[\ufffe\u00ad-]\s*\n\s*(?=[a-z\u00df-\u00ff])")


def running_lines(pages: list[list[str]]) -> frozenset[str]:
    """Lines (digits ignored) among the first or last three of many pages: of at least 40%,
    or (a chapter's running header) of four pages or more of a long document."""
    if len(pages) < 4:
        return frozenset()
    seen: Counter[str] = Counter()
    for lines in pages:
        seen.update({_running_key(line) for line in lines[:3] + lines[-3:]})
    least = max(3.0, min(0.4 * len(pages), 4.0 if len(pages) >= 12 else len(pages)))
    return frozenset(key for key, n in seen.items() if n >= least and len(key) <= 100)


_MAYBE_LINK = re.compile(r"(?i)https?:|ftp:|www\.|@|10\.\d|\.(?:com|org|net|gov|edu|int|io|de|fr"
                         r"|uk|at|ch|eu|info)\b")  # fmt: skip
_MAYBE_CITATION = re.compile(r"(?i)\d|\bvol\.|\bno\.|journal of|proceedings of|\bin:")


def strip_links(text: str) -> str:
    """``text`` with its URLs, DOIs and e-mail addresses replaced by spaces."""
    for pattern in (URL, DOI, EMAIL):
        text = pattern.sub(" ", text)
    return text


def is_link_or_citation(text: str) -> bool:
    """A URL, DOI, e-mail address or citation string in ``text`` (cheap tests first)."""
    if _MAYBE_LINK.search(text) and (URL.search(text) or DOI.search(text) or EMAIL.search(text)):
        return True
    return bool(_MAYBE_CITATION.search(text) and CITATION.search(text))


def is_prose(text: str) -> bool:
    """A sentence a person wrote: mostly letters, starting with a capital or a digit and
    ending as sentences do, no missing glyphs, few code or table symbols."""
    if not text or "\ufffd" in text or HYPHEN_MARK in text:
        return False
    if not (text[0].isupper() or text[0] in "\"'(\u201c\u201e\u00ab") or text[-1] not in ".!?":
        return False
    compact = text.replace(" ", "")
    letters = sum(map(str.isalpha, compact))
    symbols = len(_SYMBOLS.findall(compact))
    return letters >= 0.75 * len(compact) and symbols <= 0.02 * len(compact) + 1


_SYMBOLS = re.compile(r"[{}\[\]<>=_\\|#@$%^&*~;+/]")


class Ligatures:
    """Repairs words whose ligature glyph was lost in extraction ("dierent" for "different"),
    from the words of the document itself: a word that is another, more frequent word of the
    document without its ff, fi, fl, ffi or ffl."""

    def __init__(self, counts: Counter[str], stopwords: frozenset[str] = frozenset()) -> None:
        self.fix: dict[str, str] = {}
        for word, n in counts.items():
            if not any(lig in word for lig in ("ff", "fi", "fl")):
                continue
            for lig in LIGATURES:
                start = word.find(lig)
                while start >= 0:
                    broken = word[:start] + word[start + len(lig):]
                    seen = counts.get(broken, 0)
                    # A common word that some rarer word contains is no broken word.
                    if len(broken) >= 4 and 0 < seen <= 20 * n and broken not in stopwords:
                        self.fix.setdefault(broken, word)
                    start = word.find(lig, start + 1)
        self._pattern = (
            re.compile(r"(?i)\b(?:" + "|".join(map(re.escape, sorted(self.fix))) + r")\b")
            if self.fix else None
        )  # fmt: skip

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(self._word, text)

    def _word(self, match: re.Match[str]) -> str:
        word = match.group()
        fixed = self.fix[word.lower()]
        return fixed.capitalize() if word[0].isupper() else fixed


def _hyphenated_elsewhere(head: str, tail: str, vocabulary: Container[str]) -> bool:
    """Whether both halves are words of the document on their own (then "state-" "of" keeps
    its hyphen); a syllable split leaves at least one half that is no word."""
    return head.lower() in vocabulary and tail.lower() in vocabulary and len(tail) > 3


def join_lines(lines: list[str], vocabulary: Container[str]) -> str:
    """One block of text from its lines, joining words broken across line ends."""
    parts: list[str] = []
    for line in lines:
        if parts:
            last = parts[-1]
            if last.endswith(HYPHEN_MARK) or last.endswith("-"):
                head = last[:-1]
                tail = _WORD.match(line)
                first = head.rsplit(" ", 1)[-1]
                joined = (first + tail.group()).lower() if tail else ""
                # A lower-case continuation after a hyphen at the line's end is the rest of
                # the word ("unterstüt-" "zen"), unless the hyphenated word is one of its own.
                if tail and line[:1].islower() and first[-1:].isalpha() and (
                    last.endswith(HYPHEN_MARK) or joined in vocabulary
                    or not _hyphenated_elsewhere(first, tail.group(), vocabulary)
                ):
                    parts[-1] = head + line  # a word broken across lines
                    continue
                parts[-1] = head + "-" + line if last.endswith(HYPHEN_MARK) else last + line
                continue
        parts.append(line)
    return " ".join(parts).replace(HYPHEN_MARK, "-")


@dataclass(frozen=True, slots=True)
class Body:
    """What ``body_lines`` found: the lines, the running lines (digits as ``#``), the words
    of the whole document (lower case, with counts) and the ligature repairs."""

    lines: list[Line]
    running: frozenset[str]
    words: Counter[str]
    repair: Ligatures


def body_lines(doc: Document) -> Body:
    """The document's lines without running headers and footers, page numbers and contents
    lines; lines of a references section are marked. Ligatures are repaired by the caller
    (``Body.repair``) on the text it keeps."""
    pages: list[list[tuple[str, float]]] = []
    for number, text in enumerate(doc.pages):
        sizes = doc.line_sizes(number)
        kept = []
        for i, raw in enumerate(expand_ligatures(text).split("\n")):
            line = " ".join(raw.split())
            if line:
                kept.append((line, sizes[i] if i < len(sizes) else 0.0))
        pages.append(kept)
    running = running_lines([[line for line, _ in lines] for lines in pages])
    words = Counter(_WORD.findall(expand_ligatures("\n".join(doc.pages)).lower()))
    out: list[Line] = []
    in_references = False
    for number, lines in enumerate(pages, start=1):
        for line, size in lines:
            if running and _running_key(line) in running:
                continue
            if len(line) <= 24 and PAGE_NUMBER.match(line):
                continue
            if (". ." in line or "...." in line) and TOC_LINE.search(line):
                continue
            if len(line) < 40 and REFERENCES.match(line):
                in_references = True
            elif in_references and len(line) < 60 and AFTER_REFERENCES.match(line):
                in_references = False
            out.append(Line(line, number, size, in_references))
    return Body(out, running, words, Ligatures(words))
