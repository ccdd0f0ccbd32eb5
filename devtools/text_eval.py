"""Precision and recall of the text analyser (cem.domain.text) against the labelled CX sentences, next to a
VADER-only baseline.

    python -m devtools.text_eval [--split held_out|dev|all] [--misses LABEL]

The baseline reads only the VADER compound score c of the whole text (the `sentiment` column before text signals):
- polarity: positive at c >= 0.05, negative at c <= -0.05 (VADER's own thresholds), else neutral;
- emotions: c <= -0.05 is frustration (the commonest negative emotion in CX), c <= -0.5 is anger as well, c >= 0.05
  is joy; intensity ceil(5 |c|). VADER has no analogue of confusion, disappointment, worry or gratitude;
- effort: round(5 c) when |c| >= 0.05 and that is not 0 (a negative text read as a hard one), else none;
- actionability: c <= -0.05 needs a response, c >= 0.05 is praise, else not meaningful (no suggestion);
- topics: none (VADER has no topics).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cem.domain.enrich import sentiment
from cem.domain.text import ACTIONABILITY, EMOTIONS, TOPICS, TextSignals, analyse

DATA = Path(__file__).resolve().parent.parent / "tests" / "unit" / "data" / "cx_sentences.jsonl"
POLARITIES = {1: "pos", -1: "neg", 0: "neu"}


@dataclass(frozen=True)
class Labels:
    """What one text is (gold) or was read as (a prediction), as label sets per family."""

    polarity: str
    emotions: dict[str, int]
    effort: float | None
    actionability: str
    topics: frozenset[str]

    def label_set(self) -> set[str]:
        labels = {f"polarity:{self.polarity}", f"actionability:{self.actionability}"}
        labels |= {f"emotion:{e}" for e in self.emotions} | {f"topic:{t}" for t in self.topics}
        if self.effort is not None:
            labels.add("effort:any")
            labels.add("effort:hard" if self.effort < 0 else "effort:easy")
        return labels


def load(split: str = "held_out", path: Path = DATA) -> list[dict[str, Any]]:
    items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [item for item in items if split == "all" or item["split"] == split]


def gold(item: dict[str, Any]) -> Labels:
    return Labels(item["polarity"], dict(item["emotions"]), item["effort"], item["actionability"],
                  frozenset(item["topics"]))


def analyser(text: str) -> Labels:
    signals: TextSignals | None = analyse(text)
    if signals is None:
        return Labels("neu", {}, None, "not_meaningful", frozenset())
    return Labels(POLARITIES[signals.polarity], dict(signals.emotions), signals.effort, signals.actionability,
                  frozenset(signals.topics))


def vader_baseline(text: str) -> Labels:
    c = sentiment(text) or 0.0
    polarity = "pos" if c >= 0.05 else "neg" if c <= -0.05 else "neu"
    intensity = max(1, math.ceil(5 * abs(c)))
    emotions = {"frustration": intensity} if c <= -0.05 else {"joy": intensity} if c >= 0.05 else {}
    if c <= -0.5:
        emotions["anger"] = intensity
    effort = round(5 * c) if abs(c) >= 0.05 and round(5 * c) else None
    action = "needs_response" if c <= -0.05 else "praise" if c >= 0.05 else "not_meaningful"
    return Labels(polarity, emotions, effort, action, frozenset())


LABELS = ([f"emotion:{e}" for e in EMOTIONS] + ["effort:any", "effort:hard", "effort:easy"]
          + [f"actionability:{a}" for a in ACTIONABILITY] + [f"topic:{t}" for t in TOPICS]
          + [f"polarity:{p}" for p in ("pos", "neg", "neu")])


@dataclass(frozen=True)
class Score:
    support: int
    precision: float
    recall: float

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0


def scores(golds: list[Labels], predictions: list[Labels]) -> dict[str, Score]:
    out: dict[str, Score] = {}
    for label in LABELS:
        tp = fp = fn = 0
        for g, p in zip(golds, predictions, strict=True):
            has, said = label in g.label_set(), label in p.label_set()
            tp, fp, fn = tp + (has and said), fp + (said and not has), fn + (has and not said)
        out[label] = Score(tp + fn, tp / (tp + fp) if tp + fp else 0.0, tp / (tp + fn) if tp + fn else 0.0)
    return out


def mean_abs_error(pairs: Iterable[tuple[float, float]]) -> float | None:
    errors = [abs(a - b) for a, b in pairs]
    return round(sum(errors) / len(errors), 2) if errors else None


def intensity_and_effort_errors(golds: list[Labels], predictions: list[Labels]) -> tuple[float | None, float | None]:
    """Mean absolute error of emotion intensity (emotions both name) and of effort (both have one)."""
    intensity = mean_abs_error((g.emotions[e], p.emotions[e]) for g, p in zip(golds, predictions, strict=True)
                               for e in g.emotions if e in p.emotions)
    effort = mean_abs_error((g.effort, p.effort) for g, p in zip(golds, predictions, strict=True)
                            if g.effort is not None and p.effort is not None)
    return intensity, effort


def evaluate(items: list[dict[str, Any]], reader: Callable[[str], Labels]) -> tuple[dict[str, Score], list[Labels]]:
    predictions = [reader(item["text"]) for item in items]
    return scores([gold(item) for item in items], predictions), predictions


def table(items: list[dict[str, Any]]) -> str:
    ours, ours_pred = evaluate(items, analyser)
    base, base_pred = evaluate(items, vader_baseline)
    lines = ["| label | support | precision | recall | F1 | VADER-only P | VADER-only R | VADER-only F1 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label in LABELS:
        o, b = ours[label], base[label]
        lines.append(f"| {label} | {o.support} | {o.precision:.2f} | {o.recall:.2f} | {o.f1:.2f} | "
                     f"{b.precision:.2f} | {b.recall:.2f} | {b.f1:.2f} |")
    golds = [gold(item) for item in items]
    oi, oe = intensity_and_effort_errors(golds, ours_pred)
    bi, be = intensity_and_effort_errors(golds, base_pred)
    lines.append("")
    lines.append(f"Mean absolute error, emotion intensity where both name the emotion: analyser {oi}, VADER-only {bi}; "
                 f"effort where both have one: analyser {oe}, VADER-only {be}.")
    return "\n".join(lines)


def misses(items: list[dict[str, Any]], label: str) -> str:
    out = []
    for item in items:
        g, p = gold(item).label_set(), analyser(item["text"]).label_set()
        if (label in g) != (label in p):
            kind = "missed" if label in g else "false"
            out.append(f"{kind:6} {item['id']} {item['text']!r} -> {sorted(p)}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.text_eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=["held_out", "dev", "all"], default="held_out")
    parser.add_argument("--misses", metavar="LABEL", help="list the texts where LABEL is missed or wrongly given")
    args = parser.parse_args(argv)
    items = load(args.split)
    if args.misses:
        print(misses(items, args.misses))
        return 0
    print(f"{len(items)} texts ({args.split})\n")
    print(table(items))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
