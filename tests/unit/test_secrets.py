"""Secrets come from settings only, reach the clients that need them, and are never printed.

Kafka: SASL and TLS options pass through to aiokafka, both for the plain clients of the CLI
(`cem.kafka.kafka_client_options`) and for the Faust app (`streams.app.kafka_credentials`, which Faust turns into
aiokafka options). ClickHouse: the password in CEM_CLICKHOUSE_URL reaches the driver and no repr, log line or
error description. The checks that need a connection or a process are in tests/component/test_secrets_io.py; the
server-side ones (a worker with a password in its URL, `cem sql` against a server) in tests/faults/test_access.py.
"""

from __future__ import annotations

import ssl
from dataclasses import replace
from pathlib import Path

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from cem.kafka import kafka_client_options
from cem.settings import Settings
from sinks.clickhouse import parse_url
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
