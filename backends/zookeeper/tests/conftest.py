"""Fixtures of the ZooKeeper backend's tests: backends and raw kazoo clients on a fresh root per test.

The shared standalone server and ensemble (``zookeeper_cluster``,
``zookeeper_cluster3``) come from :mod:`discovery.testing.server_fixtures`,
which the repository's root conftest loads. Tests that stop, pause or expire
a server start their own (``test_zk_faults.py``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from kazoo.client import KazooClient

from discovery.backend import Batch, Change, ChangeStream, Gap, Target
from discovery.servers import ZooKeeperCluster
from discovery_zookeeper import ZooKeeperBackend

SESSION_TIMEOUT = 4.0
"""Seconds; short, so that expiry scenarios take seconds, and well above the test server's 200 ms minimum."""

BackendFactory = Callable[..., ZooKeeperBackend]
Collector = Callable[[ChangeStream, Callable[[list[Change]], bool]], list[Change]]


def target(hosts: str, root: str, **options: object) -> Target:
    """A backend target for ``hosts`` (``"127.0.0.1:p1,127.0.0.1:p2"``) and ``root``."""
    pairs = tuple((host, int(port)) for host, _, port in (part.rpartition(":") for part in hosts.split(",")))
    merged: dict[str, object] = {"session_timeout": SESSION_TIMEOUT, "connect_timeout": 15.0, **options}
    return Target("zookeeper", pairs, root, merged)


@pytest.fixture
def make_target() -> Callable[..., Target]:
    """:func:`target`, for tests that build their own backends."""
    return target


@pytest.fixture
def root() -> str:
    """A fresh root znode for one test."""
    return f"/zk-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def hosts(zookeeper_cluster: object) -> str:
    """The shared server's client addresses."""
    return str(zookeeper_cluster.hosts)  # type: ignore[attr-defined]


@pytest.fixture
def backends(hosts: str, root: str) -> Iterator[BackendFactory]:
    """Make backends on the test's root (keyword arguments are options); all are closed after the test."""
    made: list[ZooKeeperBackend] = []

    def make(**options: object) -> ZooKeeperBackend:
        backend = ZooKeeperBackend(target(hosts, root, **options))
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def backend(backends: BackendFactory) -> ZooKeeperBackend:
    """One backend on the test's root."""
    return backends()


@pytest.fixture
def kazoo_client(hosts: str) -> Iterator[KazooClient]:
    """A plain kazoo client on the shared server, as another tool (zkCli.sh) would write."""
    client = KazooClient(hosts=hosts, timeout=SESSION_TIMEOUT)
    client.start(timeout=15)
    yield client
    client.stop()
    client.close()


@pytest.fixture
def collect() -> Collector:
    """Read a stream until the changes so far satisfy ``done``; fail after 30 s or on a gap."""

    def run(stream: ChangeStream, done: Callable[[list[Change]], bool]) -> list[Change]:
        deadline = time.monotonic() + 30.0
        changes: list[Change] = []
        last = 0
        while not done(changes):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"stream did not deliver the expected changes in time; got {changes!r}"
            item = stream.next(min(remaining, 1.0))
            assert not isinstance(item, Gap), f"unexpected gap {item!r} after {changes!r}"
            if isinstance(item, Batch):
                assert item.revision > last, "batch revisions must increase strictly"
                last = item.revision
                changes.extend(item.changes)
        return changes

    return run


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[ZooKeeperCluster]:
    """A standalone server of the calling module's own, to pause, kill and restart (the shared one stays healthy)."""
    with ZooKeeperCluster(members=1, tick_time_ms=100) as cluster:
        yield cluster


@pytest.fixture
def own_backends(
    own_cluster: ZooKeeperCluster, root: str, make_target: Callable[..., Target]
) -> Iterator[BackendFactory]:
    made: list[ZooKeeperBackend] = []

    def make(**options: object) -> ZooKeeperBackend:
        backend = ZooKeeperBackend(make_target(own_cluster.hosts, root, **options))
        made.append(backend)
        return backend

    yield make
    for member in own_cluster.members:
        if member.paused:
            member.resume()
        if not member.running:
            member.restart()
    for backend in made:
        backend.close()
