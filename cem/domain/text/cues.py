"""The lexicon compiled into an index by first token, and the cues found in a sentence's tokens.

Matching is token by token: at each position the longest phrase that fits wins and the scan moves past it, so
"still waiting" is one cue, not "still" and "waiting". A cue is negated when a negator ("not", "never", "don't")
stands among the three words before it in the same clause, and intensified when "very", "so", "really"... stands
among the two words before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cem.domain.text.lexicon import EMOTION_CUES, INTENSIFIERS, NEGATORS
from cem.domain.text.lexicon_cx import ACTION_CUES, EFFORT_CUES, TOPIC_CUES

EMOTIONS = ("anger", "frustration", "confusion", "disappointment", "worry", "joy", "gratitude")
TOPICS = ("billing", "delivery", "account", "product_quality", "staff", "price")
ACTIONS = ("response", "suggestion", "praise", "none")
GAP = "~"
MAX_GAP = 3
_CLAUSE_BREAKS = frozenset(",.;:!?")


@dataclass(slots=True)
class Cue:
    """One lexicon phrase and what it signals."""

    phrase: tuple[str, ...]
    emotions: dict[str, int] = field(default_factory=dict)
    effort: int | None = None
    actions: set[str] = field(default_factory=set)
    topics: set[str] = field(default_factory=set)
    polarity: int = 0
    sarcasm: bool = False
    fixed: bool = False
    outcome: bool = False

    @property
    def name(self) -> str:
        return " ".join(self.phrase)


@dataclass(frozen=True, slots=True)
class CueMatch:
    cue: Cue
    text: str  # the words matched, as tokens joined by spaces
    negated: bool
    intensified: bool

    @property
    def polarity(self) -> int:
        """The cue's polarity nudge as it reads here: turned around when negated; an outcome is -2 negated, else 0."""
        if self.cue.outcome:
            return -2 if self.negated else 0
        return -self.cue.polarity if self.negated else self.cue.polarity

    @property
    def problem(self) -> bool:
        return self.polarity < 0


def _apply(cue: Cue, effect: str) -> None:
    if effect == "sarcasm":
        cue.sarcasm = True
        return
    if effect in ("fixed", "outcome"):
        setattr(cue, effect, True)
        return
    kind, _, value = effect.partition(":")
    if kind in EMOTIONS:
        cue.emotions[kind] = max(cue.emotions.get(kind, 0), int(value))
    elif kind == "effort":
        cue.effort = int(value)
    elif kind == "act" and value in ACTIONS:
        cue.actions.add(value)
    elif kind == "topic" and value in TOPICS:
        cue.topics.add(value)
    elif kind == "pol":
        cue.polarity = int(value)
    else:
        raise ValueError(f"lexicon: unknown effect {effect!r}")


def parse_lexicon(*tables: str) -> dict[tuple[str, ...], Cue]:
    """Every phrase of the tables with its effects; a phrase listed in two tables gets the effects of both."""
    cues: dict[tuple[str, ...], Cue] = {}
    for table in tables:
        for line in table.strip().splitlines():
            phrase_text, _, effects = line.partition("|")
            phrase = tuple(phrase_text.split())
            if not phrase:
                raise ValueError(f"lexicon: empty phrase in {line!r}")
            cue = cues.setdefault(phrase, Cue(phrase))
            for effect in effects.split():
                _apply(cue, effect)
    return cues


class CueIndex:
    """Cues by their first token (exact, or the stem of a `stem*` token), longest phrases first."""

    def __init__(self, cues: dict[tuple[str, ...], Cue]) -> None:
        self.exact: dict[str, list[Cue]] = {}
        self.stems: dict[str, list[Cue]] = {}
        for phrase, cue in cues.items():
            first = phrase[0]
            if first.endswith("*"):
                self.stems.setdefault(first[:-1], []).append(cue)
            else:
                self.exact.setdefault(first, []).append(cue)
        for bucket in (*self.exact.values(), *self.stems.values()):
            bucket.sort(key=lambda c: len(c.phrase), reverse=True)
        self.stem_lengths = sorted({len(stem) for stem in self.stems}, reverse=True)

    def candidates(self, token: str) -> list[Cue]:
        found = self.exact.get(token, [])
        for length in self.stem_lengths:
            if len(token) >= length and token[:length] in self.stems:
                found = found + self.stems[token[:length]]
        return found


def _token_fits(pattern: str, token: str) -> bool:
    return token.startswith(pattern[:-1]) if pattern.endswith("*") and len(pattern) > 1 else token == pattern


def match_length(phrase: tuple[str, ...], words: tuple[str, ...], start: int) -> int:
    """How many tokens from `start` the phrase covers, or 0 when it does not fit there."""
    if not phrase:
        return 0
    position = start
    for index, pattern in enumerate(phrase):
        if pattern == GAP:
            rest = phrase[index + 1:]
            for skip in range(MAX_GAP + 1):
                covered = match_length(rest, words, position + skip)
                if covered:
                    return position + skip + covered - start
            return 0
        if position >= len(words) or not _token_fits(pattern, words[position]):
            return 0
        position += 1
    return position - start


def _before(words: tuple[str, ...], start: int, count: int) -> list[str]:
    """Up to `count` words before `start`, not crossing a clause break."""
    found: list[str] = []
    for word in reversed(words[max(0, start - 6):start]):
        if word in _CLAUSE_BREAKS or len(found) == count:
            break
        found.append(word)
    return found


def find_cues(index: CueIndex, words: tuple[str, ...]) -> list[CueMatch]:
    matches: list[CueMatch] = []
    position = 0
    while position < len(words):
        best: tuple[int, Cue] | None = None
        for cue in index.candidates(words[position]):
            covered = match_length(cue.phrase, words, position)
            if covered and (best is None or covered > best[0]):
                best = (covered, cue)
        if best is None:
            position += 1
            continue
        negated = not best[1].fixed and any(w in NEGATORS for w in _before(words, position, 3))
        intensified = any(w in INTENSIFIERS for w in _before(words, position, 2))
        text = " ".join(words[position:position + best[0]])
        matches.append(CueMatch(best[1], text, negated, intensified))
        position += best[0]
    return matches


INDEX = CueIndex(parse_lexicon(EMOTION_CUES, EFFORT_CUES, ACTION_CUES, TOPIC_CUES))
