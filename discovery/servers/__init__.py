"""Real etcd and ZooKeeper servers on free 127.0.0.1 ports, for tests, the CLI and the benchmark.

:class:`EtcdCluster` and :class:`ZooKeeperCluster` start one member or a
3-member cluster in a temporary directory, wait until it serves, hand out its
URL (``cluster.url()``) and stop it again, removing the directory; each
:class:`Member` can be killed, paused, resumed, stopped and restarted to play
failures. ``EtcdCluster(tls=EtcdTls(...))`` serves etcd's clients over https
with client certificates, and ``ZooKeeperCluster(tls=...)`` adds a TLS client
port to each member; :func:`make_test_certificates` makes throwaway files for
both, for tests. Nothing outlives the Python process: an ``atexit`` hook and a parent
death signal end forgotten servers. Programs are found through these
environment variables, then ``PATH`` and the Debian locations, and a missing
one raises :class:`MissingServerBinary` naming the packages to install:

- ``DISCOVERY_ETCD_BIN``: the etcd executable (Debian package ``etcd-server``).
- ``DISCOVERY_JAVA``: the java executable (``openjdk-17-jre-headless``; else ``$JAVA_HOME/bin/java``).
- ``DISCOVERY_ZOOKEEPER_CLASSPATH``: ZooKeeper's classpath (default: Debian ``zookeeper``'s
  ``/usr/share/java/zookeeper.jar``, plus ``slf4j-simple.jar`` for logs).
- ``DISCOVERY_SERVERS``: ``native`` (default) or ``docker``, where :func:`make_etcd_cluster`
  and :func:`make_zookeeper_cluster` (and so the pytest fixtures) take the servers from
  ``compose/`` through pytest-docker: :class:`DockerEtcdCluster` and
  :class:`DockerZooKeeperCluster` are the same clusters with containers for processes, and
  their :class:`DockerMember` members are killed, paused, stopped and restarted through
  the engine. ``DISCOVERY_COMPOSE_DIR`` points at the compose files;
  :func:`compose_commands` says how compose runs here (v2 ``docker compose``, else v1).

Errors::

    DiscoveryError
    └── ServerError
        ├── MissingServerBinary     (name, packages, env_var)
        └── ServerStartError        (member, reason, log_tail)
"""

from __future__ import annotations

from discovery.servers._binaries import find_etcd, find_java, find_zookeeper_classpath
from discovery.servers._docker import (
    ComposeCommands,
    DockerEtcdCluster,
    DockerMember,
    DockerZooKeeperCluster,
    compose_commands,
    docker_available,
    provider,
    require_docker,
)
from discovery.servers._errors import MissingServerBinary, ServerError, ServerStartError
from discovery.servers._etcd import EtcdCluster
from discovery.servers._ports import free_ports
from discovery.servers._process import Member
from discovery.servers._tls import EtcdTls, TlsFiles, make_test_certificates
from discovery.servers._zookeeper import ZooKeeperCluster, four_letter_word

__all__ = [
    "ComposeCommands",
    "DockerEtcdCluster",
    "DockerMember",
    "DockerZooKeeperCluster",
    "EtcdCluster",
    "EtcdTls",
    "Member",
    "MissingServerBinary",
    "ServerError",
    "ServerStartError",
    "TlsFiles",
    "ZooKeeperCluster",
    "compose_commands",
    "docker_available",
    "find_etcd",
    "find_java",
    "find_zookeeper_classpath",
    "four_letter_word",
    "free_ports",
    "make_etcd_cluster",
    "make_test_certificates",
    "make_zookeeper_cluster",
    "provider",
    "require_docker",
]


def make_etcd_cluster(members: int = 1) -> EtcdCluster | DockerEtcdCluster:
    """An etcd cluster, not started, from the provider ``$DISCOVERY_SERVERS`` selects.

    Args:
        members: 1, or 3 for a cluster.

    Returns:
        A native :class:`EtcdCluster`, or a :class:`DockerEtcdCluster` when the provider is docker.

    Raises:
        ServerError: the provider is unknown (a missing Docker engine is reported by ``start()``).
        MissingServerBinary: the native provider is selected and etcd is not installed.
    """
    if provider() == "docker":
        return DockerEtcdCluster(members)
    return EtcdCluster(members)


def make_zookeeper_cluster(members: int = 1) -> ZooKeeperCluster | DockerZooKeeperCluster:
    """A ZooKeeper cluster, not started, from the provider ``$DISCOVERY_SERVERS`` selects.

    Args:
        members: 1 (standalone), or 3 for an ensemble.

    Returns:
        A native :class:`ZooKeeperCluster`, or a :class:`DockerZooKeeperCluster` when the provider is docker.

    Raises:
        ServerError: the provider is unknown (a missing Docker engine is reported by ``start()``).
        MissingServerBinary: the native provider is selected and Java or ZooKeeper is not installed.
    """
    if provider() == "docker":
        return DockerZooKeeperCluster(members)
    return ZooKeeperCluster(members)
