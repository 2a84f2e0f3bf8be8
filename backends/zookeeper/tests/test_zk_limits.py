"""The declared limits of the ZooKeeper backend are the server's, measured on the real server.

A request above jute.maxbuffer (1,048,575 bytes by default) makes ZooKeeper
drop the connection, and with it every watch of the client. Path and value
travel in one request, so the backend declares a budget for the key's path
(``max_key_bytes``, as ``key_size`` counts it) and the rest, less a margin,
for the value (``max_value_bytes``). These tests store a key and a value at
both limits at once, and show that the margin is small: a little more is
refused by the server itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionLoss

from discovery.backend import Change, ChangeStream, Target
from discovery.testing.waiting import wait_until
from discovery_zookeeper import ZooKeeperBackend

BackendFactory = Callable[..., ZooKeeperBackend]
Collector = Callable[[ChangeStream, Callable[[list[Change]], bool]], list[Change]]
JUTE_MAXBUFFER = 0xFFFFF
"""ZooKeeper's default largest request, in bytes, path and value included."""
MARGIN = 16 * 1024
"""What the declared limits may leave unused of the server's: more than this above them must fail."""


def longest_key(backend: ZooKeeperBackend) -> str:
    """A key whose path is exactly ``max_key_bytes`` long, as the backend measures it."""
    # Checked first, so that limits left at the core's defaults (a GiB) allocate nothing here.
    assert backend.max_key_bytes + backend.max_value_bytes < JUTE_MAXBUFFER, "limits above the server's"
    key = "big/k"
    key += "k" * (backend.max_key_bytes - backend.key_size(key))
    assert backend.key_size(key) == backend.max_key_bytes
    return key


@pytest.fixture
def raw_client(hosts: str) -> Iterator[KazooClient]:
    """A kazoo client of its own: the server drops its connection on an oversized request."""
    client = KazooClient(hosts=hosts, timeout=4.0)
    client.start(timeout=15)
    yield client
    client.stop()
    client.close()


def test_key_size_is_the_znode_path_in_utf8(backends: BackendFactory, root: str) -> None:
    backend = backends()
    assert backend.key_size("shop/api/x") == len(f"{root}/shop/api/x")
    assert backend.key_size("shop/é") == len(f"{root}/shop/".encode()) + 2


@pytest.fixture(params=["zookeeper_cluster", "zookeeper_cluster3"])
def any_backends(
    request: pytest.FixtureRequest, make_target: Callable[..., Target], root: str
) -> Iterator[BackendFactory]:
    """Backends on the standalone server, then on the ensemble (where followers forward writes to the leader)."""
    cluster_hosts = str(request.getfixturevalue(request.param).hosts)
    made: list[ZooKeeperBackend] = []

    def make() -> ZooKeeperBackend:
        made.append(ZooKeeperBackend(make_target(cluster_hosts, root)))
        return made[-1]

    yield make
    for backend in made:
        backend.close()


def test_a_value_at_the_declared_limit_under_the_longest_key_is_stored(
    any_backends: BackendFactory, collect: Collector
) -> None:
    backend, observer = any_backends(), any_backends()
    key = longest_key(backend)
    value = b"v" * backend.max_value_bytes
    stream = observer.watch("big/", None)
    session = backend.open_session(4)
    backend.put(key, value, session)  # a create
    backend.put(key, value[:-1] + b"w", session)  # a setData of the same size
    persistent = key[:-1] + "p"
    backend.put(persistent, value, None)
    records = {key: value[:-1] + b"w", persistent: value}
    # On the ensemble the observer may read from a follower that has not applied the writes yet.
    wait_until(
        lambda: {record.key: record.value for record in observer.list("big/").records} == records,
        30,
        message="the other client reads both values",
    )
    # The stream read them too, on a connection that never dropped.
    collect(stream, lambda changes: {c.key: c.value for c in changes} == records)
    assert backend.session_id is not None and session.alive
    stream.close()


def test_the_declared_limit_is_close_to_the_servers(backend: ZooKeeperBackend, raw_client: KazooClient) -> None:
    path = backend._namespace.path(longest_key(backend))
    raw_client.create(path, b"v" * backend.max_value_bytes, makepath=True)
    raw_client.delete(path)
    with pytest.raises(ConnectionLoss):
        raw_client.create(path, b"v" * (backend.max_value_bytes + MARGIN))
