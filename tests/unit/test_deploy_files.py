"""The deployment files agree with the code: no Docker or Kubernetes runs here, so deploy/Dockerfile,
deploy/docker-compose.yml and deploy/kubernetes are parsed and checked against cem/settings.py (every CEM_* variable
is a setting; ports, topics and the consumer group are the settings'), the `cem` command's subcommands, the Kafka
version the tests run, and the Prometheus and Grafana files they mount."""

from __future__ import annotations

import base64
import re
import shlex
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from cem.cli import build_parser
from cem.kafka import wanted_topics
from cem.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SETTING_NAMES = {"CEM_" + f.name.upper() for f in fields(Settings)}
CEM_IMAGE_SERVICES = ("migrate", "worker", "collector")


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def manifests() -> list[dict[str, Any]]:
    documents = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def manifest(kind: str, name: str) -> dict[str, Any]:
    [found] = [m for m in manifests() if m["kind"] == kind and m["metadata"]["name"] == name]
    return found


def subcommands() -> set[str]:
    [action] = [a for a in build_parser()._actions if a.dest == "command"]
    return set(action.choices)  # type: ignore[arg-type]


def settings_of(env: dict[str, Any]) -> Settings:
    """The Settings a process with this environment reads (values with ${...} interpolation left as they are)."""
    return Settings.from_env({key: str(value) for key, value in env.items() if key.startswith("CEM_")
                              and "${" not in str(value)})


def dockerfile() -> list[tuple[str, str]]:
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(line for line in lines if line and not line.startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines()]


def dockerfile_json(instruction: str) -> list[str]:
    [value] = [v for kind, v in dockerfile() if kind == instruction]
    return yaml.safe_load(value)


# ---- every CEM_* variable named anywhere is a setting --------------------------------------------------------
def every_cem_variable() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    texts = {path: path.read_text() for path in [DEPLOY / "Dockerfile", DEPLOY / "docker-compose.yml",
                                                DEPLOY / "env.example", *sorted((DEPLOY / "kubernetes").glob("*"))]}
    for path, text in texts.items():
        for name in re.findall(r"\bCEM_[A-Z0-9_]+", text):
            found.setdefault(name, set()).add(path.name)
    return found


def test_every_cem_variable_of_the_deploy_files_is_a_setting() -> None:
    variables = every_cem_variable()
    assert len(variables) > 10
    unknown = {name: where for name, where in variables.items() if name not in SETTING_NAMES | {"CEM_WORKERS"}}
    assert unknown == {}, "not in cem/settings.py (CEM_WORKERS is compose's own count of workers)"


def test_every_value_set_is_one_the_settings_accept() -> None:
    for name in CEM_IMAGE_SERVICES:
        settings_of(services()[name]["environment"])
    settings_of(manifest("ConfigMap", "cem-config")["data"])
    settings_of(manifest("Secret", "cem-secrets")["stringData"])


# ---- the image -----------------------------------------------------------------------------------------------
def test_the_image_runs_the_cem_command_and_its_default_is_the_worker() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert dockerfile_json("ENTRYPOINT") == ["cem"]
    assert "cem" in project["project"]["scripts"]
    assert dockerfile_json("CMD") == ["worker"]
    assert "worker" in subcommands()


def test_the_image_holds_the_packages_the_project_installs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {pattern.rstrip("*") for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {v.split()[0] for kind, v in dockerfile() if kind == "COPY" and not v.startswith("--from")}
    assert packages | {"pyproject.toml"} == copied
    kept = {line[1:] for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    assert kept == copied, ".dockerignore keeps exactly what the Dockerfile copies"
    python = re.search(r"python:(\d+\.\d+)", (DEPLOY / "Dockerfile").read_text())
    assert python is not None
    assert project["project"]["requires-python"] == f">={python.group(1)}"


def test_the_image_exposes_the_default_ports_and_binds_them_outside_the_container() -> None:
    defaults = Settings()
    exposed = {int(port) for kind, value in dockerfile() if kind == "EXPOSE" for port in value.split()}
    assert exposed == {defaults.web_port, defaults.collect_port}
    env = " ".join(value for kind, value in dockerfile() if kind == "ENV")
    assert "CEM_WEB_HOST=0.0.0.0" in env and "CEM_COLLECT_HOST=0.0.0.0" in env


# ---- docker compose ------------------------------------------------------------------------------------------
def test_cem_services_run_real_subcommands_of_the_one_image() -> None:
    for name in CEM_IMAGE_SERVICES:
        service = services()[name]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert service["image"] == services()["worker"]["image"]
        assert service["command"][0] in subcommands()
    assert [services()[n]["command"] for n in CEM_IMAGE_SERVICES] == [["migrate"], ["worker"], ["collect"]]


def test_kafka_is_three_kraft_brokers_replicating_every_topic_three_times() -> None:
    pom = (DEPLOY / "kafka" / "pom.xml").read_text()
    version = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom).group(1)  # type: ignore[union-attr]
    brokers = {name: s for name, s in services().items() if s["image"].startswith("apache/kafka:")}
    assert len(brokers) == 3
    assert {s["image"] for s in brokers.values()} == {f"apache/kafka:{version}"}, "the version the tests run"
    voters = set()
    for name, service in brokers.items():
        env = service["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        voters.add(f"{env['KAFKA_NODE_ID']}@{name}:9093")
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == 3
        assert 1 < env["KAFKA_MIN_INSYNC_REPLICAS"] < 3, "acks=all survives one broker down"
    assert {s["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for s in brokers.values()} == {",".join(sorted(voters))}
    [cluster_id] = {s["environment"]["CLUSTER_ID"] for s in brokers.values()}
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16, "KRaft's cluster id is a UUID"
    for name in CEM_IMAGE_SERVICES:
        settings = settings_of(services()[name]["environment"])
        assert set(settings.kafka_bootstrap.split(",")) == {f"{b}:9092" for b in brokers}
        assert settings.topic_replication_factor == 3, "the topics the workers create are replicated too"


def test_workers_and_collector_share_topics_group_and_warehouse() -> None:
    envs = [services()[name]["environment"] for name in CEM_IMAGE_SERVICES]
    for key in ("CEM_TOPIC_PREFIX", "CEM_APP_ID", "CEM_TOPIC_PARTITIONS", "CEM_KAFKA_BOOTSTRAP", "CEM_CLICKHOUSE_URL",
                "CEM_SECRET_KEY"):
        assert len({str(env[key]) for env in envs}) == 1, key
    settings = settings_of(envs[0])
    assert settings.topic_prefix == "cem" and settings.raw_topic("web") == "cem.raw.web"
    url = services()["worker"]["environment"]["CEM_CLICKHOUSE_URL"]
    assert url.startswith("clickhouse://") and "@clickhouse:9000/" in url
    assert url.rsplit("/", 1)[1] == services()["clickhouse"]["environment"]["CLICKHOUSE_DB"]


def test_ports_and_health_checks_match_the_settings() -> None:
    worker = services()["worker"]
    web = settings_of(worker["environment"])
    assert web.web_host == "0.0.0.0"
    assert f"http://127.0.0.1:{web.web_port}/status" in " ".join(worker["healthcheck"]["test"])
    collector = services()["collector"]
    collect = settings_of(collector["environment"])
    assert collect.collect_host == "0.0.0.0"
    assert [p.split(":")[-1] for p in collector["ports"]] == [str(collect.collect_port)]
    assert f"http://127.0.0.1:{collect.collect_port}/health" in " ".join(collector["healthcheck"]["test"])
    grace = int(re.match(r"(\d+)s", worker["stop_grace_period"]).group(1))  # type: ignore[union-attr]
    assert grace > web.shutdown_grace_seconds


def test_workers_scale_and_start_after_kafka_clickhouse_and_the_migrations() -> None:
    worker = services()["worker"]
    assert "CEM_WORKERS" in str(worker["deploy"]["replicas"])
    assert "container_name" not in worker and "ports" not in worker, "several replicas must be able to run"
    assert worker["volumes"] == [settings_of(worker["environment"]).state_dir]
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert {"kafka-1", "kafka-2", "kafka-3"} <= set(worker["depends_on"])
    assert services()["migrate"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"


def test_prometheus_mounts_the_deploy_files_and_scrapes_every_worker_on_the_web_port() -> None:
    prometheus = services()["prometheus"]
    assert "./prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    [config_flag] = [a for a in prometheus["command"] if a.startswith("--config.file=/etc/prometheus/")]
    config_path = DEPLOY / "prometheus" / config_flag.removeprefix("--config.file=/etc/prometheus/")
    config = yaml.safe_load(config_path.read_text())
    for rule_file in config["rule_files"]:
        assert (config_path.parent / rule_file).exists()
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    [workers] = jobs["cem"]["dns_sd_configs"]
    assert workers["names"] == ["worker"]
    assert workers["port"] == settings_of(services()["worker"]["environment"]).web_port
    [collectors] = jobs["cem-collect"]["dns_sd_configs"]
    assert collectors["names"] == ["collector"]
    assert collectors["port"] == settings_of(services()["collector"]["environment"]).collect_port


def test_grafana_mounts_the_provisioning_and_the_dashboards_where_the_provider_looks() -> None:
    grafana = services()["grafana"]
    mounts = dict(volume.rsplit(":", 1)[0].split(":", 1) for volume in grafana["volumes"] if volume.endswith(":ro"))
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/cem.yml").read_text())
    assert mounts["./grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    datasources = [line for line in (DEPLOY / "grafana/provisioning/datasources/cem.yml").read_text().splitlines()
                   if not line.lstrip().startswith("#")]
    needed = set(re.findall(r"\$\{(\w+)\}", "\n".join(datasources)))
    assert needed and needed <= set(grafana["environment"])
    assert grafana["environment"]["PROMETHEUS_URL"] == "http://prometheus:9090"
    assert grafana["environment"]["CLICKHOUSE_HOST"] in services()


def test_the_grafana_user_clickhouse_gets_is_the_one_grafana_uses() -> None:
    clickhouse = services()["clickhouse"]
    [users_file] = [v.split(":")[0] for v in clickhouse["volumes"] if v.startswith("./clickhouse/")]
    users = (DEPLOY / users_file).read_text()
    assert 'from_env="CLICKHOUSE_GRAFANA_PASSWORD"' in users and "<readonly>2</readonly>" in users
    assert clickhouse["environment"]["CLICKHOUSE_GRAFANA_PASSWORD"] == \
        services()["grafana"]["environment"]["CLICKHOUSE_GRAFANA_PASSWORD"]


def test_every_secret_compose_requires_is_in_env_example() -> None:
    required = set(re.findall(r"\$\{(\w+):\?", (DEPLOY / "docker-compose.yml").read_text()))
    example = {line.split("=", 1)[0] for line in (DEPLOY / "env.example").read_text().splitlines()
               if line and not line.startswith("#")}
    assert required and required <= example


# ---- kubernetes ----------------------------------------------------------------------------------------------
def k8s_settings() -> Settings:
    return settings_of({**manifest("ConfigMap", "cem-config")["data"],
                        **manifest("Secret", "cem-secrets")["stringData"]})


def pod_container(kind: str, name: str) -> dict[str, Any]:
    [container] = manifest(kind, name)["spec"]["template"]["spec"]["containers"]
    return container


def named_port(container: dict[str, Any], port: str | int) -> int:
    if isinstance(port, int):
        return port
    [number] = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return int(number)


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    listed = yaml.safe_load((DEPLOY / "kubernetes/kustomization.yaml").read_text())["resources"]
    files = {p.name for p in (DEPLOY / "kubernetes").glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(listed) == files


@pytest.mark.parametrize(("kind", "name", "command"), [("StatefulSet", "cem-worker", "worker"),
                                                      ("Deployment", "cem-collector", "collect"),
                                                      ("Job", "cem-migrate", "migrate")])
def test_pods_run_a_real_subcommand_with_the_shared_config_and_resource_requests(kind: str, name: str,
                                                                                 command: str) -> None:
    container = pod_container(kind, name)
    assert container["args"] == [command] and command in subcommands()
    assert container["image"] == "cem"
    sources = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
    assert sources == {"cem-config", "cem-secrets"}
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]


def test_workers_are_a_statefulset_with_a_volume_for_the_state_dir_and_probes_on_status() -> None:
    settings = k8s_settings()
    worker = manifest("StatefulSet", "cem-worker")
    container = pod_container("StatefulSet", "cem-worker")
    [claim] = worker["spec"]["volumeClaimTemplates"]
    assert [m["mountPath"] for m in container["volumeMounts"] if m["name"] == claim["metadata"]["name"]] == [
        settings.state_dir]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/status" and named_port(container, get["port"]) == settings.web_port, probe
    assert settings.web_host == "0.0.0.0"
    template = worker["spec"]["template"]
    assert template["metadata"]["annotations"]["prometheus.io/port"] == str(settings.web_port)
    assert template["spec"]["terminationGracePeriodSeconds"] > settings.shutdown_grace_seconds
    service = manifest("Service", "cem-worker")
    assert worker["spec"]["serviceName"] == "cem-worker" and service["spec"]["clusterIP"] == "None"
    assert [named_port(container, p["targetPort"]) for p in service["spec"]["ports"]] == [settings.web_port]


def test_the_collector_is_a_deployment_with_probes_on_its_port() -> None:
    settings = k8s_settings()
    container = pod_container("Deployment", "cem-collector")
    assert container["livenessProbe"]["httpGet"]["path"] == "/status"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    for probe in ("livenessProbe", "readinessProbe"):
        assert named_port(container, container[probe]["httpGet"]["port"]) == settings.collect_port
    assert settings.collect_host == "0.0.0.0"
    service = manifest("Service", "cem-collector")
    assert [named_port(container, p["targetPort"]) for p in service["spec"]["ports"]] == [settings.collect_port]
    hpa = manifest("HorizontalPodAutoscaler", "cem-collector")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "cem-collector"


def test_workers_scale_on_the_consumer_lag_of_every_raw_topic_up_to_their_partitions() -> None:
    settings = k8s_settings()
    scaled = manifest("ScaledObject", "cem-worker")
    assert scaled["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "cem-worker"}
    triggers = scaled["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"kafka"}
    assert sorted(t["metadata"]["topic"] for t in triggers) == sorted(settings.raw_topics)
    assert {t["metadata"]["consumerGroup"] for t in triggers} == {settings.app_id}
    assert {t["metadata"]["bootstrapServers"] for t in triggers} == {settings.kafka_bootstrap}
    assert all(int(t["metadata"]["lagThreshold"]) > 0 for t in triggers)
    assert scaled["spec"]["maxReplicaCount"] == settings.topic_partitions, "more workers than partitions sit idle"
    assert wanted_topics(settings)[settings.raw_topic("web")] == settings.topic_partitions
    assert 0 < scaled["spec"]["minReplicaCount"] <= manifest("StatefulSet", "cem-worker")["spec"]["replicas"]


def test_the_secret_example_holds_the_secret_settings_and_no_real_value() -> None:
    secret = manifest("Secret", "cem-secrets")["stringData"]
    assert set(secret) == {"CEM_SECRET_KEY", "CEM_CLICKHOUSE_URL", "CEM_COLLECT_WRITE_KEYS"}
    assert all("replace" in value for value in secret.values())
    assert not set(secret) & set(manifest("ConfigMap", "cem-config")["data"]), "a secret never sits in the ConfigMap"


def test_compose_commands_quote_nothing_a_shell_would_split_differently() -> None:
    for name in CEM_IMAGE_SERVICES:
        assert shlex.split(shlex.join(services()[name]["command"])) == services()[name]["command"]
