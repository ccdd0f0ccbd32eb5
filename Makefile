# cem — two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST := $(BIN)/python -m pytest
SOURCES := cem streams schemas sinks devtools tests bench

# The dev stack (make dev-up): where it keeps its data and which ports it takes; override on the command line.
DEV_DIR ?= .cem/dev
DEV_KAFKA_PORT ?= 19092
DEV_CLICKHOUSE_PORT ?= 19000
DEV := $(BIN)/python -m devtools.dev --dir "$(DEV_DIR)" --kafka-port $(DEV_KAFKA_PORT) \
	--clickhouse-port $(DEV_CLICKHOUSE_PORT)

.PHONY: help install system-deps demo dev-up dev-down dev-status dev-env test test-unit test-component test-integration test-faults lint typecheck check \
	check-deploy bench bench-history bench-outage clean

help:
	@echo "make demo       run the pipeline on embedded components (Tansu + chdb) and print the report"
	@echo "make test       install everything the tests need, lint, type-check and run every test"
	@echo "make dev-up     start Apache Kafka (127.0.0.1:$(DEV_KAFKA_PORT)) and a ClickHouse server (127.0.0.1:$(DEV_CLICKHOUSE_PORT)) in the background"
	@echo "make dev-down | dev-status | dev-env (eval \"\$$(make -s dev-env)\" points cem at the dev stack)"
	@echo "make test-unit | test-component | test-integration | test-faults | lint | typecheck | bench | bench-outage"

# pip's own progress (one line per package collected, a bar per download) shows what a first install is doing.
$(STAMP): pyproject.toml
	@echo "[install] creating $(VENV) and installing cem with its development tools (about a minute on a fresh clone)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --progress-bar on --upgrade pip
	$(BIN)/pip install --progress-bar on -e ".[dev]"
	touch $(STAMP)
	@echo "[install] done"

install: $(STAMP)

# Services the integration tests start themselves: a ClickHouse server (Debian), kcat (an outside Kafka
# client), Java for Apache Kafka, whose jars Maven resolves from Maven Central into ~/.cache/cem (so is Apicurio
# Registry, the schema registry of the Confluent-framing tests), Prometheus with promtool (Debian), and ZooKeeper
# (Debian's zookeeperd) for the ClickHouse cluster test, and Chromium (Debian) that renders `cem report --html` in its test. Where apt starts Debian's prometheus or zookeeper
# service, it is stopped and disabled: the tests run their own on free ports, and nothing may hold 9090 or 2181.
system-deps:
	@missing=""; \
	[ -x /usr/sbin/clickhouse-server ] || missing="$$missing clickhouse-server clickhouse-client"; \
	command -v kcat >/dev/null || missing="$$missing kcat"; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@if [ ! -x /usr/bin/promtool ]; then \
	  echo "installing: prometheus"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    --no-install-recommends prometheus; \
	  $$SUDO systemctl disable prometheus >/dev/null 2>&1; $$SUDO service prometheus stop >/dev/null 2>&1; true; \
	fi
	@if [ ! -f /usr/share/java/zookeeper.jar ] || [ ! -f /usr/share/java/slf4j-simple.jar ]; then \
	  echo "installing: zookeeperd libslf4j-java"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    --no-install-recommends zookeeperd libslf4j-java; \
	  $$SUDO systemctl disable zookeeper >/dev/null 2>&1; $$SUDO service zookeeper stop >/dev/null 2>&1; true; \
	fi
	@if ! command -v chromium >/dev/null; then \
	  echo "installing: chromium (the HTML report's rendering test)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    --no-install-recommends chromium; \
	fi
	bash deploy/kafka/fetch.sh >/dev/null
	bash deploy/registry/fetch.sh >/dev/null

# The demo is a development tool (devtools/), not part of the installed `cem` command.
demo: $(STAMP)
	$(BIN)/python -m devtools.demo

# A persistent local Kafka and ClickHouse server (no Docker) for `cem worker` and the README's examples;
# `make system-deps` installs the server packages. Data in $(DEV_DIR), kept by dev-down.
dev-up: $(STAMP)
	$(DEV) up

dev-down: $(STAMP)
	$(DEV) down

dev-status: $(STAMP)
	@$(DEV) status

# No install here: its output would end up in `eval "$(make -s dev-env)"`.
dev-env:
	@test -x $(BIN)/python || { echo "no $(VENV) yet: run make dev-up first" >&2; exit 1; }
	@$(DEV) env

lint: $(STAMP)
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy cem streams schemas sinks devtools bench

check: lint typecheck
	$(BIN)/cem schemas check

# Prometheus rules and config (promtool from Debian's prometheus package): syntax, lint, and the rules' unit tests.
# `promtool check metrics` on a live worker's /metrics runs in tests/integration/test_monitoring.py.
check-deploy: system-deps
	promtool check rules deploy/prometheus/rules/*.yml
	promtool check config deploy/prometheus/prometheus.yml
	promtool check config deploy/prometheus/compose.yml
	promtool test rules deploy/prometheus/tests/*.test.yml

# Pure logic: no process, connection or embedded engine (tests/unit/conftest.py refuses them).
test-unit: $(STAMP)
	$(PYTEST) tests/unit -q

# Real processes, threads, local sockets and the embedded ClickHouse (chdb); no Kafka, no ClickHouse server.
test-component: $(STAMP)
	$(PYTEST) tests/component -q

test-integration: $(STAMP) system-deps
	$(PYTEST) tests/integration -q -m "integration and not faults" $(PARALLEL)

test-faults: $(STAMP) system-deps
	$(PYTEST) tests -q -m faults $(PARALLEL)

# Two test files at a time (pytest-xdist): most integration and fault tests wait on brokers, servers and worker
# processes, so two of them share the 2 cores well. A file's tests stay together and share its services.
PARALLEL := -n 2 --dist loadfile

test: $(STAMP) system-deps check check-deploy
	$(PYTEST) tests -q -ra $(PARALLEL) --durations=15

bench: $(STAMP) system-deps
	$(BIN)/python -m bench.run

# Up to about 40 minutes: 1M then 3M events through one worker (bench/history.py)
bench-history: $(STAMP) system-deps
	$(BIN)/python -m bench.history

bench-outage: $(STAMP) system-deps
	$(BIN)/python -m bench.outage

# The dev stack's data is in .cem/dev: stop it before its directory goes. The demo's state is in
# ~/.local/share/cem (CEM_STATE_DIR), which clean leaves alone.
clean:
	-[ ! -x $(BIN)/python ] || $(DEV) down
	rm -rf $(VENV) .cem .pytest_cache .mypy_cache .ruff_cache
