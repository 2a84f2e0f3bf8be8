"""Fixtures of the etcd backends' tests: real etcd 3.4 servers, a fresh root per test.

The shared one-member server (``etcd_cluster``) comes from
:mod:`discovery.testing.server_fixtures`, which the repository's root
conftest loads.
Tests that kill, restart or compact a server, or flood its v2 history, use
``etcd_own``, a server of this package's tests alone, so that no other
test's watch sees the disturbance.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from discovery.backend import Backend, Batch, ChangeStream, Gap, Target
from discovery.servers import EtcdCluster
from discovery_etcd import Etcd2Backend, EtcdBackend

BackendFactory = Callable[..., Backend]


def hosts_of(cluster: EtcdCluster) -> tuple[tuple[str, int], ...]:
    """The ``(host, port)`` pairs of a cluster's members."""
    pairs = []
    for url in cluster.client_urls:
        host, _, port = url.removeprefix("http://").rpartition(":")
        pairs.append((host, int(port)))
    return tuple(pairs)


@pytest.fixture(scope="session")
def etcd_own() -> Iterator[EtcdCluster]:
    """A one-member etcd (v2 enabled) that only the disruptive tests of this package use."""
    with EtcdCluster(members=1) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def etcd_own3() -> Iterator[EtcdCluster]:
    """A three-member etcd that only the failure tests of this package use (members get killed and paused)."""
    with EtcdCluster(members=3) as cluster:
        yield cluster


@pytest.fixture
def root() -> str:
    """A fresh root for one test."""
    return f"/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_backend(root: str) -> Iterator[BackendFactory]:
    """Build backends on a cluster under the test's root; every one is closed after the test.

    Call it as ``make_backend(EtcdBackend, cluster, hosts=None, **options)``.
    """
    made: list[Backend] = []

    def make(
        cls: type[Backend],
        cluster: EtcdCluster,
        hosts: tuple[tuple[str, int], ...] | None = None,
        **options: object,
    ) -> Backend:
        values = {name: option.default for name, option in cls.options.items()}
        values.update(options)
        backend = cls(Target(cls.name, hosts or hosts_of(cluster), root, values))
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def v3(make_backend: BackendFactory, etcd_cluster: EtcdCluster) -> EtcdBackend:
    """An etcd v3 backend on the shared server."""
    backend = make_backend(EtcdBackend, etcd_cluster)
    assert isinstance(backend, EtcdBackend)
    return backend


@pytest.fixture
def v2(make_backend: BackendFactory, etcd_cluster: EtcdCluster) -> Etcd2Backend:
    """An etcd v2 backend on the shared server."""
    backend = make_backend(Etcd2Backend, etcd_cluster)
    assert isinstance(backend, Etcd2Backend)
    return backend


def collect(
    stream: ChangeStream, until: Callable[[list[Batch]], bool], timeout: float = 20.0
) -> tuple[list[Batch], Gap | None]:
    """Read batches until ``until(batches)`` holds or a Gap comes; fail at the deadline."""
    batches: list[Batch] = []
    deadline = time.monotonic() + timeout
    while not until(batches):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"stream did not deliver in {timeout:g} s; got {batches!r}")
        item = stream.next(min(remaining, 1.0))
        if isinstance(item, Gap):
            return batches, item
        if item is not None:
            batches.append(item)
    return batches, None


@pytest.fixture
def read_stream() -> Callable[..., tuple[list[Batch], Gap | None]]:
    """:func:`collect`, as a fixture (test modules cannot import this conftest)."""
    return collect
