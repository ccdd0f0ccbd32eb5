"""TextSignals on the internal wire (the cem.resolve batches): a JSON list, checked field by field on the way in."""

from __future__ import annotations

import math
from typing import Any

from cem.domain.text.actionability import ACTIONABILITY
from cem.domain.text.cues import EMOTIONS, TOPICS
from cem.domain.text.signals import MAX_CUES, TextSignals

MAX_CUE_CHARS = 200


def signals_to_wire(signals: TextSignals | None) -> list[Any] | None:
    if signals is None:
        return None
    return [signals.sentiment, [list(pair) for pair in signals.emotions], signals.effort, signals.actionability,
            list(signals.topics), list(signals.cues), signals.sentences]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _problem(value: Any) -> str | None:  # noqa: C901 - one check per field reads best as a flat list
    if not isinstance(value, list) or len(value) != 7:
        return "text signals must be null or a list of 7 fields"
    sentiment, emotions, effort, actionability, topics, cues, sentences = value
    if not _number(sentiment) or not -5 <= sentiment <= 5:
        return "text sentiment must be a number in -5..5"
    if not isinstance(emotions, list) or not all(
            isinstance(p, list) and len(p) == 2 and p[0] in EMOTIONS and isinstance(p[1], int)
            and not isinstance(p[1], bool) and 1 <= p[1] <= 5 for p in emotions):
        return "emotions must be a list of [emotion, intensity 1..5]"
    if effort is not None and not (_number(effort) and -5 <= effort <= 5):
        return "effort must be null or a number in -5..5"
    if actionability not in ACTIONABILITY:
        return f"actionability must be one of {', '.join(ACTIONABILITY)}"
    if not isinstance(topics, list) or not all(t in TOPICS for t in topics):
        return "topics must be a list of known topics"
    if not isinstance(cues, list) or len(cues) > MAX_CUES or not all(
            isinstance(c, str) and len(c) <= MAX_CUE_CHARS for c in cues):
        return f"cues must be a list of at most {MAX_CUES} short strings"
    if not isinstance(sentences, int) or isinstance(sentences, bool) or sentences < 1:
        return "sentences must be a positive integer"
    return None


def signals_from_wire(value: Any) -> TextSignals | None:
    """The TextSignals of a wire value; ValueError (saying which field) when it is malformed."""
    if value is None:
        return None
    problem = _problem(value)
    if problem is not None:
        raise ValueError(problem)
    sentiment, emotions, effort, actionability, topics, cues, sentences = value
    return TextSignals(float(sentiment), tuple((str(e), int(i)) for e, i in emotions),
                       None if effort is None else float(effort), actionability, tuple(topics), tuple(cues),
                       sentences)
