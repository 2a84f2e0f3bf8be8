"""A pytest plugin of session-scoped local servers: one etcd, three etcd, one ZooKeeper, three ZooKeeper.

Enable it with ``pytest_plugins = ["discovery.testing.server_fixtures"]`` in the
root ``conftest.py`` (or ``-p discovery.testing.server_fixtures``). Each fixture
starts its servers the first time a test asks for it and stops them at the end
of the session, so a whole run pays each start once. Tests that kill, pause or
compact should start their own cluster instead of disturbing a shared one.
With ``DISCOVERY_SERVERS=docker`` the fixtures yield the docker clusters of
:mod:`discovery.servers` instead, which offer URLs and health but no members.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from discovery.servers import (
    DockerEtcdCluster,
    DockerZooKeeperCluster,
    EtcdCluster,
    ZooKeeperCluster,
    make_etcd_cluster,
    make_zookeeper_cluster,
)

__all__ = ["etcd_cluster", "etcd_cluster3", "zookeeper_cluster", "zookeeper_cluster3"]


@pytest.fixture(scope="session")
def etcd_cluster() -> Iterator[EtcdCluster | DockerEtcdCluster]:
    """A one-member etcd, v2 API enabled, shared by the session."""
    with make_etcd_cluster(1) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def etcd_cluster3() -> Iterator[EtcdCluster | DockerEtcdCluster]:
    """A three-member etcd cluster, v2 API enabled, shared by the session."""
    with make_etcd_cluster(3) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def zookeeper_cluster() -> Iterator[ZooKeeperCluster | DockerZooKeeperCluster]:
    """A standalone ZooKeeper server, shared by the session."""
    with make_zookeeper_cluster(1) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def zookeeper_cluster3() -> Iterator[ZooKeeperCluster | DockerZooKeeperCluster]:
    """A three-member ZooKeeper ensemble, shared by the session."""
    with make_zookeeper_cluster(3) as cluster:
        yield cluster
