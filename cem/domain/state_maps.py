"""Where the resolver keeps its state: named mappings, made by a factory injected at construction.

The domain only needs `MutableMapping`s. In memory they are dicts (tests, replays); in a worker they are backed by
a disk store with a bounded cache (cem.state_store), so the working set stays within a memory budget whatever the
history. The names below are the store's keyspaces: each one is declared once here, with whether its values are
mutated in place (the store must then write back whatever it handed out).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

MapFactory = Callable[[str], MutableMapping[Any, Any]]

# name -> (values mutated in place after a read, kept whole in memory)
MAP_KINDS: dict[str, tuple[bool, bool]] = {
    "owner": (False, False),  # identifier -> the customer that owns it
    "parent": (False, False),  # merged customer -> the customer it merged into
    "customers": (True, False),  # live customer id -> Customer
    "set_owner": (False, False),  # identifier set -> customer it was attributed to
    "set_key": (False, False),  # identifier set -> its earliest event key
    "carriers": (True, False),  # identifier -> customers with an event carrying it
    "origins": (False, False),  # customer id -> identifier set of the event that created it
    "shared_marked": (False, True),  # shared identifier -> its record (few: kept whole)
    "shared_seen_with": (False, False),  # identifier -> identifiers seen with it (capped evidence)
    "seen": (False, False),  # event id -> (fingerprint, first seen ms)
    "seen_expiry": (False, False),  # "<minute>/<batch>" -> the event ids the batch saw first in that minute
    "sessions": (True, False),  # customer id -> sessions sorted by start
    "journeys": (True, False),  # customer id -> issue_ref -> journey
    "decisions": (False, False),  # a front's routing decisions not yet committed: event id -> (customer, offset)
    "handed": (False, False),  # merged customer -> the survivor its sessions and journeys were handed to
    "folded": (False, False),  # a customer partition's events: id -> the customer folded under
    "forwards": (False, False),  # a customer partition's hops: (event id, addressee) -> the survivor sent to
    "received": (False, False),  # its hand-offs: (merged customer, addressee) -> the newest sender version
    "meta": (False, True),  # small bookkeeping (e.g. the oldest minute of seen ids still held)
    # A worker's identity replica (cem/domain/identity_replica.py), in a store of its own
    "replica_sets": (False, False),  # identifier set -> (customer, first event key) as the owner published it
    "replica_aliases": (False, False),  # merged customer id -> the id it merged into
    "replica_links": (False, False),  # identifier -> customer
}


def in_memory_maps(name: str) -> MutableMapping[Any, Any]:
    if name not in MAP_KINDS:
        raise KeyError(f"no state map named {name!r}")
    return {}


def prefetch(mapping: MutableMapping[Any, Any], keys: Iterable[Any]) -> None:
    """Warm a map for a batch: a map on disk reads the keys it lacks in one call (a dict has nothing to read)."""
    warm = getattr(mapping, "prefetch", None)
    if warm is not None:
        warm(keys)
