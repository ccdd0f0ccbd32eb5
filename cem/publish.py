"""`cem publish`: JSON events, one per line, or a recorded traffic file (one {"topic", "key", "value"} object per
line, key and value in base64, as `python -m devtools.simulate --out` writes it), published to the raw topics."""

from __future__ import annotations

import asyncio
import base64
import sys
from collections.abc import Iterable
from pathlib import Path

import orjson

from cem.kafka import produce
from cem.settings import CHANNELS, Settings

Record = tuple[str, bytes | None, bytes]


def publish_file(settings: Settings, path: Path | None, channel: str | None) -> int:
    stream = path.open("rb") if path else sys.stdin.buffer
    records = parse_lines(settings, stream, channel)
    asyncio.run(produce(settings, records))
    print(f"published {len(records)} records", file=sys.stderr)
    return 0


def parse_lines(settings: Settings, lines: Iterable[bytes], channel: str | None) -> list[Record]:
    """The records the lines stand for; a plain event without a known channel is skipped with a note."""
    records: list[Record] = []
    for line in lines:
        if not line.strip():
            continue
        item = orjson.loads(line)
        if isinstance(item, dict) and "topic" in item and "value" in item:
            key = base64.b64decode(item["key"]) if item.get("key") else None
            records.append((item["topic"], key, base64.b64decode(item["value"])))
        else:
            target = item.get("channel", channel) if isinstance(item, dict) else channel
            if target not in CHANNELS:
                print(f"skipping a line with no known channel: {line[:80]!r}", file=sys.stderr)
                continue
            records.append((settings.raw_topic(target), None, line.strip()))
    return records
