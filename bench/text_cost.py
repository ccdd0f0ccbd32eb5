"""The cost of enrichment per event, in process: the enrichment that predates text signals (VADER sentiment and
the user-agent parse) against the same plus the text analysis (cem.domain.text), on the benchmark's simulated
traffic (every text unique, as in bench.traffic). Caches are emptied before each pass, so a text is analysed as a
fresh worker meets it; the user agents recur as they do in real traffic. CPU time, best of `repeat` passes.

    python -m bench.text_cost [--events N] [--repeat R]

The text analysis scores each sentence with VADER through the same memo as the event's sentiment, so a one-sentence
text costs VADER once: the figure that matters is the added cost, (old + text) - old. The simulator's texts are a
dozen sentences with a reference number, so its sentences recur; the labelled CX sentences (all different) give the
cost of a text met for the first time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from bench.cost_cli import run_cost_probe
from bench.traffic import simulated
from cem.domain import enrich
from cem.domain.text import signals
from cem.settings import Settings
from cem.worker import tune_garbage_collector
from devtools.simulate import recent_base_ms
from devtools.text_eval import load
from schemas.codec import DecodeError, decode


@dataclass(frozen=True)
class TextCost:
    events: int
    with_text: int
    old_us_per_event: float  # sentiment + device
    text_us_per_event: float  # the text analysis alone, its own caches cold and VADER's too
    old_and_text_us_per_event: float  # what ingest now runs
    added_us_per_event: float
    added_us_per_text: float
    ratio_to_old: float  # (old + text) / old
    unique_texts: int  # the labelled CX sentences: every text and nearly every sentence new
    vader_us_per_unique_text: float
    vader_and_text_us_per_unique_text: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _inputs(events: int, seed: int) -> list[tuple[str | None, str]]:
    traffic = simulated(events, seed, 0, recent_base_ms())
    max_bytes = Settings().max_record_bytes
    inputs: list[tuple[str | None, str]] = []
    for _channel, _key, value in traffic.records:
        try:
            record = decode(value, max_bytes)
        except DecodeError:
            continue
        if not isinstance(record, dict):
            continue
        text = record.get("text")
        properties = record.get("properties") or {}
        agent = properties.get("user_agent", "") if isinstance(properties, dict) else ""
        inputs.append((text if isinstance(text, str) else None, agent if isinstance(agent, str) else ""))
    return inputs


def _clear() -> None:
    enrich._cached_sentiment.cache_clear()
    enrich.device_of.cache_clear()
    signals._cached_analyse.cache_clear()
    signals._cached_sentence.cache_clear()


def _best_us(fn: Callable[[], None], n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        _clear()
        started = time.process_time()
        fn()
        best = min(best, time.process_time() - started)
    return best / max(1, n) * 1e6


def measure(events: int = 20_000, seed: int = 7, repeat: int = 3) -> TextCost:
    inputs = _inputs(events, seed)
    n = len(inputs)
    with_text = sum(1 for text, _ in inputs if text)

    def old() -> None:
        for text, agent in inputs:
            enrich.sentiment(text)
            enrich.device_of(agent)

    def text_only() -> None:
        for text, _agent in inputs:
            signals.analyse(text)

    def both() -> None:
        for text, agent in inputs:
            enrich.sentiment(text)
            enrich.device_of(agent)
            signals.analyse(text)

    old_us, text_us, both_us = (_best_us(fn, n, repeat) for fn in (old, text_only, both))
    added = both_us - old_us
    unique = [str(item["text"]) for item in load("all")]

    def vader_unique() -> None:
        for text in unique:
            enrich.sentiment(text)

    def both_unique() -> None:
        for text in unique:
            enrich.sentiment(text)
            signals.analyse(text)

    vader_us, both_unique_us = (_best_us(fn, len(unique), repeat) for fn in (vader_unique, both_unique))
    return TextCost(n, with_text, round(old_us, 2), round(text_us, 2), round(both_us, 2), round(added, 2),
                    round(added * n / max(1, with_text), 2), round(both_us / old_us, 2) if old_us else 0.0,
                    len(unique), round(vader_us, 2), round(both_unique_us, 2))


def main(argv: list[str] | None = None) -> int:
    tune_garbage_collector()  # measure what a worker pays
    return run_cost_probe("python -m bench.text_cost", __doc__, measure, argv)


if __name__ == "__main__":
    raise SystemExit(main())
