"""Per-sentence text signals and their roll-up per event (docs/analytics.md, "Text signals").

Sentence sentiment, -5..+5: the VADER compound of the sentence (0 for a request or suggestion that VADER reads as
positive only for its "please" or "help", when no joy or gratitude is named), averaged with the evidence of the CX
cues when there is any (positive minus negative emotion intensities, plus half the effort, plus the polarity nudges of
phrases such as "charged twice", scaled by 1/5 and clipped to -1..1), times 5, one decimal. Polarity is positive
at +0.5 or more, negative at -0.5 or less.

Roll-up per event:
- sentiment: the mean of the sentences that are not neutral (0.0 when all are);
- emotions: the union, each at its highest intensity; emotion intensity: the highest, None when no emotion;
- effort: the mean of the sentences that have one (None when none has: no effort signal is not effort 0);
- actionability: the most demanding sentence (needs_response > suggestion > praise > not_meaningful);
- topics: the union; cues: the union, in order, at most MAX_CUES.
A sentence of three words or fewer that is all joy ("Great.", "Just perfect.") next to a negative sentence is read
as sarcasm; a short "Thanks." is not (it closes many polite complaints).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

from cem.domain.enrich import sentiment as vader_compound
from cem.domain.text.actionability import NEEDS_RESPONSE, event_actionability, sentence_actionability
from cem.domain.text.cues import EMOTIONS, INDEX, TOPICS, CueMatch, find_cues
from cem.domain.text.effort import counted_effort, sentence_effort
from cem.domain.text.emotions import NEGATIVE, POSITIVE, sentence_emotions
from cem.domain.text.sentences import split_sentences, tokens

POLARITY_BAND = 0.5  # on the -5..+5 scale
MAX_CUES = 24
CACHE_MAX_CHARS = 280
CACHE_SIZE = 16_384


@dataclass(frozen=True, slots=True)
class SentenceSignals:
    text: str
    words: int
    compound: float  # VADER, -1..1
    sentiment: float  # -5..+5
    emotions: tuple[tuple[str, int], ...]  # (emotion, intensity 1..5), in EMOTIONS order
    effort: int | None  # -5..+5, never 0
    actionability: str
    topics: tuple[str, ...]
    cues: tuple[str, ...]

    @property
    def polarity(self) -> int:
        return polarity_of(self.sentiment)


@dataclass(frozen=True, slots=True)
class TextSignals:
    """The roll-up of one text's sentences, as interaction_log stores it."""

    sentiment: float
    emotions: tuple[tuple[str, int], ...]
    effort: float | None
    actionability: str
    topics: tuple[str, ...]
    cues: tuple[str, ...]
    sentences: int

    @property
    def emotion_intensity(self) -> int | None:
        return max((intensity for _, intensity in self.emotions), default=None)

    @property
    def polarity(self) -> int:
        return polarity_of(self.sentiment)


def polarity_of(score: float) -> int:
    return 1 if score >= POLARITY_BAND else -1 if score <= -POLARITY_BAND else 0


def _ordered(emotions: dict[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple((label, emotions[label]) for label in EMOTIONS if label in emotions)


def _cx_score(compound: float, matches: list[CueMatch], emotions: dict[str, int], effort: int | None) -> float:
    asks = any(m.cue.actions & {"response", "suggestion"} for m in matches)
    if compound > 0 and asks and not emotions.keys() & POSITIVE:
        compound = 0.0  # VADER reads "please" and "help" as warmth; in a request they are manners
    evidence: float = sum(v for k, v in emotions.items() if k in POSITIVE) - sum(
        v for k, v in emotions.items() if k in NEGATIVE)
    evidence += sum(m.polarity for m in matches)
    evidence += 0.5 * effort if effort is not None else 0
    if not evidence:
        return compound
    return (compound + max(-1.0, min(1.0, evidence / 5))) / 2


def analyse_sentence(sentence: str) -> SentenceSignals:
    spelled = tokens(sentence)
    matches = find_cues(INDEX, spelled.words)
    counted = counted_effort(" ".join(spelled.words))
    effort, effort_cues = sentence_effort(matches, counted)
    emotions, emotion_cues, _sarcastic = sentence_emotions(matches, spelled, effort)
    compound = vader_compound(sentence) or 0.0
    score = round(5 * _cx_score(compound, matches, emotions, effort), 1)
    topics = {topic for m in matches for topic in m.cue.topics}
    action = sentence_actionability(spelled.words, matches, polarity_of(score), emotions, effort)
    cues = (*emotion_cues, *(f"effort:{cue}" for cue in effort_cues), *(
        f"{act}:{m.text}" for m in matches for act in sorted(m.cue.actions)), *(
        f"topic:{m.text}" for m in matches if m.cue.topics))
    word_count = sum(1 for w in spelled.words if w[0].isalnum())
    return SentenceSignals(sentence, word_count, compound, score, _ordered(emotions), effort, action,
                           tuple(t for t in TOPICS if t in topics), tuple(dict.fromkeys(cues)))


def _sarcastic_interjection(sentence: SentenceSignals) -> SentenceSignals:
    emotions = {label: i for label, i in sentence.emotions if label not in POSITIVE}
    emotions["frustration"] = max(emotions.get("frustration", 0), 3)
    return replace(sentence, sentiment=-abs(sentence.sentiment) or -1.0, emotions=_ordered(emotions),
                   actionability=NEEDS_RESPONSE, cues=(*sentence.cues, "sarcasm"))


def _with_context(sentences: list[SentenceSignals]) -> list[SentenceSignals]:
    out = list(sentences)
    for _ in range(2):  # twice: "Great. Just great. It broke." reaches the first interjection through the second
        for i, s in enumerate(out):
            labels = {label for label, _ in s.emotions}
            if s.words > 3 or "joy" not in labels or not labels <= POSITIVE:
                continue
            if any(n.polarity < 0 for n in out[max(0, i - 1):i] + out[i + 1:i + 2]):
                out[i] = _sarcastic_interjection(s)
    return out


def roll_up(sentences: list[SentenceSignals]) -> TextSignals:
    sentences = _with_context(sentences)
    emotions: dict[str, int] = {}
    for s in sentences:
        for label, intensity in s.emotions:
            emotions[label] = max(emotions.get(label, 0), intensity)
    felt = [s.sentiment for s in sentences if s.polarity]
    efforts = [s.effort for s in sentences if s.effort is not None]
    topics = {t for s in sentences for t in s.topics}
    cues = tuple(dict.fromkeys(c for s in sentences for c in s.cues))[:MAX_CUES]
    return TextSignals(
        sentiment=round(sum(felt) / len(felt), 1) if felt else 0.0,
        emotions=_ordered(emotions),
        effort=round(sum(efforts) / len(efforts), 1) if efforts else None,
        actionability=event_actionability([s.actionability for s in sentences]),
        topics=tuple(t for t in TOPICS if t in topics),
        cues=cues,
        sentences=len(sentences),
    )


# Sentences recur far more than whole texts ("Thank you.", "Where is my order?"): memoised one by one.
_cached_sentence = lru_cache(maxsize=CACHE_SIZE)(analyse_sentence)


def analyse_sentences(text: str) -> list[SentenceSignals]:
    return [_cached_sentence(s) if len(s) <= CACHE_MAX_CHARS else analyse_sentence(s) for s in split_sentences(text)]


def _analyse(text: str) -> TextSignals | None:
    sentences = analyse_sentences(text)
    return roll_up(sentences) if sentences else None


_cached_analyse = lru_cache(maxsize=CACHE_SIZE)(_analyse)


def analyse(text: str | None) -> TextSignals | None:
    """The per-event text signals of `text`; None when there is no text (or nothing but mentions and links)."""
    if not text or not text.strip():
        return None
    return _cached_analyse(text) if len(text) <= CACHE_MAX_CHARS else _analyse(text)
