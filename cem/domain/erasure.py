"""Who and what an erasure request (`cem forget`) erases: pure functions of the identity graph.

The request names the identifier by a keyed hash (cem.domain.keyed), never by its value. The identifier is found
among every identifier any event carried, linked or not (`IdentityGraph.carriers`). The person is the customer
owning it, or, for an identifier that went unlinked at a per-type limit, the customers whose events carried it.
Their identifiers are every identifier on their identifier sets that they own or that nobody owns, except
identifiers carried by the events of more than `max_customers` customers (a kiosk device, a call-centre line):
those do not point at one person. An identifier shared that widely is refused as a request unless forced.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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
    Hashes the identifiers of that type on demand: one pass per request."""
    return [ident for ident in graph.carriers if ident[0] == id_type and keyed_hash(key, *ident) == value_key]


def carrier_roots(graph: IdentityGraph, ident: Identifier) -> set[str]:
    return {graph.find(c) for c in graph.carriers.get(ident, ())}


def plan_erasure(graph: IdentityGraph, request: ErasureRequest, key: bytes, max_customers: int) -> ErasurePlan:
    found = find_identifiers(graph, request.id_type, request.value_key, key)
    if not found:
        return ErasurePlan(NOT_FOUND, "no event carried that identifier (or it was erased already)")
    carriers = set().union(*(carrier_roots(graph, f) for f in found))
    if len(carriers) > max_customers and not request.force:
        return ErasurePlan(REFUSED, f"shared identifier: events of {len(carriers)} customers carry it (more than "
                           f"CEM_ERASURE_MAX_CUSTOMERS={max_customers}); erasing it would anonymise all of them. "
                           "Send the request again with --force to erase it and its owner.", carriers=len(carriers))
    owners = {owner for f in found if (owner := graph.customer_of(f)) is not None}
    persons = owners or (carriers if len(carriers) <= max_customers else set())
    erased: set[Identifier] = set(found)
    shared: set[Identifier] = set()
    for root in persons:
        for identifiers in graph.customers[root].sets:
            for ident in identifiers:
                holder = graph.customer_of(ident)
                if holder is not None and holder not in persons:
                    continue  # another customer's identifier, on an event that was refused its merge
                if len(carrier_roots(graph, ident)) > max_customers:
                    shared.add(ident)
                else:
                    erased.add(ident)
    return ErasurePlan(APPLIED, "forced: shared identifier" if len(carriers) > max_customers else "",
                       tuple(sorted(persons)), frozenset(erased), len(carriers), len(shared - erased))
