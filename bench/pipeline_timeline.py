"""When both stages of a multi-worker phase were working, from samples taken while it ran.

With two workers the pipeline is two stages in two processes: one worker ingests the channel topics, the other
resolves and writes. On a finite backlog neither runs alone at full speed for the whole phase:

- **fill**: from the first record consumed to the first row visible, the resolver has nothing yet (the first
  batches are being ingested, signed and sent);
- **drain**: from the last record consumed to the last row visible, ingest is done and the resolver works alone
  through what is still on `cem.resolve`.

The share of the phase outside both is the time the two stages really overlapped. A phase of steady traffic has
no drain; a bench that drains a backlog pays both once, so they weigh less on a longer backlog.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    seconds: float  # since the first record consumed
    rows: int  # interaction rows visible in ClickHouse
    consumed: int  # raw records consumed, summed over the workers


@dataclass(frozen=True)
class FillAndDrain:
    fill_s: float  # first record consumed -> first row visible
    drain_s: float  # every record consumed -> the last row visible
    phase_s: float

    @property
    def overlap_share(self) -> float:
        """The share of the phase with both stages at work."""
        return max(0.0, self.phase_s - self.fill_s - self.drain_s) / self.phase_s if self.phase_s > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        return {"fill_s": round(self.fill_s, 2), "drain_s": round(self.drain_s, 2), "phase_s": round(self.phase_s, 2),
                "overlap_share": round(self.overlap_share, 3)}


def fill_and_drain(samples: Sequence[Sample], records: int, phase_s: float) -> FillAndDrain | None:
    """`samples` in time order; `records`: the raw records of the phase; `phase_s`: first record consumed -> last
    row visible. None when the samples never saw a row, or never saw every record consumed (a phase shorter than
    the sampling, or one cut short)."""
    first_row = next((s.seconds for s in samples if s.rows > 0), None)
    all_consumed = next((s.seconds for s in samples if s.consumed >= records), None)
    if first_row is None or all_consumed is None:
        return None
    return FillAndDrain(fill_s=first_row, drain_s=max(0.0, phase_s - all_consumed), phase_s=phase_s)
