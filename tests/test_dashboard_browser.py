"""The dashboard in a real browser (Debian's Chromium, driven by Playwright) on real etcd and ZooKeeper.

Each backend gets a server of its own, so the test can kill and restart it:
registering turns a node green, a defined minimum not met shows amber, the
registrant's death (SIGKILL) turns its node red within its ttl + 2 s, the
event log shows the events, and a server restart shows the watch state, then
recovers. The README's screenshot comes from the same browser
(``python -m discovery.testing.browser``), checked here too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import discovery
from discovery.dashboard import create_app, running
from discovery.servers import EtcdCluster, ZooKeeperCluster
from discovery.testing.browser import browser_page, screenshot
from discovery.testing.fixtures import ProcessRegistrant
from discovery.testing.waiting import wait_until

_WAIT_MS = 60_000


@dataclass
class Deployment:
    """A server of the test's own and how to reach it."""

    name: str
    cluster: Any
    url: str
    ttl: float
    """How long a dead registrant's instances live: the lease ttl, or ZooKeeper's session timeout."""


@pytest.fixture(scope="module", params=["etcd", "zookeeper"])
def deployment(request: pytest.FixtureRequest) -> Iterator[Deployment]:
    if request.param == "etcd":
        with EtcdCluster(members=1) as cluster:
            yield Deployment("etcd", cluster, cluster.url("etcd", "/dash"), 2.0)
    else:
        with ZooKeeperCluster(members=1) as cluster:
            yield Deployment("zookeeper", cluster, cluster.url("zk", "/dash") + "?session_timeout=4", 4.0)


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    with browser_page() as opened:
        yield opened


def _node(service: str, **data: object) -> str:
    attributes = "".join(f'[data-{name}="{value}"]' for name, value in data.items())
    return f'.node[data-service="{service}"]{attributes}'


def test_the_page_follows_the_registry_live(deployment: Deployment, page: Any) -> None:
    url, ttl = deployment.url, deployment.ttl
    with discovery.connect(url, reconnect_timeout=120) as registry, running(create_app(registry, "buzz")) as dashboard:
        registry.define("buzz/api", 1)
        registry.define("buzz/web", 2)
        page.goto(dashboard)
        page.wait_for_selector('body[data-ready="true"]', timeout=_WAIT_MS)
        page.wait_for_selector(_node("buzz/api", health="down"), timeout=_WAIT_MS)

        registrant = ProcessRegistrant(url, "buzz/api", ["i0", "i1"], ttl)
        page.wait_for_selector(_node("buzz/api", health="up", instances=2), timeout=_WAIT_MS)
        registry.register("buzz/web", "w0", address="10.0.0.9", port=80, ttl=ttl * 10)
        page.wait_for_selector(_node("buzz/web", health="degraded", instances=1, min=2), timeout=_WAIT_MS)
        page.wait_for_selector(_node("buzz", health="degraded"), timeout=_WAIT_MS)
        page.wait_for_selector('#log > li[data-kind="added"][data-path="buzz/api/i1"]', timeout=_WAIT_MS)
        page.click(_node("buzz/web") + " > .node-head")
        page.wait_for_selector('#instances[data-for="buzz/web"][data-count="1"] tr[data-instance-id="w0"]')
        assert page.inner_text('#instances tr[data-instance-id="w0"] .address') == "10.0.0.9"

        registrant.kill()
        started = time.monotonic()
        page.wait_for_selector(_node("buzz/api", health="down", instances=0), timeout=(ttl + 2) * 1000)
        turned_red = time.monotonic() - started
        assert turned_red <= ttl + 2, f"red after {turned_red:.1f} s"
        page.wait_for_selector('#log > li[data-kind="removed"][data-path="buzz/api/i0"]', timeout=_WAIT_MS)

        member = deployment.cluster.members[0]
        member.kill()
        page.wait_for_selector('#watch-state:not([data-state="connected"])', timeout=_WAIT_MS)
        assert page.is_visible("#state-banner")
        member.restart()
        page.wait_for_selector('#watch-state[data-state="connected"]', timeout=_WAIT_MS)
        wait_until(
            lambda: registry.register("buzz/api", "after", ttl=ttl * 10).alive,
            timeout=60,
            message="a registration once the server is back",
            ignore=(discovery.BackendError,),
        )
        page.wait_for_selector(_node("buzz/api", health="up", instances=1), timeout=_WAIT_MS)
        assert not page.is_visible("#state-banner")


def test_the_readme_screenshot_is_drawn_by_the_real_page(page: Any, tmp_path: Path) -> None:
    picture = tmp_path / "dashboard.png"
    screenshot(picture, page)
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert picture.stat().st_size > 10_000
