"""`cem publish` on real files (cem.publish): every bad line named with its number and its fault, nothing published
by default when a line is bad, the valid ones with --skip-invalid, and an exit code that is never 0 when a record
was left out. The broker is a fake of cem.kafka.produce; publishing for real is in the integration tests."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from cem import publish
from cem.settings import CHANNELS, Settings
from streams.ingest import Ingestor

SETTINGS = Settings(topic_prefix="acme")
NOW_MS = 1_764_000_000_000
GOOD = {"event_id": "e1", "type": "chat_message", "occurred_at": "2025-11-24T16:00:00Z",
        "identifiers": {"email": "jane@example.com"}}


def line(**fields: Any) -> bytes:
    return orjson.dumps({**GOOD, **fields})


def without(name: str) -> bytes:
    return orjson.dumps({k: v for k, v in GOOD.items() if k != name})


def recorded(topic: str, value: bytes, key: bytes | None = None) -> bytes:
    return orjson.dumps({"topic": topic, "key": base64.b64encode(key).decode() if key else None,
                         "value": base64.b64encode(value).decode()})


def parse(lines: list[bytes], channel: str | None = None) -> publish.Parsed:
    return publish.parse_lines(SETTINGS, lines, channel, Ingestor(SETTINGS).parse, NOW_MS)


class FakeBroker:
    def __init__(self, fail: Exception | None = None) -> None:
        self.sent: list[tuple[Any, ...]] = []
        self.fail = fail

    async def produce(self, settings: Settings, records: list[tuple[Any, ...]],
                      on_acknowledged: Callable[[int], None] | None = None) -> None:
        if self.fail:
            raise self.fail
        self.sent.extend(records)
        for _ in records:
            if on_acknowledged is not None:
                on_acknowledged(1)


def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: bytes, *, channel: str | None = None,
        skip_invalid: bool = False, broker: FakeBroker | None = None) -> tuple[int, list[tuple[Any, ...]], str]:
    broker = broker or FakeBroker()
    monkeypatch.setattr(publish, "produce", broker.produce)
    path = tmp_path / "events.jsonl"
    path.write_bytes(content)
    err = io.StringIO()
    code = publish.publish_file(SETTINGS, path, channel, skip_invalid, err=err)
    return code, broker.sent, err.getvalue()


@pytest.mark.parametrize("channel", ["web", "call_center", "survey"])
def test_an_event_goes_to_the_topic_of_its_channel_as_written(channel: str) -> None:
    raw = line(channel=channel)
    assert parse([raw + b"\n"]).records == [(f"acme.raw.{channel}", None, raw)]
    assert parse([without("channel")], channel=channel).records == [(f"acme.raw.{channel}", None, without("channel"))]


@pytest.mark.parametrize(("content", "expected"), [
    (b'{"event_id": "x", ', "not valid JSON (unexpected end of data at column 18)"),
    (b'{"event_id": "x"} {}', "not valid JSON (unexpected content after document at column 19)"),
    (b"[1, 2]", "not a JSON object but a list"),
    (b'"an event"', "not a JSON object but a string"),
    (b"42", "not a JSON object but a number"),
    (b"null", "not a JSON object but a null"),
    (b"\xff\xfe{}", "not valid JSON"),
    (None, "no channel: add a \"channel\" field to the event, or pass --channel"),
    (b'{"event_id": "e1", "channel": "fax"}', "unknown channel 'fax'"),
    (b'{"event_id": "e1", "channel": 7}', "unknown channel '7'"),
])
def test_a_line_that_is_no_event_is_named_with_what_is_wrong(content: bytes | None, expected: str) -> None:
    raw = content if content is not None else without("channel")
    parsed = parse([line(channel="web"), b"", raw])
    assert len(parsed.records) == 1
    assert [number for number, _ in parsed.errors] == [3]  # the blank line counts as a line
    assert expected in parsed.errors[0][1]


@pytest.mark.parametrize(("fields", "expected"), [
    ({"occurred_at": None}, "missing_field: occurred_at"),
    ({"type": "Chat Message"}, "invalid_type"),
    ({"occurred_at": 1_764_000_000}, "looks like epoch seconds"),
    ({"identifiers": {"email": "null"}}, "no_valid_identifier"),
    ({"survey": {"kind": "nps", "score": 11}}, "invalid_survey: nps score must be 0..10"),
    ({"identifiers": {"fax": "123"}}, "unknown_identifier_type: fax"),
])
def test_an_event_the_worker_would_dead_letter_is_refused_with_the_workers_reason(fields: dict[str, Any],
                                                                               expected: str) -> None:
    parsed = parse([line(channel="chat", event_id="ok"), line(channel="chat", **fields)])
    assert [r[2] for r in parsed.records] == [line(channel="chat", event_id="ok")]
    assert parsed.errors[0][0] == 2 and expected in parsed.errors[0][1], parsed.errors


@pytest.mark.parametrize(("record_channel", "flag"), [("chat", "web"), ("web", "chat"), ("survey", "store")])
def test_channel_flag_disagreeing_with_the_event_is_an_error_not_an_override(record_channel: str, flag: str) -> None:
    parsed = parse([without("channel"), line(channel=record_channel), line(channel=flag)], channel=flag)
    assert [r[0] for r in parsed.records] == [f"acme.raw.{flag}"] * 2
    assert parsed.errors == [(2, f"the event's channel {record_channel!r} disagrees with --channel {flag}")]


def test_a_byte_order_mark_and_windows_line_ends_are_read() -> None:
    parsed = parse([b"\xef\xbb\xbf" + line(channel="web") + b"\r\n", line(channel="email") + b"\r\n"])
    assert parsed.errors == [] and [r[0] for r in parsed.records] == ["acme.raw.web", "acme.raw.email"]


def test_recorded_traffic_is_replayed_verbatim_even_when_the_record_is_malformed_on_purpose() -> None:
    parsed = parse([recorded("acme.raw.web", b"\x00not json", b"k1"), recorded("acme.raw.chat", b""),
                    recorded("cem.raw.web", b"{}"), b'{"topic": "acme.raw.web", "value": "%%%"}',
                    recorded("acme.raw.fax", b"{}")])
    assert parsed.records == [("acme.raw.web", b"k1", b"\x00not json"), ("acme.raw.chat", None, b"")]
    assert [n for n, _ in parsed.errors] == [3, 4, 5]
    assert "not a raw topic of this pipeline" in parsed.errors[0][1] and "not base64" in parsed.errors[1][1]
    assert parse([recorded("acme.raw.web", b"{}")], channel="chat").errors == [
        (1, "the recorded topic 'acme.raw.web' disagrees with --channel chat")]


def test_a_file_with_a_bad_line_publishes_nothing_and_exits_1(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    content = line(channel="web") + b"\n" + without("channel") + b"\n" + line(channel="chat") + b"\n"
    code, sent, err = run(monkeypatch, tmp_path, content)
    assert (code, sent) == (1, [])
    assert f"{tmp_path / 'events.jsonl'}:2: no channel" in err
    assert "nothing published: 1 invalid line" in err and "--skip-invalid to publish the 2 valid ones" in err


@pytest.mark.parametrize("bad_lines", [[1], [2, 5], [1, 2, 3, 4, 5, 6]])
def test_skip_invalid_publishes_the_valid_lines_counts_the_others_and_exits_1(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, bad_lines: list[int]) -> None:
    lines = [line(channel=CHANNELS[n], event_id=f"e{n}") if n not in bad_lines else b"{oops" for n in range(1, 7)]
    code, sent, err = run(monkeypatch, tmp_path, b"\n".join(lines), skip_invalid=True)
    assert code == 1
    assert [value for _, _, value in sent] == [raw for n, raw in enumerate(lines, 1) if n not in bad_lines]
    assert f"skipped {len(bad_lines)} invalid line" in err.splitlines()[-1]
    assert [f":{n}: not valid JSON" in err for n in bad_lines] == [True] * len(bad_lines)


def test_a_clean_file_exits_0_and_a_broker_failure_exits_3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    content = line(channel="web") + b"\n\n" + line(channel="store", event_id="e2")
    code, sent, err = run(monkeypatch, tmp_path, content)
    assert (code, len(sent), err.strip()) == (0, 2, "published 2 records")
    code, _, err = run(monkeypatch, tmp_path, content, broker=FakeBroker(ConnectionError("no broker")))
    assert code == 3 and "no broker" in err and "published 2" not in err


def test_many_bad_lines_are_listed_up_to_a_bound(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    code, _, err = run(monkeypatch, tmp_path, b"x\n" * 25)
    assert code == 1 and err.count("not valid JSON") == publish.MAX_ERRORS_SHOWN
    assert "and 5 more invalid lines" in err and "nothing published: 25 invalid lines" in err


def test_a_missing_file_exits_2_with_one_line(tmp_path: Path) -> None:
    err = io.StringIO()
    assert publish.publish_file(SETTINGS, tmp_path / "nope.jsonl", None, err=err) == 2
    assert err.getvalue().count("\n") == 1 and "cannot read" in err.getvalue()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("count", [1, 999, 1000, 2345])
def test_on_a_terminal_the_lines_checked_and_records_acknowledged_are_drawn(monkeypatch: pytest.MonkeyPatch,
                                                                            tmp_path: Path, count: int) -> None:
    broker = FakeBroker()
    monkeypatch.setattr(publish, "produce", broker.produce)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(line(channel="web", event_id=f"e{i}") for i in range(count)))
    err = Terminal()
    assert publish.publish_file(SETTINGS, path, None, err=err) == 0
    text = err.getvalue()
    assert "checking events.jsonl" in text and f"{count}/{count}" in text and "publishing" in text
    assert text.rstrip().endswith(f"published {count} records") and len(broker.sent) == count
