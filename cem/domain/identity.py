"""The identity graph: which customer an event belongs to, with merge guards, independent of arrival order.

Semantics (docs/identity.md): the grouping is what you get by taking every distinct identifier set in event-time
order, (occurred_ms, event_id), and applying `_step` to each:

- the event's strongest identifier (customer_ref, email, phone, social_handle, device_id, anonymous_id) anchors
  it: the customer owning it, or a new customer when nobody does;
- every other customer owning one of the event's identifiers joins, oldest first, unless a guard refuses: the
  merged customer would hold more values of a type than its limit (customer_ref: 1, so two CRM ids never merge);
- the event's unowned identifiers are linked to its customer while the customer is under the type's limit;
- when two customers merge, the one first seen (earliest event time) survives.

Shared identifiers (cem/domain/shared.py) take no part: they neither link nor attribute, and an identifier set made
only of shared identifiers is a customer of its own. When a new set reveals an identifier as shared, the customers
it glued are recomputed without it, so the grouping is the fold with every identifier shared by then excluded.

Events usually arrive in event-time order per customer, and then each is one incremental `_step`. An event older
than something already folded into the customers it touches triggers a *recompute* of just those customers:
their identifier sets are replayed in event-time order. So 1 or N workers, and any arrival order, give the same
grouping (property-tested in tests/unit/test_identity_order.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from itertools import chain

from cem.domain.identity_records import (
    Attribution,
    Customer,
    EventKey,
    IdentitySet,
    Link,
    Merge,
    RefusedMerge,
)
from cem.domain.model import Identifier, stable_id
from cem.domain.shared import DEFAULT_WEAK_THRESHOLD, DEFAULT_WEAK_TYPES, SharedIdentifier, SharedIdentifiers
from cem.domain.state_maps import MapFactory, in_memory_maps, prefetch

IDENTIFIER_PRIORITY: dict[str, int] = {
    "customer_ref": 0,
    "email": 1,
    "phone": 2,
    "social_handle": 3,
    "device_id": 4,
    "anonymous_id": 5,
}
DEFAULT_TYPE_LIMITS: dict[str, int] = {
    "customer_ref": 1,
    "email": 5,
    "phone": 5,
    "social_handle": 10,
    "device_id": 50,
    "anonymous_id": 50,
}
NO_LIMIT = 1_000_000
RESTORE_TRIM_EVERY = 20_000  # sets replayed between two trims of a disk-backed graph while it is rebuilt


@dataclass
class _Detached:
    """Customers taken out of the graph for a replay: what they held, to report what the replay changed."""

    replay: dict[IdentitySet, EventKey]  # every identifier set to fold again, with its earliest event key
    old_ids: list[str] = field(default_factory=list)
    old_root_of_set: dict[IdentitySet, str] = field(default_factory=dict)
    old_owner: dict[Identifier, str] = field(default_factory=dict)


class IdentityGraph:
    def __init__(self, type_limits: Mapping[str, int] | None = None, priority: Mapping[str, int] | None = None,
                 weak_types: Iterable[str] = DEFAULT_WEAK_TYPES, weak_threshold: int = DEFAULT_WEAK_THRESHOLD,
                 maps: MapFactory = in_memory_maps) -> None:
        self.type_limits = dict(DEFAULT_TYPE_LIMITS if type_limits is None else type_limits)
        self.priority = dict(IDENTIFIER_PRIORITY if priority is None else priority)  # strongest first (lowest)
        self.shared = SharedIdentifiers(self.type_limits, weak_types, weak_threshold, maps)
        self.owner: MutableMapping[Identifier, str] = maps("owner")
        self.parent: MutableMapping[str, str] = maps("parent")  # merged customer -> the customer it merged into
        self.customers: MutableMapping[str, Customer] = maps("customers")  # live (unmerged) customers only
        # identifier set -> the customer it was attributed to
        self.set_owner: MutableMapping[IdentitySet, str] = maps("set_owner")
        self.set_key: MutableMapping[IdentitySet, EventKey] = maps("set_key")  # identifier set -> its earliest event
        # identifier -> customers with an event carrying it (owned or not): who a late event can affect
        # Shared identifiers have no entry: they are never walked, however many customers carry them.
        self.carriers: MutableMapping[Identifier, set[str]] = maps("carriers")
        # customer id -> identifier set of the event that created it
        self.origins: MutableMapping[str, IdentitySet] = maps("origins")

    # ---- queries ----------------------------------------------------------------------------------------
    def find(self, customer_id: str) -> str:
        parent = self.parent
        root = parent.get(customer_id)
        if root is None:
            return customer_id
        hop = parent.get(root)
        if hop is None:
            return root  # one hop: nothing to compress (and nothing to write back)
        while hop is not None:
            root, hop = hop, parent.get(hop)
        while customer_id != root:  # path compression keeps chains A->B->C at one hop
            next_id = parent[customer_id]
            parent[customer_id] = root
            customer_id = next_id
        return root

    def customer_of(self, identifier: Identifier) -> str | None:
        owner = self.owner.get(identifier)
        return None if owner is None else self.find(owner)

    def customer_of_set(self, identifiers: IdentitySet) -> str | None:
        owner = self.set_owner.get(identifiers)
        return None if owner is None else self.find(owner)

    def prefetch(self, sets: list[IdentitySet]) -> None:
        """What folding these sets looks up first, read at once from maps on disk: their sets, their identifiers'
        owners, carriers and evidence of sharing."""
        prefetch(self.set_key, sets)
        prefetch(self.set_owner, sets)
        # Lazy: maps in memory, which read nothing, never walk them.
        prefetch(self.owner, chain.from_iterable(sets))
        prefetch(self.carriers, chain.from_iterable(sets))
        self.shared.prefetch(chain.from_iterable(sets))

    # ---- the one entry point ----------------------------------------------------------------------------
    def attribute(self, event_id: str, occurred_ms: int, identifiers: IdentitySet) -> Attribution:
        key: EventKey = (occurred_ms, event_id)
        known = self.set_key.get(identifiers)
        if known is not None and known <= key:
            # The same identifier set was already folded in earlier in event time: folding it again changes nothing.
            return Attribution(customer_id=self.find(self.set_owner[identifiers]))
        revealed = self.shared.observe(identifiers, key) if known is None else []
        touched = self._touched(identifiers)  # includes the customers a revealed identifier glued
        if revealed:
            for found in revealed:
                self.carriers.pop(found.identifier, None)
            out = self._recompute(touched, identifiers, key)
            out.shared = revealed
            return out
        if known is None and all(self.customers[r].latest < key for r in touched):
            out = Attribution()
            self._step(identifiers, key, out)
            return out
        return self._recompute(touched, identifiers, key)

    def _touched(self, identifiers: IdentitySet) -> set[str]:
        roots: set[str] = set()
        for ident in identifiers:
            for carrier in self.carriers.get(ident, ()):
                roots.add(self.find(carrier))
        if identifiers in self.set_owner:
            roots.add(self.find(self.set_owner[identifiers]))
        return roots

    # ---- one sequential step (the reference semantics) ---------------------------------------------------
    def _step(self, identifiers: IdentitySet, key: EventKey, out: Attribution, record: bool = True) -> str:
        occurred_ms, event_id = key
        live = self.shared.live(identifiers)  # empty when all are shared: the set is a customer of its own
        priority = self.priority
        owned: dict[str, int] = {}  # root -> best priority among the event's identifiers it owns
        for ident in live:
            root = self.customer_of(ident)
            if root is not None:
                owned[root] = min(priority.get(ident[0], 99), owned.get(root, NO_LIMIT))
        anchor = self.customer_of(min(live, key=lambda i: priority.get(i[0], 99))) if live else None
        # What the event itself would add: its identifiers that nobody owns yet, per type.
        own_counts: dict[str, int] = {}
        for ident in live:
            if ident not in self.owner:
                own_counts[ident[0]] = own_counts.get(ident[0], 0) + 1

        current = anchor
        for other in sorted((r for r in owned if r != anchor), key=lambda r: self.customers[r].first_seen):
            base = self.customers[current].counts if current is not None else own_counts
            reason = self._refusal(base, self.customers[other].counts)
            if reason is not None:
                out.refused.append(RefusedMerge(current or stable_id("c", event_id), other, event_id, occurred_ms,
                                                reason))
                continue
            if current is None:
                current = other  # the event joins its oldest compatible customer
                continue
            current = self._merge(current, other, event_id, occurred_ms, out)

        if current is None:
            created = Customer(stable_id("c", event_id), key)
            self.customers[created.customer_id] = created
            self.origins[created.customer_id] = identifiers
            out.created.append(created)
            current = created.customer_id

        customer = self.customers[current]
        rule = "first_seen" if out.created and out.created[-1] is customer else "shared_identifier"
        for ident in live:
            if ident in self.owner:
                continue
            held = customer.counts.get(ident[0], 0)
            if held >= self.type_limits.get(ident[0], NO_LIMIT):
                out.unlinked.append((ident, f"limit:{ident[0]}"))
                continue
            customer.counts[ident[0]] = held + 1
            self.owner[ident] = current
            out.links.append(Link(ident[0], ident[1], current, event_id, occurred_ms, rule))

        if record:
            for ident in live:
                self.carriers.setdefault(ident, set()).add(current)
            customer.sets[identifiers] = min(key, customer.sets.get(identifiers, key))
            self.set_owner[identifiers] = current
            self.set_key[identifiers] = min(key, self.set_key.get(identifiers, key))
            out.set_customers[identifiers] = current
        customer.latest = max(customer.latest, key)
        out.customer_id = current
        return current

    def _refusal(self, counts_a: Mapping[str, int], counts_b: Mapping[str, int]) -> str | None:
        for id_type, limit in self.type_limits.items():
            if counts_a.get(id_type, 0) + counts_b.get(id_type, 0) > limit:
                return "conflicting_customer_ref" if id_type == "customer_ref" else f"limit:{id_type}"
        return None

    def _merge(self, a: str, b: str, event_id: str, occurred_ms: int, out: Attribution) -> str:
        into, loser = (a, b) if self.customers[a].first_seen <= self.customers[b].first_seen else (b, a)
        survivor, gone = self.customers[into], self.customers.pop(loser)
        self.parent[loser] = into
        for id_type, n in gone.counts.items():
            survivor.counts[id_type] = survivor.counts.get(id_type, 0) + n
        survivor.members.extend((loser, *gone.members))
        for identifiers, key in gone.sets.items():
            survivor.sets[identifiers] = min(key, survivor.sets.get(identifiers, key))
            out.set_customers[identifiers] = into
        survivor.latest = max(survivor.latest, gone.latest)
        for moved in (loser, *gone.members):
            out.aliases[moved] = into
        out.merges.append(Merge(loser, into, event_id, occurred_ms, "shared_identifier"))
        return into

    # ---- late events: replay the customers they touch in event-time order ----------------------------
    def _recompute(self, touched: set[str], identifiers: IdentitySet, key: EventKey) -> Attribution:
        roots = self._closure(touched)
        detached = self._detach(roots, identifiers, key)
        out = Attribution(recomputed=True)
        scratch = Attribution()
        for member_set, member_key in sorted(detached.replay.items(), key=lambda item: item[1]):
            target = out if member_set == identifiers else scratch
            self._step(member_set, member_key, target)
        out.customer_id = self.find(self.set_owner[identifiers])
        self._report_changes(out, scratch, detached, identifiers, key)
        # A customer that was live before and is not now merged because of this event.
        out.merges = [Merge(root, self.find(root), key[1], key[0], "shared_identifier")
                      for root in sorted(roots) if self.find(root) != root]
        return out

    def _detach(self, roots: set[str], identifiers: IdentitySet, key: EventKey) -> _Detached:
        """Take the customers `roots` out of the graph, with everything they owned, ready to be replayed."""
        detached = _Detached(replay={identifiers: key})
        for root in sorted(roots):  # a set's order hangs on its history, which differs once read back from disk
            customer = self.customers.pop(root)
            detached.old_ids.extend((root, *customer.members))
            for member_set, member_key in customer.sets.items():
                detached.old_root_of_set[member_set] = root
                detached.replay[member_set] = min(member_key, detached.replay.get(member_set, member_key))
        # Only the replayed sets can hold identifiers owned by these roots (a link is made from the set being
        # folded, and merges move sets along): never scan the whole graph, or late events cost O(state).
        for member_set in detached.replay:
            for ident in member_set:
                holder = self.owner.get(ident)
                if holder is not None and self.find(holder) in roots:
                    detached.old_owner[ident] = self.find(holder)
        for cid in detached.old_ids:
            self.parent.pop(cid, None)
        for ident in detached.old_owner:
            del self.owner[ident]
        for member_set in detached.replay:
            self.set_owner.pop(member_set, None)
            self.set_key.pop(member_set, None)
            for ident in member_set:
                holders = self.carriers.get(ident)
                if holders is not None:
                    holders.difference_update(detached.old_ids)
                    if not holders:
                        del self.carriers[ident]
        return detached

    def _report_changes(self, out: Attribution, scratch: Attribution, detached: _Detached,
                        identifiers: IdentitySet, key: EventKey) -> None:
        """Report only what the replay changed: new customers, moved links, moved sets, new resolutions of old
        ids (an old customer the replay did not re-create lives on as an alias of where its events went)."""
        old_ids, old_owner = detached.old_ids, detached.old_owner
        old_id_set = set(old_ids)
        out.created = [c for c in scratch.created + out.created
                       if c.customer_id not in old_id_set and self.find(c.customer_id) == c.customer_id]
        moved_links = [link for link in scratch.links + out.links
                       if old_owner.get((link.id_type, link.value)) != self.find(link.customer_id)]
        out.links = [Link(li.id_type, li.value, self.find(li.customer_id), li.event_id, li.occurred_ms, li.rule)
                     for li in moved_links]
        # Linked before, linked to nobody now (it became shared, or a limit filled up first): say so.
        out.links += [Link(ident[0], ident[1], "", key[1], key[0], "shared" if ident in self.shared else "unlinked")
                      for ident in old_owner if ident not in self.owner]
        out.set_customers = {}
        for member_set in detached.replay:
            now = self.find(self.set_owner[member_set])
            if detached.old_root_of_set.get(member_set) != now or member_set == identifiers:
                out.set_customers[member_set] = now
        for cid in old_ids:
            if cid not in self.customers and cid not in self.parent:
                origin = self.origins.get(cid, ())
                home = self.find(self.set_owner[origin]) if origin in self.set_owner else cid
                if home != cid:
                    self.parent[cid] = home
                    self.customers[home].members.append(cid)
            out.aliases[cid] = self.find(cid)

    def _closure(self, touched: Iterable[str]) -> set[str]:
        """Every live customer sharing an identifier with an identifier set of `touched`, transitively."""
        roots: set[str] = set()
        queue = list(touched)
        while queue:
            root = self.find(queue.pop())
            if root in roots or root not in self.customers:
                continue
            roots.add(root)
            for member_set in self.customers[root].sets:
                for ident in member_set:
                    queue.extend(c for c in self.carriers.get(ident, ()) if self.find(c) not in roots)
        return roots

    # ---- rebuilding from the warehouse --------------------------------------------------------------
    def restore(self, sets: Iterable[tuple[IdentitySet, EventKey]],
                shared: Iterable[SharedIdentifier] = (), trim: Callable[[], None] = lambda: None
                ) -> list[SharedIdentifier]:
        """Replay distinct identifier sets in event-time order: the same state any arrival order produced.
        The sets are the evidence of which identifiers are shared; `shared`, the identifiers recorded as shared,
        supply their records. Returns the identifiers the sets show shared that were not recorded (to be
        recorded now). `trim` is called every so many sets (a disk-backed state shrinks its caches)."""
        ordered = sorted(sets, key=lambda item: item[1])
        revealed = self.shared.rebuild(ordered, shared)
        scratch = Attribution()
        for count, (identifiers, key) in enumerate(ordered, 1):
            if identifiers not in self.set_key:
                self._step(identifiers, key, scratch)
            if count % RESTORE_TRIM_EVERY == 0:
                scratch = Attribution()
                trim()
        return revealed

    def sets_with(self, identifiers: Iterable[Identifier]) -> dict[Identifier, list[IdentitySet]]:
        """The identifier sets carrying each identifier. Found through the sets of its carriers; a shared
        identifier has no carriers (it is never walked), so finding its sets scans every set: O(state), which
        only erasure, a rare request, pays."""
        found: dict[Identifier, list[IdentitySet]] = {ident: [] for ident in identifiers}
        scanned = {ident for ident in found if ident in self.shared}
        for ident in found:
            if ident in scanned:
                continue
            for root in {self.find(c) for c in self.carriers.get(ident, ())}:
                customer = self.customers.get(root)
                if customer is not None:
                    found[ident].extend(s for s in customer.sets if ident in s)
        if scanned:
            for member_set in self.set_key:
                for ident in scanned.intersection(member_set):
                    found[ident].append(member_set)
        return found
