"""The identity graph: which customer an event belongs to, with merge guards.

Customers are union-find sets of identifiers. An event links every customer that owns one of its identifiers;
the customer first seen (earliest event time, then event id) survives a merge. Guards refuse a merge that
would give one customer more values of a type than its limit (customer_ref: 1, so two CRM ids never merge),
and stop linking new values of a type once a customer holds its limit of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cem.domain.model import Identifier, stable_id

# Which identifier decides attribution when an event touches customers that may not merge.
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


@dataclass(slots=True)
class Customer:
    customer_id: str
    first_seen: tuple[int, str]  # (event time ms, event id): orders customers for "oldest survives"
    counts: dict[str, int] = field(default_factory=dict)  # identifier values held, per type
    members: list[str] = field(default_factory=list)  # customer ids merged into this one, transitively


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
    moved_ids: tuple[str, ...]  # every historical id that now resolves to into_id (from_id and its members)


@dataclass(frozen=True, slots=True)
class RefusedMerge:
    customer_id: str
    other_customer_id: str
    event_id: str
    occurred_ms: int
    reason: str


@dataclass(frozen=True, slots=True)
class Attribution:
    customer_id: str
    created: Customer | None
    links: list[Link]
    merges: list[Merge]
    refused: list[RefusedMerge]
    unlinked: list[tuple[Identifier, str]]  # identifiers that did not link, with the reason


class IdentityGraph:
    def __init__(self, type_limits: Mapping[str, int] | None = None) -> None:
        self.type_limits = dict(DEFAULT_TYPE_LIMITS if type_limits is None else type_limits)
        self.owner: dict[Identifier, str] = {}
        self.parent: dict[str, str] = {}  # merged customer -> the customer it merged into
        self.customers: dict[str, Customer] = {}  # live (unmerged) customers only

    def find(self, customer_id: str) -> str:
        root = customer_id
        while root in self.parent:
            root = self.parent[root]
        while customer_id != root:  # path compression keeps chains A->B->C at one hop
            next_id = self.parent[customer_id]
            self.parent[customer_id] = root
            customer_id = next_id
        return root

    def customer_of(self, identifier: Identifier) -> str | None:
        owner = self.owner.get(identifier)
        return None if owner is None else self.find(owner)

    def attribute(self, event_id: str, occurred_ms: int, identifiers: tuple[Identifier, ...]) -> Attribution:
        owned: dict[str, int] = {}  # root -> best priority among the event's identifiers it owns
        for ident in identifiers:
            root = self.customer_of(ident)
            if root is not None:
                rank = IDENTIFIER_PRIORITY.get(ident[0], 99)
                owned[root] = min(rank, owned.get(root, 99))

        created: Customer | None = None
        merges: list[Merge] = []
        refused: list[RefusedMerge] = []
        if not owned:
            created = Customer(stable_id("c", event_id), (occurred_ms, event_id))
            self.customers[created.customer_id] = created
            current = created.customer_id
        else:
            # Attribution follows the strongest identifier; the rest join it if the guards allow.
            anchor = min(owned, key=lambda r: (owned[r], self.customers[r].first_seen))
            current = anchor
            others = sorted((r for r in owned if r != anchor), key=lambda r: self.customers[r].first_seen)
            for other in others:
                reason = self._merge_refusal(current, other)
                if reason is not None:
                    refused.append(RefusedMerge(current, other, event_id, occurred_ms, reason))
                    continue
                merge = self._merge(current, other, event_id, occurred_ms)
                merges.append(merge)
                current = merge.into_id

        links: list[Link] = []
        unlinked: list[tuple[Identifier, str]] = []
        customer = self.customers[current]
        for ident in identifiers:
            if ident in self.owner:
                continue
            id_type = ident[0]
            held = customer.counts.get(id_type, 0)
            if held >= self.type_limits.get(id_type, 1_000_000):
                unlinked.append((ident, f"limit:{id_type}"))
                continue
            customer.counts[id_type] = held + 1
            self.owner[ident] = current
            rule = "first_seen" if created is not None else "shared_identifier"
            links.append(Link(id_type, ident[1], current, event_id, occurred_ms, rule))
        return Attribution(current, created, links, merges, refused, unlinked)

    def _merge_refusal(self, a: str, b: str) -> str | None:
        counts_a, counts_b = self.customers[a].counts, self.customers[b].counts
        for id_type, limit in self.type_limits.items():
            if counts_a.get(id_type, 0) + counts_b.get(id_type, 0) > limit:
                return "conflicting_customer_ref" if id_type == "customer_ref" else f"limit:{id_type}"
        return None

    def _merge(self, a: str, b: str, event_id: str, occurred_ms: int) -> Merge:
        into, loser = (a, b) if self.customers[a].first_seen <= self.customers[b].first_seen else (b, a)
        survivor, gone = self.customers[into], self.customers.pop(loser)
        self.parent[loser] = into
        for id_type, n in gone.counts.items():
            survivor.counts[id_type] = survivor.counts.get(id_type, 0) + n
        moved = (loser, *gone.members)
        survivor.members.extend(moved)
        return Merge(loser, into, event_id, occurred_ms, "shared_identifier", moved)

    # Rebuilding from the warehouse: the same facts the graph emitted, applied in order.
    def restore_customer(self, customer_id: str, first_seen: tuple[int, str]) -> None:
        self.customers.setdefault(customer_id, Customer(customer_id, first_seen))

    def restore_merge(self, from_id: str, into_id: str) -> None:
        root_from, root_into = self.find(from_id), self.find(into_id)
        if root_from == root_into or root_from not in self.customers or root_into not in self.customers:
            return
        gone = self.customers.pop(root_from)
        survivor = self.customers[root_into]
        self.parent[root_from] = root_into
        for id_type, n in gone.counts.items():
            survivor.counts[id_type] = survivor.counts.get(id_type, 0) + n
        survivor.members.extend((root_from, *gone.members))

    def restore_link(self, ident: Identifier, customer_id: str) -> None:
        if ident in self.owner:
            return
        self.owner[ident] = customer_id
        root = self.find(customer_id)
        if root in self.customers:
            counts = self.customers[root].counts
            counts[ident[0]] = counts.get(ident[0], 0) + 1
