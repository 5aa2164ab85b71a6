# segint — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
# `serve` pulls onnxruntime-gpu (runs on CPU too); EXTRAS=train,serve-cpu,features,dev for the CPU wheel.
EXTRAS ?= train,serve,features,dev
PYTEST_ARGS ?=

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch is pinned to the CPU wheel (2.13.0) so a fresh machine never pulls a CUDA build.
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[$(EXTRAS)]"
	@touch $@

# The scorer's video-block kernel and the compiled response heads (service/kernels: an ONNX
# Runtime custom operator and a ctypes function; g++ and ONNX Runtime's API headers from
# Debian's libonnxruntime-dev); on a machine where it cannot be built (not x86-64, no g++,
# Debian's package unreachable) the service serves the exported graph and numpy's heads.
KERNEL := build/kernels/segint_ops.so
$(KERNEL): $(VENV)/.installed $(wildcard service/kernels/*.cpp service/kernels/*.h) service/kernels/__init__.py
	$(PY) -m service.kernels build --out $@

.PHONY: kernels
kernels: $(KERNEL) ## build the scorer's custom-operator library (part of install)

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

.PHONY: install
install: $(VENV)/.installed $(KERNEL) ## create .venv, install segint with all extras, build the kernel

.PHONY: lint
lint: $(VENV)/.installed ## ruff check + ruff format --check + mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

.PHONY: format
format: $(VENV)/.installed ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

.PHONY: test
test: $(VENV)/.installed $(KERNEL) ## run the test suite (starts a throwaway redis-server when none answers)
	bash deploy/with-redis.sh $(VENV)/bin/pytest $(PYTEST_ARGS)

.PHONY: bench
bench: $(VENV)/.installed $(KERNEL) ## run the benchmarks in bench/ (writes reports/bench/*.json)
	$(PY) bench/run_all.py

.PHONY: serve
serve: $(VENV)/.installed $(KERNEL) ## train (if needed), export and serve the model on :8000
	bash deploy/serve.sh

# Load test: fixed arrival rate (requests/s) for DURATION. TARGET=local (default): against the
# process-based local stack (started if it is not running; `bash deploy/local-stack.sh down`
# stops it). TARGET=compose: locust's container against the compose stack's HAProxy (`make
# stack-up` first). Reports go to reports/load/.
RATE ?= 20
DURATION ?= 30s
TARGET ?= local
LOAD_HOST ?= http://127.0.0.1:$(or $(STACK_LB_PORT),8080)
LOAD_REPORT ?= reports/load/$(if $(filter compose,$(TARGET)),compose_)rate$(RATE)_$(DURATION)

.PHONY: load
load: $(VENV)/.installed ## load-test a stack: make load RATE=20 DURATION=30s [TARGET=local|compose]
ifeq ($(TARGET),compose)
	RATE=$(RATE) DURATION=$(DURATION) LOAD_REPORT=$(LOAD_REPORT) bash deploy/stack.sh load
else ifeq ($(TARGET),local)
	bash deploy/local-stack.sh up
	@mkdir -p $(dir $(LOAD_REPORT))
	$(VENV)/bin/locust -f deploy/load/locustfile.py --headless --host $(LOAD_HOST) \
		--rate $(RATE) --run-time $(DURATION) --reset-stats --only-summary \
		--csv $(LOAD_REPORT) --html $(LOAD_REPORT).html
	@echo "load: reports in $(LOAD_REPORT)_stats.csv, $(LOAD_REPORT).html, $(LOAD_REPORT)_summary.json"
else
	@echo "load: TARGET must be local or compose, got '$(TARGET)'" >&2; exit 2
endif

# The docker-compose stack (deploy/stack.sh; images built offline by deploy/images.sh).
# STACK_PROFILE=cluster adds the six-node Redis Cluster. Ports on 127.0.0.1: LB_PORT (18080),
# PROMETHEUS_PORT (19090).
.PHONY: stack-up
stack-up: $(VENV)/.installed ## start dockerd if needed, build images, train if needed, compose up, wait healthy
	bash deploy/stack.sh up

.PHONY: stack-down
stack-down: ## remove the compose stack's containers, networks and volumes
	bash deploy/stack.sh down

.PHONY: stack-drill
stack-drill: $(VENV)/.installed ## a fault drill against the compose stack: make stack-drill DRILL=a|b|c|cluster
	bash deploy/stack.sh drill $(DRILL)

.PHONY: stack-test
stack-test: $(VENV)/.installed ## stack-up + smoke load + drills a and b + stack-down (fails if no engine)
	bash deploy/stack.sh test
