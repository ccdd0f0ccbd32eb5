"""Emotions of one sentence, each with an intensity 1..5 and the cues behind it.

- A cue gives an emotion its base intensity (lexicon). The strongest cue of an emotion sets its base.
- +1 for each that holds (at most 5): an intensifier just before the cue ("really disappointed"); two or more
  distinct cues of the same emotion; "!!" or more; a sentence in capitals, or the cue itself in capitals; a
  stretched word ("sooo").
- A negated positive cue ("not happy", "not impressed") is disappointment 2; a negated negative cue ("not angry")
  signals nothing; a negated outcome ("nothing is fixed", "hasn't arrived") is frustration 2.
- Effort of -3 or harder with no negative emotion named is frustration, one below the effort's strength.
- Frustration or confusion said with "!!", "??" or in capitals is anger too, one below the stronger of them.
- Sarcasm ("just great", "thanks for nothing", an upside-down smiley, or a positive word in a sentence whose
  effort is -2 or harder): the positive emotions go, and the sentence is frustration at least 3.
"""

from __future__ import annotations

from dataclasses import dataclass

from cem.domain.text.cues import CueMatch
from cem.domain.text.sentences import Tokens

POSITIVE = frozenset({"joy", "gratitude"})
NEGATIVE = frozenset({"anger", "frustration", "confusion", "disappointment", "worry"})


@dataclass
class _Found:
    base: int
    cues: list[str]
    boosted: bool = False


def _collect(matches: list[CueMatch], spelled: Tokens) -> dict[str, _Found]:
    found: dict[str, _Found] = {}
    for match in matches:
        cue = match.cue
        emotions = cue.emotions
        if cue.outcome and match.negated:
            emotions = {"frustration": 2}
        elif match.negated:
            if not emotions.keys() & POSITIVE:
                continue
            emotions = {"disappointment": 2}
        for label, base in emotions.items():
            entry = found.setdefault(label, _Found(0, []))
            entry.base = max(entry.base, base)
            entry.cues.append(("not " if match.negated else "") + match.text)
            entry.boosted = entry.boosted or match.intensified or bool(set(cue.phrase) & spelled.capital_words)
    return found


def _intensity(entry: _Found, spelled: Tokens) -> int:
    boosts = [entry.boosted, len(set(entry.cues)) >= 2, spelled.exclamations >= 2, spelled.shouting,
              spelled.elongated]
    return max(1, min(5, entry.base + sum(boosts)))


def sentence_emotions(matches: list[CueMatch], spelled: Tokens, effort: int | None,
                      ) -> tuple[dict[str, int], list[str], bool]:
    """(emotion -> intensity, cues as `emotion:cue`, sarcastic) of one sentence."""
    found = _collect(matches, spelled)
    emotions = {label: _intensity(entry, spelled) for label, entry in found.items()}
    cues = [f"{label}:{cue}" for label, entry in found.items() for cue in dict.fromkeys(entry.cues)]
    sarcastic = any(m.cue.sarcasm for m in matches) or (
        bool(emotions.keys() & POSITIVE) and effort is not None and effort <= -2)
    if sarcastic:
        for label in POSITIVE & emotions.keys():
            del emotions[label]
        cues = [cue for cue in cues if cue.split(":", 1)[0] not in POSITIVE] + ["sarcasm"]
        emotions["frustration"] = max(emotions.get("frustration", 0), 3)
    if effort is not None and effort <= -3 and not emotions.keys() & NEGATIVE:
        emotions["frustration"] = min(5, -effort - 1)
        cues.append(f"frustration:effort {effort}")
    raised = spelled.exclamations >= 2 or spelled.shouting
    if raised and "anger" not in emotions and emotions.keys() & {"frustration", "confusion"}:
        emotions["anger"] = max(emotions.get("frustration", 0), emotions.get("confusion", 0)) - 1
        cues.append("anger:raised voice")
    return emotions, cues, sarcastic
