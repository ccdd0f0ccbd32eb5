"""Accuracy of the text analyser on the held-out labelled CX sentences (tests/unit/data/cx_sentences.jsonl), never
used to tune it. Floors sit five points under what was measured (docs/analytics.md), so a regression fails."""

from __future__ import annotations

import pytest

from devtools.text_eval import LABELS, analyser, evaluate, load, vader_baseline

# label: (precision, recall) floors on the held-out split
FLOORS = {
    "emotion:anger": (0.84, 0.51),
    "emotion:frustration": (0.81, 0.47),
    "emotion:confusion": (0.83, 0.73),
    "emotion:disappointment": (0.76, 0.51),
    "emotion:worry": (0.95, 0.45),
    "emotion:joy": (0.79, 0.76),
    "emotion:gratitude": (0.78, 0.88),
    "effort:any": (0.89, 0.59),
    "effort:hard": (0.90, 0.45),
    "effort:easy": (0.83, 0.83),
    "actionability:needs_response": (0.86, 0.85),
    "actionability:suggestion": (0.95, 0.55),
    "actionability:praise": (0.76, 0.81),
    "actionability:not_meaningful": (0.49, 0.61),
    "topic:billing": (0.95, 0.89),
    "topic:delivery": (0.85, 0.80),
    "topic:account": (0.95, 0.78),
    "topic:product_quality": (0.95, 0.49),
    "topic:staff": (0.85, 0.63),
    "topic:price": (0.95, 0.82),
    "polarity:pos": (0.78, 0.91),
    "polarity:neg": (0.86, 0.82),
    "polarity:neu": (0.72, 0.63),
}
# Labels where VADER alone has an analogue (devtools/text_eval.py documents the mapping).
VADER_ANALOGUES = ["emotion:anger", "emotion:frustration", "emotion:joy", "effort:any", "effort:hard", "effort:easy",
                   "actionability:needs_response", "actionability:praise", "actionability:not_meaningful",
                   "polarity:pos", "polarity:neg", "polarity:neu"]


@pytest.fixture(scope="module")
def held_out() -> list[dict[str, object]]:
    return load("held_out")


def test_the_evaluation_set_is_large_varied_and_split_before_tuning() -> None:
    every = load("all")
    assert len(every) >= 360 and len(load("held_out")) >= 150
    assert {item["channel"] for item in every} == {"chat", "call", "ticket", "social", "survey"}
    assert len({item["text"] for item in every}) == len(every)
    assert set(FLOORS) == set(LABELS)


def test_precision_and_recall_per_label_stay_above_their_floors(held_out: list[dict[str, object]]) -> None:
    scores, _ = evaluate(held_out, analyser)
    below = {label: (round(s.precision, 2), round(s.recall, 2)) for label, s in scores.items()
             if s.precision < FLOORS[label][0] or s.recall < FLOORS[label][1]}
    assert below == {}


def test_the_analyser_beats_vader_alone_where_vader_has_an_analogue(held_out: list[dict[str, object]]) -> None:
    ours, _ = evaluate(held_out, analyser)
    baseline, _ = evaluate(held_out, vader_baseline)
    not_better = [label for label in VADER_ANALOGUES if ours[label].f1 <= baseline[label].f1]
    assert not_better == []
