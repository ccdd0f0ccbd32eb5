"""How far two workers can scale on this machine, from the CPU seconds a bench run measured.

On a machine of `cores` cores that also runs the broker and the database, the pipeline's processes (workers,
Kafka, ClickHouse) can spend at most `cores` CPU seconds per second. So two workers reach at most
`cores / (pipeline CPU per event)`, whatever they do, and `scale_2w` at most that over the one-worker rate:

- `at_spent_cpu`: with the CPU per event the two-worker phase really spent (its hops, its batching);
- `free_split`: with the CPU per event of the one-worker phase, as if splitting the work across two processes
  cost nothing at all: the ceiling of any design on this machine.

`busy_cores` is how many cores the two-worker pipeline kept busy: below `cores`, what holds it back is waiting
(hand-offs, round trips), not CPU. Processes outside the pipeline (the bench itself, other users) are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PIPELINE = ("worker", "kafka", "clickhouse")


@dataclass(frozen=True)
class ScaleBound:
    at_spent_cpu: float
    free_split: float
    busy_cores: float
    extra_cpu: float  # the two-worker phase's pipeline CPU per event over the one-worker phase's, minus 1

    def as_dict(self) -> dict[str, float]:
        return {"at_spent_cpu": round(self.at_spent_cpu, 3), "free_split": round(self.free_split, 3),
                "busy_cores": round(self.busy_cores, 2), "extra_cpu": round(self.extra_cpu, 3)}


def pipeline_cpu(cpu: Mapping[str, float]) -> float:
    """CPU seconds of the pipeline's processes in one phase's meter (workers are named `<phase>-workerN`)."""
    return sum(seconds for name, seconds in cpu.items() if any(part in name for part in PIPELINE))


def scale_bound(one_rate: float, one_cpu: Mapping[str, float], two_rate: float, two_cpu: Mapping[str, float],
                events: int, cores: float) -> ScaleBound:
    """`one_rate`, `two_rate`: events per second of the one- and two-worker phases over the same `events`;
    `one_cpu`, `two_cpu`: their CPU meters (seconds per process, and `wall`)."""
    per_event_one = pipeline_cpu(one_cpu) / events
    per_event_two = pipeline_cpu(two_cpu) / events
    return ScaleBound(at_spent_cpu=cores / per_event_two / one_rate, free_split=cores / per_event_one / one_rate,
                      busy_cores=per_event_two * two_rate, extra_cpu=per_event_two / per_event_one - 1)
