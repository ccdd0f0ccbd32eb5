"""The dedup window: which event ids were already processed, and with which content.

The first copy of an event id wins; a later copy within the window is a duplicate, and a conflicting one when its
content differs (an event id collision). Ids expire by the minute in which they were first seen, so expiry never
scans the ids themselves. The single resolver and each front of the partitioned design keep one.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from enum import Enum

from cem.domain.state_maps import MapFactory, in_memory_maps, prefetch

SEEN_BUCKET_MS = 60_000  # seen event ids expire by the minute in which they were first seen


class Sighting(Enum):
    NEW = "new"
    DUPLICATE = "duplicate"  # the same content as the first copy
    CONFLICT = "conflict"  # another content under an id already seen


class SeenIds:
    def __init__(self, window_ms: int, maps: MapFactory = in_memory_maps) -> None:
        self.window_ms = window_ms
        # event_id -> (fingerprint, first seen ms); an entry older than the window counts as absent
        self.ids: MutableMapping[str, tuple[str, int]] = maps("seen")
        # "<minute>/<batch>" -> the event ids the batch saw first in that minute. Keys sort in time order, and are
        # added in time order.
        self.expiry: MutableMapping[str, list[str]] = maps("seen_expiry")
        self.meta: MutableMapping[str, int] = maps("meta")
        self._first_seen: dict[int, list[str]] = {}  # this batch's new ids by minute, filed at its end
        self._horizon_ms = 0

    def start_batch(self, now_ms: int) -> None:
        """Expire what left the window before `now_ms`; sightings of this batch are judged against it."""
        self._horizon_ms = now_ms - self.window_ms
        self._expire(self._horizon_ms)

    def prefetch(self, event_ids: Iterable[str]) -> None:
        """A batch's ids read at once from a map on disk (most were never seen: one call answers them all)."""
        prefetch(self.ids, event_ids)

    def sight(self, event_id: str, fingerprint: str, now_ms: int) -> Sighting:
        """Whether this copy is the first within the window; a first copy is remembered."""
        known = self.ids.get(event_id)  # check() inlined: this runs for every event on the resolver's serial path
        if known is None or known[1] < self._horizon_ms:
            self.remember(event_id, fingerprint, now_ms)
            return Sighting.NEW
        return Sighting.DUPLICATE if known[0] == fingerprint else Sighting.CONFLICT

    def check(self, event_id: str, fingerprint: str) -> Sighting:
        """Whether this copy would be the first within the window, without remembering it."""
        known = self.ids.get(event_id)
        if known is None or known[1] < self._horizon_ms:
            return Sighting.NEW
        return Sighting.DUPLICATE if known[0] == fingerprint else Sighting.CONFLICT

    def remember(self, event_id: str, fingerprint: str, first_seen_ms: int) -> None:
        self.ids[event_id] = (fingerprint, first_seen_ms)
        self._first_seen.setdefault(first_seen_ms // SEEN_BUCKET_MS, []).append(event_id)

    def file(self, tag: str) -> None:
        """File the ids first seen since the last call under `tag` (unique per batch, sorting in batch order)."""
        for minute, ids in self._first_seen.items():
            self.expiry[f"{minute:012d}/{tag}"] = ids
            if minute < self.meta.get("seen_oldest_minute", minute + 1):
                self.meta["seen_oldest_minute"] = minute
        self._first_seen = {}

    def _expire(self, horizon_ms: int) -> None:
        """Drop the ids of every minute wholly before the horizon. An id seen again since (after it had expired)
        has a newer first-seen time and stays."""
        oldest = self.meta.get("seen_oldest_minute")
        if oldest is None or (oldest + 1) * SEEN_BUCKET_MS > horizon_ms:
            return
        expired: list[str] = []
        for chunk in self.expiry:
            minute = int(chunk.split("/", 1)[0])
            if (minute + 1) * SEEN_BUCKET_MS > horizon_ms:
                self.meta["seen_oldest_minute"] = minute
                break
            expired.append(chunk)
        else:
            del self.meta["seen_oldest_minute"]
        for chunk in expired:
            minute = int(chunk.split("/", 1)[0])
            for event_id in self.expiry.pop(chunk):
                known = self.ids.get(event_id)
                if known is not None and known[1] // SEEN_BUCKET_MS == minute:
                    del self.ids[event_id]
