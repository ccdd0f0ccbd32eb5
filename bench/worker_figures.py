"""What a benchmark reads of a worker once a phase is over: its counters, the identity costs it measured of
itself, how its memory grew, and the nearest-rank percentile the phases report latencies with."""

from __future__ import annotations

import math
import statistics
from typing import Any

from devtools.harness import wait_until
from devtools.scrape import metric_value

WORKER_METRICS = ("cem_events_in_total", "cem_events_resolved_total", "cem_duplicates_dropped_total",
                  "cem_deadletter_total", "cem_identities_merged_total", "cem_identity_recomputes_total",
                  "cem_sink_batch_duration_seconds_sum", "cem_sink_batch_duration_seconds_count")


def worker_metrics(samples: dict[str, float]) -> dict[str, float]:
    out = {name: samples[name] for name in WORKER_METRICS if name in samples}
    count = out.get("cem_sink_batch_duration_seconds_count", 0.0)
    if count:
        out["sink_batch_mean_s"] = round(out["cem_sink_batch_duration_seconds_sum"] / count, 4)
        out["events_per_sink_batch"] = round(out.get("cem_events_resolved_total", 0.0) / count, 1)
    return out


def await_counted(workers: list[Any], expected: int) -> bool:
    """A batch's rows are visible before the worker counts it: wait (briefly) until the workers' counters hold
    every unique event, so that the per-event figures read from them cover the whole phase. False if they do not
    yet."""
    try:
        wait_until(lambda: sum(metric_value(w.metrics_text(), "cem_identity_events_total") for w in workers)
                   >= expected, 10, "", interval=0.2)
    except TimeoutError:
        return False
    return True


def identity_costs(text: str) -> dict[str, float]:
    """The live serial share: of the events this worker attributed, those that needed the graph's owner; and, with
    the replica on, of the events its ingest asked its replica about, those a front would have sent to the owner.
    With them, what the resolver measured of its own CPU: the graph's per event that needed the owner (and the
    serial ceiling it implies), and the whole resolver's per event resolved (and today's single-resolver cap)."""
    out: dict[str, float] = {}
    attributed = metric_value(text, "cem_identity_events_total")
    if attributed:
        local = metric_value(text, "cem_identity_events_total", {"outcome": "local"})
        out.update(identity_events_attributed=attributed, live_owner_share=round(1 - local / attributed, 4))
        owner_seconds = metric_value(text, "cem_identity_graph_seconds_total", {"need": "owner"})
        if owner_seconds and attributed > local:
            out.update(live_owner_us_per_owner_event=round(owner_seconds / (attributed - local) * 1e6, 1),
                       live_serial_ceiling_eps=round(attributed / owner_seconds))
    asked = metric_value(text, "cem_identity_front_answers_total")
    if asked:
        local = metric_value(text, "cem_identity_front_answers_total", {"answer": "local"})
        out.update(front_events_asked=asked, front_owner_share=round(1 - local / asked, 4))
    resolved = metric_value(text, "cem_events_resolved_total")
    cpu = metric_value(text, "cem_resolver_cpu_seconds_total")
    if resolved and cpu:
        out.update(resolver_cpu_us_per_event=round(cpu / resolved * 1e6, 1), resolver_ceiling_eps=round(resolved / cpu),
                   **{f"resolver_cpu_s_{step}": round(metric_value(text, "cem_resolver_cpu_seconds_total",
                                                                   {"step": step}), 2)
                      for step in ("resolve", "columns", "insert", "state")})
    return out


def percentile(values: list[float], p: float) -> float | None:
    """The nearest-rank percentile of sorted values: the smallest value with at least p % of them at or below."""
    if not values:
        return None
    k = min(len(values) - 1, max(0, math.ceil(p * len(values) / 100) - 1))
    return round(values[k], 3)


def rss_growth(mem: dict[str, Any]) -> dict[str, Any]:
    """MB of RSS per 100k resolved events, fitted (least squares) over the second half of the run, and the
    peak extrapolated to 1M events."""
    samples = [s for s in mem.get("rss_samples", []) if s["rss_mb"] is not None and s["resolved"] > 0]
    peak = next(iter(mem["per_worker"].values()))["peak_rss_mb"]
    base = next(iter(mem["per_worker"].values()))["rss_at_first_record_mb"]
    half = samples[len(samples) // 2:]
    if len(half) < 2 or mem.get("incomplete"):
        return {"peak_rss_mb": peak, "rss_at_first_record_mb": base}
    xs = [s["resolved"] for s in half]
    ys = [s["rss_mb"] for s in half]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
    per_100k = slope * 100_000
    events = round(mem["records"] * min(1.0, mem["rows_visible"] / mem["unique_valid"]))
    return {"peak_rss_mb": peak, "rss_at_first_record_mb": base, "mb_per_100k_events": round(per_100k, 1),
            "events": events, "customers": mem["customers"],
            "peak_extrapolated_to_1m_events_mb": round(peak + slope * max(0, 1_000_000 - events), 0)}
