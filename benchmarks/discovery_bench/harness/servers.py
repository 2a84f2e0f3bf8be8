"""The local servers a run starts when no ``--url`` is given: one etcd (v2 enabled) and one ZooKeeper.

Both start in parallel through :mod:`discovery.servers` on free loopback
ports and in temporary directories, and stop when the block ends, whether it
ends normally, on an error or on Ctrl-C (the clusters stop their members by
pid and remove their directories). A server that cannot start (its program is
not installed, it does not come up) is not fatal: the backends that need it
are skipped, with the reason, and the others still run.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from discovery.servers import EtcdCluster, ZooKeeperCluster
from discovery_bench.harness.targets import TRAITS, BenchTarget

ROOT = "/discovery-bench"

Cluster = EtcdCluster | ZooKeeperCluster

_SERVERS: dict[str, tuple[str, Callable[[], Cluster]]] = {
    "etcd": ("etcd", lambda: EtcdCluster(1, enable_v2=True)),
    "zookeeper": ("ZooKeeper", lambda: ZooKeeperCluster(1)),
}
"""Per server program (a backend trait): its name in messages, and how to make a one-member cluster."""


@dataclass
class LocalServers:
    """The servers started for a run and what became of each.

    Attributes:
        clusters: per server program, the cluster that started.
        failures: per server program, why it could not start.
    """

    clusters: dict[str, Cluster] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def targets(self, wanted: list[str]) -> tuple[list[BenchTarget], dict[str, str]]:
        """The targets for the wanted backends that need a server, and the reasons the others are skipped."""
        targets: list[BenchTarget] = []
        skipped: dict[str, str] = {}
        for label in wanted:
            server = TRAITS[label].server
            if server is None:
                continue
            cluster = self.clusters.get(server)
            if cluster is None:
                reason = self.failures.get(server, "not requested")
                skipped[label] = f"{_SERVERS[server][0]} did not start: {reason}"
            else:
                targets.append(BenchTarget(label, cluster.url(label, root=ROOT), local=True))
        return targets, skipped

    def pids(self) -> dict[str, list[int]]:
        """Per server program, the pids of its running members (what the server's CPU is read from)."""
        return {
            name: [pid for member in cluster.members if (pid := member.pid) is not None]
            for name, cluster in self.clusters.items()
        }

    def versions(self) -> dict[str, str]:
        """The servers' versions, ``"unknown"`` where one does not say."""
        versions: dict[str, str] = {}
        for name, cluster in self.clusters.items():
            try:
                versions[name] = cluster.version()
            except Exception:  # a version is decoration; a failing request must not end the run
                versions[name] = "unknown"
        return versions


def _start(server: str, servers: LocalServers) -> None:
    try:
        servers.clusters[server] = _SERVERS[server][1]().start()
    except Exception as exc:  # reported as a skipped backend, never a fake number
        servers.failures[server] = f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def local_servers(wanted: list[str]) -> Iterator[LocalServers]:
    """Start the servers the wanted backends need, yield them, stop them however the block ends."""
    servers = LocalServers()
    needed = [server for server in _SERVERS if any(TRAITS[label].server == server for label in wanted)]
    threads = [threading.Thread(target=_start, args=(kind, servers), name=f"bench-start-{kind}") for kind in needed]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        yield servers
    finally:
        for thread in threads:
            thread.join()
        for server in reversed(needed):
            cluster = servers.clusters.get(server)
            if cluster is not None:
                cluster.stop()
