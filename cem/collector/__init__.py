"""`cem collect`: an HTTP collector for the Segment, RudderStack and PostHog tracking SDKs, writing contract events
to `<prefix>.raw.<channel>` with an idempotent producer (docs/collector.md)."""

from __future__ import annotations

import logging
import sys

from aiohttp import web

from cem.collector.app import build_app
from cem.collector.gate import KafkaGate
from cem.config import collect_write_keys
from cem.settings import Settings

CONFIG_ERROR = 78  # as the worker: the settings are wrong, restarting will not help


def run_collector(settings: Settings) -> int:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        keys = collect_write_keys(settings)
    except ValueError as exc:
        print(f"cem collect: {exc}", file=sys.stderr)
        return CONFIG_ERROR
    if not keys:
        print("cem collect: set CEM_COLLECT_WRITE_KEYS (key=channel,...): no write key, no SDK can send",
              file=sys.stderr)
        return CONFIG_ERROR

    async def make_app() -> web.Application:
        return build_app(settings, KafkaGate(settings))

    web.run_app(make_app(), host=settings.collect_host, port=settings.collect_port, print=None,
                access_log=None, shutdown_timeout=settings.shutdown_grace_seconds)
    return 0
