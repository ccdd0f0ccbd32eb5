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
    letters = [w for w in re.findall(r"[A-Za-z]{2,}", sentence)]
    capitals = [w for w in letters if w.isupper()]
    shouting = len(capitals) >= 3 and len(capitals) >= 0.6 * len(letters)
    capital_words = frozenset(w.lower() for w in capitals if len(w) >= 4)
    runs = re.findall(r"[!?]+", sentence)
    lowered = sentence.lower().translate(_VARIATION_SELECTORS).replace("’", "'")
    elongated = _ELONGATED.search(lowered) is not None
    words = tuple(SPELLINGS.get(w, w) for w in _TOKEN.findall(_ELONGATED.sub(r"\1\1", lowered)))
    return Tokens(words, shouting, capital_words, max((len(r) for r in runs), default=0), elongated)
