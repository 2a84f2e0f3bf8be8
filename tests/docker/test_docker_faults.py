"""Fault scenarios on containers: a server killed and restarted, or frozen, mid-stream, on every backend.

The backends' suites already kill the leader of the docker clusters under
``DISCOVERY_SERVERS=docker`` (their 3-member fixtures are the session's
clusters), but they restart a whole server on one of their own, which their
modules always start natively. Here each backend gets a one-member container
of this module alone, killed with ``docker kill`` and started again on its
data (:class:`~discovery.testing.faults.ServerRestartSuite`), and frozen with
``docker pause`` then thawed (:class:`FrozenServerSuite`). With the native
provider the same scenarios run in ``backends/*/tests``, so these classes run
in the docker leg only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from discovery import Registry
from discovery.servers import EtcdCluster, ZooKeeperCluster, make_etcd_cluster, make_zookeeper_cluster, provider
from discovery.testing.checks import CacheProbe, collect, wait_converged
from discovery.testing.faults import ServerRestartSuite, paused, retry
from discovery.testing.fixtures import RegistryFixtures

pytestmark = pytest.mark.skipif(
    provider() != "docker",
    reason="containers only (DISCOVERY_SERVERS=docker, as make test-docker sets it); "
    "the native servers play these faults in backends/*/tests",
)


@pytest.fixture(scope="module")
def own_etcd() -> Iterator[EtcdCluster]:
    """A one-member etcd container that only this module kills and pauses."""
    with make_etcd_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def own_zookeeper() -> Iterator[ZooKeeperCluster]:
    """A standalone ZooKeeper container that only this module kills and pauses."""
    with make_zookeeper_cluster() as cluster:
        yield cluster


class FrozenServerSuite(RegistryFixtures):
    """The server frozen mid-stream for a few seconds, shorter than any session (hooks: pause_server, resume_server).

    A frozen server keeps its connections but answers nothing; once thawed,
    the watch goes on without a gap or resyncs, and the watch and a cache
    converge to the store, with every registration still alive.
    """

    pause_seconds: ClassVar[float] = 2.0
    # Provided by the fixtures class, which comes after the suites in a test class's bases.
    pause_server: Callable[[], None]
    resume_server: Callable[[], None]

    def test_server_paused_mid_stream(self, registry: Registry, other: Registry, parity: dict[str, Any]) -> None:
        kept = registry.register("frozen", "kept", ttl=self.ttl * 20)
        with other.watch("frozen") as watch, CacheProbe(other, "frozen") as probe:
            registry.register("frozen", "before", ttl=self.ttl * 20)
            events = collect(watch, lambda seen: "before" in {e.instance_id for e in seen}, self.timeout)
            with paused(self.pause_server, self.resume_server, self.pause_seconds):
                pass
            retry(lambda: registry.register("frozen", "after", ttl=self.ttl * 20), self.timeout)
            events = wait_converged(watch, other, events, self.timeout)
            probe.assert_converged(other, self.timeout)
            parity.update(expected=2, seen=len(events), resyncs=watch.resyncs)
            assert not watch.closed
        assert {e.instance_id for e in events} >= {"before", "after"}
        assert kept.alive
        assert sorted(i.id for i in other.instances("frozen")) == ["after", "before", "kept"]


class OneContainerFixtures(RegistryFixtures):
    """The faults on a one-member cluster of containers: its member killed and restarted, paused and resumed."""

    cluster: EtcdCluster | ZooKeeperCluster

    def restart_server(self) -> None:
        member = self.cluster.members[0]
        member.kill()
        member.restart()

    def pause_server(self) -> None:
        self.cluster.members[0].pause()

    def resume_server(self) -> None:
        self.cluster.members[0].resume()


class EtcdContainerFixtures(OneContainerFixtures):
    """etcd v3 on this module's container."""

    label: ClassVar[str] = "etcd"
    scheme: ClassVar[str] = "etcd"
    ttl: ClassVar[float] = 2.0
    cluster: EtcdCluster

    @pytest.fixture(autouse=True)
    def _use_cluster(self, own_etcd: EtcdCluster) -> None:
        self.cluster = own_etcd

    def make_url(self) -> str:
        return self.cluster.url(self.scheme, self.unique_root())


class Etcd2ContainerFixtures(EtcdContainerFixtures):
    """etcd v2 on this module's container."""

    label: ClassVar[str] = "etcd2"
    scheme: ClassVar[str] = "etcd2"
    ttl: ClassVar[float] = 1.0


class ZooKeeperContainerFixtures(OneContainerFixtures):
    """ZooKeeper on this module's container, with sessions longer than the faults."""

    label: ClassVar[str] = "zookeeper"
    ttl: ClassVar[float] = 2.0
    session_timeout: ClassVar[float] = 8.0
    cluster: ZooKeeperCluster

    @pytest.fixture(autouse=True)
    def _use_cluster(self, own_zookeeper: ZooKeeperCluster) -> None:
        self.cluster = own_zookeeper

    def make_url(self) -> str:
        return f"{self.cluster.url('zookeeper', self.unique_root())}?session_timeout={self.session_timeout:g}"


class TestEtcdContainer(ServerRestartSuite, FrozenServerSuite, EtcdContainerFixtures):
    """etcd v3: the container killed and restarted, and frozen, mid-stream."""


class TestEtcd2Container(ServerRestartSuite, FrozenServerSuite, Etcd2ContainerFixtures):
    """etcd v2: the container killed and restarted, and frozen, mid-stream."""


class TestZooKeeperContainer(ServerRestartSuite, FrozenServerSuite, ZooKeeperContainerFixtures):
    """ZooKeeper: the container killed and restarted within the session timeout, and frozen, mid-stream."""
