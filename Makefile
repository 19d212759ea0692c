# telestack — one entry point for people and CI.  `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=
# make test: the suite on N xdist workers, each with its own servers, the whole-stack modules in two groups each taking
# turns on one of them (tests/conftest.py), then the compose check (0: one process)
TEST_WORKERS ?= 3
export TELESTACK_CACHE ?= $(HOME)/.cache/telestack
SCRIPTS := services/telestack/native/scripts
# this checkout, wherever make runs from (`make -f path/to/Makefile env` in another directory)
ROOT_DIR := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))

.PHONY: test-repeat docker-up docker-down docker-status images-local compose-check lock help setup venv servers test test-unit lint format services-up services-down bench bench-lineproto bench-alerting clean bench-can bench-mqtt bench-actuator bench-writer demo demo-down demo-check env bench-e2e chaos

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@echo "[setup] creating $(VENV) and installing telestack with its dev tools"
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed ## the virtualenv with telestack and its dev tools

servers: venv ## install Kafka, Mosquitto, InfluxDB and Telegraf natively (cached in ~/.cache/telestack)
	@$(VENV)/bin/telestack native install

docker-up: ## a Docker engine with compose: the running one, else dockerd started here (root, Debian; cached)
	@bash $(SCRIPTS)/docker-engine.sh up

docker-down: ## stop the dockerd that docker-up started (only that one; images stay cached)
	@bash $(SCRIPTS)/docker-engine.sh down

docker-status: ## which Docker engine answers, and the compose plugin's version
	@bash $(SCRIPTS)/docker-engine.sh status

images-local: servers ## stand-ins for the official images, built from the native servers' artifacts (no registry needed)
	@export DOCKER_HOST=$$(bash $(SCRIPTS)/docker-engine.sh up) && bash $(SCRIPTS)/build-images.sh

setup: venv servers images-local ## everything the tests need: servers, tools, engine and images

test: ## install what is missing, start an engine and the servers, run the whole suite, then the compose check
	@t0=$$(date +%s); \
	$(MAKE) --no-print-directory setup || exit $$?; \
	export DOCKER_HOST=$$(bash $(SCRIPTS)/docker-engine.sh up 2>/dev/null) TELESTACK_TEST_IMAGES=local; \
	t1=$$(date +%s); mkdir -p .native; checked="not run (NO_COMPOSE_CHECK)"; \
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadgroup --durations=20 $(PYTEST_ARGS); status=$$?; \
	t2=$$(date +%s); \
	if [ -z "$(NO_COMPOSE_CHECK)" ]; then \
		echo "[make test] the compose check, after the suite (its log: .native/compose-check.log)"; \
		$(VENV)/bin/python -m tests.compose_check --images local 2>&1 | tee .native/compose-check.log; \
		check_status=$${PIPESTATUS[0]}; checked="took $$(( $$(date +%s) - t2 )) s after the suite"; \
		[ $$check_status -eq 0 ] || { echo "[make test] the compose check FAILED (above)"; status=1; }; \
	fi; \
	echo "[make test] setup took $$((t1 - t0)) s, tests took $$((t2 - t1)) s, compose check $$checked"; \
	exit $$status

compose-check: setup ## docker compose up on a real engine, checked as a user would (health, data, kill -9, scale)
	@export DOCKER_HOST=$$(bash $(SCRIPTS)/docker-engine.sh up 2>/dev/null) && \
	$(VENV)/bin/python -m tests.compose_check --images local $(CHECK_ARGS)

lock: venv ## requirements.lock (the telestack image's exact dependencies, with hashes) from pyproject.toml
	@$(VENV)/bin/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --native-tls -q -o requirements.lock
	@echo "requirements.lock updated: rebuild the image (docker compose build)"

test-repeat: setup ## flake hunt: N runs (default 20) of a selection K=<pytest -k expr>, fresh servers each; pass count
	@test -n "$(K)" || { echo "usage: make test-repeat N=20 K='freeze or unreachable'"; exit 2; }
	@mkdir -p .native/test-repeat; passed=0; runs=$(or $(N),20); \
	export DOCKER_HOST=$$(bash $(SCRIPTS)/docker-engine.sh up 2>/dev/null) TELESTACK_TEST_IMAGES=local; \
	for i in $$(seq 1 $$runs); do \
		t0=$$(date +%s); \
		if $(VENV)/bin/pytest -q -p no:cacheprovider -k "$(K)" $(PYTEST_ARGS) > .native/test-repeat/run-$$i.log 2>&1; \
		then passed=$$((passed + 1)); result=passed; else result="FAILED (.native/test-repeat/run-$$i.log)"; fi; \
		echo "[test-repeat] run $$i/$$runs: $$result in $$(( $$(date +%s) - t0 )) s"; \
	done; \
	echo "[test-repeat] $$passed/$$runs runs passed: -k '$(K)'"; test $$passed -eq $$runs

test-unit: venv ## the tests that need no server, no built oracle and no long campaign, on every core
	@$(VENV)/bin/pytest -m "not integration and not oracle and not slow" -n auto --durations=10 $(PYTEST_ARGS)

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

env: ## .env for docker compose with every secret generated (keeps an existing .env); IMAGES=local: the stand-ins
	@test ! -e .env || { echo ".env exists; remove it first to regenerate"; exit 1; }
	@python3 $(ROOT_DIR)/services/telestack/native/images.py --images $(or $(IMAGES),official) .env.example .env
	@echo ".env written with generated secrets (mode 0600); docker compose up -d"

bench: ## every benchmark; each ends with one JSON line of figures
	@for target in $$(grep -oE '^bench-[a-z0-9-]+' $(MAKEFILE_LIST) | sort -u); do \
		echo "== $$target"; $(MAKE) --no-print-directory $$target || exit $$?; done

bench-lineproto: venv ## line protocol serialize and parse, lines/s
	@$(PY) -m benchmarks.lineproto

bench-writer: venv ## influx-writer: Kafka → InfluxDB field values/s, lines/s, writer CPU, end-to-end delay; Telegraf side by side
	@$(PY) -m benchmarks.writer

bench-actuator: venv ## actuator: command round trips to simulated plugs (p50/p99, commands/s), ingest lines/s
	@$(PY) -m benchmarks.actuator

bench-can: venv ## CAN gateway: recorded log → decode → Kafka, frames/s vs a plain python-can + cantools loop
	@$(PY) -m benchmarks.can

bench-alerting: venv ## alert evaluation points/s (100 rules x 1,000 series) and point → notification p99
	@$(PY) -m benchmarks.alerting

bench-mqtt: venv ## MQTT bridge: QoS 1 msg/s acked after Kafka, and CPU, on real Mosquitto and Kafka; Telegraf side by side
	@$(PY) -m benchmarks.mqtt

bench-e2e: venv ## whole stack: 3 CAN buses + MQTT devices → InfluxDB: frames/s, latency p99, loss (BENCH_ARGS=--find-max)
	@$(PY) -m benchmarks.e2e $(BENCH_ARGS)

chaos: setup ## fault injection at full size (kill -9, Kafka/InfluxDB/Mosquitto down) on servers of its own
	@TELESTACK_CHAOS_SIZE=full $(VENV)/bin/pytest -m chaos tests/chaos $(PYTEST_ARGS)

clean: services-down ## stop servers, remove the virtualenv and run data (keeps the build cache)
	rm -rf $(VENV) .native .pytest_cache .mypy_cache .ruff_cache
