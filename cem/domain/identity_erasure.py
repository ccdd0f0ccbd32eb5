"""Erasing customers and identifiers from the identity graph (`forget_in_graph`; docs/identity.md, "Erasure").

The graph afterwards is exactly what a restart builds from the identifier sets that remain: the customers that
shared an identifier with a removed set are replayed from their remaining sets, and the shared-identifier
evidence of the removed sets is dropped, so an identifier that only erased events made shared links again.
This module works on the graph's internals on purpose: it is the graph's own erasure, kept apart for size.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cem.domain.identity_records import Attribution, Customer, IdentitySet, Link, Merge
from cem.domain.model import Identifier
from cem.domain.shared import SharedIdentifier

if TYPE_CHECKING:
    from cem.domain.identity import IdentityGraph


@dataclass
class GraphErasure:
    """What forget_in_graph removed, and what its replay of the neighbours wrote (`replay`)."""

    customer_ids: list[str]  # the erased customers and every id merged into them
    vanished_ids: list[str]  # neighbours none of whose identifier sets remain
    removed_sets: list[IdentitySet]
    replay: Attribution
    # Identifiers shared only by the evidence of removed sets: no longer shared, their records are to be deleted.
    unshared: list[SharedIdentifier]


def forget_in_graph(graph: IdentityGraph, customer_ids: Iterable[str], erased: Iterable[Identifier]) -> GraphErasure:
    """Erase customers and identifiers. The customers go with every identifier set attributed to them; every
    other set carrying an erased identifier goes too (for a shared one, found by a scan of every set). The
    customers that shared an identifier with a removed set, or carry an identifier no longer shared, are replayed
    from their remaining sets, exactly as a restart replays what is left in the warehouse."""
    persons = {graph.find(c) for c in customer_ids} & graph.customers.keys()
    erased = set(erased)
    removed = {s for root in persons for s in graph.customers[root].sets}
    for carrying in graph.sets_with(erased).values():
        removed.update(carrying)
    unshared, unshared_roots = _drop_shared_evidence(graph, removed, erased)
    # The holders of removed sets: a set of shared identifiers only is reached through no carrier.
    removed_owners = {graph.find(graph.set_owner[s]) for s in removed}
    gone = {root: graph.customers.pop(root) for root in persons}
    touched = {graph.find(c) for s in removed for ident in s for c in graph.carriers.get(ident, ())}
    closure = sorted(graph._closure(touched | removed_owners | unshared_roots))  # one order, in memory or on disk
    replayed = {root: graph.customers.pop(root) for root in closure}
    person_ids = {cid for root, c in gone.items() for cid in (root, *c.members)}
    every = {**gone, **replayed}
    all_ids = {cid for root, c in every.items() for cid in (root, *c.members)}
    sets = {s for c in every.values() for s in c.sets} | removed
    for ident in {ident for s in sets for ident in s} | erased:
        owner_id = graph.owner.get(ident)
        if owner_id is not None and (graph.find(owner_id) in every or ident in erased):
            del graph.owner[ident]
    for cid in all_ids:
        graph.parent.pop(cid, None)
        if cid in person_ids or graph.origins.get(cid) in removed:
            graph.origins.pop(cid, None)
    for member_set in sets:
        graph.set_owner.pop(member_set, None)
        graph.set_key.pop(member_set, None)
        for ident in member_set:
            holders = graph.carriers.get(ident)
            if holders is not None:
                holders.difference_update(all_ids)
                if not holders:
                    del graph.carriers[ident]
    out = Attribution()
    replay = {s: k for c in replayed.values() for s, k in c.sets.items() if s not in removed}
    for member_set, key in sorted(replay.items(), key=lambda item: item[1]):
        graph._step(member_set, key, out)
    out.set_customers = {s: graph.find(graph.set_owner[s]) for s in replay}
    out.links = [Link(li.id_type, li.value, graph.find(li.customer_id), li.event_id, li.occurred_ms, li.rule)
                 for li in out.links]
    vanished = _alias_replayed(graph, replayed, out)
    # Only merges of customers that were live before: the others are on record already.
    out.merges = [Merge(m.from_id, graph.find(m.from_id), m.event_id, m.occurred_ms, m.rule)
                  for m in out.merges if m.from_id in replayed]
    return GraphErasure(sorted(person_ids), sorted(vanished), sorted(removed), out, unshared)


def _drop_shared_evidence(graph: IdentityGraph, removed: set[IdentitySet],
                          erased: set[Identifier]) -> tuple[list[SharedIdentifier], set[str]]:
    """Re-take the shared-identifier evidence of every identifier of a removed set from the sets that remain, as
    a restart would. Returns the identifiers no longer shared and the customers carrying them (to be replayed:
    those identifiers link again). Finding the sets of a shared identifier scans every set: O(state)."""
    affected = {ident for s in removed for ident in s} - erased
    evidence = {ident: [(s, graph.set_key[s]) for s in carrying if s not in removed]
                for ident, carrying in graph.sets_with(affected).items()}
    unshared = graph.shared.forget(erased, evidence)
    roots = {graph.find(graph.set_owner[s]) for found in unshared for s, _ in evidence[found.identifier]}
    return unshared, roots


def _alias_replayed(graph: IdentityGraph, replayed: Mapping[str, Customer], out: Attribution) -> set[str]:
    """Old ids of replayed customers that the replay did not re-create live on as aliases of where their
    remaining sets went. Returns the ids none of whose sets remain: they are gone, like the erased ones."""
    vanished: set[str] = set()
    for root, customer in replayed.items():
        remaining = sorted((k, s) for s, k in customer.sets.items() if s in graph.set_owner)
        for cid in (root, *customer.members):
            if cid in graph.customers or cid in graph.parent:
                out.aliases[cid] = graph.find(cid)
                continue
            if not remaining:
                vanished.add(cid)
                continue
            origin = graph.origins.get(cid)
            home = graph.find(graph.set_owner[origin] if origin is not None and origin in graph.set_owner else
                              graph.set_owner[remaining[0][1]])
            graph.parent[cid] = home
            graph.customers[home].members.append(cid)
            out.aliases[cid] = home
    return vanished
