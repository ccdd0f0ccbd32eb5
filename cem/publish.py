"""`cem publish`: JSON events, one per line, or a recorded traffic file (one {"topic", "key", "value"} object per
line, key and value in base64, as `python -m devtools.simulate --out` writes it), published to the raw topics.

Every line is checked before anything is sent, with the worker's own decoder and validator, so a mistake is
reported as `FILE:LINE: what is wrong` instead of surfacing later as a dead letter. By default a file with one bad
line publishes nothing; `--skip-invalid` publishes the good lines and counts the others. A recorded traffic line
is replayed as it was recorded (it may hold Avro, or a malformed record kept on purpose): only its frame is checked.

Exit codes: 0 every record was published; 1 some lines are invalid (nothing was published, or with
`--skip-invalid` only the valid lines); 2 the file cannot be read (or a usage error); 3 the broker did not
acknowledge every record (publishing the file again is safe: events are deduplicated by event_id).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson

from cem.domain.model import Rejection
from cem.kafka import produce
from cem.progress import Advance, progress_bar
from cem.settings import CHANNELS, Settings

Record = tuple[str, bytes | None, bytes]
# parse(raw bytes, channel, now_ms): the worker's verdict on one event, a Rejection when it would dead-letter it
Check = Callable[[bytes, str, int], Any]
EXIT_OK, EXIT_INVALID, EXIT_UNREADABLE, EXIT_NOT_ACKNOWLEDGED = 0, 1, 2, 3
MAX_ERRORS_SHOWN = 20
_JSON_POSITION = re.compile(r": line 1 column (\d+) \(char \d+\)")


@dataclass
class Parsed:
    records: list[Record] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number, what is wrong)


def publish_file(settings: Settings, path: Path | None, channel: str | None, skip_invalid: bool = False,
                 err: TextIO | None = None) -> int:
    err = err or sys.stderr
    name = str(path) if path else "<stdin>"
    from streams.ingest import Ingestor  # here: the other commands need none of the worker's modules

    ingestor = Ingestor(settings)
    now_ms = int(time.time() * 1000)
    if path is None:
        if sys.stdin.isatty():  # a first try without a file would otherwise wait in silence
            print("reading events from standard input, one JSON object per line; end with Ctrl-D", file=err)
        parsed = parse_lines(settings, sys.stdin.buffer, channel, ingestor.parse, now_ms)
    else:
        try:
            lines = path.read_bytes().splitlines()
        except OSError as exc:
            print(f"error: cannot read {name}: {exc.strerror or exc}", file=err)
            return EXIT_UNREADABLE
        with progress_bar(f"checking {path.name}", len(lines), "lines", err) as advance:
            parsed = parse_lines(settings, lines, channel, ingestor.parse, now_ms, advance)
    for number, problem in parsed.errors[:MAX_ERRORS_SHOWN]:
        print(f"{name}:{number}: {problem}", file=err)
    if len(parsed.errors) > MAX_ERRORS_SHOWN:
        print(f"{name}: ... and {len(parsed.errors) - MAX_ERRORS_SHOWN} more invalid lines", file=err)
    if parsed.errors and not skip_invalid:
        print(f"{name}: nothing published: {len(parsed.errors)} invalid "
              f"{'line' if len(parsed.errors) == 1 else 'lines'}; fix them, or pass --skip-invalid to publish the "
              f"{len(parsed.records)} valid ones", file=err)
        return EXIT_INVALID
    if parsed.records:
        try:
            with progress_bar("publishing", len(parsed.records), "records", err) as acknowledged:
                asyncio.run(produce(settings, parsed.records, on_acknowledged=acknowledged))
        except Exception as exc:  # the broker's own words; nothing here can tell which records arrived
            print(f"error: publishing to {settings.kafka_bootstrap} failed: {type(exc).__name__}: {exc}; some "
                  "records may have been published, and publishing the file again is safe (duplicates are "
                  "dropped by event_id)", file=err)
            return EXIT_NOT_ACKNOWLEDGED
    print(f"published {len(parsed.records)} records", file=err)
    if parsed.errors:
        print(f"skipped {len(parsed.errors)} invalid {'line' if len(parsed.errors) == 1 else 'lines'}", file=err)
        return EXIT_INVALID
    return EXIT_OK


def parse_lines(settings: Settings, lines: Iterable[bytes], channel: str | None, check: Check | None,
                now_ms: int, advance: Advance | None = None) -> Parsed:
    """The records the lines stand for, and what is wrong with the others (line numbers from 1; blank lines are
    skipped). `check` is the worker's parser (streams.ingest.Ingestor.parse); None checks the framing only.
    `advance(n)` is told every n lines read (a progress bar)."""
    parsed = Parsed()
    number = 0
    for number, line in enumerate(lines, start=1):
        if advance is not None and number % 1000 == 0:
            advance(1000)
        if not line.strip():
            continue
        outcome = parse_line(settings, line.strip(), channel, check, now_ms)
        if isinstance(outcome, str):
            parsed.errors.append((number, outcome))
        else:
            parsed.records.append(outcome)
    if advance is not None:
        advance(number % 1000)
    return parsed


def parse_line(settings: Settings, line: bytes, channel: str | None, check: Check | None,
               now_ms: int) -> Record | str:
    """One record, or what is wrong with the line."""
    try:
        item = orjson.loads(line.removeprefix(b"\xef\xbb\xbf"))  # an editor's byte order mark, as the worker allows
    except orjson.JSONDecodeError as exc:  # its position is within the line: "line 1" would mislead
        return "not valid JSON (" + _JSON_POSITION.sub(r" at column \1", str(exc)) + ")"
    if not isinstance(item, dict):
        return f"not a JSON object but a {_json_kind(item)}: each line is one event, {{\"event_id\": ...}}"
    if "topic" in item and "value" in item and "event_id" not in item:
        return _recorded(settings, item, channel)
    target = item.get("channel", channel)
    if target is None:
        return "no channel: add a \"channel\" field to the event, or pass --channel"
    if not isinstance(target, str) or target not in CHANNELS:
        return f"unknown channel {str(target)[:64]!r} (channels: {', '.join(CHANNELS)})"
    if channel is not None and target != channel:
        return f"the event's channel {target!r} disagrees with --channel {channel}"
    if check is not None:
        verdict = check(line, target, now_ms)
        if isinstance(verdict, Rejection):
            return f"{verdict.reason.value}" + (f": {verdict.detail}" if verdict.detail else "")
    return settings.raw_topic(target), None, line


def _recorded(settings: Settings, item: dict[str, Any], channel: str | None) -> Record | str:
    topic, key, value = item["topic"], item.get("key"), item["value"]
    if topic not in settings.raw_topics:
        return (f"recorded topic {str(topic)[:80]!r} is not a raw topic of this pipeline "
                f"({settings.raw_topic('<channel>')}; CEM_TOPIC_PREFIX={settings.topic_prefix})")
    if channel is not None and topic != settings.raw_topic(channel):
        return f"the recorded topic {topic!r} disagrees with --channel {channel}"
    try:
        decoded_key = base64.b64decode(key, validate=True) if key else None
        decoded_value = base64.b64decode(value, validate=True) if isinstance(value, str) else None
    except (binascii.Error, ValueError, TypeError):
        return "recorded key or value is not base64"
    if decoded_value is None:
        return "recorded value is not a base64 string"
    return topic, decoded_key, decoded_value


def _json_kind(item: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(item), "null")
