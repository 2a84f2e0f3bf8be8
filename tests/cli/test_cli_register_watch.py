"""The long-running commands on real servers: register, watch and tree --watch, stopped by signals.

``register`` must deregister at once when stopped (the instance disappears
well before its ttl), ``watch`` must print every change another process
makes, line by line as it happens, and all three must exit 0 on Ctrl-C or
SIGTERM. Each test reads the subprocess's stdout line by line with a
deadline; nothing waits a fixed time.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

import discovery
from discovery.servers import EtcdCluster, ZooKeeperCluster
from discovery.testing.waiting import wait_until

if TYPE_CHECKING:
    from tests.cli.conftest import Cli

LONG_TTL = "60"


@pytest.fixture(params=["etcd", "etcd2", "zookeeper"])
def url(request: pytest.FixtureRequest, root: str) -> str:
    """A fresh root on each backend."""
    scheme: str = request.param
    cluster: EtcdCluster | ZooKeeperCluster = request.getfixturevalue(
        "zookeeper_cluster" if scheme == "zookeeper" else "etcd_cluster"
    )
    return cluster.url(scheme, root)


def starts_with(prefix: str) -> Callable[[str], bool]:
    return lambda line: line.startswith(prefix)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_register_keeps_the_instance_until_stopped_then_removes_it_at_once(
    cli: Cli, url: str, signum: signal.Signals
) -> None:
    registrant = cli.spawn(
        "--url", url, "register", "buzz/api", "host-1", "--port", "8080", "--meta", "version=1.4.2", "--ttl", LONG_TTL
    )
    ready = registrant.wait_for(starts_with("registered "), what="the ready line")
    assert ready == f"registered buzz/api/host-1 on {url} (ttl {LONG_TTL}s)"
    assert f"using {url.split(':')[0]} at {url} (--url)" in registrant.err
    with discovery.connect(url) as registry:
        (instance,) = registry.instances("buzz/api")
        assert (instance.id, instance.port, dict(instance.meta)) == ("host-1", 8080, {"version": "1.4.2"})
        assert registrant.stop(signum, timeout=20) == 0
        # Gone as soon as the command has exited: deregistered, not left to expire after 60 s.
        assert registry.instances("buzz/api") == []
    assert "deregistered buzz/api/host-1" in registrant.rest()
    assert "Traceback" not in registrant.err


def test_watch_prints_what_another_process_registers(cli: Cli, url: str) -> None:
    watcher = cli.spawn("--url", url, "watch", "buzz")
    assert watcher.wait_for(starts_with("snapshot: "), what="the snapshot line").startswith(
        "snapshot: 0 instances at rev="
    )
    registrant = cli.spawn("--url", url, "register", "buzz/api", "host-1", "--ttl", LONG_TTL)
    registrant.wait_for(starts_with("registered "), what="the ready line")
    added = watcher.wait_for(starts_with("ADDED "), what="the ADDED line")
    assert added.startswith("ADDED buzz/api host-1 rev=")
    assert registrant.stop(signal.SIGINT) == 0
    removed = watcher.wait_for(starts_with("REMOVED "), what="the REMOVED line")
    assert removed.startswith("REMOVED buzz/api host-1 rev=")
    assert int(removed.split("rev=")[1].split()[0]) > int(added.split("rev=")[1].split()[0])
    assert watcher.stop(signal.SIGTERM) == 0
    assert "Traceback" not in watcher.err


def test_watch_json_replays_from_a_revision(cli: Cli, etcd_cluster: EtcdCluster, root: str) -> None:
    url = etcd_cluster.url("etcd", root)
    with discovery.connect(url) as registry:
        start = registry.snapshot().revision
        registry.register("buzz/api", "h1", port=1, ttl=30).close()
        registry.register("buzz/api", "h2", port=2, ttl=30)
        watcher = cli.spawn("--url", url, "watch", "--json", "--since", str(start))
        header = json.loads(watcher.wait_for(lambda line: '"SNAPSHOT"' in line, what="the snapshot object"))
        assert (header["size"], header["since"], header["instances"]) == (0, start, [])
        events = [json.loads(watcher.wait_for(lambda line: '"kind"' in line, what=f"event {n}")) for n in range(3)]
        assert [(e["kind"], e["instance_id"]) for e in events] == [("ADDED", "h1"), ("REMOVED", "h1"), ("ADDED", "h2")]
        assert set(events[0]) == {"kind", "service", "instance_id", "instance", "revision", "resync", "expired"}
        assert events[2]["instance"]["port"] == 2
        assert [e["revision"] for e in events] == sorted(e["revision"] for e in events)
        assert not any(e["resync"] for e in events)
        assert watcher.stop(signal.SIGINT) == 0


def test_tree_watch_redraws_on_every_change(cli: Cli, etcd_cluster: EtcdCluster, root: str) -> None:
    url = etcd_cluster.url("etcd", root)
    with discovery.connect(url) as registry:
        registry.define("buzz/api", 2)
        viewer = cli.spawn("--url", url, "tree", "--watch", "buzz")
        viewer.wait_for(lambda line: "api  0/2  down (no-instances)" in line, what="the first tree")
        first = registry.register("buzz/api", "h1", ttl=30)
        viewer.wait_for(lambda line: "api  1/2  degraded (below-minimum)" in line, what="the degraded tree")
        registry.register("buzz/api", "h2", ttl=30)
        viewer.wait_for(lambda line: "api  2/2  up" in line, what="the up tree")
        first.close()
        viewer.wait_for(lambda line: "api  1/2  degraded" in line, what="degraded again")
        assert viewer.stop(signal.SIGINT) == 0
    assert sum(line.startswith("--- revision ") for line in viewer.lines) == 4
    assert "Traceback" not in viewer.err


def test_register_shows_a_lost_lease_and_the_re_registration(cli: Cli, root: str) -> None:
    with EtcdCluster() as cluster:
        url = cluster.url("etcd", root)
        # A short ttl: the keep-alive, which notices the lost lease, runs every ttl/3 or so.
        registrant = cli.spawn("--url", url, "register", "buzz/api", "host-1", "--ttl", "3")
        registrant.wait_for(starts_with("registered "), what="the ready line")
        # The server drops the lease, as after a long partition: the command must say so and recover.
        for lease in cluster.request("/v3/lease/leases", {}).get("leases", []):
            cluster.request("/v3/lease/revoke", {"ID": lease["ID"]})
        registrant.wait_for(starts_with("lost buzz/api/host-1"), what="the lost line")
        registrant.wait_for(starts_with("re-registered buzz/api/host-1"), what="the re-registered line")
        with discovery.connect(url) as registry:
            wait_until(lambda: registry.instances("buzz/api"), timeout=10, message="instance back")
            assert registrant.stop(signal.SIGINT) == 0
            assert registry.instances("buzz/api") == []
