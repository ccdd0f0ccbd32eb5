"""`cem` console command: worker, simulate, publish, demo, sql, schemas, migrate, report."""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import orjson

from cem.settings import CHANNELS, Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cem", description="Real-time customer-experience pipeline")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="run a stream worker (Faust) against CEM_KAFKA_BOOTSTRAP and CEM_CLICKHOUSE_URL")
    sim = sub.add_parser("simulate", help="generate realistic multichannel traffic and publish it (or save it)")
    sim.add_argument("--customers", type=int, default=300)
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--out", type=Path, help="write records to this file instead of publishing")
    pub = sub.add_parser("publish", help="publish records: JSON events (one per line) or a `simulate --out` file")
    pub.add_argument("file", type=Path, nargs="?", help="default: standard input")
    pub.add_argument("--channel", choices=CHANNELS, help="topic for plain JSON events without a channel field")
    demo = sub.add_parser("demo", help="embedded broker + embedded ClickHouse + simulated traffic + report")
    demo.add_argument("--customers", type=int, default=300)
    demo.add_argument("--seed", type=int, default=7)
    sql = sub.add_parser("sql", help="run a read-only query against the warehouse")
    sql.add_argument("query")
    sql.add_argument("--format", choices=["table", "csv", "tsv", "json", "jsonl"], default="table",
                     help="json: {\"columns\": [...], \"rows\": [[...]]}; jsonl: one object per row")
    identity = sub.add_parser("identity", help="inspect the identity graph")
    identity_sub = identity.add_subparsers(dest="identity_command", required=True)
    explain = identity_sub.add_parser("explain", help="who an identifier belongs to, and why")
    explain.add_argument("id_type")
    explain.add_argument("value")
    forget = sub.add_parser("forget", help="GDPR erasure of the customer owning an identifier")
    forget.add_argument("id_type")
    forget.add_argument("value")
    forget.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the worker to apply it")
    forget.add_argument("--force", action="store_true",
                        help="erase an identifier even when the events of many customers carry it (a placeholder)")
    sub.add_parser("migrate", help="create or upgrade the warehouse tables")
    schemas = sub.add_parser("schemas", help="Avro writer schemas: register one at run time, check schemas/")
    schemas_sub = schemas.add_subparsers(dest="schemas_command", required=True)
    register = schemas_sub.add_parser("register", help="publish a writer schema the current reader can read")
    register.add_argument("file", type=Path, help="the writer schema (.avsc)")
    schemas_sub.add_parser("check", help="check that the versions kept in schemas/ are compatible")
    sub.add_parser("report", help="print the customer-experience report from the warehouse")
    args = parser.parse_args(argv)
    settings = Settings.from_env()

    if args.command == "worker":
        return run_worker(settings)
    if args.command == "simulate":
        return simulate(settings, args.customers, args.seed, args.out)
    if args.command == "publish":
        return publish_file(settings, args.file, args.channel)
    if args.command == "demo":
        from cem.demo import run_demo

        return run_demo(settings, args.customers, args.seed)
    if args.command == "sql":
        return run_sql(settings, args.query, args.format)
    if args.command == "identity":
        from cem.identity_cli import explain_identifier

        return explain_identifier(settings, args.id_type, args.value)
    if args.command == "forget":
        from cem.identity_cli import forget_identifier

        return forget_identifier(settings, args.id_type, args.value, args.wait, args.force)
    if args.command == "migrate":
        from sinks.clickhouse import connect, migrate

        warehouse = connect(settings.clickhouse_url)
        print("applied:", ", ".join(migrate(warehouse)) or "nothing, already current")
        return 0
    if args.command == "schemas":
        from cem.schemas_cli import check_schemas, register_schema

        return register_schema(settings, args.file) if args.schemas_command == "register" else check_schemas()
    if args.command == "report":
        from cem.report import print_report
        from cem.sql_cli import sql_limits
        from sinks.clickhouse import connect

        print_report(connect(settings.clickhouse_url, read_only=True, limits=sql_limits(settings)))
        return 0
    return 2


def run_worker(settings: Settings) -> int:
    import gc

    from cem.topic_limits import LimitsDisagree
    from streams.app import create_app
    from streams.batches import STOP_DEADLINE_MARGIN_SECONDS, request_stop

    configure_logging(settings.log_level)
    # The resolver keeps hundreds of thousands of long-lived objects; CPython's default thresholds (700, 10, 10)
    # re-scan them over and over while a batch allocates (docs/performance.md: -29% worker CPU).
    gc.set_threshold(50_000, 50, 100)
    try:
        asyncio.run(ensure_topics(settings, check_limits=True))
    except LimitsDisagree as exc:
        print(f"cem worker: {exc}", file=sys.stderr)
        return 78  # EX_CONFIG
    stopping = threading.Event()
    app = create_app(settings, stopping)
    deadline = settings.shutdown_grace_seconds + STOP_DEADLINE_MARGIN_SECONDS
    faust_worker(app, settings.log_level,
                 on_stop=lambda: stopping.is_set() or request_stop(stopping, deadline)).execute_from_commandline()
    return 0


LOG_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"


def configure_logging(level: str, stream: TextIO | None = None) -> None:
    """Plain text lines on stderr, no colour codes: the log is read in files, test reports and log collectors."""
    import logging

    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=stream or sys.stderr, force=True)


def faust_worker(app: Any, log_level: str, stdout: TextIO | None = None,
                 on_stop: Callable[[], object] | None = None) -> Any:
    """The Faust worker that runs `app`, with the logging configure_logging() set up. mode would replace it with
    colorlog's handler, and Faust's progress spinner writes cursor escape codes to stdout and lowers the root
    logger to DEBUG (every library's debug call then builds a record): both are turned off. `on_stop` runs
    when a stop is asked for (SIGTERM, SIGINT), before Faust starts shutting down: its consumer waits for every
    batch in flight to be acknowledged, and a batch retrying a failing warehouse must be told to give up."""
    from faust.worker import Worker

    class CemWorker(Worker):  # type: ignore[misc]
        def _schedule_shutdown(self, signal: Any) -> None:
            if on_stop is not None:
                on_stop()
            super()._schedule_shutdown(signal)

    worker = CemWorker(app, loglevel=log_level.lower(), quiet=True, redirect_stdouts=False, override_logging=False,
                       stdout=stdout or sys.stdout)
    worker.spinner = None
    return worker


def simulate(settings: Settings, customers: int, seed: int, out: Path | None) -> int:
    from cem.simulate import Simulator

    traffic = Simulator(customers=customers, seed=seed, base_time_ms=_sim_base_ms()).run()
    records = [(settings.raw_topic(r.channel), r.key, r.value) for r in traffic.records]
    if out is not None:
        with out.open("wb") as f:
            for topic, key, value in records:
                f.write(orjson.dumps({"topic": topic, "key": _b64(key), "value": _b64(value)}) + b"\n")
    else:
        asyncio.run(produce(settings, records))
    print(f"{len(records)} records ({traffic.duplicates_sent} re-sent duplicates, {len(traffic.invalid)} malformed) "
          f"for {traffic.customers} customers, {len(traffic.person_of_event)} unique valid events, "
          f"{len(traffic.journeys)} service journeys", file=sys.stderr)
    return 0


def _sim_base_ms() -> int:
    return (int(time.time()) // 86_400 - 12) * 86_400_000  # midnight UTC twelve days ago: all in the past


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def publish_file(settings: Settings, path: Path | None, channel: str | None) -> int:
    stream = path.open("rb") if path else sys.stdin.buffer
    records: list[tuple[str, bytes | None, bytes]] = []
    for line in stream:
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
    asyncio.run(produce(settings, records))
    print(f"published {len(records)} records", file=sys.stderr)
    return 0


async def produce(settings: Settings, records: Sequence[tuple[Any, ...]],
                  max_batch_size: int = 16_384) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=False,
        max_batch_size=max_batch_size, linger_ms=5, max_request_size=settings.producer_max_request_bytes,
        **kafka_client_options(settings),
    )
    await producer.start()
    try:
        # (topic, key, value) or (topic, key, value, headers)
        futures = [await producer.send(record[0], record[2], key=record[1],
                                       headers=list(record[3]) if len(record) > 3 else None)
                   for record in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def ensure_topics(settings: Settings, timeout: float = 60.0, check_limits: bool = False) -> None:
    """Create the pipeline's topics if missing, before the consumer subscribes (Faust does not create source
    topics, and a subscription to a missing topic is ignored until the next metadata refresh); with
    `check_limits`, also check that the size limits agree (cem.topic_limits)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    from cem.topic_limits import LimitsDisagree, check_message_limits

    wanted = {t: settings.topic_partitions for t in settings.raw_topics}
    wanted[settings.deadletter_topic] = settings.topic_partitions
    wanted[settings.resolve_topic] = 1
    wanted[settings.control_topic] = 1
    wanted[settings.schemas_topic] = 1
    compacted = {settings.schemas_topic}
    deadline = time.monotonic() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **kafka_client_options(settings))
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [NewTopic(t, n, 1, topic_configs={"cleanup.policy": "compact"} if t in compacted else None)
                       for t, n in wanted.items() if t not in existing]
            if missing:
                try:
                    await admin.create_topics(missing)
                except TopicAlreadyExistsError:
                    pass
            if check_limits:
                await check_message_limits(admin, settings)
            return
        except LimitsDisagree:
            raise
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1.0)
        finally:
            await admin.close()


def kafka_client_options(settings: Settings) -> dict[str, Any]:
    """SASL/TLS options for plain aiokafka clients, from settings only."""
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_sasl_mechanism:
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism, sasl_plain_username=settings.kafka_sasl_username,
                       sasl_plain_password=settings.kafka_sasl_password)
    if "SSL" in settings.kafka_security_protocol.upper():
        import ssl

        options["ssl_context"] = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    return options


def run_sql(settings: Settings, query: str, fmt: str) -> int:
    from cem.sql_cli import run_sql as run

    return run(settings, query, fmt)


if __name__ == "__main__":
    sys.exit(main())
