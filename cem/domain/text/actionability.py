"""Actionability of one sentence: does it need a reply, suggest something, praise, or none of these?

First rule that holds:
1. a suggestion cue ("it would be nice if", "you should", "please add", "I wish") -> `suggestion`;
2. a request ("please", "can you", "I need", "refund", "cancel"), a question mark, a problem cue ("broken",
   "missing", "charged twice") or a negated outcome ("nothing is fixed"), whatever the tone; or a negative sentence
   with a negative emotion or effort below 0 -> `needs_response`;
3. politeness that asks for nothing ("thanks in advance", "no worries") -> `not_meaningful`;
4. a positive sentence with joy, gratitude of 2 or more, a praise cue or positive effort -> `praise`;
5. otherwise `not_meaningful` (facts, greetings, fillers).
An event takes the most demanding of its sentences, in the order of ACTIONABILITY.
"""

from __future__ import annotations

from cem.domain.text.cues import CueMatch
from cem.domain.text.emotions import NEGATIVE

NEEDS_RESPONSE = "needs_response"
SUGGESTION = "suggestion"
PRAISE = "praise"
NOT_MEANINGFUL = "not_meaningful"
ACTIONABILITY = (NEEDS_RESPONSE, SUGGESTION, PRAISE, NOT_MEANINGFUL)  # most demanding first


def sentence_actionability(words: tuple[str, ...], matches: list[CueMatch], polarity: int,
                           emotions: dict[str, int], effort: int | None) -> str:
    acts = {act for m in matches for act in m.cue.actions}
    if "suggestion" in acts:
        return SUGGESTION
    problem_cue = any(m.problem for m in matches)
    troubled = bool(emotions.keys() & NEGATIVE) or (effort is not None and effort < 0)
    if "response" in acts or "?" in words or problem_cue or (polarity < 0 and troubled):
        return NEEDS_RESPONSE
    if "none" in acts:
        return NOT_MEANINGFUL
    praised = "praise" in acts or "joy" in emotions or emotions.get("gratitude", 0) >= 2 or (
        effort is not None and effort > 0)
    if polarity > 0 and praised:
        return PRAISE
    return NOT_MEANINGFUL


def event_actionability(labels: list[str]) -> str:
    return min(labels, key=ACTIONABILITY.index, default=NOT_MEANINGFUL)
