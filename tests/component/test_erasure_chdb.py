"""Erasure on the embedded warehouse (chdb), through the worker's resolver service: the production writer, the
production erase(), then a search of every table, view and mutation text for anything left of the person."""

from __future__ import annotations

import io
from collections.abc import Callable
from contextlib import redirect_stdout
from dataclasses import replace
from pathlib import Path

from cem.domain.keyed import key_bytes, keyed_hash
from cem.domain.model import Interaction
from cem.report import print_report
from cem.service.resolver_service import ResolverService
from cem.settings import Settings
from schemas.codec import encode_json
from sinks.erasure import ErasureOutcome
from sinks.warehouse import Warehouse
from streams.app import Ingestor
from tests.integration import erasure_scenario as jane
from tests.integration.common import BASE_MS

SECRET = "chdb-test-secret"


def settings_for(path: Path) -> Settings:
    return Settings.from_env({}, clickhouse_url=f"chdb://{path}/warehouse?database=erasure",
                             identifier_limits="phone=1", secret_key=SECRET, state_dir=str(path / "state"))


def interactions(settings: Settings, items: list[tuple[str, dict]]) -> list[Interaction]:
    ingestor = Ingestor(settings)
    parsed = [ingestor.parse(encode_json(body), channel, BASE_MS + 86_400_000) for channel, body in items]
    assert all(isinstance(p, Interaction) for p in parsed), parsed
    return parsed  # type: ignore[return-value]


def forget(sink: ResolverService, id_type: str, value: str, force: bool = False) -> ErasureOutcome:
    message = {"control": "forget", "request_id": f"r-{id_type}-{force}", "id_type": id_type,
               "value_key": keyed_hash(key_bytes(SECRET), id_type, value), "requested_ms": 1, "force": force}
    outcome = sink.apply_control(message)
    assert outcome is not None
    return outcome


def connection(service: ResolverService) -> Warehouse:
    """The service's own connection: chdb serves one data directory per process."""
    assert service.warehouse is not None
    return service.warehouse


def rows(warehouse: Warehouse, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    return warehouse.query(sql.format(db=warehouse.database))


def test_forget_leaves_nothing_of_her_on_chdb(tmp_path: Path, new_service: Callable[..., ResolverService]) -> None:
    settings = settings_for(tmp_path)
    sink = new_service(settings)
    sink.process_and_write(interactions(settings, jane.records(BASE_MS)))
    db = connection(sink)
    before = jane.find(jane.warehouse_texts(db), jane.needles())
    assert any(jane.EMAIL in hit for hit in before) and any(jane.TEXTS[0].lower() in hit for hit in before)
    jane_id = dict(rows(db, "SELECT event_id, customer_id FROM {db}.interactions"))["j1"]
    bob_id = dict(rows(db, "SELECT event_id, customer_id FROM {db}.interactions"))["b1"]

    # The phone that went unlinked at the limit still finds her.
    outcome = forget(sink, "phone", jane.PHONE)
    assert outcome.status == "applied" and outcome.customers_erased == 1
    assert outcome.events_anonymised == 5 and outcome.identifiers_removed == 5

    texts = list(jane.warehouse_texts(db))
    assert list(jane.file_texts(tmp_path))  # the mutation files are searched too
    assert jane.find([*texts, *jane.file_texts(tmp_path)], jane.needles()) == []
    # Her customer id, a pseudonym, is named by the mutations that erased her rows and nowhere else.
    assert jane.find([t for t in texts if not t[0].startswith("system.")], [jane_id]) == []
    by_event = dict(rows(db, "SELECT event_id, customer_id FROM {db}.interactions"))
    assert {by_event[e] for e in ("j1", "j2", "j3", "j4", "b2")} == {"forgotten"}
    assert by_event["b1"] == by_event["b3"] == bob_id  # Bob keeps his other events
    assert rows(db, "SELECT count(), uniqExact(event_id) FROM {db}.interactions") == [(13, 13)]
    assert rows(db, "SELECT text FROM {db}.interactions WHERE event_id = 'k1'") == [("hello from kate",)]
    # Her texts' cues quote her words ("cancel", "address"): gone with the texts; the labels stay.
    assert rows(db, "SELECT countIf(notEmpty(text_cues)), countIf(actionability != '') FROM {db}.interactions "
                    "WHERE customer_id = 'forgotten'") == [(0, 4)]
    assert rows(db, "SELECT customer_id FROM {db}.identities WHERE value = 'CRM-BOB-1'") == [(bob_id,)]
    assert rows(db, "SELECT customer_id FROM {db}.journeys WHERE issue_ref = 'CASE-1042'") == [("forgotten",)]
    # Delivered again (at-least-once): answered from the audit row, not applied twice.
    assert forget(sink, "phone", jane.PHONE) == replace(outcome, carriers=0)
    audit = rows(db, "SELECT id_type, value_key, status, customers_erased FROM {db}.erasure_audit")
    assert audit == [("phone", keyed_hash(key_bytes(SECRET), "phone", jane.PHONE), "applied", 1)]

    # The report counts her anonymised interactions, not `forgotten` as a customer.
    report = io.StringIO()
    with redirect_stdout(report):
        print_report(db)
    overview = report.getvalue().split("Overview")[1].splitlines()[3].split()
    live = rows(db, "SELECT uniqExact(customer_id) FROM {db}.interactions WHERE customer_id != 'forgotten'")
    assert int(overview[0]) == 13 and int(overview[2]) == live[0][0] == 7  # Bob, Kate, five placeholder people

    # A restart restores nothing of her: her email makes a brand-new customer, held by one set only.
    sink.shutdown()  # the worker process ends
    restarted = new_service(settings)
    restarted.process_and_write(interactions(settings, [
        ("chat", {"event_id": "j9", "channel": "chat", "type": "chat_message", "occurred_at": BASE_MS + 900_000,
                  "identifiers": {"email": jane.EMAIL}})]))
    db = connection(restarted)
    new_id = dict(rows(db, "SELECT event_id, customer_id FROM {db}.interactions"))["j9"]
    assert new_id not in (jane_id, "forgotten", bob_id)
    holders = rows(db, "SELECT set_customer_id FROM {db}.set_resolution AS r ANY INNER JOIN {db}.identity_sets "
                       f"USING identity_key WHERE has(id_values, '{jane.EMAIL}')")
    assert holders == [(new_id,)]
    assert rows(db, f"SELECT customer_id FROM {{db}}.identities WHERE value = '{jane.EMAIL}'") == [(new_id,)]

    # A shared placeholder is refused without --force, erased with it.
    refused = forget(restarted, "email", jane.PLACEHOLDER)
    assert refused.status == "refused" and "--force" in refused.reason
    assert len(rows(db, "SELECT event_id FROM {db}.interactions WHERE customer_id = 'forgotten'")) == 5
    forced = forget(restarted, "email", jane.PLACEHOLDER, force=True)
    assert forced.status == "applied" and forced.events_anonymised == jane.PLACEHOLDER_PEOPLE
    left = [*jane.warehouse_texts(db), *jane.file_texts(tmp_path)]
    assert jane.find(left, [jane.PLACEHOLDER, "placeholder person"]) == []
    statuses = rows(db, "SELECT status, forced FROM {db}.erasure_audit ORDER BY completed_ms, status")
    assert sorted(statuses) == [("applied", 0), ("applied", 1), ("refused", 0)]
