"""The messages between the partitioned design's stages (docs/scaling.md): a front's lean requests to the graph's
owner, routed events on their way to a customer partition, and a merged customer's hand-off.

Each is JSON (orjson), signed like every internal message (schemas/internal.py) by the adapter that sends it, and
checked field by field when read, so a malformed message is a dead letter with a reason, never an exception deep
in a stage. A hand-off's sessions and journeys travel whole: the receiver folds them in with the single
resolver's merge rules.
"""

from __future__ import annotations

from typing import Any

import orjson

from cem.domain.customer_stage import HandOff
from cem.domain.front import Routed
from cem.domain.identity_owner import IdentityRequest
from cem.domain.journeys import ServiceJourney, Session
from cem.domain.reasons import Reason
from schemas.internal import InternalMessageError, event_from_wire


def _loads(value: bytes | None, what: str) -> Any:
    if not value:
        raise InternalMessageError(Reason.INVALID_INTERNAL_MESSAGE, f"empty {what}")
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InternalMessageError(Reason.INVALID_INTERNAL_MESSAGE, f"{what} is not JSON: {str(exc)[:120]}") from None


def _rows(value: bytes | None, what: str) -> list[Any]:
    rows = _loads(value, what)
    if not isinstance(rows, list):
        raise _bad(f"{what} are a list")
    return rows


def _bad(what: str) -> InternalMessageError:
    return InternalMessageError(Reason.INVALID_INTERNAL_MESSAGE, what)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


# ---- requests to the owner ---------------------------------------------------------------------------------
def encode_requests(requests: list[IdentityRequest]) -> bytes:
    return orjson.dumps([[r.event_id, r.occurred_ms, r.identifiers] for r in requests])


def decode_requests(value: bytes | None) -> list[IdentityRequest]:
    requests = []
    for index, row in enumerate(_rows(value, "identity requests")):
        if not (isinstance(row, list) and len(row) == 3 and isinstance(row[0], str) and row[0] and _is_int(row[1])
                and isinstance(row[2], list) and row[2]
                and all(isinstance(pair, list) and len(pair) == 2 and _strings(pair) for pair in row[2])):
            raise _bad(f"request {index}: [event_id, occurred_ms, [[type, value], ...]] expected")
        requests.append(IdentityRequest(row[0], row[1], tuple(sorted((t, v) for t, v in row[2]))))
    return requests


# ---- routed events ----------------------------------------------------------------------------------------
def encode_routed(routed: list[Routed]) -> bytes:
    return orjson.dumps([[r.event.to_wire(), r.customer_id, r.replay] for r in routed])


def decode_routed(value: bytes | None) -> list[Routed]:
    routed = []
    for index, row in enumerate(_rows(value, "routed events")):
        if not (isinstance(row, list) and len(row) == 3 and isinstance(row[1], str) and row[1]
                and isinstance(row[2], bool)):
            raise _bad(f"routed event {index}: [event, customer_id, replay] expected")
        routed.append(Routed(event_from_wire(index, row[0]), row[1], row[2]))
    return routed


# ---- hand-offs --------------------------------------------------------------------------------------------
def encode_handoff(handoff: HandOff) -> bytes:
    sessions = [[s.session_id, s.customer_id, s.start_ms, s.end_ms, s.events, sorted(s.channels), s.members,
                 None if s.lines is None else [[sid, cid, n] for (sid, cid), n in sorted(s.lines.items())]]
                for s in handoff.sessions]
    journeys = [[j.journey_id, j.issue_ref, j.customer_id, j.events, j.members] for j in handoff.journeys]
    return orjson.dumps({"from": handoff.from_id, "into": handoff.into_id, "version": handoff.version,
                         "sessions": sessions, "journeys": journeys})


def decode_handoff(value: bytes | None) -> HandOff:
    message = _loads(value, "hand-off")
    if not (isinstance(message, dict) and isinstance(message.get("from"), str) and message["from"]
            and isinstance(message.get("into"), str) and message["into"] and _is_int(message.get("version"))
            and isinstance(message.get("sessions"), list) and isinstance(message.get("journeys"), list)):
        raise _bad("a hand-off is {from, into, version, sessions, journeys}")
    sessions = [_session(index, row) for index, row in enumerate(message["sessions"])]
    journeys = [_journey(index, row) for index, row in enumerate(message["journeys"])]
    return HandOff(message["from"], message["into"], sessions, journeys, message["version"])


def _session(index: int, row: Any) -> Session:
    if not (isinstance(row, list) and len(row) in (7, 8) and isinstance(row[0], str) and isinstance(row[1], str)
            and all(_is_int(n) for n in row[2:5]) and row[2] <= row[3] and row[4] > 0
            and _strings(row[5]) and _strings(row[6]) and (len(row) == 7 or _lines(row[7], row[4]))):
        raise _bad(f"session {index}: [id, customer, start_ms, end_ms, events, channels, members, lines] expected")
    lines = None if len(row) == 7 or row[7] is None else {(sid, cid): n for sid, cid, n in row[7]}
    return Session(row[0], row[1], row[2], row[3], row[4], set(row[5]), list(row[6]), lines)


def _lines(lines: Any, events: int) -> bool:
    """None (a session counted as a whole), or [session, customer, events] rows that add up to its events."""
    return lines is None or (isinstance(lines, list) and all(
        isinstance(line, list) and len(line) == 3 and _strings(line[:2]) and _is_int(line[2]) and line[2] > 0
        for line in lines) and sum(line[2] for line in lines) == events)


def _journey(index: int, row: Any) -> ServiceJourney:
    if not (isinstance(row, list) and len(row) == 5 and all(isinstance(x, str) for x in row[:3])
            and isinstance(row[3], dict) and row[3] and _strings(row[4])
            and all(isinstance(v, list) and len(v) == 3 and _is_int(v[0]) and _strings(v[1:])
                    for v in row[3].values())):
        raise _bad(f"journey {index}: [id, issue_ref, customer, {{event_id: [ms, channel, type]}}, members] "
                   "expected")
    events = {event_id: (v[0], v[1], v[2]) for event_id, v in row[3].items()}
    return ServiceJourney(row[0], row[1], row[2], events, list(row[4]))
