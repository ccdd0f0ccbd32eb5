"""What the identity graph holds and returns: customers, links, merges, refused merges and an event's attribution.

Apart from the graph (cem/domain/identity.py) so that its erasure (cem/domain/identity_erasure.py) can build them
without importing the graph back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cem.domain.model import Identifier
from cem.domain.shared import SharedIdentifier

IdentitySet = tuple[Identifier, ...]  # sorted, normalised, de-duplicated
EventKey = tuple[int, str]  # (occurred_ms, event_id): the canonical order

@dataclass(slots=True)
class Customer:
    customer_id: str
    first_seen: EventKey  # orders customers for "first seen survives"
    counts: dict[str, int] = field(default_factory=dict)  # identifier values held, per type
    members: list[str] = field(default_factory=list)  # customer ids merged into this one, transitively
    sets: dict[IdentitySet, EventKey] = field(default_factory=dict)  # identifier sets attributed here
    latest: EventKey = (0, "")  # the newest event key folded into this customer


@dataclass(frozen=True, slots=True)
class Link:
    id_type: str
    value: str
    customer_id: str
    event_id: str
    occurred_ms: int
    rule: str


@dataclass(frozen=True, slots=True)
class Merge:
    from_id: str
    into_id: str
    event_id: str
    occurred_ms: int
    rule: str


@dataclass(frozen=True, slots=True)
class RefusedMerge:
    customer_id: str
    other_customer_id: str
    event_id: str
    occurred_ms: int
    reason: str


@dataclass
class Attribution:
    customer_id: str = ""
    created: list[Customer] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)
    refused: list[RefusedMerge] = field(default_factory=list)
    unlinked: list[tuple[Identifier, str]] = field(default_factory=list)
    # Identifier set -> its customer now, for every set whose customer changed (interactions resolve through it).
    set_customers: dict[IdentitySet, str] = field(default_factory=dict)
    # Historical customer id -> current id, for every id whose resolution changed.
    aliases: dict[str, str] = field(default_factory=dict)
    recomputed: bool = False
    shared: list[SharedIdentifier] = field(default_factory=list)  # identifiers this event revealed as shared
