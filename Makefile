# The two commands: `make bench` (the comparison benchmark) and `make test`.
# Both bootstrap everything they need: .venv with the core, every backend
# distribution under backends/ and the benchmark distribution benchmarks/
# (editable), and the Debian packages for the local servers (etcd-server,
# zookeeper, a Java runtime) when missing.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
BACKENDS := $(sort $(dir $(wildcard backends/*/pyproject.toml)))
STAMP := $(VENV)/.installed
PACKAGES := discovery $(patsubst %/,%,$(dir $(wildcard backends/*/discovery_*/__init__.py))) benchmarks/discovery_bench

.PHONY: test bench lint setup system-packages clean

setup: $(STAMP)

$(STAMP): pyproject.toml $(wildcard backends/*/pyproject.toml) benchmarks/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,dashboard]' $(foreach b,$(BACKENDS),-e ./$(b)) -e ./benchmarks
	@touch $@

system-packages:
	@scripts/install-system-packages.sh

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy --strict $(PACKAGES)

test: setup system-packages lint
	$(PY) -m pytest

bench: setup system-packages
	$(VENV)/bin/discovery bench --profile $(or $(PROFILE),default) --out bench-report

clean:
	rm -rf $(VENV) bench-report .pytest_cache .mypy_cache
