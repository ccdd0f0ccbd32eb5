"""Value objects shared by the pure core. No I/O, no clock."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field

from cem.domain.reasons import Reason
from cem.domain.text import TextSignals, analyse
from cem.domain.text.wire import signals_from_wire, signals_to_wire

Identifier = tuple[str, str]  # (type, normalised value)

IDENTIFIER_TYPES: tuple[str, ...] = (
    "anonymous_id",
    "device_id",
    "email",
    "phone",
    "customer_ref",
    "social_handle",
)
DIGITAL_CHANNELS = frozenset({"web", "mobile"})
SURVEY_SCALES: dict[str, tuple[int, int]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}


@dataclass(frozen=True, slots=True)
class Interaction:
    """A validated, normalised and enriched channel event."""

    event_id: str
    channel: str
    type: str
    occurred_ms: int
    identifiers: tuple[Identifier, ...]
    fingerprint: str
    text: str | None = None
    issue_ref: str | None = None
    survey_kind: str | None = None
    survey_score: int | None = None
    properties: dict[str, str] = field(default_factory=dict)
    sentiment: float | None = None
    device: str = ""
    os: str = ""
    browser: str = ""
    text_signals: TextSignals | None = None

    def to_wire(self) -> list[object]:
        return [
            self.event_id,
            self.channel,
            self.type,
            self.occurred_ms,
            [list(i) for i in self.identifiers],
            self.fingerprint,
            self.text,
            self.issue_ref,
            self.survey_kind,
            self.survey_score,
            self.properties,
            self.sentiment,
            self.device,
            self.os,
            self.browser,
            signals_to_wire(self.text_signals),
        ]

    @classmethod
    def from_wire(cls, row: list) -> Interaction:  # type: ignore[type-arg]
        """An Interaction from its wire row. A row of 15 fields comes from a worker older than text signals (a
        rolling upgrade): its signals are computed here, so its interaction_log row is as complete as any other.
        Raises ValueError when the text signals are malformed."""
        (eid, ch, typ, occ, ids, fp, text, issue, skind, sscore, props, sent, dev, os_, br) = row[:15]
        signals = signals_from_wire(row[15]) if len(row) > 15 else analyse(text)
        return cls(
            eid, ch, typ, occ, tuple((t, v) for t, v in ids), fp, text, issue, skind, sscore, props, sent,
            dev, os_, br, signals,
        )


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a raw record cannot become an Interaction. `reason` is a stable machine-readable code."""

    reason: Reason
    detail: str = ""


def stable_id(prefix: str, *parts: str) -> str:
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).hexdigest()
    return f"{prefix}_{digest}"


# A batch names the same identifier sets several times (its rows, the sets it attributed, their overrides), and
# a customer's sets recur from batch to batch: a bounded memo spares the hashing.
@functools.lru_cache(maxsize=1 << 16)
def identity_key(identifiers: tuple[Identifier, ...]) -> str:
    """A stable, non-reversible name for one identifier set: interaction rows find their customer through it."""
    return stable_id("k", *(f"{t}:{v}" for t, v in identifiers))
