"""Which language a document is in, and that language's stop words (YAKE's bundled lists)."""

from __future__ import annotations

import functools
import re

import yake_rust

# Languages told apart; YAKE and simplemma's sentence rules know each of them.
LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "pt")
DEFAULT = "en"
SAMPLE_CHARS = 8_000
_WORD = re.compile(r"[^\W\d_]+")


@functools.cache
def stopwords(lang: str) -> frozenset[str]:
    """The language's stop words, lower case (English for a language YAKE does not list)."""
    try:
        words = yake_rust.Yake(language=lang).stopwords
    except Exception:  # an unknown language code
        words = yake_rust.Yake(language=DEFAULT).stopwords
    return frozenset(w.lower() for w in words)


def detect(text: str) -> str:
    """The language whose stop words cover most of a sample of ``text``.

    Stop words are the most frequent words of a language, so over a page or more of text the
    share of each language's list is a sharp signal; ties and text without words are English.
    """
    words = [w.lower() for w in _WORD.findall(text[:SAMPLE_CHARS])]
    if not words:
        return DEFAULT
    best, best_share = DEFAULT, 0.0
    for lang in LANGUAGES:
        listed = stopwords(lang)
        share = sum(w in listed for w in words) / len(words)
        if share > best_share + 0.02:
            best, best_share = lang, share
    return best
