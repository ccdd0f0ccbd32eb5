"""`devtools.topics.read_topic`, which every test that reads a topic back relies on, against Apache Kafka: it
returns every record the topic holds when it is called, each partition in order, however short its idle wait
and however many fetches the records take."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cem.kafka import ensure_topics
from devtools.harness import isolated_settings
from devtools.services import KafkaBroker
from devtools.topics import publish, read_topic

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("count", "size"), [(1, 10), (1_500, 40), (24, 200_000)],
                         ids=["one-record", "many-small", "several-fetches"])
def test_every_record_present_is_read_however_short_the_idle_wait(kafka: KafkaBroker, tmp_path: Path,
                                                                  count: int, size: int) -> None:
    settings = isolated_settings(kafka.bootstrap, f"chdb://{tmp_path}/warehouse", f"read{count}")
    asyncio.run(ensure_topics(settings))
    topic = settings.raw_topic("web")
    records = [(topic, f"key{i % 3}".encode(), f"{i:06d}".encode().ljust(size, b".")) for i in range(count)]
    publish(settings, records)
    got = read_topic(settings, topic, idle_seconds=0.0)
    assert sorted(r.value for r in got) == sorted(value for _, _, value in records)
    for key in {key for _, key, _ in records}:  # one key, one partition: read in the order sent
        assert [r.value for r in got if r.key == key] == [value for _, k, value in records if k == key]


def test_an_empty_topic_gives_nothing_after_the_idle_wait(kafka: KafkaBroker, tmp_path: Path) -> None:
    settings = isolated_settings(kafka.bootstrap, f"chdb://{tmp_path}/warehouse", "readempty")
    asyncio.run(ensure_topics(settings))
    assert read_topic(settings, settings.raw_topic("chat"), idle_seconds=0.5) == []
