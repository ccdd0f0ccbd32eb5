"""Sentences and tokens of a customer text.

A sentence ends at `.`, `!`, `?` or `…` followed by a space, or at a line break; "9.99" and "e.g." inside a
sentence stay whole. Tokens are lower-case words (apostrophes kept: "don't"), numbers, single punctuation marks and
single emoji. @mentions and links are dropped: they name accounts, not feelings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cem.domain.text.lexicon import SPELLINGS

# Long texts: the head carries the tone, and the cost stays bounded (the same cap as the VADER score).
MAX_TEXT_CHARS = 2_000
MAX_SENTENCES = 40

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\s*\n+\s*")
_MENTION_OR_LINK = re.compile(r"@\w+|https?://\S+|\bRT\b")
_TOKEN = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?|[^\sa-z0-9]")
_ELONGATED = re.compile(r"([a-z])\1{2,}")
_VARIATION_SELECTORS = dict.fromkeys((0xFE0E, 0xFE0F, 0x200D))
_TWO_CAPITALS = re.compile(r"[A-Z]{2}")
_LETTERS = re.compile(r"[A-Za-z]{2,}")
_EMPHASIS = re.compile(r"[!?]+")


@dataclass(frozen=True, slots=True)
class Tokens:
    """A sentence's tokens, with what its spelling says beyond the words."""

    words: tuple[str, ...]
    shouting: bool  # most words in capitals
    capital_words: frozenset[str]  # words of 4+ letters written in capitals ("AGAIN"), lower-cased
    exclamations: int  # the longest run of "!" and "?" ("!!!", "??")
    elongated: bool  # "sooo", "pleeease"


def split_sentences(text: str) -> list[str]:
    """The sentences of `text` (at most MAX_SENTENCES, from its first MAX_TEXT_CHARS characters)."""
    cleaned = _MENTION_OR_LINK.sub(" ", text[:MAX_TEXT_CHARS])
    parts = [part.strip() for part in _SENTENCE_END.split(cleaned)]
    return [part for part in parts if part][:MAX_SENTENCES]


def tokens(sentence: str) -> Tokens:
    shouting, capital_words = False, frozenset[str]()
    if _TWO_CAPITALS.search(sentence):  # most sentences have none: skip the word-by-word look
        letters = _LETTERS.findall(sentence)
        capitals = [w for w in letters if w.isupper()]
        shouting = len(capitals) >= 3 and len(capitals) >= 0.6 * len(letters)
        capital_words = frozenset(w.lower() for w in capitals if len(w) >= 4)
    exclamations = max(map(len, _EMPHASIS.findall(sentence)), default=0) if "!" in sentence or "?" in sentence else 0
    lowered = sentence.lower().translate(_VARIATION_SELECTORS).replace("’", "'")
    elongated = _ELONGATED.search(lowered) is not None
    if elongated:
        lowered = _ELONGATED.sub(r"\1\1", lowered)
    words = tuple(SPELLINGS.get(w, w) for w in _TOKEN.findall(lowered))
    return Tokens(words, shouting, capital_words, exclamations, elongated)
