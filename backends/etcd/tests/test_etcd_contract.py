"""The backend contract checks on etcd, through the v3 API and the v2 API, on one member and on a 3-member cluster."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ClassVar

import pytest

from discovery.backend import Backend
from discovery.servers import EtcdCluster
from discovery.testing.contract import BackendContract, BackendMaker
from discovery_etcd import Etcd2Backend, EtcdBackend


class TestEtcdContract(BackendContract):
    """etcd v3 on the shared one-member server."""

    backend: ClassVar[type[Backend]] = EtcdBackend

    @pytest.fixture
    def backend_maker(self, make_backend: Callable[..., Backend], etcd_cluster: EtcdCluster) -> BackendMaker:
        return functools.partial(make_backend, self.backend, etcd_cluster)


class TestEtcd2Contract(TestEtcdContract):
    """etcd v2 on the shared one-member server."""

    backend: ClassVar[type[Backend]] = Etcd2Backend


class TestEtcdClusterContract(TestEtcdContract):
    """etcd v3 on the shared 3-member cluster: every member answers for the others."""

    timeout: ClassVar[float] = 60.0

    @pytest.fixture
    def backend_maker(self, make_backend: Callable[..., Backend], etcd_cluster3: EtcdCluster) -> BackendMaker:
        etcd_cluster3.wait_healthy()
        return functools.partial(make_backend, self.backend, etcd_cluster3)


class TestEtcd2ClusterContract(TestEtcdClusterContract):
    """etcd v2 on the shared 3-member cluster."""

    backend: ClassVar[type[Backend]] = Etcd2Backend
