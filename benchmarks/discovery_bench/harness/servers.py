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
from collections.abc import Iterator
from dataclasses import dataclass, field

from discovery.bench._targets import Target
from discovery.servers import EtcdCluster, ZooKeeperCluster

ROOT = "/discovery-bench"


@dataclass
class LocalServers:
    """The servers started for a run and what became of each.

    Attributes:
        etcd: the etcd cluster, when it started.
        zookeeper: the ZooKeeper cluster, when it started.
        failures: per server kind, why it could not start.
    """

    etcd: EtcdCluster | None = None
    zookeeper: ZooKeeperCluster | None = None
    failures: dict[str, str] = field(default_factory=dict)

    def targets(self, wanted: list[str]) -> tuple[list[Target], dict[str, str]]:
        """The targets for the wanted backends, and the reasons the others are skipped."""
        targets: list[Target] = []
        skipped: dict[str, str] = {}
        for label in wanted:
            if label == "memory":
                continue
            if label in ("etcd", "etcd2"):
                if self.etcd is None:
                    skipped[label] = f"etcd did not start: {self.failures.get('etcd', 'not requested')}"
                else:
                    targets.append(Target(label, self.etcd.url(label, root=ROOT), local=True))
            elif label == "zookeeper":
                if self.zookeeper is None:
                    skipped[label] = f"ZooKeeper did not start: {self.failures.get('zookeeper', 'not requested')}"
                else:
                    targets.append(Target(label, self.zookeeper.url("zookeeper", root=ROOT), local=True))
        return targets, skipped

    def versions(self) -> dict[str, str]:
        """The servers' versions, ``"unknown"`` where one does not say."""
        versions: dict[str, str] = {}
        for name, cluster in (("etcd", self.etcd), ("zookeeper", self.zookeeper)):
            if cluster is None:
                continue
            try:
                versions[name] = cluster.version()
            except Exception:  # a version is decoration; a failing request must not end the run
                versions[name] = "unknown"
        return versions


def _start(kind: str, servers: LocalServers) -> None:
    try:
        if kind == "etcd":
            servers.etcd = EtcdCluster(1, enable_v2=True).start()
        else:
            servers.zookeeper = ZooKeeperCluster(1).start()
    except Exception as exc:  # reported as a skipped backend, never a fake number
        servers.failures[kind] = f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def local_servers(wanted: list[str]) -> Iterator[LocalServers]:
    """Start the servers the wanted backends need, yield them, stop them however the block ends."""
    servers = LocalServers()
    kinds = []
    if {"etcd", "etcd2"} & set(wanted):
        kinds.append("etcd")
    if "zookeeper" in wanted:
        kinds.append("zookeeper")
    threads = [threading.Thread(target=_start, args=(kind, servers), name=f"bench-start-{kind}") for kind in kinds]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        yield servers
    finally:
        for thread in threads:
            thread.join()
        for cluster in (servers.zookeeper, servers.etcd):
            if cluster is not None:
                cluster.stop()
