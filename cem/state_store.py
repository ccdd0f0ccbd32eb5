"""The resolver's state on the worker's disk: RocksDB (rocksdict) behind caches of bounded size.

Why RocksDB: faust-streaming already ships it (rocksdict) for its tables, it is embedded (no server), its writes
are atomic per batch, and its bloom filters make the common lookup, an identifier never seen before, cheap.

Every state map (cem.domain.state_maps) is a keyspace of one database. A map's cache holds what the resolver used
lately, up to its share of `memory_mb`; what it handed out is written back at the next `flush`, in one atomic write
with the checkpoint: the resolver's version after the batch the warehouse holds last. Caches shrink only at a
flush, between batches, so an object the resolver holds is never dropped while it may still change it.

A flush without a checkpoint (during a rebuild, or before a full scan) removes the checkpoint in the same write:
the files then hold a state no batch ended with, and the next start rebuilds from the warehouse.
"""

from __future__ import annotations

import contextlib
import marshal
import pickle
import shutil
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
from pympler.asizeof import asizeof
from rocksdict import BlockBasedIndexType, BlockBasedOptions, Cache, Options, Rdict, WriteBatch

from cem.domain.state_maps import MAP_KINDS

CHECKPOINT_KEY = b"\x00checkpoint"
# Bytes a cached entry is assumed to cost (key, value, cache slot) until entries are there to be measured.
ENTRY_BYTES = 700
DICT_SLOT_BYTES = 100  # the cache's own slot per entry (hash table, and the sets of keys changed), roughly
MIN_ENTRIES = 1000  # the smallest cache a map gets, whatever its entries weigh
RESIZE_EVERY = 20  # checkpoints between two measurements of what each map's entries weigh
SAMPLE_ENTRIES = 48  # the most recently loaded entries measured each time
# Of `memory_mb`: RocksDB's own block cache and write buffers; the rest goes to the caches by the shares below.
ROCKSDB_SHARE = 0.25
CACHE_SHARES: dict[str, float] = {
    "owner": 0.14, "parent": 0.06, "customers": 0.14, "set_owner": 0.1, "set_key": 0.1, "carriers": 0.12,
    "origins": 0.04, "shared_seen_with": 0.06, "seen": 0.08, "seen_expiry": 0.01, "sessions": 0.09,
    "journeys": 0.05,
    # The identity replica's store holds only these (CEM_IDENTITY_REPLICA_MEMORY_MB)
    "replica_sets": 0.6, "replica_aliases": 0.2, "replica_links": 0.2,
}
# Maps whose values are built-in types (strings, tuples, sets, lists): marshal, faster than pickle, suffices.
_MARSHAL_VALUES = frozenset({"owner", "parent", "set_owner", "set_key", "carriers", "origins", "shared_seen_with",
                             "seen", "seen_expiry", "replica_sets", "replica_aliases", "replica_links",
                             "handed", "folded", "forwards", "received", "decisions"})
_IDENTIFIER_KEYS = frozenset({"owner", "carriers", "shared_marked", "shared_seen_with", "replica_links",
                              "forwards", "received"})
_SET_KEYS = frozenset({"set_owner", "set_key", "replica_sets"})


class StateDirInUse(Exception):
    """Another process holds the store (RocksDB locks its directory)."""


@dataclass(frozen=True)
class Checkpoint:
    version: int  # the resolver's version after the last batch written
    warehouse: str  # which warehouse that version is in (a store never serves another)


def _key_encoder(name: str) -> Callable[[Any], bytes]:
    if name in _IDENTIFIER_KEYS or name in _SET_KEYS:
        return orjson.dumps  # deterministic for tuples of strings, unlike pickle (which memoises objects)
    return _encode_text_key


def _encode_text_key(key: Any) -> bytes:
    return str(key).encode()


def _decode_key(name: str, raw: bytes) -> Any:
    if name in _IDENTIFIER_KEYS:
        return tuple(orjson.loads(raw))
    if name in _SET_KEYS:
        return tuple(tuple(pair) for pair in orjson.loads(raw))
    return raw.decode()


class SpillMap(MutableMapping[Any, Any]):
    """One keyspace: a cache in front of RocksDB. `resident` keeps the whole map in memory (small maps whose size
    the resolver asks for).

    The cache also remembers keys that are on neither side (`_ABSENT`): most lookups in the identity graph are for
    keys nobody wrote (customers never merged, identifiers seen for the first time), and one dict lookup answers
    them. That is exact because every write goes through this object."""

    def __init__(self, store: StateStore, name: str, capacity: int) -> None:
        mutable, resident = MAP_KINDS[name]
        self.store, self.name, self.capacity = store, name, capacity
        self.mutable, self.resident = mutable, resident
        self.prefix = name.encode() + b"\x1f"
        self.encode_key = _key_encoder(name)
        builtin = name in _MARSHAL_VALUES
        self.dumps: Callable[[Any], bytes] = marshal.dumps if builtin else _pickle
        self.loads: Callable[[bytes], Any] = marshal.loads if builtin else pickle.loads
        self.cache: dict[Any, Any] = {}  # insertion order: the earliest loaded are evicted first
        self.dirty: set[Any] = set()
        self.deleted: set[Any] = set()
        # For values never changed in place: each key's value before its first change since the last write
        # (`_UNKNOWN` when it was not cached), so a key changed back is not written.
        self.before: dict[Any, Any] = {}
        if resident:
            for raw_key, raw_value in store.scan(self.prefix):
                self.cache[_decode_key(name, raw_key)] = self.loads(raw_value)

    def _miss(self, key: Any) -> Any:
        """A key not in the cache: its value read from RocksDB, or `_ABSENT`; cached either way."""
        if self.resident:
            return _ABSENT
        raw = self.store.db.get(self.prefix + self.encode_key(key))
        if raw is None:
            self.cache[key] = _ABSENT
            return _ABSENT
        value = self.cache[key] = self.loads(raw)
        return value

    def prefetch(self, keys: Iterable[Any]) -> None:
        """Reads the keys not cached yet in one call to RocksDB (its MultiGet), as `_miss` would one by one."""
        if self.resident:
            return
        cache = self.cache
        wanted = list({key: None for key in keys if key not in cache})
        if not wanted:
            return
        prefix, encode, loads = self.prefix, self.encode_key, self.loads
        # A list of keys gives a list of values.
        found: list[bytes | None] = self.store.db.get([prefix + encode(key) for key in wanted])  # type: ignore[assignment]
        for key, raw in zip(wanted, found, strict=True):
            cache[key] = _ABSENT if raw is None else loads(raw)

    # The hit path is the resolver's inner loop (tens of lookups per event): one dict lookup, and for maps whose
    # values are changed in place a dirty mark, since whatever is handed out may be changed.
    def get(self, key: Any, default: Any = None) -> Any:
        value = self.cache.get(key, _UNKNOWN)
        if value is _UNKNOWN:
            value = self._miss(key)
        if value is _ABSENT:
            return default
        if self.mutable:
            self.dirty.add(key)
        return value

    def __getitem__(self, key: Any) -> Any:
        value = self.get(key, _ABSENT)
        if value is _ABSENT:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        value = self.cache.get(key, _UNKNOWN)
        if value is _UNKNOWN:
            value = self._miss(key)
        return value is not _ABSENT

    def __setitem__(self, key: Any, value: Any) -> None:
        cache = self.cache
        if not self.mutable and key not in self.before:
            self.before[key] = cache.get(key, _UNKNOWN)
        cache[key] = value
        self.dirty.add(key)
        self.deleted.discard(key)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        value = self.get(key, _ABSENT)
        if value is _ABSENT:
            self[key] = value = default
        return value

    def pop(self, key: Any, *default: Any) -> Any:
        value = self.get(key, _ABSENT)
        if value is _ABSENT:
            if default:
                return default[0]
            raise KeyError(key)
        if not self.mutable and key not in self.before:
            self.before[key] = value
        if self.resident:
            del self.cache[key]
        else:
            self.cache[key] = _ABSENT
        self.dirty.discard(key)
        self.deleted.add(key)
        return value

    def __delitem__(self, key: Any) -> None:
        self.pop(key)

    def __iter__(self) -> Iterator[Any]:
        """Every key. A full scan (rare paths only): pending changes are written first, without a checkpoint."""
        if self.resident:
            yield from list(self.cache)
            return
        if self.dirty or self.deleted:
            self.store.flush(None)
        for raw_key, _ in self.store.scan(self.prefix):
            yield _decode_key(self.name, raw_key)

    def __len__(self) -> int:
        if self.resident:
            return len(self.cache)
        return sum(1 for _ in self)

    def write_to(self, batch: WriteBatch) -> None:
        """Every change since the last write. A recompute takes a customer apart and replays it, so most keys it
        touched end as they began: for values never changed in place, those are not written again."""
        before, cache, prefix, encode, dumps, put = self.before, self.cache, self.prefix, self.encode_key, self.dumps, \
            batch.put
        if self.mutable:  # whatever was handed out may have changed: no value from before to compare with
            for key in self.dirty:
                put(prefix + encode(key), dumps(cache[key]))
        else:
            for key in self.dirty:
                value = cache[key]
                if before.get(key, _UNKNOWN) != value:
                    put(prefix + encode(key), dumps(value))
        for key in self.deleted:
            if before.get(key, _UNKNOWN) is not _ABSENT:
                batch.delete(prefix + encode(key))
        self.dirty.clear()
        self.deleted.clear()
        before.clear()

    def entry_bytes(self) -> float | None:
        """What one cached entry weighs, measured on the most recently loaded ones (None: nothing cached)."""
        sample = list(islice(reversed(self.cache.items()), SAMPLE_ENTRIES))
        if not sample:
            return None
        return asizeof(*sample) / len(sample) + DICT_SLOT_BYTES

    def trim(self) -> None:
        if self.resident:
            return
        cache = self.cache
        excess = len(cache) - self.capacity
        if excess > 0:  # the earliest loaded go first: one pass, not one scan of the dict's front per key
            for key in list(islice(cache, excess)):
                del cache[key]


_UNKNOWN = object()  # not in the cache: ask RocksDB
_ABSENT = object()  # on neither side


def _pickle(value: Any) -> bytes:
    return pickle.dumps(value, protocol=5)


class StateStore:
    """The resolver's maps on disk at `path`. `open` wipes nothing; `wipe` empties the store."""

    def __init__(self, path: Path, memory_mb: int, cache_entries: int | None = None) -> None:
        """`cache_entries`: each map's cache size, instead of its share of `memory_mb` (tests use tiny ones)."""
        self.path = Path(path)
        self.memory_mb = memory_mb
        self.cache_entries = cache_entries
        self.maps: dict[str, SpillMap] = {}
        self.checkpoints = 0
        self.db = self._open()

    def _open(self) -> Rdict:
        self.path.mkdir(parents=True, exist_ok=True)
        rocksdb_bytes = int(self.memory_mb * ROCKSDB_SHARE * 1024 * 1024)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(max(4 << 20, rocksdb_bytes // 4))
        options.set_max_write_buffer_number(2)
        table = BlockBasedOptions()
        table.set_block_cache(Cache(max(8 << 20, rocksdb_bytes // 2)))
        table.set_bloom_filter(10, False)
        # Index and filters in the block cache, so they count against the budget, and in small partitions: a
        # whole-file index block larger than one shard of the cache cannot stay in it and was read again on every
        # lookup (about 200 µs each once a file passed tens of MB).
        table.set_index_type(BlockBasedIndexType.two_level_index_search())
        table.set_partition_filters(True)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_top_level_index_and_filter(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        options.set_block_based_table_factory(table)
        try:
            # An existing store's column family would otherwise be opened with the options stored in its files
            # (rocksdict reads them back), not these.
            return Rdict(str(self.path), options, column_families={"default": options})
        except Exception as exc:
            if "lock" in str(exc).lower():
                raise StateDirInUse(f"the resolver's state in {self.path} is held by another process: give each "
                                    "worker its own CEM_STATE_DIR") from exc
            raise

    def map(self, name: str) -> SpillMap:
        """The keyspace `name` (one object per name and store)."""
        if name not in self.maps:
            self.maps[name] = SpillMap(self, name, self._capacity(name, ENTRY_BYTES))
        return self.maps[name]

    def _capacity(self, name: str, entry_bytes: float) -> int:
        """How many entries of `name` fit its share of the memory budget, at `entry_bytes` each."""
        if self.cache_entries:
            return self.cache_entries
        budget = self.memory_mb * (1 - ROCKSDB_SHARE) * 1024 * 1024 * CACHE_SHARES.get(name, 0.0)
        return max(MIN_ENTRIES, int(budget / entry_bytes))

    def _resize(self) -> None:
        """Entries weigh what their customers hold (identifier sets, sessions, journeys), which changes with the
        traffic: each cache's size follows what its entries were last measured to weigh."""
        for name, spill in self.maps.items():
            measured = None if spill.resident else spill.entry_bytes()
            if measured is not None:
                spill.capacity = self._capacity(name, measured)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for raw_key, raw_value in self.db.items(from_key=prefix):
            key: bytes = raw_key  # type: ignore[assignment]  # raw mode: bytes
            if not key.startswith(prefix):
                return
            yield key[len(prefix):], raw_value

    def checkpoint(self) -> Checkpoint | None:
        raw = self.db.get(CHECKPOINT_KEY)
        if raw is None:
            return None
        found = orjson.loads(raw)
        return Checkpoint(int(found["version"]), str(found["warehouse"]))

    def flush(self, checkpoint: Checkpoint | None) -> None:
        """Write back every change, with `checkpoint` (or none: the state is not one a batch ended with)."""
        batch = WriteBatch(raw_mode=True)
        for spill in self.maps.values():
            spill.write_to(batch)
        if checkpoint is None:
            batch.delete(CHECKPOINT_KEY)
        else:
            batch.put(CHECKPOINT_KEY, orjson.dumps({"version": checkpoint.version, "warehouse": checkpoint.warehouse}))
        self.db.write(batch)
        if checkpoint is not None:
            self.checkpoints += 1
            if self.checkpoints % RESIZE_EVERY == 1:
                self._resize()
            for spill in self.maps.values():
                spill.trim()

    def trim(self) -> None:
        """Shrink the caches to their budget after writing back (a rebuild's periodic step)."""
        self.flush(None)
        self._resize()
        for spill in self.maps.values():
            spill.trim()

    def wipe(self) -> None:
        """Forget everything: the maps handed out are emptied too (and stay usable)."""
        self.db.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self.db = self._open()
        for spill in self.maps.values():
            spill.cache.clear()
            spill.dirty.clear()
            spill.deleted.clear()
            spill.before.clear()

    def close(self) -> None:
        self.db.close()


class WriteBack:
    """A store's write-back (`flush` with a checkpoint) in a thread of its own, one at a time, so the caller can
    insert the batch's rows meanwhile. `wait` before any other use of the store: the resolver must not change it, or
    rebuild it, while it is being written."""

    def __init__(self, store: StateStore, timed: Callable[[], contextlib.AbstractContextManager[Any]]) -> None:
        self.store = store
        self.timed = timed  # around each write-back, in its thread (the resolver's CPU per step)
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cem-state-write-back")
        self.running: Future[None] | None = None

    def start(self, checkpoint: Checkpoint) -> None:
        """Raises what the previous write-back raised, if it was not waited for."""
        self.wait()

        def write() -> None:
            with self.timed():
                self.store.flush(checkpoint)
        self.running = self.thread.submit(write)

    def wait(self) -> None:
        """Until the write-back in flight is done; raises what it raised. After a failed write-back the files may
        lack changes the caches no longer mark as changed: the caller must rebuild the store, not write it again."""
        running, self.running = self.running, None
        if running is not None:
            running.result()

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the files' checkpoint is then behind: the next start rebuilds
            self.wait()
        self.thread.shutdown()
