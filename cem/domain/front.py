"""A front of the partitioned design (docs/scaling.md): one partition of `cem.resolve`, keyed by event id.

Every copy of an event id reaches the same front, so the front's dedup window decides, as the single resolver's
does, that the first copy wins. For a new event it asks its identity replica: when the graph would change nothing
for it, the replica's customer is the single resolver's answer and the event is routed to that customer's
partition at once. Otherwise the front sends a lean request to the graph's owner and holds the event; once the
replica has applied the owner version that folded the request in, `release` routes it the same way. The owner
sends no answer of its own. A set is asked once, with its earliest event: the graph's answer depends on the set and
its first event only, so the version that folds that event in answers every later event of the set.

Restarts. A front runs at least once: after a restart it reads again from its committed offset (`committable`: the
oldest held event's). An event is remembered in the dedup window only when it is routed, with its routing
decision (customer, and the offset it was read at), both recorded before the event is sent on. A held event lives
in memory only, so a restarted front finds it new and decides it then. A re-read record whose decision carries its
own offset is a replay: it is routed again to the customer recorded, never decided again (the replica may have
moved on and name a merge's survivor), and the customer partition drops the copy it already folded. Any other copy
of a seen id is a duplicate, and a copy arriving while its first copy is held is judged against the held copy.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field

from cem.domain.identity_owner import IdentityRequest
from cem.domain.identity_records import EventKey, IdentitySet
from cem.domain.identity_replica import IdentityReplica
from cem.domain.model import Interaction
from cem.domain.seen_ids import SeenIds, Sighting
from cem.domain.state_maps import MapFactory, in_memory_maps


def front_partition(event_id: str, partitions: int) -> int:
    """The front (partition of the resolver topic) of an event id: every copy of an id reaches the same front."""
    return zlib.crc32(event_id.encode()) % partitions


@dataclass(frozen=True, slots=True)
class Routed:
    """An event with the customer whose partition folds it in."""

    event: Interaction
    customer_id: str
    replay: bool = False  # routed again by a restarted front: it follows the first copy's path


@dataclass
class AskedSet:
    """A set asked of the owner and not answered yet: the earliest event key asked, and the events it holds."""

    key: EventKey
    held: list[str]


@dataclass
class FrontStep:
    routed: list[Routed] = field(default_factory=list)
    requests: list[IdentityRequest] = field(default_factory=list)  # for the owner
    duplicates: int = 0
    replayed: int = 0  # records read again after a restart and routed again as first decided
    conflicting: list[Interaction] = field(default_factory=list)  # dead-lettered as duplicate_conflict


class Front:
    def __init__(self, replica: IdentityReplica, dedup_window_ms: int, maps: MapFactory = in_memory_maps) -> None:
        self.replica = replica
        self.dedup = SeenIds(dedup_window_ms, maps)
        self.held: dict[str, tuple[Interaction, int, int]] = {}  # event id -> the event, admitted ms, its offset
        # Sets asked of the owner and not answered yet. A later event of the set is answered by the same version,
        # so it is held without asking again. Every held event's set is here, with a key at or before the event's:
        # when the replica answers the set at that key, it answers them all.
        self.asked: dict[IdentitySet, AskedSet] = {}
        # event id -> (customer, offset read at): the decisions a restart may have to repeat, until committed past
        self.decisions: MutableMapping[str, tuple[str, int]] = maps("decisions")
        self.version = 0

    def admit(self, batch: Iterable[tuple[int, Interaction]], now_ms: int) -> FrontStep:
        """Deduplicate a batch of (offset, event) and route what the replica answers; the rest is held and
        requested."""
        self.version = max(self.version + 1, now_ms * 1000)
        self.dedup.start_batch(now_ms)
        step = FrontStep()
        for offset, event in batch:
            decided = self.decisions.get(event.event_id)
            if decided is not None and decided[1] == offset:
                step.replayed += 1
                step.routed.append(Routed(event, decided[0], replay=True))
                continue
            sighting = self._sight(event)
            if sighting is not Sighting.NEW:
                step.duplicates += 1
                if sighting is Sighting.CONFLICT:
                    step.conflicting.append(event)
                continue
            customer_id = self.replica.resolve_locally(event.identifiers, (event.occurred_ms, event.event_id))
            if customer_id is None:
                self.held[event.event_id] = (event, now_ms, offset)
                self._ask(event, step)
            else:
                step.routed.append(self._decide(event, customer_id, now_ms, offset))
        self.dedup.file(f"{self.version:020d}")
        return step

    def committable(self, next_offset: int) -> int:
        """The offset the front may commit: that of its oldest held event, or `next_offset` (the first record
        whose routed event Kafka has not acknowledged yet, else the next one to read) if it is older. Decisions
        before it are no longer needed: a restart never reads them again."""
        offset = min((held[2] for held in self.held.values()), default=next_offset)
        offset = min(offset, next_offset)
        for event_id in [i for i, (_, decided_at) in self.decisions.items() if decided_at < offset]:
            del self.decisions[event_id]
        return offset

    def release(self) -> list[Routed]:
        """The held events the replica answers now (call it after the replica applied owner versions)."""
        routed: list[Routed] = []
        for identifiers, asked in list(self.asked.items()):
            customer_id = self.replica.resolve_locally(identifiers, asked.key)
            if customer_id is None:
                continue
            del self.asked[identifiers]
            for event_id in asked.held:
                event, admitted_ms, offset = self.held.pop(event_id)
                routed.append(self._decide(event, customer_id, admitted_ms, offset))
        if routed:
            self.version += 1
            self.dedup.file(f"{self.version:020d}")
        return routed

    def _decide(self, event: Interaction, customer_id: str, admitted_ms: int, offset: int) -> Routed:
        self.dedup.remember(event.event_id, event.fingerprint, admitted_ms)
        self.decisions[event.event_id] = (customer_id, offset)
        return Routed(event, customer_id)

    def _ask(self, event: Interaction, step: FrontStep) -> None:
        key = (event.occurred_ms, event.event_id)
        asked = self.asked.setdefault(event.identifiers, AskedSet(key, []))
        asked.held.append(event.event_id)
        if len(asked.held) == 1 or key < asked.key:  # the set's first request, or an earlier event than asked
            asked.key = key
            step.requests.append(IdentityRequest.of(event))

    def _sight(self, event: Interaction) -> Sighting:
        held = self.held.get(event.event_id)
        if held is None:
            return self.dedup.check(event.event_id, event.fingerprint)
        return Sighting.DUPLICATE if held[0].fingerprint == event.fingerprint else Sighting.CONFLICT
