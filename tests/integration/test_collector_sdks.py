"""`cem collect` with the real tracking SDKs (segment-analytics-python, rudder-sdk-python, posthog) against Apache
Kafka, a real worker and a ClickHouse server: what lands in the warehouse, the three key styles, gzip, the refusal
bodies, and Kafka down (503, the SDKs retry, everything lands exactly once when it is back)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from cem.settings import Settings
from devtools.collector import CollectorProcess, post
from devtools.harness import WorkerProcess, isolated_settings, wait_until
from devtools.scrape import metric_value
from devtools.services import KafkaBroker
from devtools.topics import drained, read_topic
from sinks.clickhouse import connect

pytestmark = pytest.mark.integration

KEYS = "wk-seg=commerce,wk-rud=web,wk-ph=mobile,wk-raw=support,wk-none"


@contextmanager
def running(settings: Settings, tmp_path: Path) -> Iterator[tuple[WorkerProcess, CollectorProcess]]:
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    collector = CollectorProcess(settings, tmp_path / "collector.log")
    try:
        collector.start()
        wait_until(lambda: (collector.status() or {}).get("kafka") == "up", 60, "collector not connected",
                   workers=[collector])
        yield worker, collector
    finally:
        collector.stop()
        worker.stop()


def send_with_every_sdk(url: str, ids: dict[str, str], retries: int = 10) -> None:
    """identify, track, page and screen (PostHog: $set, capture, $pageview, $screen), each SDK's own way."""
    from posthog import Posthog
    from rudderstack.analytics import Client as RudderClient
    from segment.analytics import Client as SegmentClient

    segment = SegmentClient("wk-seg", host=url, max_retries=retries, upload_interval=0.1)
    segment.identify("seg-user", {"email": "Jane.Doe@Example.com", "phone": "+14155550199"},
                     anonymous_id="seg-anon", message_id=ids["seg_identify"])
    segment.track("seg-user", "Order Completed", {"order_total": 12.5, "items": [{"sku": "A"}]},
                  message_id=ids["seg_track"])
    segment.page(anonymous_id="seg-anon", name="Pricing", message_id=ids["seg_page"])
    segment.screen("seg-user", name="Home", message_id=ids["seg_screen"])
    rudder = RudderClient("wk-rud", host=url, max_retries=retries, upload_interval=0.1)  # gzip and Basic auth
    rudder.identify("rud-user", {"email": "rud@example.com"}, message_id=ids["rud_identify"])
    rudder.track("rud-user", "Signed Up", {"plan": "pro"}, message_id=ids["rud_track"])
    rudder.page("rud-user", name="Docs", message_id=ids["rud_page"])
    rudder.screen("rud-user", name="Settings", message_id=ids["rud_screen"])
    posthog = Posthog("wk-ph", host=url, max_retries=retries, flush_interval=0.1)
    posthog.set(distinct_id="ph-user", properties={"email": "ph@example.com"}, uuid=ids["ph_set"])
    posthog.capture("Signed Up", distinct_id="ph-user", properties={"plan": "pro"}, uuid=ids["ph_capture"])
    posthog.capture("$pageview", distinct_id="ph-user", properties={"$current_url": "https://x.example/"},
                    uuid=ids["ph_page"])
    posthog.capture("$screen", distinct_id="ph-user", properties={"$screen_name": "Home"}, uuid=ids["ph_screen"])
    for client in (segment, rudder, posthog):
        client.shutdown()  # sends what is queued, retrying as each SDK does


def sdk_ids() -> dict[str, str]:
    names = [f"{sdk}_{kind}" for sdk in ("seg", "rud") for kind in ("identify", "track", "page", "screen")]
    names += ["ph_set", "ph_capture", "ph_page", "ph_screen"]
    return {name: str(uuid.uuid4()) for name in names}


EXPECTED = {  # name -> (channel, type)
    "seg_identify": ("commerce", "identify"), "seg_track": ("commerce", "order_completed"),
    "seg_page": ("commerce", "page_view"), "seg_screen": ("commerce", "screen_view"),
    "rud_identify": ("web", "identify"), "rud_track": ("web", "signed_up"), "rud_page": ("web", "page_view"),
    "rud_screen": ("web", "screen_view"), "ph_set": ("mobile", "identify"), "ph_capture": ("mobile", "signed_up"),
    "ph_page": ("mobile", "page_view"), "ph_screen": ("mobile", "screen_view"),
}


def landed(settings: Settings) -> list[tuple[Any, ...]]:
    db = connect(settings.clickhouse_url)
    try:
        return db.query(f"SELECT event_id, channel, type, customer_id FROM {db.database}.interactions")
    except Exception:  # the worker has not created its database yet
        return []


def check_sdk_events(settings: Settings, ids: dict[str, str]) -> None:
    db = connect(settings.clickhouse_url)
    rows = {r[0]: r[1:] for r in landed(settings)}
    assert db.query(f"SELECT count(), uniqExact(event_id) FROM {db.database}.interactions") == \
        [(len(ids), len(ids))]
    assert {name: rows[event_id][:2] for name, event_id in ids.items()} == EXPECTED
    customer = {name: rows[event_id][2] for name, event_id in ids.items()}
    for sdk in ("seg", "rud", "ph"):  # one customer per SDK user, three different customers
        assert len({c for name, c in customer.items() if name.startswith(sdk)}) == 1, sdk
    assert len(set(customer.values())) == 3
    identities = {(t, v): c for t, v, c in db.query(
        f"SELECT id_type, value, customer_id FROM {db.database}.identities")}
    assert identities[("email", "jane.doe@example.com")] == customer["seg_identify"]
    assert identities[("phone", "+14155550199")] == customer["seg_identify"]
    assert identities[("anonymous_id", "seg-anon")] == customer["seg_page"]
    assert identities[("customer_ref", "rud-user")] == customer["rud_track"]
    assert identities[("email", "ph@example.com")] == customer["ph_capture"]


def test_sdks_events_land_in_clickhouse(kafka, clickhouse, tmp_path: Path) -> None:
    settings = isolated_settings(kafka.bootstrap, clickhouse.url, "collect", collect_write_keys=KEYS)
    ids = sdk_ids()
    with running(settings, tmp_path) as (worker, collector):
        send_with_every_sdk(collector.url, ids)
        wait_until(lambda: len(landed(settings)) >= len(ids) and drained(settings), 90, "events did not land",
                   workers=[worker, collector])
        status = collector.status() or {}
    check_sdk_events(settings, ids)
    assert status.get("events") == len(ids)
    assert not read_topic(settings, settings.deadletter_topic, idle_seconds=1.0)


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def test_key_styles_gzip_refusals_and_dead_letters(kafka, clickhouse, tmp_path: Path) -> None:
    settings = isolated_settings(kafka.bootstrap, clickhouse.url, "collecthttp", collect_write_keys=KEYS)
    t = "2025-11-14T10:00:00.000Z"

    def message(event_id: str, **extra: Any) -> dict[str, Any]:
        return {"type": "track", "event": "Ticket Opened", "userId": "raw-user", "messageId": event_id,
                "timestamp": t, **extra}

    with running(settings, tmp_path) as (worker, collector):
        url = collector.url
        answers = [
            post(url + "/v1/batch", {"batch": [message("h-body")], "writeKey": "wk-raw", "sentAt": t}),
            post(url + "/v1/batch", {"batch": [message("h-basic-gzip")], "sentAt": t},
                 {"Authorization": basic("wk-raw")}, compress=True),
            # the browser library: one message, text/plain, short path; the path names the type
            post(url + "/v1/p", {**message("h-bearer"), "type": None, "name": "Help"},
                 {"Authorization": "Bearer wk-raw", "Content-Type": "text/plain"}),
            post(url + "/capture/", {"api_key": "wk-raw", "event": "chat started", "distinct_id": "raw-user",
                                     "uuid": "h-posthog", "timestamp": t}),
        ]
        assert [a[0] for a in answers] == [200, 200, 200, 200], answers
        # a message with no channel (key without default, server library) and one that is not an object:
        # dead-lettered with the message as sent; the good one beside them lands
        mixed = post(url + "/v1/batch", {"writeKey": "wk-none", "batch": [
            message("h-nochannel", context={"library": {"name": "analytics-python"}}), "oops",
            message("h-mixed-ok", properties={"channel": "chat"})]})
        assert mixed[0] == 200 and mixed[2]["dead_lettered"] == 2 and mixed[2]["accepted"] == 1
        refused = {
            "bad key": post(url + "/v1/batch", {"batch": [message("h-x1")], "writeKey": "nope"}),
            "no key": post(url + "/v1/batch", {"batch": [message("h-x2")]}),
            "big event": post(url + "/v1/batch", {"batch": [message("h-x3", properties={"b": "x" * 40_000})],
                                                  "writeKey": "wk-raw"}),
            "big batch": post(url + "/v1/batch", {"batch": [message(f"h-x4-{i}", properties={"b": "x" * 20_000})
                                                            for i in range(30)], "writeKey": "wk-raw"}),
            "big gzip": post(url + "/v1/batch", {"batch": [], "writeKey": "wk-raw", "pad": " " * 600_000},
                             compress=True),
            "not json": post(url + "/v1/batch", b"{not json", {"Authorization": basic("wk-raw")}),
        }
        assert {k: (a[0], a[2]["code"]) for k, a in refused.items()} == {
            "bad key": (401, "invalid_write_key"), "no key": (401, "missing_write_key"),
            "big event": (413, "too_large"), "big batch": (413, "too_large"), "big gzip": (413, "too_large"),
            "not json": (400, "malformed_json")}
        for _, _, body in refused.values():
            assert set(body) == {"code", "message", "detail"} and body["message"] == body["detail"]
        wait_until(lambda: len(landed(settings)) >= 5 and drained(settings), 90, "events did not land",
                   workers=[worker, collector])
        metrics = collector.metrics_text()
    assert metric_value(metrics, "cem_collect_requests_total", {"status": "401"}) == 2
    assert metric_value(metrics, "cem_collect_requests_total", {"status": "413"}) == 3
    assert metric_value(metrics, "cem_collect_requests_total", {"status": "200"}) == 5
    assert metric_value(metrics, "cem_collect_events_total", {"channel": "support"}) == 4
    assert metric_value(metrics, "cem_collect_deadletter_total", {"reason": "unknown_channel"}) == 1
    rows = {r[0]: r[1:3] for r in landed(settings)}
    assert rows == {"h-body": ("support", "ticket_opened"), "h-basic-gzip": ("support", "ticket_opened"),
                    "h-bearer": ("support", "page_view"), "h-posthog": ("support", "chat_started"),
                    "h-mixed-ok": ("chat", "ticket_opened")}
    dead = read_topic(settings, settings.deadletter_topic, idle_seconds=1.0)
    assert sorted(d.reason for d in dead) == ["not_an_object", "unknown_channel"]
    assert all(d.headers["cem.source"].startswith("collect#") for d in dead)
    assert b'"h-nochannel"' in next(d.value for d in dead if d.reason == "unknown_channel")


def test_kafka_down_sdks_get_503_and_retry_then_everything_lands_once(clickhouse, tmp_workdir,
                                                                      tmp_path: Path) -> None:
    with KafkaBroker(tmp_workdir("kafka-collect")) as broker:
        settings = isolated_settings(broker.bootstrap, clickhouse.url, "collectdown", collect_write_keys=KEYS,
                                     collect_kafka_timeout_seconds=2.0)
        ids = sdk_ids()
        with running(settings, tmp_path) as (worker, collector):
            broker.kill()
            import threading

            sender = threading.Thread(target=send_with_every_sdk, args=(collector.url, ids, 12), daemon=True)
            sender.start()
            wait_until(lambda: (collector.status() or {}).get("status_503", 0) >= 3, 60,
                       "the SDKs were not answered 503", workers=[collector])
            assert (collector.status() or {}).get("kafka") == "down"
            broker.start()
            sender.join(180)
            assert not sender.is_alive(), "the SDKs did not finish retrying"
            restarted = None
            if not worker.running:  # a broker killed under Faust can end the worker (exit 1): a supervisor restarts it
                restarted = WorkerProcess(settings, tmp_path / "worker-restarted.log").start()
            try:
                wait_until(lambda: len(landed(settings)) >= len(ids) and drained(settings), 120,
                           "events did not land after Kafka came back", workers=[restarted or worker, collector])
            finally:
                if restarted is not None:
                    restarted.stop()
            status = collector.status() or {}
        check_sdk_events(settings, ids)
        assert status.get("status_503", 0) >= 3
