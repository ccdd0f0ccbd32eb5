"""schemas/split_wire.py: requests, routed events and hand-offs survive the wire whole (the partition model sends
every message through it), and a malformed message is refused with the reason of every internal message."""

from __future__ import annotations

import orjson
import pytest

from cem.domain.customer_stage import HandOff
from cem.domain.front import Routed
from cem.domain.identity_owner import IdentityRequest
from cem.domain.journeys import ServiceJourney, Session
from cem.domain.reasons import Reason
from schemas.internal import InternalMessageError
from schemas.split_wire import (
    decode_handoff,
    decode_requests,
    decode_routed,
    encode_handoff,
    encode_requests,
    encode_routed,
)
from tests.unit.factories import NOW_MS, event

EMAIL, PHONE = ("email", "ana@example.com"), ("phone", "+15550100")


def test_requests_routed_events_and_hand_offs_come_back_equal() -> None:
    requests = [IdentityRequest("e1", NOW_MS, (EMAIL, PHONE)), IdentityRequest("e2", NOW_MS - 5, (PHONE,))]
    assert decode_requests(encode_requests(requests)) == requests
    routed = [Routed(event("e1", NOW_MS, [EMAIL], channel="chat", type="chat_message", issue_ref="7"), "c1"),
              Routed(event("e2", NOW_MS, [PHONE]), "c2", replay=True)]
    assert decode_routed(encode_routed(routed)) == routed
    handoff = HandOff("a", "b", [Session("s1", "a", NOW_MS, NOW_MS + 60_000, 3, {"web", "mobile"}, ["s0"])],
                      [ServiceJourney("j1", "7", "a", {"e1": (NOW_MS, "chat", "chat_message")}, ["j0"])], 42)
    assert decode_handoff(encode_handoff(handoff)) == handoff
    assert decode_handoff(encode_handoff(handoff)).sessions[0].lines is None


def test_a_session_counted_by_line_keeps_its_lines_across_the_wire() -> None:
    lines = {("s1", "a"): 2, ("s0", "z"): 1}
    handoff = HandOff("a", "b", [Session("s1", "a", NOW_MS, NOW_MS + 60_000, 3, {"web"}, ["s0"], dict(lines))], [], 42)
    assert decode_handoff(encode_handoff(handoff)).sessions[0].lines == lines


@pytest.mark.parametrize(("decode", "value", "problem"), [
    (decode_requests, b"", "empty identity requests"),
    (decode_requests, b"{", "not JSON"),
    (decode_requests, orjson.dumps([["e1", NOW_MS, []]]), "request 0"),
    (decode_requests, orjson.dumps([["e1", "soon", [["email", "a"]]]]), "request 0"),
    (decode_routed, orjson.dumps([[["e1"], "c1", False]]), "event 0"),
    (decode_routed, orjson.dumps([[event("e1", NOW_MS, [EMAIL]).to_wire(), "", False]]), "routed event 0"),
    (decode_handoff, orjson.dumps({"from": "a", "into": "b", "version": 1, "sessions": [], "journeys": [],
                                   "extra": 1} | {"version": "1"}), "a hand-off is"),
    (decode_handoff, orjson.dumps({"from": "a", "into": "b", "version": 1,
                                   "sessions": [["s1", "a", 5, 4, 1, ["web"], []]], "journeys": []}), "session 0"),
    (decode_handoff, orjson.dumps({"from": "a", "into": "b", "version": 1, "sessions": [],
                                   "journeys": [["j1", "7", "a", {}, []]]}), "journey 0"),
    (decode_handoff, orjson.dumps({"from": "a", "into": "b", "version": 1,
                                   "sessions": [["s1", "a", 4, 5, 3, ["web"], [], [["s1", "a", 2]]]], "journeys": []}),
     "session 0"),  # lines that do not add up to the session's events
])
def test_a_malformed_message_is_refused_with_its_reason(decode, value: bytes, problem: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InternalMessageError) as refused:
        decode(value)
    assert refused.value.reason == Reason.INVALID_INTERNAL_MESSAGE and problem in str(refused.value)
