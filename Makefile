# Streaming chat replies through a reverse proxy: the demo and its proof.
# `make up` starts the demo, `make test` proves it. See README.md.

.DEFAULT_GOAL := help
SHELL := /bin/bash

HTTP_PORT ?= 8080
HTTPS_PORT ?= 8443
export HTTP_PORT HTTPS_PORT

VENV := .venv
PYTHON := $(VENV)/bin/python

.PHONY: help
help: ## Show the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# MODEL=local: the `model` profile (llama.cpp's server with SmolLM2-135M on
# the CPU) and the API pointed at it, with the development key make up wrote
# to .env. Anything else: the twin.
MODEL ?=
ifeq ($(MODEL),local)
MODEL_ENV = CHAT_SOURCE=openai CHAT_OPENAI_BASE_URL=http://model:8080/v1 \
	CHAT_OPENAI_MODEL=smollm2 CHAT_OPENAI_MAX_TOKENS=256 CHAT_HISTORY_MAX_CHARS=4000 \
	CHAT_OPENAI_API_KEY="$$(sed -n 's/^MODEL_API_KEY=//p' .env)"
else ifneq ($(MODEL),)
$(error MODEL is "local" or unset (the twin), not "$(MODEL)")
endif

# `make up OBSERVE=1` adds Prometheus and the exporters (compose profile
# "observe"); GRAFANA=1 adds Grafana too (profile "grafana", official image only).
ifneq ($(GRAFANA),)
OBSERVE := 1
endif
PROFILES := $(if $(OBSERVE),--profile observe) $(if $(GRAFANA),--profile grafana) $(if $(MODEL),--profile model)
export OBSERVE

# `make up IPV6=1`: an IPv6 compose network, so IPv6 clients keep their own
# address at nginx (compose.ipv6.yaml says what the engine needs). Every
# compose command of this Makefile then reads the same files.
ifneq ($(IPV6),)
export COMPOSE_FILE := compose.yaml:compose.override.yaml:compose.ipv6.yaml
endif

.PHONY: up
up: ## Build and start the stack, wait until healthy, print a demo token and how to try it [OBSERVE=1] [GRAFANA=1] [MODEL=local] [IPV6=1]
	scripts/base-images.sh
	scripts/dev-credentials.sh
	scripts/dev-certificate.sh
	$(MODEL_ENV) docker compose $(PROFILES) up --detach --build --wait
	@http="$$(docker compose port nginx 8080 | sed 's/.*://')"; https="$$(docker compose port nginx 8443 | sed 's/.*://')"; \
	token="$$($(MINT) --subject demo --ttl 86400)"; \
	echo; \
	echo "Chat with $(if $(MODEL),the model (SmolLM2-135M),the twin) in a browser (a demo token for 24 h is in the link):"; \
	echo "  http://localhost:$$http/#token=$$token"; \
	echo "  https://localhost:$$https/#token=$$token   (HTTP/2; self-signed: the browser warns)"; \
	echo; \
	echo "Or watch a reply arrive token by token (make token prints a new token):"; \
	echo "  curl -N -X POST http://localhost:$$http/api/chat/message/stream -H 'Content-Type: application/json' -H 'Authorization: Bearer '$$token -d '{\"message\": \"Hello, twin\"}'"; \
	echo "  (over HTTPS: https://localhost:$$https/api/chat/message/stream with --cacert certs/tls.crt)"; \
	echo
	@if [ -n "$(OBSERVE)" ]; then \
	  echo "Prometheus (graphs, alerts, targets): http://$$(docker compose $(PROFILES) port prometheus 9090)"; \
	fi
	@if [ -n "$(GRAFANA)" ]; then \
	  echo "Grafana (the chat-stream dashboard; admin password in .env): http://$$(docker compose $(PROFILES) port grafana 3000)"; \
	  echo; \
	fi

# Mints a token inside a running API container (with the stack's own secret).
MINT := docker compose exec -T api python -m app.tokens

SUBJECT ?= demo
TTL ?= 86400
.PHONY: token
token: ## Print a bearer token for the running stack: make token [SUBJECT=demo] [TTL=86400]
	@$(MINT) --subject '$(SUBJECT)' --ttl '$(TTL)'

.PHONY: down
down: ## Stop and remove the stack (with its observe, grafana and model services)
	docker compose --profile observe --profile grafana --profile model down --remove-orphans

# Docker Swarm: the same images and settings, deployed as a stack
# (deploy/swarm/). The stack file is written to a private temporary file and
# removed: it holds the secrets from .env.
STACK ?= chat-stream
.PHONY: swarm-up
swarm-up: ## Deploy the stack on Docker Swarm (run `docker swarm init` once first): make swarm-up [STACK=chat-stream]
	scripts/base-images.sh
	scripts/dev-credentials.sh
	scripts/dev-certificate.sh
	docker compose build
	@file="$$(mktemp)"; trap 'rm -f "$$file"' EXIT; \
	python3 deploy/swarm/stack.py >"$$file" && \
	docker stack deploy --resolve-image never --prune --compose-file "$$file" '$(STACK)'
	@echo "Tasks start in a few seconds: docker stack services $(STACK)"
	@echo "A token: docker exec \$$(docker ps -q -f label=com.docker.swarm.service.name=$(STACK)_api | head -n 1) python -m app.tokens --subject demo"

.PHONY: swarm-down
swarm-down: ## Remove the Swarm stack: make swarm-down [STACK=chat-stream]
	docker stack rm '$(STACK)'

.PHONY: logs
logs: ## Follow the stack's logs
	docker compose logs --follow

# The test environment is rebuilt when a requirements file changes.
$(VENV)/.installed: tests/requirements.txt services/api/requirements.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --requirement tests/requirements.txt
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Create .venv with the pinned test dependencies

.PHONY: lint
lint: venv ## Type-check (mypy --strict) and lint (ruff)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy services/api/app streamcheck tests services/api/tests bench deploy

.PHONY: test-unit
test-unit: venv ## Unit tests, in-process, no Docker
	$(PYTHON) -m pytest services/api/tests tests/unit

.PHONY: kube-check
kube-check: venv ## Render every Kubernetes overlay and check it (schemas, policies); no cluster (part of test-unit)
	$(PYTHON) -m pytest tests/unit/test_kubernetes_manifests.py

.PHONY: test-integration
# The images are built first, outside pytest's per-test timeout (a first
# build compiles the model server). The Swarm test runs once the compose
# stack is gone: leaving the swarm it started drops the DNS names of the
# engine's running containers.
test-integration: venv ## Integration tests against the real stack (Docker Compose), then on Docker Swarm
	$(PYTHON) -m tests.integration.images
	$(PYTHON) -m pytest tests/integration --ignore=tests/integration/test_swarm.py
	$(PYTHON) -m pytest tests/integration/test_swarm.py

.PHONY: test
test: lint test-unit test-integration ## Everything: lint, unit, then integration tests

MODE ?= quick
.PHONY: bench
bench: venv ## Benchmark the stack: MODE=quick (about 5 minutes) or MODE=full [ARGS=--only-stores]; results in bench/results/
	$(PYTHON) -m pip install --quiet --requirement bench/requirements-host.txt
	$(PYTHON) -m bench.run --mode $(MODE) $(ARGS)

.PHONY: bench-memory
bench-memory: venv ## Where one API process's memory per held stream goes (tracemalloc; no Docker) [STREAMS=2000]
	$(PYTHON) -m bench.stream_memory --streams $(or $(STREAMS),2000)

# The probe has an environment of its own with a handful of packages (not the
# test toolchain), and prints only its report: no command echo, and the
# token travels in the environment, never on a command line.
PROBE_VENV := .venv-probe
$(PROBE_VENV)/.installed: streamcheck/requirements.txt
	@python3 -m venv $(PROBE_VENV) >&2
	@$(PROBE_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --requirement streamcheck/requirements.txt >&2
	@touch $@

# The stack's own stream by default. HTTP_PORT=0 lets Docker choose the port
# (make up prints it), so Docker is asked for it, as make up does.
ifeq ($(HTTP_PORT),0)
PUBLISHED_HTTP_PORT = $(or $(shell docker compose port nginx 8080 2>/dev/null | sed 's/.*://'),$(error nginx publishes no port: start the stack (make up), or give URL=...))
else
PUBLISHED_HTTP_PORT = $(HTTP_PORT)
endif
URL ?= http://localhost:$(PUBLISHED_HTTP_PORT)/api/chat/message/stream
.PHONY: probe
probe: $(PROBE_VENV)/.installed ## Does a reply stream through URL? make probe URL=https://... [TOKEN=...] [ARGS=--http2]
	@PROBE_TOKEN='$(TOKEN)' $(PROBE_VENV)/bin/python -m streamcheck.probe '$(URL)' $(ARGS)

.PHONY: clean
clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) $(PROBE_VENV) .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
