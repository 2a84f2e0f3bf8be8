"""The conformance suite on ZooKeeper: a standalone server and a 3-member ensemble, with faults.

The registry's ttl is advisory on ZooKeeper (a session's timeout is per
connection), so URLs carry ``session_timeout``; a registrant's death is seen
after it. Faults are played for real: a session expired by the server
(``lose_session``), a connection cut under the client (``connection_lost``),
the server killed with SIGKILL and restarted, the ensemble's leader killed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import ClassVar

import pytest

from discovery import Registry
from discovery.servers import Member, ZooKeeperCluster
from discovery.testing.faults import ConnectionLossSuite, LeaderKillSuite, ServerRestartSuite
from discovery.testing.fixtures import RegistryFixtures
from discovery.testing.provider_suite import ProviderSuite
from discovery.testing.suite import RegistrySuite
from discovery.testing.waiting import wait_until
from discovery_zookeeper import ZooKeeperBackend


@pytest.fixture(scope="module")
def own_zookeeper() -> Iterator[ZooKeeperCluster]:
    """A standalone server for the tests that kill it, so that no other test is disturbed."""
    with ZooKeeperCluster(members=1, tick_time_ms=100) as cluster:
        yield cluster


class ZooKeeperFixtures(RegistryFixtures):
    """Fixtures on a shared standalone ZooKeeper; subclasses pick another cluster."""

    label: ClassVar[str] = "zookeeper"
    ttl: ClassVar[float] = 2.0
    timeout: ClassVar[float] = 60.0
    session_timeout: ClassVar[float] = 2.0
    cluster: ZooKeeperCluster

    @pytest.fixture(autouse=True)
    def _use_cluster(self, zookeeper_cluster: ZooKeeperCluster) -> None:
        self.cluster = zookeeper_cluster

    def make_url(self) -> str:
        return f"{self.cluster.url('zookeeper', self.unique_root())}?session_timeout={self.session_timeout:g}"

    def lose_session(self, registry: Registry) -> None:
        assert isinstance(registry.backend, ZooKeeperBackend)
        registry.backend.expire_session()

    def connection_lost(self, registry: Registry) -> contextlib.AbstractContextManager[None]:
        assert isinstance(registry.backend, ZooKeeperBackend)
        backend = registry.backend

        @contextlib.contextmanager
        def cut() -> Iterator[None]:
            backend.drop_connection()
            yield

        return cut()


class TestZooKeeper(RegistrySuite, ProviderSuite, ConnectionLossSuite, ZooKeeperFixtures):
    """Every generic scenario and a connection loss within the session, on a standalone server."""


class OwnServerFixtures(ZooKeeperFixtures):
    """A standalone server of this class alone, so that killing it disturbs no other test."""

    label: ClassVar[str] = "zookeeper"
    session_timeout: ClassVar[float] = 8.0

    @pytest.fixture(autouse=True)
    def _use_cluster(self, own_zookeeper: ZooKeeperCluster) -> None:  # type: ignore[override]
        self.cluster = own_zookeeper

    def restart_server(self) -> None:
        member = self.cluster.members[0]
        member.kill()
        member.restart()


class TestZooKeeperRestart(ServerRestartSuite, OwnServerFixtures):
    """The server killed with SIGKILL and restarted mid-stream, within the session timeout."""


class EnsembleFixtures(ZooKeeperFixtures):
    """The shared 3-member ensemble; a killed leader is restarted after the test."""

    label: ClassVar[str] = "zookeeper x3"
    session_timeout: ClassVar[float] = 6.0
    killed: list[Member]

    @pytest.fixture(autouse=True)
    def _use_cluster(self, zookeeper_cluster3: ZooKeeperCluster) -> Iterator[None]:  # type: ignore[override]
        self.cluster = zookeeper_cluster3
        self.killed = []
        yield
        for member in self.killed:
            member.restart()
        wait_until(lambda: self.cluster.leader() is not None, timeout=60, message="the ensemble to have a leader")

    def kill_leader(self) -> None:
        leader = self.cluster.leader()
        leader.kill()
        self.killed.append(leader)


class TestZooKeeperEnsemble(RegistrySuite, ProviderSuite, LeaderKillSuite, EnsembleFixtures):
    """Every generic scenario on a 3-member ensemble, and its leader killed under load."""
