"""Whether an event changed the identity graph, and if so the most consequential reason.

The graph (cem/domain/identity.py) changes nothing for an event whose identifier set it already folded in at an
earlier or equal event key: the event is *local*, and a read replica of the graph's answers could have attributed
it (cem/domain/identity_replica.py). Every other event needs the graph's owner. The resolver counts both on every
batch, so the share that needs the owner is measured on live traffic, not only in the bench.
"""

from __future__ import annotations

from cem.domain.identity_records import Attribution, EventKey

LOCAL = "local"
# Why an event needs the owner, the most consequential change first (an event may make several).
OWNER_REASONS = ("shared", "late", "refused_merge", "merge", "new_customer", "link", "unlinked", "new_set")


def is_local(known_key: EventKey | None, key: EventKey) -> bool:
    """The graph answers without changing: the event's identifier set was folded in at `known_key` <= `key`."""
    return known_key is not None and known_key <= key


def classify(known_key: EventKey | None, key: EventKey, attribution: Attribution) -> str:
    """LOCAL, or the most consequential reason the event needed the owner. `known_key` is the earliest event key
    of the event's identifier set before the event (None: a new set); `attribution` is what the graph did."""
    if is_local(known_key, key):
        return LOCAL
    if attribution.shared:
        return "shared"
    if known_key is not None:
        return "late"  # its set seen again earlier in event time: the owner replays the customers it touches
    if attribution.refused:
        return "refused_merge"
    if attribution.merges:
        return "merge"
    if attribution.created:
        return "new_customer"
    if attribution.links:
        return "link"
    if attribution.unlinked:
        return "unlinked"
    return "new_set"  # its identifiers already held by one customer: only the combination is new
