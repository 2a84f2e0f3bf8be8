"""The backend contract checks on a standalone ZooKeeper server.

Not on the ensemble: two clients there may read from different members, and
a follower may not yet have applied another client's write, while several
checks read one client's write through another.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from discovery.testing.contract import BackendContract, BackendMaker
from discovery_zookeeper import ZooKeeperBackend


class TestZooKeeperContract(BackendContract):
    @pytest.fixture
    def backend_maker(self, backends: Callable[..., ZooKeeperBackend]) -> BackendMaker:
        return backends
