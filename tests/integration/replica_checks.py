"""Checks that an identity replica fed by the identity changes topic answers exactly as the warehouse does.

Shared by the integration test of the replica and the fault scenarios (a worker killed between writing a batch and
publishing it must still leave every replica exact, through the next owner's catch-up)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from cem.domain.identity_replica import IdentityChanges
from cem.domain.model import identity_key
from cem.domain.resolver import follow_aliases
from cem.settings import Settings
from sinks.clickhouse import connect
from sinks.identity_reads import identity_changes_between, replica_start
from streams.identity_feed import IdentityFeed

FAR_KEY = (2**62, "")  # later than any event: every known set answers locally


async def _empty_start() -> IdentityChanges:
    return IdentityChanges(0)


def topic_feed(settings: Settings) -> IdentityFeed:
    """A replica that starts empty and reads the whole identity changes topic."""
    return IdentityFeed(settings, _empty_start)


def warehouse_feed(settings: Settings) -> IdentityFeed:
    """A replica that starts from the warehouse, as a worker's does."""
    db = connect(settings.clickhouse_url)

    async def start() -> IdentityChanges:
        return await asyncio.get_running_loop().run_in_executor(None, replica_start, db)

    return IdentityFeed(settings, start)


def follow(feed: IdentityFeed, version: int, timeout: float = 60.0) -> None:
    """Run the feed until its replica holds `version` and has read the topic to its end."""

    async def run() -> None:
        task = asyncio.ensure_future(feed.run())
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while not (feed.ready.is_set() and feed.lag == 0 and feed.replica.version >= version):
                if loop.time() > deadline:
                    raise AssertionError(f"the replica did not reach version {version}: {feed.describe()}")
                await asyncio.sleep(0.1)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(run())


class FeedThread:
    """A feed following the topic live, in its own event loop, while workers run."""

    def __init__(self, feed: IdentityFeed) -> None:
        self.feed = feed
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.task: Any = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.task = self.loop.create_task(self.feed.run())
        try:
            self.loop.run_until_complete(self.task)
        except asyncio.CancelledError:
            pass

    def start(self) -> FeedThread:
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.task is not None:
            self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(10)


def warehouse_identity(settings: Settings) -> IdentityChanges:
    return identity_changes_between(connect(settings.clickhouse_url), -1, None)


def assert_replica_exact(settings: Settings, feed: IdentityFeed, from_warehouse: bool = False) -> dict[str, int]:
    """The replica holds the warehouse's newest identity version, every identifier set with its first event, and
    gives every interaction the customer the `interactions` view gives it. A replica fed by the topic alone is at
    exactly the newest version published; one started from the warehouse is at its last batch, which may have
    changed no identity (a batch of duplicates), so at or above it."""
    db = connect(settings.clickhouse_url)
    expected = warehouse_identity(settings)
    replica = feed.replica
    if from_warehouse:
        assert replica.version >= expected.version, (replica.version, expected.version)
    else:
        assert replica.version == expected.version, (replica.version, expected.version)
    assert set(replica.sets) == set(expected.sets), (len(replica.sets), len(expected.sets))
    for identifiers, (customer, first_key) in expected.sets.items():
        assert replica.sets[identifiers][1] == first_key, (identifiers, replica.sets[identifiers], db.query(
            f"SELECT first_ms, first_event_id, customer_id, version FROM {db.database}.identity_sets "
            f"WHERE identity_key = '{identity_key(identifiers)}' ORDER BY version"))
        assert replica.resolve_locally(identifiers, FAR_KEY) == follow_aliases(expected.aliases, customer), identifiers
    by_key = {identity_key(s): s for s in replica.sets}
    rows = db.query(f"SELECT event_id, customer_id, identity_key FROM {db.database}.interactions "
                    "WHERE customer_id != 'forgotten'")
    assert rows, "no interaction to compare"
    wrong = [(event_id, customer, replica.resolve_locally(by_key[key], FAR_KEY) if key in by_key else None)
             for event_id, customer, key in rows
             if key not in by_key or replica.resolve_locally(by_key[key], FAR_KEY) != customer]
    assert not wrong, wrong[:10]
    return {"replica_sets": len(replica.sets), "replica_version": replica.version, "interactions_checked": len(rows)}
