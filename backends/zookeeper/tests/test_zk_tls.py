"""The ZooKeeper backend against a real ZooKeeper 3.8 serving clients over TLS with client certificates.

The server's certificates are throwaway ones from
:func:`discovery.servers.make_test_certificates`; the cluster's ``url()``
names the members' secure ports with the ``use_ssl``, ``ca``, ``certfile``
and ``keyfile`` options, which the backend passes to kazoo. A client without
its certificate is refused by the server's handshake and, since kazoo only
retries, reported as a discovery error when connecting gives up.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

import discovery
from discovery.errors import BackendUnavailable
from discovery.models import EventKind
from discovery.servers import EtcdTls, ZooKeeperCluster, make_test_certificates


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> EtcdTls:
    """A fresh CA with a server and a client certificate for 127.0.0.1."""
    return make_test_certificates(Path(tmp_path_factory.mktemp("zk-tls")))


@pytest.fixture(scope="module")
def tls_cluster(tls_files: EtcdTls) -> Iterator[ZooKeeperCluster]:
    """A standalone ZooKeeper of its own with a TLS client port that requires client certificates."""
    with ZooKeeperCluster(tls=tls_files) as cluster:
        yield cluster


def test_url_names_the_secure_ports_and_the_tls_options(tls_cluster: ZooKeeperCluster, tls_files: EtcdTls) -> None:
    parts = urllib.parse.urlsplit(tls_cluster.url(root="/r"))
    assert parts.netloc == tls_cluster.secure_hosts != tls_cluster.hosts
    assert dict(urllib.parse.parse_qsl(parts.query)) == {
        "use_ssl": "true",
        "ca": str(tls_files.ca_file),
        "certfile": str(tls_files.client_cert_file),
        "keyfile": str(tls_files.client_key_file),
    }


def test_register_list_and_watch_over_tls(tls_cluster: ZooKeeperCluster, root: str) -> None:
    with discovery.connect(tls_cluster.url(root=root) + "&session_timeout=4") as registry:
        with registry.watch("svc") as watch:
            registration = registry.register("svc", "host-1", address="127.0.0.1", port=8080)
            assert [instance.id for instance in registry.instances("svc")] == ["host-1"]
            added = watch.get(20)
            assert added is not None and (added.kind, added.instance_id) == (EventKind.ADDED, "host-1")
            registration.close()
            removed = watch.get(20)
            assert removed is not None and (removed.kind, removed.instance_id) == (EventKind.REMOVED, "host-1")
        assert registry.instances("svc") == []


def test_client_without_certificate_is_refused(tls_cluster: ZooKeeperCluster, tls_files: EtcdTls, root: str) -> None:
    query = urllib.parse.urlencode({"use_ssl": "true", "ca": str(tls_files.ca_file), "connect_timeout": "3"})
    with pytest.raises(BackendUnavailable) as caught:
        discovery.connect(f"zookeeper://{tls_cluster.secure_hosts}{root}?{query}")
    assert str(caught.value).startswith("zookeeper: no server of ")


def test_plain_client_on_the_secure_port_is_refused(tls_cluster: ZooKeeperCluster, root: str) -> None:
    with pytest.raises(BackendUnavailable):
        discovery.connect(f"zookeeper://{tls_cluster.secure_hosts}{root}?connect_timeout=3")
