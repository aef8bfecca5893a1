"""The offline notes generator: title, summary, key points, sections and keywords, deterministic.

Pure functions over extracted text, fast enough to run right after extraction in the parser
process (tens of milliseconds for a few hundred pages of text).
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections import Counter
from typing import NamedTuple

from .extract import Document
from .notes import KeyPoint, NotesContent, Section

GENERATOR = "offline"

SUMMARY_SENTENCES = 3
SUMMARY_MAX_CHARS = 700
MAX_KEY_POINTS = 8
KEY_POINTS_PER_PAGE = 2
MAX_KEYWORDS = 12
MAX_HEADINGS = 60
MAX_TITLE_CHARS = 160

# Common English words that carry no subject matter, plus filler common in documents.
_STOPWORD_TEXT = """
    a about above after again against all almost also although always am among an and another
    any anyone anything are around as at be became because become been before being below
    between both but by can cannot could did do does doing done down during each either else
    enough even ever every few for from further get gets given gives go goes had has have having
    he her here hers herself him himself his how however i if in into is it its itself just
    least less like made make makes many may me might more most much must my myself near need
    neither never no nor not now of off often on once one only onto or other others otherwise
    our ours ourselves out over own per perhaps put quite rather really same see seen several
    shall she should show shown since so some something such than that the their theirs them
    themselves then there therefore these they this those though three through thus to together
    too toward towards two under until up upon us use used uses using very via was we well were
    what whatever when where whether which while who whom whose why will with within without
    would yet you your yours yourself yourselves
    page pages figure fig table et al eg ie etc within first second new also
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-'][A-Za-z0-9]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_NUMBERED = re.compile(
    r"^(?:(?:chapter|section|part|appendix)\s+)?(\d+(?:\.\d+)*|[IVX]+|[A-Z])[.)]?\s+\S",
    re.IGNORECASE,
)
_JUNK_TITLES = frozenset({"untitled", "document", "title", "microsoft word", "none", "unknown"})


class _Sentence(NamedTuple):
    text: str
    page: int
    order: int
    words: tuple[str, ...]
    vocab: frozenset[str]


def _clean_line(line: str) -> str:
    return " ".join(line.split())


def _running_key(line: str) -> str:
    """Page numbers sit at a line's edges ("Page 3", "Report 2024 - 3"): ignore those digits."""
    if line[:1].isdigit() or line[-1:].isdigit():
        return re.sub(r"\d+", "#", line)
    return line


def _running_lines(pages: list[list[str]]) -> frozenset[str]:
    """Lines repeated near the top or bottom of most pages: running headers and footers."""
    if len(pages) < 4:
        return frozenset()
    seen: Counter[str] = Counter()
    for lines in pages:
        seen.update({_running_key(line) for line in lines[:3] + lines[-3:]})
    return frozenset(line for line, n in seen.items() if n > len(pages) / 2)


def _is_heading(line: str, next_line: str | None) -> bool:
    if not 2 < len(line) <= 90 or line[-1] in ".,;:!?" or not any(c.isalpha() for c in line):
        return False
    words = line.split()
    if len(words) > 12 or sum(c.isdigit() for c in line) > len(line) / 2:
        return False
    if _NUMBERED.match(line) and line[-1].isalpha() and len(words) >= 2:
        return True
    if line.isupper() and len(line) > 3:
        return True
    significant = [w for w in words if len(w) > 3 and w.lower() not in STOPWORDS]
    if not significant or not words[0][0].isupper():
        return False
    titled = sum(w[0].isupper() for w in significant) / len(significant)
    # A short capitalised line followed by body text reads as a heading.
    return titled >= 0.6 and (next_line is None or len(next_line) > len(line))


def _heading_level(line: str) -> int:
    match = _NUMBERED.match(line)
    if match and "." in match.group(1).strip("."):
        return min(3, match.group(1).strip(".").count(".") + 1)
    return 1


def _split_sentences(paragraph: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(paragraph) if s.strip()]


@functools.lru_cache(maxsize=1 << 16)
def _meaningful(word: str) -> bool:
    return len(word) > 2 and word not in STOPWORDS and not word.isdigit()


class _Analysis:
    """One pass over the document: body sentences, headings, and term counts."""

    def __init__(self, doc: Document) -> None:
        raw = [[_clean_line(ln) for ln in page.splitlines()] for page in doc.pages]
        pages = [[ln for ln in lines if ln] for lines in raw]
        running = _running_lines(pages)
        self.headings: list[Section] = []
        self.first_lines: list[str] = []
        self.sentences: list[_Sentence] = []
        self._seen: set[str] = set()
        self.counts: Counter[str] = Counter()
        self.spread: dict[str, set[int]] = {}
        self.raw_words: Counter[str] = Counter()
        for number, lines in enumerate(pages, start=1):
            body: list[str] = []
            kept = [ln for ln in lines if _running_key(ln) not in running and not ln.isdigit()]
            for i, line in enumerate(kept):
                nxt = kept[i + 1] if i + 1 < len(kept) else None
                if _is_heading(line, nxt):
                    self._flush(body, number)
                    self.headings.append(Section(line, number, _heading_level(line)))
                    self._count(_WORD.findall(line), number, 2)  # a heading names a subject
                else:
                    body.append(line)
                if not self.first_lines and len(line) <= MAX_TITLE_CHARS:
                    self.first_lines.append(line)
            self._flush(body, number)

    def _count(self, raw: list[str], page: int, weight: int) -> None:
        self.raw_words.update(raw)
        for word, n in Counter(map(str.lower, raw)).items():
            if _meaningful(word):
                self.counts[word] += n * weight
                self.spread.setdefault(word, set()).add(page)

    def _flush(self, body: list[str], page: int) -> None:
        if not body:
            return
        parts: list[str] = []
        for line in body:
            if parts and parts[-1].endswith("-") and line[:1].islower():
                parts[-1] = parts[-1][:-1] + line  # a word broken across lines
            else:
                parts.append(line)
        body.clear()
        text = " ".join(parts)
        raw_all: list[str] = []
        for sentence in _split_sentences(text):
            raw = _WORD.findall(sentence)
            raw_all += raw
            if 30 <= len(sentence) <= 500 and 6 <= len(raw) <= 80 and sentence not in self._seen:
                self._seen.add(sentence)  # a repeated sentence is one candidate, not many
                words = tuple(map(str.lower, raw))
                self.sentences.append(
                    _Sentence(sentence, page, len(self.sentences), words, frozenset(words))
                )
        self._count(raw_all, page, 1)

    def surface(self, word: str) -> str:
        """How a word is usually written: ``PDF`` stays upper case, ``Sqlite`` does not."""
        upper = self.raw_words[word.upper()]
        total = upper + self.raw_words[word] + self.raw_words[word.capitalize()]
        return word.upper() if len(word) > 1 and upper * 2 > total else word


def _term_weights(analysis: _Analysis, pages: int) -> tuple[dict[str, float], dict[str, float]]:
    """Frequent meaningful terms, weighted by how widely they spread over the document.

    Returns the terms' weights and a lookup that also maps each folded plural to its weight.
    """
    counts = Counter(analysis.counts)
    spread = {word: set(where) for word, where in analysis.spread.items()}
    # Fold simple plurals into their singular when both occur ("events" into "event").
    folded: dict[str, str] = {}
    for word in sorted(counts):
        if word.endswith("s") and not word.endswith("ss") and word[:-1] in counts:
            counts[word[:-1]] += counts.pop(word)
            spread[word[:-1]] |= spread.pop(word)
            folded[word] = word[:-1]
    weights: dict[str, float] = {}
    scale = 1.0 + math.log(max(1, pages))
    for word, n in counts.items():
        weights[word] = n * (1.0 + math.log(len(spread[word]))) / scale
    lookup = dict(weights)
    lookup.update({plural: weights[single] for plural, single in folded.items()})
    return weights, lookup


def _phrases(analysis: _Analysis, weights: dict[str, float]) -> dict[str, float]:
    """Two-word terms that recur (``event loop``), scored above their parts."""
    pairs: Counter[tuple[str, str]] = Counter()
    for sentence in analysis.sentences:
        pairs.update(itertools.pairwise(sentence.words))  # counted in C; filtered below
    scored: dict[str, float] = {}
    for (a, b), n in pairs.items():
        if n >= 3 and a != b and a in analysis.counts and b in analysis.counts:
            scored[f"{a} {b}"] = n * 1.5 + 0.1 * (weights.get(a, 0.0) + weights.get(b, 0.0))
    return scored


def keywords(analysis: _Analysis, weights: dict[str, float]) -> list[str]:
    candidates = dict(weights)
    for pair, score in _phrases(analysis, weights).items():
        candidates[pair] = score
    ranked = sorted(candidates.items(), key=lambda kv: (-kv[1], kv[0]))
    chosen: list[str] = []
    for term, _ in ranked:
        parts = term.split()
        # A phrase covering an already chosen word adds little; skip words a phrase covers.
        if any(term in c.split() or set(parts) <= set(c.split()) for c in chosen):
            continue
        chosen.append(term)
        if len(chosen) == MAX_KEYWORDS:
            break
    return [" ".join(analysis.surface(p) for p in term.split()) for term in chosen]


def _score(sentence: _Sentence, lookup: dict[str, float], top: float) -> float:
    total = sum(map(lookup.get, sentence.words, itertools.repeat(0.0)))
    return total / top / math.sqrt(len(sentence.words))


def _similar(a: _Sentence, b: _Sentence) -> bool:
    shared = len(a.vocab & b.vocab)
    return shared / max(1, len(a.vocab) + len(b.vocab) - shared) > 0.6


def _pick(
    analysis: _Analysis, lookup: dict[str, float]
) -> tuple[list[_Sentence], list[_Sentence]]:
    """The summary's sentences and the key points, each in document order."""
    if not analysis.sentences:
        return [], []
    top = max(lookup.values(), default=1.0) or 1.0
    scored = sorted(
        analysis.sentences,
        key=lambda s: (-(_score(s, lookup, top) + (0.15 if s.order == 0 else 0.0)), s.order),
    )
    summary: list[_Sentence] = []
    length = 0
    for sentence in scored:
        if len(summary) == SUMMARY_SENTENCES or length + len(sentence.text) > SUMMARY_MAX_CHARS:
            break
        if not any(_similar(sentence, s) for s in summary):
            summary.append(sentence)
            length += len(sentence.text)
    points: list[_Sentence] = []
    per_page: Counter[int] = Counter()
    for sentence in scored:
        if len(points) == MAX_KEY_POINTS:
            break
        if per_page[sentence.page] >= KEY_POINTS_PER_PAGE or any(
            _similar(sentence, s) for s in points
        ):
            continue
        points.append(sentence)
        per_page[sentence.page] += 1
    by_order = sorted(summary, key=lambda s: s.order), sorted(points, key=lambda s: s.order)
    return by_order


def _title(doc: Document, analysis: _Analysis) -> str:
    meta = " ".join((doc.meta_title or "").split())
    if len(meta) >= 3 and meta.lower() not in _JUNK_TITLES and not meta.lower().endswith(
        (".doc", ".docx", ".pdf", ".tex", ".txt")
    ):
        return meta[:MAX_TITLE_CHARS]
    for heading in analysis.headings:
        return heading.title[:MAX_TITLE_CHARS]
    if analysis.first_lines:
        return analysis.first_lines[0][:MAX_TITLE_CHARS]
    return "Untitled document"


def _sections(doc: Document, analysis: _Analysis) -> tuple[tuple[Section, ...], str]:
    if doc.outline:
        return doc.outline, "outline"
    seen: set[str] = set()
    out: list[Section] = []
    for heading in analysis.headings:
        key = heading.title.lower()
        if key not in seen:
            seen.add(key)
            out.append(heading)
        if len(out) == MAX_HEADINGS:
            break
    return tuple(out), "headings"


def build_notes(doc: Document) -> NotesContent:
    """Notes for ``doc``: the same document always gives the same notes."""
    analysis = _Analysis(doc)
    weights, lookup = _term_weights(analysis, len(doc.pages))
    summary, points = _pick(analysis, lookup)
    sections, sections_from = _sections(doc, analysis)
    if summary:
        summary_text = " ".join(s.text for s in summary)
    else:
        summary_text = " ".join(" ".join(doc.pages).split())[:SUMMARY_MAX_CHARS]
    return NotesContent(
        title=_title(doc, analysis),
        summary=summary_text,
        key_points=tuple(KeyPoint(s.text, s.page) for s in points),
        sections=sections,
        keywords=tuple(keywords(analysis, weights)),
        page_count=len(doc.pages),
        generator=GENERATOR,
        sections_from=sections_from,
    )


def warm_up_notes() -> None:
    """Load what the generator needs (libraries, word lists) before the first document."""
    sentence = "The parser process reads every page of the document before it writes notes. "
    build_notes(Document((sentence * 4,)))
