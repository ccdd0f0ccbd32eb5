"""A stage's batch is acknowledged only once it is done: failures are retried, a stop never lets an unfinished
batch through, and the ingest stage counts and forwards a batch only once everything is on the broker."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from cem.settings import Settings
from schemas.codec import encode_json
from schemas.internal import decode_resolve_message, verify
from streams import ingest
from streams.batches import EXIT_UNFINISHED_BATCH, BatchRunner, Stopping, request_stop
from streams.ingest import IngestStage
from tests.unit.factories import NOW_MS


def runner(exits: list[int], grace: float = 0.3) -> BatchRunner:
    return BatchRunner("test", threading.Event(), grace_seconds=grace, retry_max_seconds=0.01, exit=exits.append)


def test_a_failing_batch_is_retried_until_it_succeeds() -> None:
    attempts: list[int] = []

    async def handle(batch: list[int]) -> None:
        attempts.append(len(batch))
        if len(attempts) < 4:
            raise ConnectionError("broker away")

    exits: list[int] = []
    asyncio.run(runner(exits).run(handle, [1, 2, 3]))
    assert attempts == [3, 3, 3, 3] and exits == []


@pytest.mark.parametrize("finishes_in_grace", [True, False])
def test_a_stop_mid_batch_lets_it_finish_or_exits_without_acknowledging(finishes_in_grace: bool) -> None:
    exits: list[int] = []
    stage = runner(exits, grace=0.3)
    finished = asyncio.Event()

    async def handle(batch: list[int]) -> None:
        await asyncio.sleep(0.1 if finishes_in_grace else 5)
        finished.set()

    async def scenario() -> bool:
        task = asyncio.ensure_future(stage.run(handle, [1]))
        await asyncio.sleep(0.02)
        task.cancel()  # what Faust does to an agent when the worker stops
        with pytest.raises(asyncio.CancelledError):
            await task
        return finished.is_set()

    assert asyncio.run(scenario()) is finishes_in_grace
    assert exits == ([] if finishes_in_grace else [EXIT_UNFINISHED_BATCH])
    assert stage.stopping.is_set()


def test_a_batch_that_gives_up_because_the_worker_stops_is_never_reported_done() -> None:
    exits: list[int] = []
    stage = runner(exits)

    async def handle(batch: list[int]) -> None:
        raise Stopping()

    async def scenario() -> None:
        with pytest.raises(Stopping):
            await stage.run(handle, [1])

    asyncio.run(scenario())
    assert exits == [EXIT_UNFINISHED_BATCH]


# ---- the ingest stage with an in-memory broker ----------------------------------------------------------
@dataclass
class FakeMessage:
    topic: str
    partition: int
    offset: int
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass
class FakeEvent:
    message: FakeMessage


@dataclass
class FakeTopic:
    """The `send` of a Faust topic: returns a future the broker completes (or fails)."""

    fail_times: int = 0
    sent: list[tuple[bytes, bytes, Any]] = field(default_factory=list)

    async def send(self, key: bytes, value: bytes, headers: Any = None) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail_times:
            self.fail_times -= 1
            future.set_exception(ConnectionError("not delivered"))
        else:
            self.sent.append((key, value, headers))
            future.set_result(None)
        return future


def raw(offset: int, record: dict[str, Any] | bytes) -> FakeEvent:
    value = record if isinstance(record, bytes) else encode_json(record)
    return FakeEvent(FakeMessage("cem.raw.web", 0, offset, value))


def good(event_id: str) -> dict[str, Any]:
    return {"event_id": event_id, "type": "page_view", "occurred_at": NOW_MS,
            "identifiers": {"email": f"{event_id}@example.com"}}


def stage(resolve: FakeTopic, deadletter: FakeTopic) -> IngestStage:
    return IngestStage(Settings(), resolve, deadletter, clock=lambda: NOW_MS / 1000)


@pytest.mark.parametrize("failing", ["resolve", "deadletter"])
def test_an_ingest_batch_whose_send_fails_is_not_counted_and_succeeds_when_retried(failing: str) -> None:
    resolve, deadletter = FakeTopic(), FakeTopic()
    (resolve if failing == "resolve" else deadletter).fail_times = 1
    ingest_stage = stage(resolve, deadletter)
    batch = [raw(0, good("a")), raw(1, b"{not json"), raw(2, good("b"))]
    with pytest.raises(ConnectionError):
        asyncio.run(ingest_stage.handle(batch))
    assert (ingest_stage.status.consumed, ingest_stage.status.deadlettered) == (0, 0)
    asyncio.run(ingest_stage.handle(batch))
    assert (ingest_stage.status.consumed, ingest_stage.status.deadlettered) == (3, 1)
    key, payload, headers = resolve.sent[-1]
    verify(Settings().signing_key, payload, headers)
    assert [e.event_id for e in decode_resolve_message(payload)] == ["a", "b"]
    assert dict(deadletter.sent[-1][2])["cem.reason"] == b"malformed_json"


def test_a_parser_fault_is_retried_then_dead_lettered_as_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real_parse = ingest.Ingestor.parse

    def flaky(self: ingest.Ingestor, raw_value: bytes | None, channel: str | None, now_ms: int) -> Any:
        calls.append(raw_value or b"")
        if raw_value and b"cursed" in raw_value:
            raise RuntimeError("parser fault")
        if raw_value and b"flaky" in raw_value and calls.count(raw_value) < 2:
            raise RuntimeError("passing fault")
        return real_parse(self, raw_value, channel, now_ms)

    monkeypatch.setattr(ingest.Ingestor, "parse", flaky)
    monkeypatch.setattr(ingest.asyncio, "sleep", _no_sleep)
    resolve, deadletter = FakeTopic(), FakeTopic()
    ingest_stage = stage(resolve, deadletter)
    asyncio.run(ingest_stage.handle([raw(0, good("flaky")), raw(1, good("cursed")), raw(2, good("plain"))]))
    forwarded = [e.event_id for _, payload, _ in resolve.sent for e in decode_resolve_message(payload)]
    assert forwarded == ["flaky", "plain"]
    assert [dict(h)["cem.reason"] for _, _, h in deadletter.sent] == [b"internal_error"]
    assert orjson.loads(deadletter.sent[0][1])["event_id"] == "cursed"


async def _no_sleep(seconds: float) -> None:
    return None


def test_a_stop_request_ends_a_batch_stuck_in_a_call_that_never_returns() -> None:
    """SIGTERM sets `stopping` before Faust cancels anything (its consumer first waits for every batch in flight
    to be acknowledged): a batch hanging on the broker must be given up, not waited for."""
    exits: list[int] = []
    stage = runner(exits, grace=0.2)

    async def handle(batch: list[int]) -> None:
        await asyncio.Event().wait()  # a send whose delivery never comes

    async def scenario() -> None:
        asyncio.get_running_loop().call_later(0.1, stage.stopping.set)
        with pytest.raises(Stopping):
            await stage.run(handle, [1])

    asyncio.run(scenario())
    assert exits == [EXIT_UNFINISHED_BATCH]


def test_a_stop_request_exits_whatever_still_runs_after_its_deadline() -> None:
    exits: list[int] = []
    stopping = threading.Event()
    timer = request_stop(stopping, 0.05, exit=exits.append)
    timer.join(5)
    assert stopping.is_set() and exits == [EXIT_UNFINISHED_BATCH]
