"""`cem` console command: argument parsing and dispatch to the modules that do the work (worker, publish, collect, sql,
identity, forget, migrate, schemas, report, doctor, replay). The simulator and the demo are development tools, outside
the package: `python -m devtools.simulate`, `python -m devtools.demo`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cem import (
    alerts_cli,
    doctor,
    html_report,
    identity_cli,
    preflight,
    replay,
    report,
    schemas_cli,
    sql_cli,
    squash_cli,
)
from cem.collector import run_collector
from cem.publish import publish_file
from cem.settings import CHANNELS, Settings
from cem.worker import run_worker
from sinks.clickhouse import connect, migrate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cem", description="Real-time customer-experience pipeline",
                                     epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="run a stream worker (Faust) against CEM_KAFKA_BOOTSTRAP and CEM_CLICKHOUSE_URL")
    pub = sub.add_parser("publish", help="publish records: JSON events (one per line) or a recorded traffic file")
    pub.add_argument("file", type=Path, nargs="?", help="default: standard input")
    pub.add_argument("--channel", choices=CHANNELS,
                     help="channel of events without a channel field; an event naming another one is an error")
    pub.add_argument("--skip-invalid", action="store_true",
                     help="publish the valid lines and count the others (exit code 1 all the same)")
    sub.add_parser("collect", help="HTTP collector for the Segment, RudderStack and PostHog SDKs (docs/collector.md)")
    sql = sub.add_parser("sql", help="run a read-only query against the warehouse")
    sql.add_argument("query")
    sql.add_argument("--format", choices=sql_cli.FORMATS, default="table",
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
    squash = sub.add_parser("squash", help="apply old overrides to interaction rows and delete them (a cron job)")
    squash.add_argument("--min-age-minutes", type=int, default=None,
                        help="squash overrides older than this (default CEM_SQUASH_MIN_AGE_MINUTES)")
    schemas = sub.add_parser("schemas", help="Avro writer schemas: register one at run time, check schemas/")
    schemas_sub = schemas.add_subparsers(dest="schemas_command", required=True)
    register = schemas_sub.add_parser("register", help="publish a writer schema the current reader can read")
    register.add_argument("file", type=Path, help="the writer schema (.avsc)")
    schemas_sub.add_parser("check", help="check that the versions kept in schemas/ are compatible")
    sub.add_parser("doctor", help="check Kafka, the topics, the warehouse, migrations, lag and the workers: one "
                   "line each, OK or FAIL with what to do")
    rebuild = sub.add_parser("replay", help="rebuild a new warehouse database from the events retained in the raw "
                             "topics since a time")
    rebuild.add_argument("--from", dest="since", required=True, type=replay.time_argument, metavar="TIME",
                         help="ISO-8601 time (UTC when no zone): records appended to the raw topics from then on")
    rebuild.add_argument("--database", required=True, type=replay.database_argument,
                         help="the new database, on the server of CEM_CLICKHOUSE_URL; must not exist or be empty")
    rep = sub.add_parser("report", help="print the customer-experience report from the warehouse")
    rep.add_argument("--since", type=report.day_argument, metavar="YYYY-MM-DD",
                     help="first day of event time (UTC), included; default: the first event")
    rep.add_argument("--until", type=report.day_argument, metavar="YYYY-MM-DD",
                     help="last day of event time (UTC), included; default: the last event")
    rep.add_argument("--html", type=Path, metavar="FILE",
                     help="write one self-contained HTML file with charts (opens with no network) instead")
    add_alert_commands(sub)
    return parser


def add_alert_commands(sub: Any) -> None:
    alerts = sub.add_parser("alerts", help="alert cases: list, summary, ack, resolve, tail (docs/alerts.md)")
    alerts_sub = alerts.add_subparsers(dest="alerts_command", required=True)
    listing = alerts_sub.add_parser("list", help="alerts with their status and time spent open and acknowledged")
    listing.add_argument("--status", choices=alerts_cli.STATUSES)
    listing.add_argument("--rule")
    listing.add_argument("--limit", type=int, default=1000)
    listing.add_argument("--format", choices=sql_cli.FORMATS, default="table")
    summary = alerts_sub.add_parser("summary", help="per rule and status: count, time open and acknowledged")
    summary.add_argument("--format", choices=sql_cli.FORMATS, default="table")
    for action, text in (("ack", "acknowledge"), ("resolve", "resolve")):
        acting = alerts_sub.add_parser(action, help=f"{text} alerts (applied by the worker)")
        acting.add_argument("alert_id", nargs="+")
        acting.add_argument("--by", required=True, help="who acts, e.g. an agent's login")
        acting.add_argument("--note", default="")
    follow = alerts_sub.add_parser("tail", help="print new alert revisions as JSON lines as they are published")
    follow.add_argument("--from-beginning", action="store_true")
    follow.add_argument("--max", type=int, default=None, help="stop after this many")
    follow.add_argument("--idle-exit", type=float, default=None, metavar="SECONDS",
                        help="stop after this long with no new alert")


EXIT_CODES = """exit codes: 0 done; 1 failed (the line printed says why); 2 refused or bad usage; 3 erasure refused;
69 a service the command needs is unavailable (Kafka, ClickHouse, or the embedded warehouse held by a worker)"""


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.command == "sql" and (refused := sql_cli.refusal(args.query)):
            print(refused, file=sys.stderr)  # the guard needs no service: a refusal comes first
            return 2
        check_services(settings, args)
        return dispatch(settings, args)
    except preflight.Unavailable as exc:
        print(f"cem {args.command}: {exc}", file=sys.stderr)
        if args.debug:
            raise
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # an expected failure is one line; --debug shows where it came from
        if args.debug:
            raise
        first_line = sql_cli.error_text(exc).splitlines()[0]  # a server error's code with its message
        print(f"cem {args.command}: {type(exc).__name__}: {first_line} (run `cem --debug {args.command} ...` for "
              "the traceback)", file=sys.stderr)
        return 1


# What each command reaches, checked before it starts: (needs Kafka, needs the warehouse, only reads it).
NEEDS: dict[str, tuple[bool, bool, bool]] = {
    "worker": (True, True, False),
    "publish": (True, False, False),
    "sql": (False, True, True),
    "identity": (False, True, True),
    "report": (False, True, True),
    "migrate": (False, True, False),
    "squash": (False, True, False),
    "replay": (True, True, False),
    "alerts": (False, True, True),
}


def check_services(settings: Settings, args: argparse.Namespace) -> None:
    kafka, warehouse, reads = NEEDS.get(args.command, (False, False, False))  # `schemas register` checks its own
    if args.command == "forget":  # it waits for the audit row on a server; an embedded warehouse is the worker's
        kafka, warehouse, reads = True, not settings.clickhouse_url.startswith("chdb://"), True
    if args.command == "alerts" and args.alerts_command not in ("list", "summary"):
        kafka, warehouse = True, False
    if kafka:
        preflight.check_kafka(settings)
    if warehouse:
        preflight.check_warehouse(settings, must_exist=reads)


def dispatch(settings: Settings, args: argparse.Namespace) -> int:
    command = args.command
    if command == "worker":
        return run_worker(settings)
    if command == "publish":
        return publish_file(settings, args.file, args.channel, args.skip_invalid)
    if command == "collect":
        return run_collector(settings)
    if command == "sql":
        return sql_cli.run_sql(settings, args.query, args.format)
    if command == "identity":
        return identity_cli.explain_identifier(settings, args.id_type, args.value)
    if command == "forget":
        return identity_cli.forget_identifier(settings, args.id_type, args.value, args.wait, args.force)
    if command == "squash":
        return squash_cli.run_squash(settings, args.min_age_minutes)
    if command == "migrate":
        return migrate_warehouse(settings)
    if command == "schemas":
        if args.schemas_command == "register":
            return schemas_cli.register_schema(settings, args.file)
        return schemas_cli.check_schemas()
    if command == "report":
        if args.html is not None:
            return html_report.write_html_report(settings, args.html, args.since, args.until)
        return report.run_report(settings, args.since, args.until)
    if command == "alerts":
        return dispatch_alerts(settings, args)
    if command == "doctor":
        return doctor.run_doctor(settings, sys.stdout)
    if command == "replay":
        return replay.run_replay(settings, args.since, args.database)
    return 2


def dispatch_alerts(settings: Settings, args: argparse.Namespace) -> int:
    command = args.alerts_command
    if command == "list":
        return alerts_cli.list_alerts(settings, args.status, args.rule, args.format, args.limit)
    if command == "summary":
        return alerts_cli.summary(settings, args.format)
    if command == "tail":
        return alerts_cli.tail(settings, args.from_beginning, args.max, args.idle_exit)
    return alerts_cli.act(settings, command, args.alert_id, args.by, args.note)


def migrate_warehouse(settings: Settings) -> int:
    warehouse = connect(settings.clickhouse_url, cluster=settings.clickhouse_cluster)
    print("applied:", ", ".join(migrate(warehouse)) or "nothing, already current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
