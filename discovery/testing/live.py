"""The conformance suite and the backend contract against a live registry given by ``--registry-url`` (see the plugin).

Each test works under a fresh root (or, for the contract, a fresh key prefix)
below the URL's root and removes what it registered. Registrant deaths are
played by killed processes, so the URL must be reachable from a subprocess too.
"""

from __future__ import annotations

import urllib.parse
from typing import ClassVar

import pytest

from discovery.testing.contract import BackendContract, BackendMaker, maker_from_url
from discovery.testing.fixtures import RegistryFixtures
from discovery.testing.suite import RegistrySuite


class LiveFixtures(RegistryFixtures):
    """Fixtures that aim the suite at the registry of ``--registry-url``."""

    label: ClassVar[str] = "live"
    ttl: ClassVar[float] = 2.0
    base_url: ClassVar[str] = ""

    @pytest.fixture(autouse=True)
    def _live_url(self, request: pytest.FixtureRequest) -> None:
        url = request.config.getoption("--registry-url")
        if not url:
            pytest.fail("the live suite needs --registry-url URL (with -p discovery.testing.plugin)")
        type(self).base_url = str(url)

    def make_url(self) -> str:
        parts = urllib.parse.urlsplit(self.base_url)
        path = parts.path.rstrip("/") + self.unique_root()
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


class TestLiveRegistry(RegistrySuite, LiveFixtures):
    """Every generic scenario, against the live registry."""


class TestLiveBackendContract(BackendContract):
    """The backend contract checks, against the backend of the live registry."""

    @pytest.fixture
    def backend_maker(self, request: pytest.FixtureRequest) -> BackendMaker:
        url = request.config.getoption("--registry-url")
        if not url:
            pytest.fail("the live contract needs --registry-url URL (with -p discovery.testing.plugin)")
        return maker_from_url(str(url))
