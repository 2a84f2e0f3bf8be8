"""``discovery pick`` on real servers, and the cache that ``watch`` and ``tree --watch`` now read.

``pick`` must print one line a shell can use (``address:port``, the
address alone, or the id), honour ``--zone`` and ``--strategy``, and exit 5
with one error line when the service has no instance. ``watch`` subscribes
to a cache and reads its contents in one step: the snapshot line and the
events after it must together be every change, none twice, even while
writes race the subscription; and an error in showing an event, or a
broken cache, must end the command instead of being logged and ignored.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

import discovery
from discovery import Event, Instance, Notice, NoticeKind, WatchBroken
from discovery.cli._commands import _Relay
from discovery.cli._render import instance_target, notice_text
from discovery.servers import EtcdCluster, ZooKeeperCluster

if TYPE_CHECKING:
    from tests.cli.conftest import Cli, Result


@pytest.fixture(params=["etcd", "etcd2", "zookeeper"])
def url(request: pytest.FixtureRequest, root: str) -> str:
    """A fresh root on each backend."""
    scheme: str = request.param
    cluster: EtcdCluster | ZooKeeperCluster = request.getfixturevalue(
        "zookeeper_cluster" if scheme == "zookeeper" else "etcd_cluster"
    )
    return cluster.url(scheme, root)


def picked(result: Result) -> str:
    """The one line ``pick`` printed, after checking it succeeded."""
    assert result.code == 0, result.err
    assert result.out.endswith("\n") and result.out.count("\n") == 1, result.out
    return result.out[:-1]


def test_pick_prints_address_and_port_on_every_backend(cli: Cli, url: str) -> None:
    with discovery.connect(url) as registry:
        registry.register("buzz/api", "host-1", address="10.0.0.5", port=8080, ttl=30)
        assert picked(cli.run("--url", url, "pick", "buzz/api")) == "10.0.0.5:8080"


def test_pick_exits_5_with_one_error_line_when_there_is_no_instance(
    cli: Cli, etcd_cluster: EtcdCluster, root: str
) -> None:
    url = etcd_cluster.url("etcd", root)
    with discovery.connect(url) as registry:
        # An instance of a sub-service is not one of the service.
        registry.register("buzz/api/v2", "host-1", address="10.0.0.5", port=8080, ttl=30)
        result = cli.run("--url", url, "pick", "buzz/api")
    assert result.code == 5, result.err
    assert result.out == ""
    errors = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert errors == ["error: no instance of 'buzz/api' to pick: the cache holds no instance of it"], result.err
    assert "Traceback" not in result.err


def test_pick_prefers_the_zone_and_spreads_random_picks(cli: Cli, etcd_cluster: EtcdCluster, root: str) -> None:
    url = etcd_cluster.url("etcd", root)
    with discovery.connect(url) as registry:
        registry.register("buzz/api", "eu-1", address="10.0.1.1", port=80, meta={"zone": "eu"}, ttl=30)
        registry.register("buzz/api", "us-1", address="10.0.2.1", port=80, meta={"zone": "us"}, ttl=30)
        registry.register("buzz/api", "us-2", address="10.0.2.2", port=80, meta={"zone": "us"}, ttl=30)
        assert picked(cli.run("--url", url, "pick", "buzz/api", "--zone", "eu")) == "10.0.1.1:80"
        weighted = cli.run("--url", url, "pick", "buzz/api", "--zone", "us", "--strategy", "weighted")
        assert picked(weighted) in {"10.0.2.1:80", "10.0.2.2:80"}
        # A zone with no instance falls back to the others.
        assert picked(cli.run("--url", url, "pick", "buzz/api", "--zone", "ap")) in {
            "10.0.1.1:80",
            "10.0.2.1:80",
            "10.0.2.2:80",
        }


def test_pick_refuses_a_bad_strategy_or_zone_with_exit_2(cli: Cli) -> None:
    bad_strategy = cli.run("--url", "memory://", "pick", "buzz/api", "--strategy", "fastest")
    assert bad_strategy.code == 2 and "fastest" in bad_strategy.err and "Traceback" not in bad_strategy.err
    bad_zone = cli.run("--url", "memory://", "pick", "buzz/api", "--zone", "eu west")
    assert bad_zone.code == 2 and "zone" in bad_zone.err and "Traceback" not in bad_zone.err


@pytest.mark.parametrize(
    ("address", "port", "expected"),
    [
        ("10.0.0.5", 8080, "10.0.0.5:8080"),
        ("api.example.com", 443, "api.example.com:443"),
        ("::1", 8080, "[::1]:8080"),
        ("10.0.0.5", None, "10.0.0.5"),
        (None, 8080, "host-1"),
        (None, None, "host-1"),
    ],
)
def test_the_target_printed_is_address_port_else_address_else_id(
    address: str | None, port: int | None, expected: str
) -> None:
    assert instance_target(Instance("buzz/api", "host-1", address, port)) == expected


def test_every_notice_reads_as_one_line() -> None:
    for kind in NoticeKind:
        text = notice_text(Notice(kind, "connection-loss", 7)).plain
        assert text and "\n" not in text
    assert "rev=7" in notice_text(Notice(NoticeKind.RESYNCED, "compacted", 7)).plain


# -- the cache under watch (memory backend, in process) ----------------------


@pytest.fixture
def registry() -> Iterator[discovery.Registry]:
    with discovery.connect(f"memory://cli-pick-{uuid.uuid4().hex[:10]}/r") as reg:
        yield reg


def _race_the_subscription(registry: discovery.Registry) -> None:
    """Subscribe while a writer registers instances; the snapshot and the events must hold each exactly once."""
    stop = threading.Event()
    written: list[str] = []

    def write() -> None:
        n = 0
        while not stop.is_set():
            registry.register("buzz/api", f"i{n}", ttl=30)
            written.append(f"i{n}")
            n += 1

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        with registry.cache("buzz") as cache:
            events: list[Event] = []
            snapshot = cache.subscribe(events.append, lambda notice: None).snapshot
            stop.set()
            writer.join()
            assert cache.wait_for(lambda c: len(snapshot.instances) + len(events) >= len(written), 10)
            seen = [i.id for i in snapshot.instances] + [e.instance_id for e in events]
            assert sorted(seen) == sorted(written)
            assert snapshot.apply(events).by_path() == cache.snapshot().by_path()
    finally:
        stop.set()
        writer.join()
        for instance_id in written:
            registry.deregister("buzz/api", instance_id)


def test_snapshot_and_events_are_every_change_once_while_writes_race_the_subscription(
    registry: discovery.Registry,
) -> None:
    for _ in range(20):
        _race_the_subscription(registry)


def test_an_error_in_showing_ends_the_command_instead_of_being_logged(registry: discovery.Registry) -> None:
    def fail(event: Event) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    with registry.cache("buzz") as cache:
        relay = _Relay(fail, lambda notice: None)
        cache.subscribe(relay.event, relay.notice)
        registry.register("buzz/api", "host-1", ttl=30)
        with pytest.raises(BrokenPipeError):
            relay.wait(cache)


def test_a_broken_cache_ends_the_command_with_watch_broken(registry: discovery.Registry) -> None:
    shown: list[Notice] = []
    with registry.cache("buzz") as cache:
        relay = _Relay(lambda event: None, shown.append)
        cache.subscribe(relay.event, relay.notice)
        cache._break(WatchBroken("buzz", "test"))  # as the cache's thread does when its watch gives up
        with pytest.raises(WatchBroken):
            relay.wait(cache)
    assert shown == []  # the command's error line tells it, once
