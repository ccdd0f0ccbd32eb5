"""The front stage's Kafka glue with fakes of its interfaces (topics, stream, replica feed, warehouse): what it
routes at once, what it holds, when a message is acknowledged, and what a failure or a revocation admits again."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from bench.traffic import parsed_interactions, simulated
from cem import metrics
from cem.config import resolver_config
from cem.domain.identity_replica import IdentityChanges, IdentityReplica
from cem.domain.model import Interaction
from cem.domain.resolver import Resolver
from cem.service.split_service import Restored
from cem.settings import Settings
from devtools.simulate import recent_base_ms
from schemas.internal import encode_batch, signature_headers
from schemas.split_wire import decode_requests, decode_routed
from streams.split_front import FrontStage

SETTINGS = Settings(split_partitions=2)
NOW_MS = recent_base_ms() + 30 * 86_400_000


class FakeTopic:
    def __init__(self, fail_times: int = 0) -> None:
        self.sent: list[tuple[int | None, bytes]] = []
        self.fail_times = fail_times

    async def send(self, key: bytes, value: bytes, partition: int | None = None, headers: Any = None) -> Any:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail_times:
            self.fail_times -= 1
            future.set_exception(ConnectionError("not delivered"))
        else:
            self.sent.append((partition, value))
            future.set_result(None)
        return future


class FakeStream:
    def __init__(self) -> None:
        self.acked: list[int] = []

    async def ack(self, event: Any) -> bool:
        self.acked.append(event.message.offset)
        return True


class FakeWarehouse:
    def __init__(self) -> None:
        self.restores = 0

    def restored(self) -> Restored:
        self.restores += 1
        return Restored(Resolver(resolver_config(SETTINGS)), 0, frozenset())


def _events(count: int) -> list[Interaction]:
    traffic = simulated(count * 3, seed=5, offset=0, base_time_ms=recent_base_ms())
    unique: dict[str, Interaction] = {}
    for event in parsed_interactions(traffic.records, SETTINGS, NOW_MS):
        unique.setdefault(event.event_id, event)
    return list(unique.values())[:count]


def _message(offset: int, events: list[Interaction], partition: int = 0) -> Any:
    value = encode_batch(events)
    tp = TP(SETTINGS.resolve_topic, partition)
    return SimpleNamespace(message=SimpleNamespace(value=value, headers=signature_headers(SETTINGS.signing_key, value),
                                                   offset=offset, tp=tp, topic=tp.topic, partition=partition))


def _stage(customers: FakeTopic | None = None) -> tuple[FrontStage, dict[str, FakeTopic], FakeStream, Any]:
    feed = SimpleNamespace(ready=asyncio.Event(), replica=IdentityReplica())
    feed.ready.set()
    topics = {"customers": customers or FakeTopic(), "identity": FakeTopic(), "deadletter": FakeTopic()}

    async def caught_up(settings: Any) -> None:
        return None

    stage = FrontStage(SETTINGS, FakeWarehouse(), feed, topics, SimpleNamespace(resolved=0, duplicate_conflict=0),
                       clock=lambda: NOW_MS / 1000, caught_up=caught_up)  # type: ignore[arg-type]
    stream = FakeStream()
    stage.stream = stream
    return stage, topics, stream, feed


def _routed_ids(topic: FakeTopic) -> list[str]:
    return [r.event.event_id for _, value in topic.sent for r in decode_routed(value)]


def _answer(feed: Any, events: list[Interaction], version: int) -> None:
    feed.replica.apply(IdentityChanges(version, sets={e.identifiers: (f"c_{e.event_id}", (0, "")) for e in events}))


def test_known_events_go_at_once_and_a_message_waits_for_its_held_events() -> None:
    async def scenario() -> None:
        stage, topics, stream, feed = _stage()
        known, unknown = _events(6)[:3], _events(6)[3:]
        _answer(feed, known, 1)
        await stage.handle([_message(10, known), _message(11, [unknown[0], known[0]]), _message(12, unknown[1:])])
        assert sorted(_routed_ids(topics["customers"])) == sorted(e.event_id for e in known)
        assert stream.acked == [10]  # 11 and 12 hold events the owner must answer
        asked = [r.event_id for _, value in topics["identity"].sent for r in decode_requests(value)]
        assert sorted(asked) == sorted(e.event_id for e in unknown)
        assert metrics.FRONT_HELD._value.get() == len(unknown)
        await stage.release()
        assert stream.acked == [10]  # the replica has applied nothing new
        _answer(feed, unknown, 2)
        await stage.release()
        assert sorted(stream.acked) == [10, 11, 12]
        assert metrics.FRONT_HELD._value.get() == 0
        assert sorted(_routed_ids(topics["customers"])) == sorted(e.event_id for e in [*known, *unknown])

    asyncio.run(scenario())


def test_a_message_done_waits_for_a_held_one_before_it_in_its_partition_not_in_another() -> None:
    """Faust commits the first run of acknowledged offsets without checking where it starts when it knows no
    committed offset; acknowledged past a held message, a rebalance would lose it (the two-worker takeover did)."""
    async def scenario() -> None:
        stage, topics, stream, feed = _stage()
        events = _events(12)
        known = events[:2]
        unknown = [e for e in events[2:] if e.identifiers not in {k.identifiers for k in known}][:2]
        _answer(feed, known, 1)
        await stage.handle([_message(10, [unknown[0]]), _message(11, [known[0]]),
                            _message(7, [known[1]], partition=1), _message(12, [unknown[1]])])
        assert sorted(_routed_ids(topics["customers"])) == sorted(e.event_id for e in known)
        assert stream.acked == [7]  # 11 is routed, but 10 before it still waits for the owner
        _answer(feed, unknown[:1], 2)
        await stage.release()
        assert stream.acked == [7, 10, 11]  # 12 still waits
        _answer(feed, unknown[1:], 3)
        await stage.release()
        assert stream.acked == [7, 10, 11, 12]

    asyncio.run(scenario())


def test_a_failed_send_rebuilds_the_front_and_the_retry_loses_nothing() -> None:
    async def scenario() -> None:
        stage, topics, stream, feed = _stage(customers=FakeTopic(fail_times=1))
        events = _events(4)
        _answer(feed, events, 1)
        batch = [_message(20, events[:2]), _message(21, events[2:])]
        with pytest.raises(ConnectionError):
            await stage.handle(batch)
        assert stream.acked == []
        await stage.handle(batch)  # the runner's retry: the same messages, a front rebuilt from the warehouse
        assert sorted(_routed_ids(topics["customers"])) == sorted(e.event_id for e in events)
        assert sorted(stream.acked) == [20, 21]
        assert stage.warehouse.restores == 2  # type: ignore[attr-defined]

    asyncio.run(scenario())


def test_a_revoked_partitions_held_messages_are_left_to_their_next_holder_and_the_rest_admitted_again() -> None:
    async def scenario() -> None:
        stage, topics, stream, feed = _stage()
        events = _events(4)
        kept, revoked = _message(30, events[:2], partition=0), _message(31, events[2:], partition=1)
        await stage.handle([kept, revoked])
        assert stream.acked == []
        stage.invalidate({revoked.message.tp})
        assert stage.redo == [kept]
        stage.assigned({kept.message.tp})  # the rebalance ends
        _answer(feed, events, 1)
        await stage.handle([])
        await stage.release()
        assert stream.acked == [30]
        assert sorted(_routed_ids(topics["customers"])) == sorted(e.event_id for e in events[:2])

    asyncio.run(scenario())


@pytest.mark.parametrize("assigned_again", [False, True])
def test_a_batch_taken_before_a_revocation_and_handled_after_it_leaves_the_revoked_partition_alone(
        assigned_again: bool) -> None:
    """The batch waits for the replica while its partition is revoked: its events are the next holder's (which
    reads them again and may route them to another customer), so this front routes and acknowledges none of
    them, unless the partition came back to it. While the rebalance is under way, it waits for its end."""
    async def scenario() -> None:
        stage, topics, stream, feed = _stage()
        feed.ready.clear()
        events = _events(4)
        _answer(feed, events, 1)
        kept, revoked = _message(50, events[:2], partition=0), _message(51, events[2:], partition=1)
        handling = asyncio.ensure_future(stage.handle([kept, revoked]))
        await asyncio.sleep(0)
        stage.invalidate({kept.message.tp, revoked.message.tp})
        feed.ready.set()
        await asyncio.sleep(0.01)
        assert not handling.done() and topics["customers"].sent == []  # the rebalance has not ended
        stage.invalidate()
        stage.assigned({kept.message.tp, revoked.message.tp} if assigned_again else {kept.message.tp})
        await handling
        both = sorted(e.event_id for e in events)
        if assigned_again:
            assert sorted(_routed_ids(topics["customers"])) == both and stream.acked == [50, 51]
        else:
            assert sorted(_routed_ids(topics["customers"])) == sorted(e.event_id for e in events[:2])
            assert stream.acked == [50]

    asyncio.run(scenario())


@pytest.mark.parametrize("layout", ["same message", "next message", "same offset, other partition"])
def test_a_second_copy_is_a_duplicate_wherever_it_sits_never_a_replay(layout: str) -> None:
    """Every event of a message has its own position: a copy in the same message, or at the same offset of
    another partition, is a duplicate routed zero times, not a replay routed again."""
    async def scenario() -> None:
        stage, topics, stream, feed = _stage()
        events = _events(3)
        _answer(feed, events, 1)
        first = _message(40, events)
        second = {"same message": _message(40, [*events, events[1]]),
                  "next message": _message(41, [events[1]]),
                  "same offset, other partition": _message(40, [events[1]], partition=1)}[layout]
        batch = [second] if layout == "same message" else [first, second]
        await stage.handle(batch)
        assert sorted(_routed_ids(topics["customers"])) == sorted(e.event_id for e in events)

    asyncio.run(scenario())
