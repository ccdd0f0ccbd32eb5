"""Secrets come from settings only, reach the clients that need them, and are never printed.

Kafka: SASL and TLS options pass through to aiokafka, both for the plain clients of the CLI
(`cem.cli.kafka_client_options`) and for the Faust app (`streams.app.kafka_credentials`, which Faust turns into
aiokafka options). ClickHouse: the password in CEM_CLICKHOUSE_URL reaches the driver and no repr, log line or
error description. The server-side checks (a worker with a password in its URL, `cem sql` against a server) are
in tests/faults/test_access.py.
"""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import replace
from pathlib import Path

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from cem.cli import kafka_client_options
from cem.devservices import free_port
from cem.service.resolver_service import ResolverService
from cem.service.retry import Stopping
from cem.settings import Settings
from sinks.clickhouse import connect, parse_url
from sinks.errors import describe_error
from streams.app import create_app, kafka_credentials

SECRET = "s3cr3t-P@ss/word"
URL_SECRET = "s3cr3t-P%40ss%2Fword"  # the same password, URL-encoded as CEM_CLICKHOUSE_URL carries it
CAFILE = "/etc/ssl/certs/ca-certificates.crt"


def sasl(protocol: str, mechanism: str = "SCRAM-SHA-512", cafile: str = "") -> Settings:
    return Settings.from_env({
        "CEM_KAFKA_SECURITY_PROTOCOL": protocol, "CEM_KAFKA_SASL_MECHANISM": mechanism,
        "CEM_KAFKA_SASL_USERNAME": "cem-worker", "CEM_KAFKA_SASL_PASSWORD": SECRET, "CEM_KAFKA_SSL_CAFILE": cafile,
    })


def test_settings_read_credentials_from_the_environment_only() -> None:
    settings = sasl("SASL_SSL")
    assert (settings.kafka_sasl_username, settings.kafka_sasl_password) == ("cem-worker", SECRET)
    assert Settings.from_env({}).kafka_sasl_password == ""


def test_settings_never_print_a_secret() -> None:
    settings = Settings.from_env({"CEM_KAFKA_SASL_PASSWORD": SECRET,
                                  "CEM_CLICKHOUSE_URL": f"clickhouse://cem:{URL_SECRET}@ch.internal:9000/cem"})
    for text in (repr(settings), str(settings)):
        assert SECRET not in text and URL_SECRET not in text


def test_cli_clients_get_sasl_options() -> None:
    options = kafka_client_options(sasl("SASL_PLAINTEXT", "PLAIN"))
    assert options == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
                       "sasl_plain_username": "cem-worker", "sasl_plain_password": SECRET}


@pytest.mark.skipif(not Path(CAFILE).exists(), reason="needs a CA bundle")
def test_cli_clients_get_sasl_ssl_options_with_the_ca_file() -> None:
    options = kafka_client_options(sasl("SASL_SSL", cafile=CAFILE))
    assert options["security_protocol"] == "SASL_SSL"
    assert (options["sasl_mechanism"], options["sasl_plain_password"]) == ("SCRAM-SHA-512", SECRET)
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    assert context.cert_store_stats()["x509_ca"] > 0  # the CA file was loaded
    plain_tls = kafka_client_options(Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=CAFILE))
    assert plain_tls["security_protocol"] == "SSL" and "sasl_mechanism" not in plain_tls


@pytest.mark.parametrize(("protocol", "mechanism"), [("SASL_PLAINTEXT", "SCRAM-SHA-256"),
                                                      ("SASL_PLAINTEXT", "PLAIN"), ("SASL_SSL", "SCRAM-SHA-512")])
def test_worker_sasl_credentials_reach_aiokafka(protocol: str, mechanism: str) -> None:
    credentials = kafka_credentials(sasl(protocol, mechanism))
    assert isinstance(credentials, faust.SASLCredentials)
    assert SECRET not in repr(credentials)
    options = credentials_to_aiokafka_auth(credentials)  # what Faust hands to aiokafka's consumer and producer
    assert options["security_protocol"] == protocol
    assert (options["sasl_mechanism"], options["sasl_plain_username"], options["sasl_plain_password"]) == \
        (mechanism, "cem-worker", SECRET)
    assert (options["ssl_context"] is not None) == (protocol == "SASL_SSL")


def test_worker_tls_and_plaintext() -> None:
    tls = credentials_to_aiokafka_auth(kafka_credentials(Settings(kafka_security_protocol="SSL")))
    assert tls["security_protocol"] == "SSL" and isinstance(tls["ssl_context"], ssl.SSLContext)
    assert kafka_credentials(Settings()) is None
    assert credentials_to_aiokafka_auth(kafka_credentials(Settings())) == {"security_protocol": "PLAINTEXT"}


def test_the_faust_app_is_built_with_the_credentials(tmp_path: Path) -> None:
    settings = replace(sasl("SASL_PLAINTEXT"), state_dir=str(tmp_path), app_id="cred-test")
    app = create_app(settings)
    credentials = app.conf.broker_credentials
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password) == ("cem-worker", SECRET)


def test_clickhouse_url_password_reaches_the_driver_and_no_repr() -> None:
    target = parse_url(f"clickhouse://cem:{URL_SECRET}@ch.internal:9440/analytics")
    assert target.password == SECRET and target.user == "cem" and target.database == "analytics"
    assert SECRET not in repr(target) and URL_SECRET not in repr(target)
    assert target.redacted() == "clickhouse://cem:***@ch.internal:9440/analytics"


def test_a_failing_connection_logs_no_password(caplog: pytest.LogCaptureFixture) -> None:
    url = f"clickhouse://cem:{URL_SECRET}@127.0.0.1:{free_port()}/cem"  # nothing listens there
    with pytest.raises(Exception) as raised:
        connect(url).query("SELECT 1")
    caplog.set_level(logging.DEBUG)
    stopping = threading.Event()
    stopping.set()  # the first failure gives the batch up
    with pytest.raises(Stopping):
        ResolverService(Settings(clickhouse_url=url), stopping=stopping).process_and_write([])
    logged = caplog.text + describe_error(raised.value) + str(raised.value)
    assert "ClickHouse write failed, retrying: NetworkError" in caplog.text
    assert SECRET not in logged and URL_SECRET not in logged


def test_cem_sql_on_the_embedded_engine_writes_no_file(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    target = tmp_path / "written.tsv"
    env = {**os.environ, "CEM_CLICKHOUSE_URL": f"chdb://{tmp_path}/warehouse"}
    subprocess.run([sys.executable, "-m", "cem.cli", "sql", f"SELECT 1 INTO OUTFILE '{target}'"], env=env,
                   capture_output=True, text=True, timeout=120)
    assert not target.exists(), "cem sql wrote a file"
