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

.PHONY: test test-docker bench soak lint setup system-packages clean

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

# The docker leg: scripts/docker-up.sh makes a Docker engine ready (packages,
# dockerd, the base image), then the suite runs with DISCOVERY_SERVERS=docker
# against containers built from compose/: the conformance suite's core
# scenarios on every backend, one member and three (leader killed under load),
# the docker provider's own tests and faults (kill, restart, pause: tests/docker)
# and the server tests; scripts/docker-down.sh stops the engine even when pytest
# fails, and the leg exits with pytest's status. The whole suite runs natively in `make test`.
DOCKER_SUITES := $(addprefix backends/etcd/tests/test_etcd_suite.py::,TestEtcd TestEtcd2 TestEtcdCluster TestEtcd2Cluster) \
	$(addprefix backends/zookeeper/tests/test_zk_suite.py::,TestZooKeeper TestZooKeeperEnsemble)
DOCKER_TESTS := tests/docker tests/servers/test_etcd_server.py tests/servers/test_zookeeper_server.py \
	backends/zookeeper/tests/test_zk_persistent_watch.py::test_subscriptions_share_the_server_watch_until_the_last_is_removed \
	$(DOCKER_SUITES)
DOCKER_SCENARIOS := register_list_and_close or update_emits_one_updated or flapping or naive_rewatch \
	or lost_session_is_reregistered or resync_emits_the_minimal_difference or cache_answers_from_memory \
	or round_robin or leader_killed or lost_history or connection_loss or cut_off

test-docker: setup system-packages
	@$(PY) -c 'import pytest_docker' 2>/dev/null || $(PY) -m pip install -q -e '.[docker]'
	@status=0; \
	scripts/docker-up.sh && DISCOVERY_SERVERS=docker $(PY) -m pytest --parity-dir build/parity-docker \
		$(DOCKER_TESTS) -k 'not _suite.py or $(DOCKER_SCENARIOS)' || status=$$?; \
	scripts/docker-down.sh || { [ $$status -ne 0 ] || status=1; }; \
	exit $$status

bench: setup system-packages
	$(VENV)/bin/discovery bench --profile $(or $(PROFILE),default) --out bench-report

# The chaos soak (not part of make test, which runs a short seeded one):
# DURATION seconds in all (default 30 minutes), SEED to replay a run.
soak: setup system-packages
	$(VENV)/bin/discovery soak --duration $(or $(DURATION),1800) --out soak-report $(if $(SEED),--seed $(SEED))

clean:
	rm -rf $(VENV) bench-report soak-report .pytest_cache .mypy_cache
