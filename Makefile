# telestack — one entry point for people and CI.  `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=
export TELESTACK_CACHE ?= $(HOME)/.cache/telestack

.PHONY: help setup venv servers test test-unit lint format services-up services-down bench bench-lineproto bench-alerting clean bench-can bench-mqtt bench-actuator bench-writer demo demo-down demo-check env bench-e2e chaos

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@echo "[setup] creating $(VENV) and installing telestack with its dev tools"
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed ## the virtualenv with telestack and its dev tools

servers: venv ## install Kafka, Mosquitto and InfluxDB natively (cached in ~/.cache/telestack)
	@$(VENV)/bin/telestack native install

setup: venv servers ## everything the tests need

test: ## install what is missing, start the servers, run the whole suite, stop them
	@t0=$$(date +%s); \
	$(MAKE) --no-print-directory setup || exit $$?; \
	t1=$$(date +%s); \
	$(VENV)/bin/pytest $(PYTEST_ARGS); status=$$?; \
	t2=$$(date +%s); \
	echo "[make test] setup took $$((t1 - t0)) s, tests took $$((t2 - t1)) s"; \
	exit $$status

test-unit: venv ## only the tests that need no server
	@$(VENV)/bin/pytest -m "not integration" $(PYTEST_ARGS)

lint: venv ## ruff (style, bugs, no print) and mypy
	@$(VENV)/bin/ruff check services tests benchmarks
	@$(VENV)/bin/ruff format --check services tests benchmarks
	@$(VENV)/bin/mypy

format: venv ## apply ruff's fixes and formatting
	@$(VENV)/bin/ruff check --fix services tests benchmarks
	@$(VENV)/bin/ruff format services tests benchmarks

services-up: servers ## start Kafka, Mosquitto and InfluxDB in the background (./.native)
	@$(VENV)/bin/telestack native up

services-down: venv ## stop them
	@$(VENV)/bin/telestack native down

demo: servers ## the whole stack without Docker: servers, services, simulators; Ctrl-C stops it (.native/demo)
	@$(VENV)/bin/telestack demo up

demo-down: venv ## stop a `make demo` running in another terminal
	@$(VENV)/bin/telestack demo down

demo-check: servers ## fresh demo; fails unless every simulator's data is in InfluxDB within 60 s
	@$(VENV)/bin/telestack demo check --timeout 60

env: ## .env for docker compose: .env.example with every empty secret generated (keeps an existing .env)
	@test ! -e .env || { echo ".env exists; remove it first to regenerate"; exit 1; }
	@python3 -c 'import re, secrets, sys; \
	  text = open(".env.example").read(); \
	  fill = lambda m: m.group(1) + "=" + (secrets.token_hex(24) if re.search("PASSWORD|TOKEN|SECRET", m.group(1)) else ""); \
	  out = re.sub(r"^(MQTT_\w+_PASSWORD|INFLUXDB_ADMIN_PASSWORD|INFLUXDB_ADMIN_TOKEN|GRAFANA_ADMIN_PASSWORD)=$$", fill, text, flags=re.M); \
	  open(".env", "w").write(out)'
	@chmod 600 .env
	@echo ".env written with generated secrets (mode 0600); docker compose up -d"

bench: ## every benchmark; each ends with one JSON line of figures
	@for target in $$(grep -oE '^bench-[a-z0-9-]+' $(MAKEFILE_LIST) | sort -u); do \
		echo "== $$target"; $(MAKE) --no-print-directory $$target || exit $$?; done

bench-lineproto: venv ## line protocol serialize and parse, lines/s
	@$(PY) -m benchmarks.lineproto

bench-writer: venv ## influx-writer: Kafka → InfluxDB field values/s, lines/s, writer CPU, end-to-end delay
	@$(PY) -m benchmarks.writer

bench-actuator: venv ## actuator: command round trips to simulated plugs (p50/p99, commands/s), ingest lines/s
	@$(PY) -m benchmarks.actuator

bench-can: venv ## CAN gateway: recorded log → decode → Kafka, frames/s vs a plain python-can + cantools loop
	@$(PY) -m benchmarks.can

bench-alerting: venv ## alert evaluation points/s (100 rules x 1,000 series) and point → notification p99
	@$(PY) -m benchmarks.alerting

bench-mqtt: venv ## MQTT bridge: QoS 1 msg/s acked after Kafka, and CPU, on real Mosquitto and Kafka
	@$(PY) -m benchmarks.mqtt

bench-e2e: venv ## whole stack: 3 CAN buses + MQTT devices → InfluxDB: frames/s, latency p99, loss (BENCH_ARGS=--find-max)
	@$(PY) -m benchmarks.e2e $(BENCH_ARGS)

chaos: setup ## fault injection at full size (kill -9, Kafka/InfluxDB/Mosquitto down) on servers of its own
	@TELESTACK_CHAOS_SIZE=full $(VENV)/bin/pytest -m chaos tests/chaos $(PYTEST_ARGS)

clean: services-down ## stop servers, remove the virtualenv and run data (keeps the build cache)
	rm -rf $(VENV) .native .pytest_cache .mypy_cache .ruff_cache
