"""The offline notes generator: title, summary, key points, sections and keywords, deterministic.

Runs in the parser process right after extraction. The text is cleaned first (``clean.py``);
the language is detected (``language.py``); sentences are split by simplemma with that
language's rules; key phrases come from YAKE (``yake_rust``, its stop words for the language,
its input capped); the summary and key points are chosen by Maximal Marginal Relevance over
whole prose sentences scored by the key phrases they carry, spread over the sections.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

import simplemma
import yake_rust

from . import clean, language
from .extract import Document
from .notes import KeyPoint, NotesContent, Section

GENERATOR = "offline"

SUMMARY_SENTENCES = 3
SUMMARY_MAX_CHARS = 700
MAX_KEY_POINTS = 8
KEY_POINTS_PER_PAGE = 2
MAX_KEYWORDS = 12
MAX_SINGLE_KEYWORDS = 4
MAX_HEADINGS = 60
MAX_TITLE_CHARS = 160
# YAKE's time grows with its input: it reads at most this much, sampled over the document.
KEYWORD_INPUT_CHARS = 10_000
KEY_PHRASES = 40
# Sentences considered for the summary and key points, best first by key-phrase score.
MAX_CANDIDATES = 400
SIMILAR = 0.5  # word overlap (Jaccard) above which two sentences say the same thing
HEADING_RATIO = 1.12  # a line this much larger than the body text is a heading

_WORD = re.compile(r"\w+(?:[-'\u2019]\w+)*")
_NUMBERED = re.compile(
    r"^(?:(?:chapter|section|part|appendix|kapitel|abschnitt|chapitre)\s+)?"
    r"(\d+(?:\.\d+)*|[IVX]+|[A-Z])[.)]?\s+\S",
    re.IGNORECASE,
)
_JUNK_TITLE = re.compile(
    r"(?i)^(?:untitled\b.*|document\d*|title|none|unknown|binder\d*|slide \d+|"
    r"microsoft (?:word|powerpoint)\b.*|adobe photoshop pdf|layout \d+|\W*)$"
)
_ABSTRACT = re.compile(r"(?i)^(?:abstract|summary|zusammenfassung|résumé|kurzfassung)\b")


@dataclass(frozen=True, slots=True)
class _Sentence:
    text: str
    page: int
    order: int
    section: int
    words: frozenset[str]
    spaced: str  # its words, lower case, one space apart and around: for phrase lookups


class _Analysis:
    """One pass over the cleaned lines: headings, prose sentences, text for key phrases."""

    def __init__(self, doc: Document) -> None:
        found = clean.body_lines(doc)
        self.lines, self.repair = found.lines, found.repair
        body = [ln for ln in self.lines if not ln.references]
        self.lang = language.detect(" ".join(ln.text for ln in body[:400]))
        self.stopwords = language.stopwords(self.lang)
        self.body_size = _body_size(body)
        self.vocabulary = found.words
        self.plain = clean.plain_text(doc)
        self.headings: list[Section] = []
        self.sentences: list[_Sentence] = []
        self.all_text: list[str] = []
        self.abstract: list[_Sentence] = []
        block: list[clean.Line] = []
        after_abstract = False
        for i, line in enumerate(body):
            nxt = body[i + 1] if i + 1 < len(body) else None
            if self._is_heading(line, nxt):
                self._flush(block, after_abstract)
                block = []
                after_abstract = bool(_ABSTRACT.match(line.text)) and line.page <= 2
                title = self.repair(line.text)
                self.headings.append(Section(title, line.page, self._level(line)))
                continue
            if block and line.page != block[-1].page and not _continues(block[-1].text):
                self._flush(block, after_abstract)
                block, after_abstract = [], False
            block.append(line)
        self._flush(block, after_abstract)

    def _is_heading(self, line: clean.Line, nxt: clean.Line | None) -> bool:
        text = line.text
        if not 2 < len(text) <= 90:
            return False
        if self.body_size and line.size and line.size < self.body_size * HEADING_RATIO:
            return False
        if not any(c.isalpha() for c in text):
            return False
        words = text.split()
        if len(words) > 12 or text[-1] in ".,;:!?" or clean.FILE_NAME.search(text):
            return False
        if clean.URL.search(text) or sum(c.isdigit() for c in text) > len(text) / 2:
            return False
        if self.body_size and line.size:
            return line.size >= self.body_size * HEADING_RATIO and text[0].isalnum()
        # Without font sizes: a short capitalised or numbered line followed by body text.
        if _NUMBERED.match(text) and text[-1].isalpha() and len(words) >= 2:
            return True
        if text.isupper() and len(text) > 3:
            return True
        significant = [w for w in words if len(w) > 3 and w.lower() not in self.stopwords]
        if not significant or not words[0][0].isupper():
            return False
        titled = sum(w[0].isupper() for w in significant) / len(significant)
        return titled >= 0.6 and (nxt is None or len(nxt.text) > len(text))

    def _level(self, line: clean.Line) -> int:
        match = _NUMBERED.match(line.text)
        if match and "." in match.group(1).strip("."):
            return min(3, match.group(1).strip(".").count(".") + 1)
        if self.body_size and line.size >= self.body_size * 1.4:
            return 1
        return 1 if not self.body_size or not line.size else 2

    def _flush(self, block: list[clean.Line], abstract: bool) -> None:
        if not block:
            return
        text = self.repair(clean.join_lines([ln.text for ln in block], self.vocabulary))
        self.all_text.append(text)
        section = len(self.headings)
        for raw in simplemma.split_sentences(text, lang=self.lang):
            sentence = " ".join(raw.split())
            if not 40 <= len(sentence) <= 400 or not clean.is_prose(sentence):
                continue
            words = _WORD.findall(sentence.lower())
            if not 6 <= len(words) <= 70 or clean.is_link_or_citation(sentence):
                continue
            content = frozenset(w for w in words if w not in self.stopwords and len(w) > 2)
            if len(content) < 3:
                continue
            spaced = " " + " ".join(words) + " "
            item = _Sentence(sentence, block[0].page, len(self.sentences), section, content, spaced)
            self.sentences.append(item)
            if abstract:
                self.abstract.append(item)


def _continues(text: str) -> bool:
    """A line that does not end a sentence: the text goes on on the next page."""
    return text[-1:] not in ".!?:" or text.endswith(clean.HYPHEN_MARK)


def _body_size(lines: list[clean.Line]) -> float:
    """The font size most of the text is set in (0.0 when the engine gave none)."""
    weight: Counter[float] = Counter()
    for line in lines:
        if line.size:
            weight[line.size] += len(line.text)
    return weight.most_common(1)[0][0] if weight else 0.0


def _keyword_input(analysis: _Analysis) -> str:
    """Headings and body text sampled evenly over the document, links taken out, capped."""
    blocks = [h.title + "." for h in analysis.headings] + analysis.all_text
    total = sum(len(b) for b in blocks) or 1
    keep = min(1.0, KEYWORD_INPUT_CHARS / total)
    out: list[str] = []
    budget = 0.0
    for text in blocks:
        budget += len(text) * keep
        if budget >= len(text) or keep == 1.0:
            budget -= len(text)
            out.append(text)
    return clean.strip_links("\n".join(out)[: KEYWORD_INPUT_CHARS * 2])


def _key_phrases(analysis: _Analysis) -> list[str]:
    text = _keyword_input(analysis)
    if not text.strip():
        return []
    yake = yake_rust.Yake(language=analysis.lang, ngrams=3, deduplication_threshold=0.8)
    ranked = yake.get_n_best(text, n=KEY_PHRASES)
    lower = analysis.plain
    phrases: list[str] = []
    for phrase, _ in ranked:
        phrase = " ".join(phrase.split())
        words = [w.lower() for w in _WORD.findall(phrase)]
        if not words or any(len(w) < 2 or not any(c.isalpha() for c in w) for w in words):
            continue
        if len(set(words)) < len(words) or (len(words) == 1 and words[0] in _STRUCTURE):
            continue
        if words[0] in analysis.stopwords or words[-1] in analysis.stopwords:
            continue
        if clean.URL.search(phrase) or any(w in _URL_WORDS for w in words):
            continue
        if not _appears(phrase.lower(), lower):
            continue  # only phrases that appear as written
        if phrase.lower() not in (p.lower() for p in phrases):
            phrases.append(phrase)
    return phrases


def _appears(phrase: str, text: str) -> bool:
    """``phrase`` occurs in ``text`` as whole words."""
    start = text.find(phrase)
    while start >= 0:
        end = start + len(phrase)
        if (start == 0 or not text[start - 1].isalnum()) and (
            end == len(text) or not text[end].isalnum()
        ):
            return True
        start = text.find(phrase, start + 1)
    return False


# Words that name a document's parts, not its subject.
_STRUCTURE = frozenset(("chapter", "section", "appendix", "figure", "table", "page", "contents",
                        "kapitel", "abschnitt", "anhang", "abbildung", "tabelle", "seite",
                        "chapitre", "annexe", "tableau", "sommaire"))  # fmt: skip
_URL_WORDS = frozenset(("www", "http", "https", "html", "htm", "com", "org", "net", "gov",
                        "edu", "doi", "pubmed", "ncbi", "nlm", "nih", "url"))  # fmt: skip


def keywords(phrases: list[str]) -> list[str]:
    """Multi-word key phrases first, a few single words after them."""
    multi = [p for p in phrases if len(p.split()) > 1]
    single = [p for p in phrases if len(p.split()) == 1]
    chosen = multi[: MAX_KEYWORDS - min(MAX_SINGLE_KEYWORDS, len(single))]
    for word in single:
        if len(chosen) >= MAX_KEYWORDS:
            break
        if not any(word.lower() in p.lower().split() for p in chosen):
            chosen.append(word)
    order = {p: i for i, p in enumerate(phrases)}
    return sorted(chosen, key=order.__getitem__)


def _scores(analysis: _Analysis, phrases: list[str]) -> dict[int, float]:
    """Each sentence's weight: the key phrases it carries (earlier ones weigh more), for its
    length; sentences near the start of the document get a little more."""
    weighted = [
        (" " + " ".join(_WORD.findall(p.lower())) + " ", 1.0 / (1.0 + 0.15 * rank))
        for rank, p in enumerate(phrases)
    ]
    n = max(1, len(analysis.sentences))
    scores: dict[int, float] = {}
    for s in analysis.sentences:
        carried = sum(w for p, w in weighted if p in s.spaced)
        if carried:
            scores[s.order] = carried / math.sqrt(len(s.words)) * (1.0 + 0.3 * (s.order < n / 10))
    return scores


def _similar(a: _Sentence, b: _Sentence) -> bool:
    shared = len(a.words & b.words)
    return shared / max(1, len(a.words | b.words)) > SIMILAR or shared >= 0.8 * min(
        len(a.words), len(b.words)
    )


def _pick(analysis: _Analysis, phrases: list[str]) -> tuple[list[_Sentence], list[_Sentence]]:
    """The summary's sentences and the key points, each in document order."""
    scores = _scores(analysis, phrases)
    ranked = sorted(
        (s for s in analysis.sentences if s.order in scores),
        key=lambda s: (-scores[s.order], s.order),
    )[:MAX_CANDIDATES]
    summary: list[_Sentence] = []
    length = 0
    # An abstract is the author's own summary: its first sentences come first.
    for sentence in [*analysis.abstract[:SUMMARY_SENTENCES], *ranked]:
        if len(summary) == SUMMARY_SENTENCES or length + len(sentence.text) > SUMMARY_MAX_CHARS:
            break
        if not any(_similar(sentence, s) for s in summary):
            summary.append(sentence)
            length += len(sentence.text)
    points: list[_Sentence] = []
    per_page: Counter[int] = Counter()
    per_section: Counter[int] = Counter()
    # Maximal marginal relevance, spread over the sections: each round gives each section at
    # most one more point, best first, none that repeats the summary or a point chosen.
    # A sentence like one already chosen stays so: it is dropped from later rounds.
    left = [s for s in ranked if not any(_similar(s, t) for t in summary)]
    for round_ in range(1, MAX_KEY_POINTS + 1):
        kept: list[_Sentence] = []
        for sentence in left:
            if len(points) == MAX_KEY_POINTS:
                break
            if per_page[sentence.page] >= KEY_POINTS_PER_PAGE:
                continue  # that page has its share for good
            if per_section[sentence.section] >= round_:
                kept.append(sentence)
                continue
            if any(_similar(sentence, s) for s in points):
                continue
            points.append(sentence)
            per_page[sentence.page] += 1
            per_section[sentence.section] += 1
        if len(points) == MAX_KEY_POINTS or not kept:
            break
        left = kept
    return sorted(summary, key=lambda s: s.order), sorted(points, key=lambda s: s.order)


def _usable_title(text: str) -> bool:
    text = " ".join(text.split())
    if len(text) < 3 or sum(c.isalpha() for c in text) < 3 or _JUNK_TITLE.match(text):
        return False
    if text[-1] in ".,;:" and len(text.split()) < 3:  # the end of a sentence, not a title
        return False
    if clean.FILE_NAME.search(text) or clean.EMAIL.search(text) or clean.DOI.search(text):
        return False
    return not (clean.URL.search(text) and len(text.split()) <= 3)


def _title(doc: Document, analysis: _Analysis) -> str:
    meta = " ".join((doc.meta_title or "").split())
    if _usable_title(meta):
        return meta[:MAX_TITLE_CHARS]
    first = [ln for ln in analysis.lines if ln.page == 1 and ln.size]
    usable = [ln for ln in first if _usable_title(ln.text) and not clean.URL.search(ln.text)]
    if usable:
        top = max(ln.size for ln in usable)
        if top > analysis.body_size:
            # The first page's largest type, lines in a row joined (a title set on two lines).
            group: list[str] = []
            for ln in first:
                if ln.size >= top - 0.5 and ln in usable:
                    group.append(ln.text)
                elif group:
                    break
            title = re.sub(r"[\s.]+\d+$", "", " ".join(group))  # a page number beside it
            if _usable_title(title):
                return title[:MAX_TITLE_CHARS]
    for heading in analysis.headings:
        if _usable_title(heading.title):
            return heading.title[:MAX_TITLE_CHARS]
    for line in analysis.lines:
        if _usable_title(line.text) and len(line.text) <= MAX_TITLE_CHARS:
            return line.text
    return "Untitled document"


def _sections(doc: Document, analysis: _Analysis) -> tuple[tuple[Section, ...], str]:
    if doc.outline:
        kept = tuple(s for s in doc.outline if not clean.FILE_NAME.search(s.title))
        if kept:
            return kept, "outline"
    seen: set[str] = set()
    out: list[Section] = []
    for heading in analysis.headings:
        key = heading.title.lower()
        if key not in seen and not _JUNK_TITLE.match(heading.title):
            seen.add(key)
            out.append(heading)
        if len(out) == MAX_HEADINGS:
            break
    return tuple(out), "headings"


def build_notes(doc: Document) -> NotesContent:
    """Notes for ``doc``: the same document always gives the same notes."""
    analysis = _Analysis(doc)
    phrases = _key_phrases(analysis)
    summary, points = _pick(analysis, phrases)
    sections, sections_from = _sections(doc, analysis)
    if summary:
        summary_text = " ".join(s.text for s in summary)
    else:  # no whole prose sentence anywhere (a slide deck of bullets, a form)
        lines = [ln.text for ln in analysis.lines if not ln.references]
        summary_text = clean.join_lines(lines, analysis.vocabulary)[:SUMMARY_MAX_CHARS]
        summary_text = " ".join(clean.strip_links(summary_text).split())
    return NotesContent(
        title=_title(doc, analysis),
        summary=summary_text,
        key_points=tuple(KeyPoint(s.text, s.page) for s in points),
        sections=sections,
        keywords=tuple(keywords(phrases)),
        page_count=len(doc.pages),
        generator=GENERATOR,
        sections_from=sections_from,
    )


def warm_up_notes() -> None:
    """Load what the generator needs (libraries, word lists) before the first document."""
    sentence = "The parser process reads every page of the document before it writes notes. "
    build_notes(Document((sentence * 4,)))
    for lang in language.LANGUAGES:
        language.stopwords(lang)
