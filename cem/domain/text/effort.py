"""Customer effort of one sentence, -5 (very hard) .. +5 (effortless), None when the sentence says nothing about it.

Three sources, the strongest wins (the largest absolute value; a tie goes to the harder reading):
- effort cues of the lexicon ("on hold", "third time" below, "easy", "in no time"); a negated cue turns around
  ("not easy" is hard, "not difficult" mildly easy);
- how many times the customer had to act: "third time", "called twice", "five emails";
- how long it took: waiting ("waited 40 minutes", "it's been 10 days") is hard, the longer the harder; a task that
  "took two minutes" or was done "within an hour" is easy.
"""

from __future__ import annotations

import re

from cem.domain.text.cues import CueMatch

_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
            "nine": 9, "ten": 10, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
            "few": 3, "several": 4, "couple": 2, "all": 1}
_NUMBER = r"\d+|" + "|".join(_NUMBERS)
_MINUTES = {"sec": 1 / 60, "min": 1, "hour": 60, "hr": 60, "day": 1_440, "week": 10_080, "month": 43_200}
_DURATION = re.compile(
    r"\b(?P<verb>took|takes|take|taking|waited|waiting|wait|been|in|within|for|queue)\s+"
    r"(?P<qualifier>(?:only|just|about|around|over|almost|nearly|more than|less than|under|a|the)\s+)*"
    rf"(?P<n>{_NUMBER})\s+(?P<unit>sec|min|hour|hr|day|week|month)\w*")
_ORDINAL_TIME = re.compile(r"\b(?P<n>second|third|fourth|fifth|sixth|seventh|\d+(?:st|nd|rd|th)) time\b")
_ORDINALS = {"second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7}
# Repetitions count as effort only when the customer repeated something: "called twice", not "charged twice".
_REPEATS = re.compile(
    r"\b(?:(?:called|calling|call|rang|phoned|emailed|email|contacted|contacting|asked|tried|wrote|written|chased|"
    rf"explained|sent|transferred|visited|reset)(?: \S+){{0,3}}? (?P<n>twice|(?:{_NUMBER}|multiple|many) times)"
    rf"|(?P<m>{_NUMBER}) (?:emails|calls|dms|messages|different agents|agents|attempts|tries))\b")
_EASY_QUALIFIERS = ("only", "just", "less than", "under")


def _number(text: str) -> int:
    return int(text) if text.isdigit() else _NUMBERS.get(text, 3)


def _repeat_effort(count: int) -> int:
    return -3 if count <= 2 else -4 if count == 3 else -5


def _duration_effort(verb: str, qualifier: str, minutes: float) -> int | None:
    if verb in ("took", "takes", "take", "taking"):
        if any(q in qualifier for q in _EASY_QUALIFIERS) or minutes <= 10:
            return 4 if minutes <= 10 else 3
        return -3 if minutes <= 1_440 else -4
    if verb in ("in", "within"):
        return (4 if minutes <= 60 else 3) if minutes <= 1_440 else None
    if minutes < 15:
        return None
    if minutes < 60:
        return -3
    if minutes < 120:
        return -4
    if minutes < 1_440:
        return -5
    return -3 if minutes < 7 * 1_440 else -4 if minutes < 30 * 1_440 else -5


# Every repetition or duration the patterns know holds one of these: most sentences skip the three patterns.
_HINTS = ("time", "twice", "sec", "min", "hour", "hr", "day", "week", "month", "email", "call", "dm", "message",
          "agent", "attempt", "tries")


def counted_effort(sentence: str) -> list[tuple[int, str]]:
    """(effort, cue) of the repetitions and durations in a lower-case, space-joined sentence."""
    found: list[tuple[int, str]] = []
    if not any(hint in sentence for hint in _HINTS):
        return found
    for m in _ORDINAL_TIME.finditer(sentence):
        word = m["n"]
        count = _ORDINALS.get(word) or int(re.sub(r"\D", "", word) or 2)
        if count >= 2:
            found.append((_repeat_effort(count), m[0]))
    for m in _REPEATS.finditer(sentence):
        first = (m["n"] or m["m"]).split()[0]
        count = 2 if first == "twice" else 3 if first in ("multiple", "many") else _number(first)
        if count >= 2:
            found.append((_repeat_effort(count), m[0]))
    for m in _DURATION.finditer(sentence):
        minutes = _number(m["n"]) * _MINUTES[m["unit"]]
        effort = _duration_effort(m["verb"], m["qualifier"] or "", minutes)
        if effort is not None:
            found.append((effort, m[0]))
    return found


def sentence_effort(matches: list[CueMatch], counted: list[tuple[int, str]]) -> tuple[int | None, list[str]]:
    """The sentence's effort and the cues that set it."""
    candidates = list(counted)
    for match in matches:
        effort = match.cue.effort
        if effort is None:
            continue
        if match.negated:
            effort = -abs(effort) if effort > 0 else 2
        candidates.append((effort, match.text))
    if not candidates:
        return None, []
    best = min(candidates, key=lambda c: (-abs(c[0]), c[0]))
    return best[0], [cue for effort, cue in candidates if effort == best[0]]
