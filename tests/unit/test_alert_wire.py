"""The alert wire: an alert revision round-trips as JSON and as Avro with the kept schema; actions are checked."""

from __future__ import annotations

import orjson
import pytest

from cem.domain.alerts import AlertRow
from schemas.alerts import InvalidAction, decode_alert, encode_action, encode_alert, parse_action

ROW = AlertRow("al_1", 1_700_000_000_000_123, "open", "sla_breach", "sla_breach", "high", "c_9", "T-7", "j_1",
               "chat", 1_700_000_000_000, 1_700_000_100_000, 1_700_000_200_000, "unresolved 8 h after",
               ("e1", "e2"))


@pytest.mark.parametrize("fmt", ["json", "avro"])
def test_an_alert_round_trips_in_either_format(fmt: str) -> None:
    value, headers = encode_alert(ROW, fmt)
    assert decode_alert(value, headers) == ROW.as_record()
    assert (value.startswith(b"{")) == (fmt == "json")


def test_avro_refuses_a_state_outside_the_schema() -> None:
    from dataclasses import replace

    with pytest.raises(ValueError):
        encode_alert(replace(ROW, state="closed"), "avro")


GOOD = {"action_id": "a1", "alert_id": "al_1", "action": "ack", "actor": "agent-7", "note": "on it", "at_ms": 5}


def test_a_valid_action_is_accepted_and_a_note_is_optional() -> None:
    assert parse_action(encode_action(GOOD)) == GOOD
    without_note = {k: v for k, v in GOOD.items() if k != "note"}
    assert parse_action(orjson.dumps(without_note))["note"] == ""


@pytest.mark.parametrize(("change", "message"), [
    ({"action": "close"}, "action must be one of"),
    ({"action_id": ""}, "action_id must be a string"),
    ({"alert_id": 7}, "alert_id must be a string"),
    ({"actor": "x" * 201}, "actor must be a string"),
    ({"at_ms": "yesterday"}, "at_ms must be a positive integer"),
    ({"at_ms": True}, "at_ms must be a positive integer"),
    ({"note": ["x"]}, "note must be a string"),
])
def test_a_malformed_action_is_refused_with_the_reason(change: dict, message: str) -> None:
    with pytest.raises(InvalidAction, match=message):
        parse_action(orjson.dumps({**GOOD, **change}))


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1]", None])
def test_an_action_that_is_not_a_json_object_is_refused(raw: bytes | None) -> None:
    with pytest.raises(InvalidAction):
        parse_action(raw)
