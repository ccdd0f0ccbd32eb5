"""Shared identifiers and placeholders on the production components: a worker on Apache Kafka and a ClickHouse
server, traffic delivered in random order; the grouping in the warehouse, the shared_identifiers rows, the metric
and `cem identity explain`."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from devtools.harness import WorkerProcess, isolated_settings, run_cem, wait_until
from devtools.scrape import metric_value
from devtools.simulate import groups
from devtools.topics import drained, publish
from schemas.codec import encode_json
from sinks.clickhouse import connect
from tests.integration.common import BASE_MS

pytestmark = pytest.mark.integration

KIOSK = "kiosk-lobby-9"
SHARED_EMAIL = "frontdesk@bigstore.com"  # not on any block-list: only its use tells it is shared


def scenario(base_ms: int) -> tuple[list[dict[str, object]], set[frozenset[str]]]:
    """Records and the grouping they must give."""
    records: list[dict[str, object]] = []
    expected: set[frozenset[str]] = set()

    def add(event_id: str, channel: str, offset_s: int, ids: dict[str, str]) -> str:
        records.append({"event_id": event_id, "channel": channel, "type": "login",
                        "occurred_at": base_ms + offset_s * 1000, "identifiers": ids})
        return event_id

    # A kiosk: 80 anonymous visitors, each browsing on their phone then using the kiosk; the kiosk alone, too.
    for i in range(80):
        anon = f"anon-7f{i:03d}"
        expected.add(frozenset({add(f"visit-{i}", "web", i * 10, {"anonymous_id": anon}),
                                add(f"kiosk-{i}", "store", i * 10 + 5, {"anonymous_id": anon, "device_id": KIOSK})}))
    expected.add(frozenset({add(f"kiosk-alone-{i}", "store", 900 + i, {"device_id": KIOSK}) for i in range(3)}))
    # Front-desk staff type their own address for 30 customers, each known by their phone.
    for i in range(30):
        phone = f"+1 415 555 {2000 + i}"
        expected.add(frozenset({add(f"desk-{i}", "store", 1000 + i, {"email": SHARED_EMAIL, "phone": phone}),
                                add(f"call-{i}", "call_center", 1100 + i, {"phone": phone})}))
    # Block-listed placeholders never reach the graph: 20 people each keep their own customer.
    for i in range(20):
        anon = f"anon-5e{i:03d}"
        placeholders = {"email": "noemail@noemail.com", "phone": "(999) 999-9999", "device_id": "ios",
                        "customer_ref": "CRM-0", "social_handle": "twitter:null"}
        expected.add(frozenset({add(f"form-{i}", "web", 1200 + i, {"anonymous_id": anon, **placeholders}),
                                add(f"back-{i}", "web", 1300 + i, {"anonymous_id": anon})}))
    return records, expected


def test_kiosk_and_placeholders_group_exactly_and_are_explained(kafka, clickhouse, tmp_path: Path) -> None:
    settings = isolated_settings(kafka.bootstrap, clickhouse.url, "shared")
    records, expected = scenario(BASE_MS + 10_800_000)
    random.Random(7).shuffle(records)
    messages = [(settings.raw_topic(str(r["channel"])), None, encode_json(r)) for r in records]
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        publish(settings, messages[: len(messages) // 2])
        publish(settings, messages[len(messages) // 2:])
        wait_until(lambda: drained(settings), 120, "not drained", workers=[worker], settings=settings)
        metrics = worker.metrics_text()
        explained_kiosk = run_cem("identity", "explain", "device_id", KIOSK, env=settings.as_env())
        explained_visitor = run_cem("identity", "explain", "anonymous_id", "anon-7f003", env=settings.as_env())
        explained_email = run_cem("identity", "explain", "email", " FrontDesk@BigStore.com ", env=settings.as_env())

    db = connect(settings.clickhouse_url)
    name = db.database
    assert db.query(f"SELECT count(), uniqExact(event_id) FROM {name}.interactions") == [(len(records),) * 2]
    assert groups(db.query(f"SELECT event_id, customer_id FROM {name}.interactions")) == expected
    shared = db.query(f"SELECT id_type, value, reason, distinct_count FROM {name}.shared_identifiers "
                      "ORDER BY id_type, value")
    assert shared == [("device_id", KIOSK, "limit:anonymous_id", 51), ("email", SHARED_EMAIL, "limit:phone", 6)]
    assert db.query(f"SELECT id_type, customer_id, rule FROM {name}.identities WHERE value IN "
                    f"('{KIOSK}', '{SHARED_EMAIL}') ORDER BY id_type") == [("device_id", "", "shared"),
                                                                             ("email", "", "shared")]
    placeholders = db.query(f"SELECT count() FROM {name}.identities WHERE value IN ('noemail@noemail.com', "
                            "'+19999999999', 'ios', 'CRM-0', 'twitter:null')")
    assert placeholders == [(0,)]
    assert metric_value(metrics, "cem_identifiers_shared_total", {"id_type": "device_id"}) == 1
    assert metric_value(metrics, "cem_identifiers_shared_total", {"id_type": "email"}) == 1

    assert explained_kiosk.returncode == 0, explained_kiosk.stderr
    assert f"device_id {KIOSK} is shared: it links and attributes nobody" in explained_kiosk.stdout
    assert "seen with 51 anonymous_id values (one customer may hold 50)" in explained_kiosk.stdout
    assert "identifier sets of 81 customers" in explained_kiosk.stdout
    assert explained_visitor.returncode == 0, explained_visitor.stderr
    assert "Shared identifiers (1): on this customer's events, but linking nobody" in explained_visitor.stdout
    assert KIOSK in explained_visitor.stdout
    assert f"email {SHARED_EMAIL} is shared" in explained_email.stdout
    assert "seen with 6 phone values (one customer may hold 5)" in explained_email.stdout
