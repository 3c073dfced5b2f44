# Two commands do all set-up on a fresh machine:
#   make run    install and start one node (embedded KV store, no etcd needed) with examples/agent.yaml
#   make test   install what the tests need (etcd, Prometheus, ... from Debian) and run the whole suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
ADDR   ?= 127.0.0.1:12345

.PHONY: run test install lint

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) -m service -config.file=examples/agent.yaml -server.http.address=$(ADDR)

lint: install
	$(VENV)/bin/ruff check service tests bench

test: install
	bash tests/install-deps.sh
	$(VENV)/bin/ruff check service tests bench
	$(PY) -m pytest -n 2 --durations=15 $(PYTEST_ARGS)
