"""Shared identifiers: values that many people carry (a kiosk's device id, a placeholder e-mail nobody
block-listed, a household phone). Pure and order-independent; the identity graph stops linking and attributing
by them (docs/identity.md, "Shared identifiers").

The rule: an identifier is *shared* once the events carrying it, taken together, carry more distinct values of
another identifier type than one customer may hold of that type (the per-type limit). One exception: values of a
weak type (device and browser ids, `CEM_WEAK_IDENTIFIER_TYPES`) count against a person's identifier (e-mail,
phone, CRM id, ...) only past `CEM_SHARED_WEAK_THRESHOLD` (200): an e-mail seen with 60 cookies over the years is
one person clearing cookies, while a device seen with 60 cookies is a kiosk.

The evidence is a property of the *set* of identifier sets seen, so every arrival order marks the same
identifiers. Tracking is capped: each identifier remembers at most `threshold` values per type; the one that
would exceed it marks the identifier, and its tracking is dropped. An erasure takes the erased sets out of the
evidence (`forget`), and a restart takes every set as evidence again (`rebuild`): the sets decide, either way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass

from cem.domain.model import Identifier
from cem.domain.state_maps import MapFactory, in_memory_maps, prefetch

EventKey = tuple[int, str]
Evidence = tuple[tuple[Identifier, ...], EventKey]  # an identifier set and its earliest event
DEFAULT_WEAK_TYPES: frozenset[str] = frozenset({"device_id", "anonymous_id"})
# Device or browser ids that make a person's identifier shared: about four years of weekly logins on expiring
# cookies. Bounded, because until then a late event on it replays up to that many identifier sets.
DEFAULT_WEAK_THRESHOLD = 200
UNLIMITED = 1_000_000  # a limit this high is no limit: such a type never marks anything


@dataclass(frozen=True, slots=True)
class SharedIdentifier:
    id_type: str
    value: str
    event_id: str  # the event whose identifier set tipped it over
    occurred_ms: int
    reason: str  # "limit:<type>": seen with more values of <type> than one customer may hold (or its threshold)
    distinct_count: int  # how many values of that type it had been seen with then

    @property
    def identifier(self) -> Identifier:
        return (self.id_type, self.value)


class SharedIdentifiers:
    """Which identifiers are shared, and the capped evidence for the ones that are not (yet)."""

    def __init__(self, type_limits: Mapping[str, int], weak_types: Iterable[str] = DEFAULT_WEAK_TYPES,
                 weak_threshold: int = DEFAULT_WEAK_THRESHOLD, maps: MapFactory = in_memory_maps) -> None:
        self.limits = {t: n for t, n in type_limits.items() if n < UNLIMITED}
        self.weak_types = frozenset(weak_types)
        self.weak_threshold = weak_threshold
        self.marked: MutableMapping[Identifier, SharedIdentifier] = maps("shared_marked")
        # identifier -> the distinct identifiers seen on its events: its first identifier set, then the values of
        # counted types that later sets added (at most `threshold` per type)
        self._seen_with: MutableMapping[Identifier, tuple[Identifier, ...]] = maps("shared_seen_with")
        self._thresholds: dict[str, dict[str, int]] = {}

    def __contains__(self, ident: object) -> bool:
        return ident in self.marked

    def __len__(self) -> int:
        return len(self.marked)

    def live(self, identifiers: tuple[Identifier, ...]) -> tuple[Identifier, ...]:
        """The identifiers that may link and attribute: all but the shared ones, order kept."""
        marked = self.marked
        if not marked:
            return identifiers
        return tuple(ident for ident in identifiers if ident not in marked)

    def thresholds(self, id_type: str) -> dict[str, int]:
        """Type -> how many of its values an identifier of `id_type` may be seen with and not be shared."""
        found = self._thresholds.get(id_type)
        if found is None:
            person = id_type not in self.weak_types
            found = {t: max(n, self.weak_threshold) if person and t in self.weak_types else n
                     for t, n in self.limits.items() if t != id_type}
            found = {t: n for t, n in found.items() if n < UNLIMITED}
            self._thresholds[id_type] = found
        return found

    def prefetch(self, identifiers: Iterable[Identifier]) -> None:
        prefetch(self._seen_with, identifiers)

    def observe(self, identifiers: tuple[Identifier, ...], key: EventKey) -> list[SharedIdentifier]:
        """Take one new identifier set as evidence. Returns (and marks) the identifiers it reveals as shared.
        Costs O(set size² × limit) at most, whatever the traffic: the evidence per identifier is capped."""
        if len(identifiers) < 2:
            return []  # one identifier alone is seen with nothing
        revealed: list[SharedIdentifier] = []
        marked, seen_with, thresholds_of = self.marked, self._seen_with, self._thresholds
        for ident in identifiers:
            if ident in marked:
                continue
            counted = thresholds_of.get(ident[0])
            if counted is None:
                counted = self.thresholds(ident[0])
            seen = seen_with.get(ident)
            if seen is None:
                added = [other for other in identifiers if other[0] in counted]
                seen = identifiers  # the first set itself is the evidence so far: no copy
            else:
                added = [other for other in identifiers if other[0] in counted and other not in seen]
                seen += tuple(added)
            if not added:
                continue
            found = self._verdict(ident, seen, added, counted, key)
            if found is None:
                seen_with[ident] = seen
            else:
                self.mark(found)
                revealed.append(found)
        return revealed

    @staticmethod
    def _verdict(ident: Identifier, seen: tuple[Identifier, ...], added: list[Identifier],
                 thresholds: dict[str, int], key: EventKey) -> SharedIdentifier | None:
        types = {t for t, _ in added}
        for id_type in sorted(types) if len(types) > 1 else types:
            limit = thresholds[id_type]
            if len(seen) <= limit:
                continue  # cannot hold more than `limit` values of one type: no need to count
            distinct = sum(1 for t, _ in seen if t == id_type)
            if distinct > limit:
                return SharedIdentifier(ident[0], ident[1], key[1], key[0], f"limit:{id_type}", distinct)
        return None

    def mark(self, found: SharedIdentifier) -> None:
        self.marked[found.identifier] = found
        self._seen_with.pop(found.identifier, None)

    def rebuild(self, ordered: Iterable[Evidence], recorded: Iterable[SharedIdentifier]) -> list[SharedIdentifier]:
        """Take every identifier set (in event-time order) as evidence again, after a restart. The sets decide;
        `recorded` only supplies the record (revealing event) of an identifier written before. Returns the
        identifiers the sets show shared that were not recorded; a record the sets no longer support (its
        evidence was erased) is ignored."""
        records = {found.identifier: found for found in recorded}
        revealed = [found for identifiers, key in ordered for found in self.observe(identifiers, key)]
        for found in revealed:
            if found.identifier in records:
                self.marked[found.identifier] = records[found.identifier]
        return [found for found in revealed if found.identifier not in records]

    def forget(self, erased: Iterable[Identifier],
               evidence: Mapping[Identifier, Iterable[Evidence]]) -> list[SharedIdentifier]:
        """After an erasure: drop the erased identifiers, and take the evidence of each identifier of `evidence`
        again from the identifier sets that remain (every one carrying it, with its key). Evidence only shrinks,
        so an identifier may stop being shared, never start: those are returned (they link again)."""
        for ident in erased:
            self.marked.pop(ident, None)
            self._seen_with.pop(ident, None)
        scratch = SharedIdentifiers(self.limits, self.weak_types, self.weak_threshold)
        remaining = {identifiers: key for carrying in evidence.values() for identifiers, key in carrying}
        for identifiers, key in sorted(remaining.items(), key=lambda item: item[1]):
            scratch.observe(identifiers, key)  # each identifier's verdict depends on the sets carrying it only
        unshared: list[SharedIdentifier] = []
        for ident in evidence:
            before = self.marked.pop(ident, None)
            self._seen_with.pop(ident, None)
            now = scratch.marked.get(ident)
            if now is not None:
                self.marked[ident] = now  # revealed by a remaining event: the old one may be erased
            else:
                if before is not None:
                    unshared.append(before)
                if ident in scratch._seen_with:
                    self._seen_with[ident] = scratch._seen_with[ident]
        return unshared
