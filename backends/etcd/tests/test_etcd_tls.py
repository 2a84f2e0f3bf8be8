"""Both etcd backends against a real etcd serving its clients over TLS with client certificate authentication.

The server's certificates are throwaway ones from
:func:`discovery.servers.make_test_certificates`; the cluster's ``url()``
carries the ``protocol``, ``ca``, ``cert`` and ``key`` options. A client
without its certificate, or without the CA that verifies the server, is
refused with AuthenticationFailed on both APIs, never a raw requests or ssl exception.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

import discovery
from discovery.errors import AuthenticationFailed, BackendError
from discovery.models import EventKind
from discovery.servers import EtcdCluster, EtcdTls, make_test_certificates

SCHEMES = ["etcd", "etcd2"]


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> EtcdTls:
    """A fresh CA with a server and a client certificate for 127.0.0.1."""
    return make_test_certificates(Path(tmp_path_factory.mktemp("etcd-tls")))


@pytest.fixture(scope="module")
def tls_cluster(tls_files: EtcdTls) -> Iterator[EtcdCluster]:
    """A one-member etcd of its own, clients on https with ``--client-cert-auth``."""
    with EtcdCluster(members=1, tls=tls_files) as cluster:
        yield cluster


def test_cluster_serves_https_and_its_helpers_use_the_client_certificate(
    tls_cluster: EtcdCluster, tls_files: EtcdTls
) -> None:
    assert all(url.startswith("https://127.0.0.1:") for url in tls_cluster.client_urls)
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(tls_cluster.url("etcd2", "/r")).query))
    assert query == {
        "protocol": "https",
        "ca": str(tls_files.ca_file),
        "cert": str(tls_files.client_cert_file),
        "key": str(tls_files.client_key_file),
    }
    assert tls_cluster.version().startswith("3.")
    before = tls_cluster.revision()
    assert tls_cluster.compact() == before
    assert tls_cluster.leader() is tls_cluster.members[0]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_register_list_and_watch_over_tls(tls_cluster: EtcdCluster, root: str, scheme: str) -> None:
    with discovery.connect(tls_cluster.url(scheme, root)) as registry:
        with registry.watch("svc") as watch:
            registration = registry.register("svc", "host-1", address="127.0.0.1", port=8080, ttl=5)
            assert [instance.id for instance in registry.instances("svc")] == ["host-1"]
            added = watch.get(20)
            assert added is not None
            assert (added.kind, added.instance_id) == (EventKind.ADDED, "host-1")
            registration.close()
            removed = watch.get(20)
            assert removed is not None
            assert (removed.kind, removed.instance_id) == (EventKind.REMOVED, "host-1")
        assert registry.instances("svc") == []


def _url_without(cluster: EtcdCluster, scheme: str, root: str, *dropped: str) -> str:
    assert cluster.tls is not None
    options = {name: value for name, value in cluster.tls.url_options().items() if name not in dropped}
    return f"{scheme}://{cluster.hosts}{root}?{urllib.parse.urlencode({**options, 'timeout': '3'})}"


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(
    ("dropped", "reason"),
    [(("cert", "key"), "SSL"), (("ca",), "CERTIFICATE_VERIFY_FAILED")],
    ids=["no-client-cert", "no-ca"],
)
def test_client_without_certificate_or_ca_is_refused(
    tls_cluster: EtcdCluster, root: str, scheme: str, dropped: tuple[str, ...], reason: str
) -> None:
    url = _url_without(tls_cluster, scheme, root, *dropped)
    with discovery.connect(url) as registry, pytest.raises(BackendError) as caught:
        registry.instances("svc")
    error = caught.value
    # v3: requests' SSLError; etcd2: the SSL error python-etcd keeps as its EtcdConnectionFailed's cause.
    assert type(error) is AuthenticationFailed
    assert str(error).startswith(f"{scheme}: list: ")
    assert reason in str(error)
    assert error.orig is not None
