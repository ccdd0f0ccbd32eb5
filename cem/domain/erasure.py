"""Who and what an erasure request (`cem forget`) erases: pure functions of the identity graph.

The request names the identifier by a keyed hash (cem.domain.keyed), never by its value. The identifier is found
among every identifier any event carried, linked or not (`IdentityGraph.carriers`), and among the shared ones,
which are never walked and so have no carriers entry (`IdentityGraph.shared`). The person is the customer owning
it, or, for an identifier that went unlinked at a per-type limit, the customers whose events carried it. A shared
identifier belongs to nobody: it names no person, and erasing it anonymises every event carrying it. Their
identifiers are every identifier on their identifier sets that they own or that nobody owns, except identifiers
carried by the events of more than `max_customers` customers (a kiosk device, a call-centre line): those do not
point at one person. An identifier shared that widely is refused as a request unless forced.

The customers carrying a shared identifier are the owners of the identifier sets containing it, found by a scan
of every set: O(state) per request, acceptable for a request this rare (docs/identity.md, "Erasure").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any

from cem.domain.identity import IdentityGraph
from cem.domain.keyed import keyed_hash
from cem.domain.model import Identifier
from cem.domain.resolver import FORGOTTEN

__all__ = ["FORGOTTEN", "ErasurePlan", "ErasureRequest", "InvalidRequest", "find_identifiers", "plan_erasure"]

APPLIED, REFUSED, NOT_FOUND = "applied", "refused", "not_found"


class InvalidRequest(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ErasureRequest:
    request_id: str
    id_type: str
    value_key: str  # keyed_hash(key, id_type, normalised value)
    requested_ms: int
    force: bool = False

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> ErasureRequest:
        """The control message {"control": "forget", "request_id", "id_type", "value_key", "requested_ms",
        "force"}. A message carrying a plain "value" is refused: that is the format this one replaces."""
        if "value" in message:
            raise InvalidRequest("an erasure request must carry value_key, never the value")
        try:
            request = cls(str(message["request_id"]), str(message["id_type"]), str(message["value_key"]),
                          int(message.get("requested_ms", 0)), message.get("force", False) is True)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRequest(f"malformed erasure request: {type(exc).__name__} {exc}") from exc
        if len(request.value_key) != 64 or not request.request_id:
            raise InvalidRequest("malformed erasure request: value_key must be 64 hex digits, request_id set")
        return request

    def to_message(self) -> dict[str, Any]:
        return {"control": "forget", "request_id": self.request_id, "id_type": self.id_type,
                "value_key": self.value_key, "requested_ms": self.requested_ms, "force": self.force}


@dataclass(frozen=True)
class ErasurePlan:
    status: str  # APPLIED (to be applied), REFUSED or NOT_FOUND
    reason: str = ""
    customer_ids: tuple[str, ...] = ()  # the persons: live customer ids
    erased: frozenset[Identifier] = frozenset()
    carriers: int = 0  # customers whose events carry the requested identifier
    shared_kept: int = 0  # identifiers of the persons kept because other customers' events carry them too


def find_identifiers(graph: IdentityGraph, id_type: str, value_key: str, key: bytes) -> list[Identifier]:
    """Every identifier any event carried whose keyed hash is value_key (one, barring a 256-bit collision).
    Hashes the identifiers of that type on demand, the shared ones too: one pass per request."""
    return [ident for ident in chain(graph.carriers, graph.shared.marked)
            if ident[0] == id_type and keyed_hash(key, *ident) == value_key]


def carrier_roots(graph: IdentityGraph, identifiers: Iterable[Identifier]) -> dict[Identifier, set[str]]:
    """The live customers whose events carry each identifier: the owners of the identifier sets containing it."""
    return {ident: {graph.find(graph.set_owner[s]) for s in sets}
            for ident, sets in graph.sets_with(identifiers).items()}


def plan_erasure(graph: IdentityGraph, request: ErasureRequest, key: bytes, max_customers: int) -> ErasurePlan:
    found = find_identifiers(graph, request.id_type, request.value_key, key)
    if not found:
        return ErasurePlan(NOT_FOUND, "no event carried that identifier (or it was erased already)")
    carriers = set().union(*carrier_roots(graph, found).values())
    if len(carriers) > max_customers and not request.force:
        return ErasurePlan(REFUSED, f"shared identifier: events of {len(carriers)} customers carry it (more than "
                           f"CEM_ERASURE_MAX_CUSTOMERS={max_customers}); erasing it would anonymise all of them. "
                           "Send the request again with --force to erase it (and its owner, if a customer holds "
                           "it).", carriers=len(carriers))
    owners = {owner for f in found if (owner := graph.customer_of(f)) is not None}
    shared = any(f in graph.shared for f in found)
    persons = owners or (carriers if len(carriers) <= max_customers and not shared else set())
    erased: set[Identifier] = set(found)
    candidates = {ident for root in persons for identifiers in graph.customers[root].sets for ident in identifiers}
    kept: set[Identifier] = set()
    for ident, roots in carrier_roots(graph, candidates - erased).items():
        holder = graph.customer_of(ident)
        if holder is not None and holder not in persons:
            continue  # another customer's identifier, on an event that was refused its merge
        if len(roots) > max_customers:
            kept.add(ident)
        else:
            erased.add(ident)
    reason = "forced: " if len(carriers) > max_customers else ""
    if shared and not owners:
        reason += "shared identifier: nobody's; every event carrying it is anonymised"
    elif reason:
        reason += "shared identifier"
    return ErasurePlan(APPLIED, reason, tuple(sorted(persons)), frozenset(erased), len(carriers), len(kept))
