"""What a worker may decide about identity without the graph's owner, and a read replica that decides it.

The identity graph (cem/domain/identity.py) changes nothing for an event whose identifier set it has already
folded in at an earlier or equal event key: it answers the customer that set belongs to now. Every other event
needs the owner: a new identifier set (new identifiers, links, merges, refused merges, newly shared identifiers,
or only a new combination to record) or a set seen again earlier in event time (a recompute may regroup).

`IdentityReplica` holds, per identifier set, its customer and its earliest event key, plus the customer aliases
and the identifier links, as the owner's `Effects` carry them. It applies the owner's changes one owner version
(one resolver batch) at a time, so at any moment it equals the owner's answers after some prefix of its batches.
`resolve_locally` answers only when the graph would answer without changing: then its answer is the one the
single resolver gives when the event is processed right after that prefix. Otherwise it returns None and the event
goes to the owner; a replica never guesses. docs/scaling.md explains why this keeps the single resolver's result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field

from cem.domain.effects import Effects
from cem.domain.identity_outcome import LOCAL, OWNER_REASONS, classify, is_local
from cem.domain.identity_records import EventKey, IdentitySet
from cem.domain.model import Identifier
from cem.domain.resolver import follow_aliases
from cem.domain.state_maps import MapFactory, in_memory_maps

__all__ = ["LOCAL", "OWNER_REASONS", "IdentityChanges", "IdentityReplica", "classify", "identity_changes",
           "is_local"]


@dataclass(frozen=True, slots=True)
class IdentityChanges:
    """One owner version's changes: what the owner publishes for the replicas."""

    version: int
    sets: Mapping[IdentitySet, tuple[str, EventKey]] = field(default_factory=dict)  # set -> customer, first key
    aliases: Mapping[str, str] = field(default_factory=dict)  # historical customer id -> current id
    links: Mapping[Identifier, str] = field(default_factory=dict)  # identifier -> customer ("" unlinked now)
    removed: frozenset[IdentitySet] = frozenset()  # sets an erasure removed from the graph

    @property
    def size(self) -> int:
        return len(self.sets) + len(self.aliases) + len(self.links) + len(self.removed)


def identity_changes(effects: Effects, removed: Iterable[IdentitySet] = ()) -> IdentityChanges:
    """The identity part of a resolver batch's effects (or an erasure's, with the sets it removed), the last word
    per key (a batch may move a set twice)."""
    links = {(link.id_type, link.value): link.customer_id for link in effects.links}
    return IdentityChanges(effects.version, dict(effects.identity_sets), dict(effects.customer_aliases), links,
                           frozenset(removed))


class IdentityReplica:
    """Identifier set -> customer as the owner last published it, with aliases followed at read time."""

    def __init__(self, maps: MapFactory = in_memory_maps) -> None:
        """`maps`: dicts, or a worker's disk store with bounded caches (cem.state_store)."""
        self.version = 0  # the newest owner version applied
        self.sets: MutableMapping[IdentitySet, tuple[str, EventKey]] = maps("replica_sets")
        self.aliases: MutableMapping[str, str] = maps("replica_aliases")
        self.links: MutableMapping[Identifier, str] = maps("replica_links")

    def apply(self, changes: IdentityChanges) -> bool:
        """Apply one owner version whole. A version at or below the one applied is a redelivery: ignored."""
        if changes.version <= self.version:
            return False
        for identifiers in changes.removed:
            self.sets.pop(identifiers, None)
        for identifiers, answer in changes.sets.items():
            self.sets[identifiers] = answer
        for old_id, current_id in changes.aliases.items():
            if old_id == current_id:
                self.aliases.pop(old_id, None)  # live again (a recompute re-created it)
            else:
                self.aliases[old_id] = current_id
        for identifier, customer_id in changes.links.items():
            if customer_id:
                self.links[identifier] = customer_id
            else:
                self.links.pop(identifier, None)
        self.version = changes.version
        return True

    def apply_all(self, versions: Iterable[IdentityChanges]) -> None:
        for changes in versions:
            self.apply(changes)

    def current(self, customer_id: str) -> str:
        return follow_aliases(self.aliases, customer_id)

    def customer_of(self, identifier: Identifier) -> str | None:
        owner = self.links.get(identifier)
        return None if owner is None else self.current(owner)

    def resolve_locally(self, identifiers: IdentitySet, key: EventKey) -> str | None:
        """The event's customer when the owner would change nothing for it; None when the owner must decide."""
        known = self.sets.get(identifiers)
        if known is None or not is_local(known[1], key):
            return None
        return self.current(known[0])
