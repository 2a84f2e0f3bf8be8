"""The conformance suite on etcd, through the v3 API (``etcd://``) and the v2 API (``etcd2://``).

Both backends run every generic scenario on a shared one-member etcd 3.4
(v2 enabled) and on a shared 3-member cluster whose leader is killed under
load; a server of their own is killed with SIGKILL and restarted mid-stream;
history is lost for real: compaction on v3, the 1000-event window on v2 —
once by writes and once by TTL refreshes alone, which push an idle watcher
out of the window without producing a single watch event.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import ClassVar

import etcd
import pytest

from discovery import Registry, connect
from discovery.servers import EtcdCluster, Member
from discovery.testing.faults import HistoryGapSuite, LeaderKillSuite, PartitionSuite, ServerRestartSuite
from discovery.testing.fixtures import RegistryFixtures
from discovery.testing.provider_suite import ProviderSuite
from discovery.testing.suite import RegistrySuite
from discovery.testing.waiting import wait_until
from discovery_etcd import Etcd2Backend, EtcdBackend


@pytest.fixture(scope="module")
def own_etcd() -> Iterator[EtcdCluster]:
    """A one-member etcd for the tests that kill it or flood its history, so no other test is disturbed."""
    with EtcdCluster(members=1) as cluster:
        yield cluster


def _python_etcd(cluster: EtcdCluster) -> etcd.Client:
    host, _, port = cluster.client_urls[0].removeprefix("http://").rpartition(":")
    return etcd.Client(host=host, port=int(port))


class EtcdFixtures(RegistryFixtures):
    """The v3 backend on the shared one-member etcd."""

    label: ClassVar[str] = "etcd"
    scheme: ClassVar[str] = "etcd"
    ttl: ClassVar[float] = 2.0
    timeout: ClassVar[float] = 60.0
    gap_reason: ClassVar[str] = "compacted"
    cluster: EtcdCluster

    @pytest.fixture(autouse=True)
    def _use_cluster(self, etcd_cluster: EtcdCluster) -> None:
        self.cluster = etcd_cluster

    def make_url(self) -> str:
        return self.cluster.url(self.scheme, self.unique_root())

    def lose_session(self, registry: Registry) -> None:
        assert isinstance(registry.backend, EtcdBackend)
        for session in registry.sessions:
            self.cluster.request("/v3/lease/revoke", {"ID": session.id})

    def lose_history(self, registry: Registry, since: int) -> None:
        self.cluster.compact()


class Etcd2Fixtures(EtcdFixtures):
    """The v2 backend on the shared one-member etcd."""

    label: ClassVar[str] = "etcd2"
    scheme: ClassVar[str] = "etcd2"
    ttl: ClassVar[float] = 1.0
    gap_reason: ClassVar[str] = "history-window"

    def lose_session(self, registry: Registry) -> None:
        """Delete the session's keys behind its back: its next refresh finds each gone, and the core puts it again."""
        assert isinstance(registry.backend, Etcd2Backend)
        client = _python_etcd(self.cluster)
        for session in registry.sessions:
            for key in session.held():  # type: ignore[attr-defined]
                with contextlib.suppress(etcd.EtcdKeyNotFound):
                    client.delete(key)

    def lose_history(self, registry: Registry, since: int) -> None:
        client = _python_etcd(self.cluster)
        filler = f"/filler-{self.unique_root().strip('/')}"
        for n in range(1010):
            client.write(filler, n)


class TestEtcd(RegistrySuite, ProviderSuite, HistoryGapSuite, PartitionSuite, EtcdFixtures):
    """Every generic scenario on etcd v3, and a watch from a compacted revision."""


class TestEtcd2(RegistrySuite, ProviderSuite, Etcd2Fixtures):
    """Every generic scenario on etcd v2."""


class OwnServer(EtcdFixtures):
    """Puts the test on a server of this module alone, for faults that disturb every client."""

    @pytest.fixture(autouse=True)
    def _use_cluster(self, own_etcd: EtcdCluster) -> None:  # type: ignore[override]
        self.cluster = own_etcd

    def restart_server(self) -> None:
        member = self.cluster.members[0]
        member.kill()
        member.restart()


class TestEtcdRestart(ServerRestartSuite, OwnServer):
    """etcd v3: the server killed with SIGKILL and restarted mid-stream."""


class TestEtcd2Restart(ServerRestartSuite, OwnServer, Etcd2Fixtures):
    """etcd v2: the server killed with SIGKILL and restarted mid-stream."""


class TestEtcd2HistoryWindow(HistoryGapSuite, PartitionSuite, OwnServer, Etcd2Fixtures):
    """etcd v2: a watch from an index pushed out of the 1000-event window by writes."""


class TestEtcd2RefreshOnlyWindow(HistoryGapSuite, OwnServer, Etcd2Fixtures):
    """etcd v2: the window passed by TTL refreshes alone, which are not watch events."""

    def lose_history(self, registry: Registry, since: int) -> None:
        client = _python_etcd(self.cluster)
        with connect(self.make_url()) as refresher:
            for n in range(300):
                refresher.register("refresh", f"r{n}", ttl=1)
            start = int(client.read("/").etcd_index)
            wait_until(
                lambda: int(client.read("/").etcd_index) - start > 1010,
                timeout=60,
                message="TTL refreshes alone to push the index past the v2 history window",
            )


class OnCluster(EtcdFixtures):
    """Puts the test on the shared 3-member cluster; a killed leader is restarted after the test."""

    killed: list[Member]

    @pytest.fixture(autouse=True)
    def _use_cluster(self, etcd_cluster3: EtcdCluster) -> Iterator[None]:  # type: ignore[override]
        self.cluster = etcd_cluster3
        self.killed = []
        yield
        for member in self.killed:
            member.restart()
        self.cluster.wait_healthy()

    def kill_leader(self) -> None:
        leader = self.cluster.leader()
        leader.kill()
        self.killed.append(leader)


class TestEtcdCluster(RegistrySuite, ProviderSuite, LeaderKillSuite, OnCluster):
    """Every generic scenario on a 3-member etcd cluster (v3), and its leader killed under load."""

    label: ClassVar[str] = "etcd x3"


class TestEtcd2Cluster(RegistrySuite, ProviderSuite, LeaderKillSuite, OnCluster, Etcd2Fixtures):
    """Every generic scenario on a 3-member etcd cluster (v2), and its leader killed under load."""

    label: ClassVar[str] = "etcd2 x3"
