"""The bare-Faust ceiling: a tiny Faust app whose one agent only decodes each record (schemas.codec.decode) and
does nothing else. Same topics, same broker settings and the same consumer settings as `cem worker`, but its
own consumer group. Faust's per-event loop plus the decode is the ceiling the pipeline is measured against.

Run as its own process by bench.run:  python -m bench.bare   (configured with CEM_* variables plus
BENCH_EXPECTED = records to consume, BENCH_RESULT = JSON file written once they are, BENCH_MODE = "events"
(one loop turn per record, the plain Faust idiom) or "take" (stream.take_events batches, as `ingest` does)).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import faust
import orjson

from cem.settings import Settings
from schemas.codec import DecodeError, decode
from streams.app import faust_app


def create_bare_app(settings: Settings, expected: int, result_path: Path, mode: str = "events") -> faust.App:
    app = faust_app(settings, web=False)  # the same Faust configuration as a cem worker
    raw_topics = app.topic(*settings.raw_topics, key_type=bytes, value_type=bytes,
                           key_serializer="raw", value_serializer="raw")
    max_bytes = settings.max_record_bytes
    state: dict[str, Any] = {"count": 0, "decoded": 0, "first": None, "done": False}

    def progress(n: int, decoded: int) -> None:
        now = time.time()
        if state["first"] is None:
            state["first"] = now
            result_path.with_suffix(".first").write_bytes(b"")
        state["count"] += n
        state["decoded"] += decoded
        if not state["done"] and state["count"] >= expected:
            state["done"] = True
            tmp = result_path.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps({"first_s": state["first"], "last_s": now, "count": state["count"],
                                          "decoded": state["decoded"], "mode": mode}))
            tmp.replace(result_path)

    if mode == "take":
        @app.agent(raw_topics)
        async def bare_take(stream: Any) -> None:
            async for events in stream.take_events(settings.ingest_batch_max, within=settings.ingest_batch_seconds):
                decoded = 0
                for event in events:
                    try:
                        decode(event.message.value, max_bytes)
                        decoded += 1
                    except DecodeError:
                        pass
                progress(len(events), decoded)
    else:
        @app.agent(raw_topics)
        async def bare(stream: Any) -> None:
            async for value in stream:
                try:
                    decode(value, max_bytes)
                    progress(1, 1)
                except DecodeError:
                    progress(1, 0)

    return app


def main() -> None:
    from cem.worker import configure_logging, faust_worker

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    app = create_bare_app(settings, int(os.environ["BENCH_EXPECTED"]), Path(os.environ["BENCH_RESULT"]),
                          os.environ.get("BENCH_MODE", "events"))
    faust_worker(app, settings.log_level).execute_from_commandline()


if __name__ == "__main__":
    main()
