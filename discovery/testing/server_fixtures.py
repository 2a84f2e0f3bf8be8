"""A pytest plugin of session-scoped local servers: one etcd, three etcd, one ZooKeeper, three ZooKeeper.

Enable it with ``pytest_plugins = ["discovery.testing.server_fixtures"]`` in the
root ``conftest.py`` (or ``-p discovery.testing.server_fixtures``). Each fixture
starts its servers the first time a test asks for it and stops them at the end
of the session, so a whole run pays each start once. Tests that kill, pause or
compact should start their own cluster instead of disturbing a shared one.
With ``DISCOVERY_SERVERS=docker`` the fixtures yield the docker clusters of
:mod:`discovery.servers`, each a compose project of ``compose/`` driven by
pytest-docker's ``docker_compose_command``, ``docker_setup`` and
``docker_cleanup`` fixtures. This plugin overrides the first two for the
machine at hand: ``docker compose`` and ``up --build --wait`` where the v2
plugin exists, else ``docker-compose`` and ``up --build -d`` (v1 has no
``--wait``; the clusters wait for health themselves).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from discovery.servers import (
    ComposeCommands,
    DockerEtcdCluster,
    DockerZooKeeperCluster,
    EtcdCluster,
    ZooKeeperCluster,
    compose_commands,
    provider,
)

__all__ = [
    "docker_cleanup",
    "docker_compose_command",
    "docker_setup",
    "etcd_cluster",
    "etcd_cluster3",
    "zookeeper_cluster",
    "zookeeper_cluster3",
]


@pytest.fixture(scope="session")
def docker_compose_command() -> str:
    """pytest-docker's compose command: ``docker compose`` (v2) where the plugin exists, else ``docker-compose``."""
    return compose_commands().command


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    """pytest-docker's setup: ``up --build --wait`` with v2, ``up --build -d`` with v1 (which has no ``--wait``)."""
    return list(compose_commands().setup)


@pytest.fixture(scope="session")
def docker_cleanup() -> list[str]:
    """pytest-docker's cleanup: ``down -v``, which removes the containers and their data."""
    return list(compose_commands().cleanup)


def _compose(request: pytest.FixtureRequest) -> ComposeCommands:
    """The compose commands as pytest-docker's fixtures give them (a conftest may override any of them)."""

    def commands(name: str) -> tuple[str, ...]:
        value = request.getfixturevalue(name)
        return (value,) if isinstance(value, str) else tuple(value)

    return ComposeCommands(
        request.getfixturevalue("docker_compose_command"), commands("docker_setup"), commands("docker_cleanup")
    )


def _etcd(request: pytest.FixtureRequest, members: int) -> EtcdCluster:
    if provider() == "docker":
        return DockerEtcdCluster(members, compose=_compose(request))
    return EtcdCluster(members)


def _zookeeper(request: pytest.FixtureRequest, members: int) -> ZooKeeperCluster:
    if provider() == "docker":
        return DockerZooKeeperCluster(members, compose=_compose(request))
    return ZooKeeperCluster(members)


@pytest.fixture(scope="session")
def etcd_cluster(request: pytest.FixtureRequest) -> Iterator[EtcdCluster]:
    """A one-member etcd, v2 API enabled, shared by the session."""
    with _etcd(request, 1) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def etcd_cluster3(request: pytest.FixtureRequest) -> Iterator[EtcdCluster]:
    """A three-member etcd cluster, v2 API enabled, shared by the session."""
    with _etcd(request, 3) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def zookeeper_cluster(request: pytest.FixtureRequest) -> Iterator[ZooKeeperCluster]:
    """A standalone ZooKeeper server, shared by the session."""
    with _zookeeper(request, 1) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def zookeeper_cluster3(request: pytest.FixtureRequest) -> Iterator[ZooKeeperCluster]:
    """A three-member ZooKeeper ensemble, shared by the session."""
    with _zookeeper(request, 3) as cluster:
        yield cluster
