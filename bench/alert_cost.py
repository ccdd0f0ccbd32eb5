"""The cost of alert evaluation per event, in process: the resolver's batches (`Resolver.process`) alone against the
same batches followed by the alert engine (`batch_facts` + `AlertEngine.evaluate`, the built-in rules), on the
benchmark's simulated traffic, validated and enriched once beforehand as ingest does. Each pass starts from an empty
resolver and engine; CPU time, best of `repeat` passes. The ingest step's own cost is given too, so the ratio can
be read against the whole in-process path (ingest + resolver).

    python -m bench.alert_cost [--events N] [--repeat R]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from bench.cost_cli import run_cost_probe
from bench.traffic import simulated
from cem.config import alert_engine, identifier_rules, resolver_config
from cem.domain.alerts import batch_facts
from cem.domain.alerts.model import alert_id_for
from cem.domain.model import Interaction
from cem.domain.resolver import Resolver
from cem.settings import Settings
from cem.worker import tune_garbage_collector
from devtools.simulate import recent_base_ms
from schemas.codec import DecodeError, decode
from streams.ingest import build_interaction, limits_of


@dataclass(frozen=True)
class AlertCost:
    events: int
    batches: int
    ingest_us_per_event: float  # validate + enrich (text signals included)
    resolver_us_per_event: float
    resolver_and_alerts_us_per_event: float
    alerts_us_per_event: float
    alerts_raised: int
    ratio_to_resolver: float  # (resolver + alerts) / resolver: the budget is 1.10
    ratio_to_in_process: float  # (ingest + resolver + alerts) / (ingest + resolver)
    ratio_of_whole_passes: float  # a pass with alerts / one without (includes their effect on the rest, e.g. GC)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _records(events: int, seed: int) -> list[tuple[str, Any]]:
    max_bytes = Settings().max_record_bytes
    out = []
    for channel, _key, value in simulated(events, seed, 0, recent_base_ms()).records:
        try:
            out.append((channel, decode(value, max_bytes)))
        except DecodeError:
            continue
    return out


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.process_time()
        result = fn()
        best = min(best, time.process_time() - started)
    return best, result


def measure(events: int = 20_000, seed: int = 7, repeat: int = 3, batch: int | None = None) -> AlertCost:
    settings = Settings()
    size = batch or settings.ingest_batch_max
    rules, limits = identifier_rules(settings), limits_of(settings)
    records = _records(events, seed)
    now_ms = int(time.time() * 1000)

    def ingest() -> list[Interaction]:
        built = (build_interaction(record, channel, rules, limits, now_ms) for channel, record in records)
        return [event for event in built if isinstance(event, Interaction)]

    ingest_s, interactions = _best(ingest, repeat)
    batches = [interactions[i:i + size] for i in range(0, len(interactions), size)]

    def resolve(with_alerts: bool) -> tuple[float, float, int]:
        """One pass from an empty state: CPU seconds in the resolver, in the alert path, and the alerts raised."""
        resolver = Resolver(resolver_config(settings))
        engine = alert_engine(settings)
        alert_id_for.cache_clear()  # every pass meets its alerts for the first time
        resolving = alerting = 0.0
        raised = 0
        for i, events_of_batch in enumerate(batches):
            at = now_ms + i * 50  # a batch every 50 ms of processing time
            started = time.process_time()
            effects = resolver.process(events_of_batch, at)
            resolved = time.process_time()
            resolving += resolved - started
            if with_alerts:
                raised += len(engine.evaluate(batch_facts(effects, "priority"), at).alerts)
                alerting += time.process_time() - resolved
        return resolving, alerting, raised

    # Interleaved passes, the best of each part: the machine's other load affects both sides alike.
    passes = [resolve(with_alerts) for _ in range(repeat) for with_alerts in (False, True)]
    resolver_s = min(p[0] for p in passes)
    alerts_s = min(p[1] for p in passes if p[1] > 0)
    without_s = min(p[0] for p in passes[0::2])
    with_s = min(p[0] + p[1] for p in passes[1::2])
    n = max(1, len(interactions))
    per = [round(s / n * 1e6, 2) for s in (ingest_s, resolver_s, resolver_s + alerts_s, alerts_s)]
    return AlertCost(len(interactions), len(batches), per[0], per[1], per[2], per[3], passes[1][2],
                     round((resolver_s + alerts_s) / resolver_s, 3),
                     round((ingest_s + resolver_s + alerts_s) / (ingest_s + resolver_s), 3),
                     round(with_s / without_s, 3))


def main(argv: list[str] | None = None) -> int:
    tune_garbage_collector()  # measure what a worker pays
    return run_cost_probe("python -m bench.alert_cost", __doc__, measure, argv)


if __name__ == "__main__":
    raise SystemExit(main())
