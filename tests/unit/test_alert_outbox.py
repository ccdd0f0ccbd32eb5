"""The alert outbox's metrics: revisions published per rule and state, and the publish lag (the age of the oldest
revision written and not yet on the topic), with a fake producer and a fake warehouse."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from cem import metrics
from cem.domain.alerts import AlertRow
from cem.settings import Settings
from streams.alerts import AlertOutbox, Position

NOW_S = float(int(time.time()))  # the gauge reads the wall clock at scrape


def row(n: int, rule: str = "sla_breach", state: str = "open", raised_s: float = NOW_S - 30) -> AlertRow:
    return AlertRow(f"al_{n}", 100 + n, state, rule, rule, "high", "c_1", f"T{n}", "j_1", "chat", 0, 0,
                    int(raised_s * 1000), "detail")


class FakeProducer:
    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.sent: list[bytes] = []

    async def send(self, topic: str, value: bytes, key: bytes, headers: Any) -> asyncio.Future[None]:
        if self.fail:
            raise ConnectionError("broker away")
        self.sent.append(key)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class Outbox(AlertOutbox):
    def __init__(self, written: list[AlertRow], fail_send: bool = False, fail_tail: bool = False) -> None:
        sink = type("Sink", (), {"unpublished_alerts": lambda _self, revision, alert_id: [
            r for r in written if (r.revision, r.alert_id) > (revision, alert_id)]})()
        super().__init__(Settings(), sink)
        self.fake = FakeProducer(fail_send)
        self.fail_tail = fail_tail

    async def producer(self) -> Any:
        return self.fake

    async def read_tail(self) -> Position:
        if self.fail_tail:
            raise ConnectionError("broker away")
        return 0, ""


def published(rule: str, state: str) -> float:
    return metrics.REGISTRY.get_sample_value("cem_alerts_published_total", {"rule": rule, "state": state}) or 0.0


def test_published_revisions_are_counted_per_rule_and_state_and_nothing_waits_after() -> None:
    rows = [row(1), row(2, state="withdrawn"), row(3, rule="detractor")]
    outbox = Outbox(rows)
    outbox.published = (0, "")
    before = {key: published(*key) for key in [("sla_breach", "open"), ("sla_breach", "withdrawn"),
                                                ("detractor", "open")]}
    assert asyncio.run(outbox.publish(rows)) == 3
    assert {key: published(*key) - n for key, n in before.items()} == {key: 1.0 for key in before}
    assert outbox.lag_seconds(NOW_S) == 0.0


@pytest.mark.parametrize("failure", ["send", "tail"])
def test_a_failed_publish_shows_the_oldest_waiting_revision_until_a_retry_sends_it(failure: str) -> None:
    rows = [row(1, raised_s=NOW_S - 30), row(2, raised_s=NOW_S - 90)]
    later = row(3, raised_s=NOW_S - 5)
    outbox = Outbox([*rows, later], fail_send=failure == "send", fail_tail=failure == "tail")
    with pytest.raises(ConnectionError):
        asyncio.run(outbox.publish(rows))
    assert outbox.lag_seconds(NOW_S) == pytest.approx(90.0)
    assert metrics.ALERT_PUBLISH_LAG.collect()[0].samples[0].value > 80  # the gauge reads the outbox at scrape
    outbox.fake.fail = outbox.fail_tail = False
    assert asyncio.run(outbox.publish([later])) == 3  # the retry reads the tail: the earlier revisions go too
    assert outbox.fake.sent == [b"al_1", b"al_2", b"al_3"]
    assert outbox.lag_seconds(NOW_S) == 0.0
