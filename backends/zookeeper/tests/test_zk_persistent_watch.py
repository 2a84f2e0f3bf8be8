"""The persistent recursive watch module alone, against a real ZooKeeper 3.8: every notification, nothing else."""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient

from discovery.servers import ZooKeeperCluster
from discovery.testing.waiting import wait_until
from discovery_zookeeper._persistent_watch import (
    AddWatchRequest,
    Notification,
    NotificationKind,
    PersistentWatches,
    RemoveWatchesRequest,
)

SESSION_TIMEOUT = 4.0
CREATED = NotificationKind.CREATED
DELETED = NotificationKind.DELETED
CHANGED = NotificationKind.DATA_CHANGED


class Recorder:
    """A subscriber that records what it hears."""

    def __init__(self) -> None:
        self.notes: list[Notification] = []
        self.reasons: list[str] = []
        self._lock = threading.Lock()

    def notify(self, notification: Notification) -> None:
        with self._lock:
            self.notes.append(notification)

    def lost(self, reason: str) -> None:
        with self._lock:
            self.reasons.append(reason)

    def seen(self) -> list[tuple[NotificationKind, str]]:
        with self._lock:
            return [(note.kind, note.path) for note in self.notes]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[tuple[NotificationKind, str]]:
        wait_until(lambda: len(self.seen()) >= count, timeout, message=f"{count} notifications")
        return self.seen()


@pytest.fixture
def watched(hosts: str) -> Iterator[tuple[KazooClient, PersistentWatches]]:
    client = KazooClient(hosts=hosts, timeout=SESSION_TIMEOUT)
    watches = PersistentWatches(client)
    client.start(timeout=15)
    yield client, watches
    watches.close()
    client.stop()
    client.close()


def test_requests_serialize_as_the_protocol_says() -> None:
    assert AddWatchRequest("/a/b").type == 106
    assert AddWatchRequest("/a/b").serialize() == struct.pack("!i", 4) + b"/a/b" + struct.pack("!i", 1)
    assert RemoveWatchesRequest("/a").type == 18
    assert RemoveWatchesRequest("/a").serialize() == struct.pack("!i", 2) + b"/a" + struct.pack("!i", 3)


def test_every_kind_below_the_path_in_order_and_nothing_beside_it(
    watched: tuple[KazooClient, PersistentWatches], root: str
) -> None:
    client, watches = watched
    client.ensure_path(root)
    recorder = Recorder()
    watches.add(root, recorder, timeout=10)
    client.create(f"{root}/a/b", b"1", makepath=True)
    client.set(f"{root}/a/b", b"2")
    client.delete(f"{root}/a/b")
    client.create(f"{root}-sibling", b"not below the path")
    client.create(f"{root}/end")
    assert recorder.wait_for(5) == [
        (CREATED, f"{root}/a"),
        (CREATED, f"{root}/a/b"),
        (CHANGED, f"{root}/a/b"),
        (DELETED, f"{root}/a/b"),
        (CREATED, f"{root}/end"),
    ]
    client.delete(f"{root}-sibling")


def test_a_missing_path_can_be_watched_and_its_creation_is_seen(
    watched: tuple[KazooClient, PersistentWatches], root: str
) -> None:
    client, watches = watched
    recorder = Recorder()
    watches.add(f"{root}/later", recorder, timeout=10)
    client.create(f"{root}/later/x", b"", makepath=True)
    assert recorder.wait_for(2) == [(CREATED, f"{root}/later"), (CREATED, f"{root}/later/x")]


def test_500_create_then_delete_pairs_lose_nothing(watched: tuple[KazooClient, PersistentWatches], root: str) -> None:
    client, watches = watched
    client.ensure_path(root)
    recorder = Recorder()
    watches.add(root, recorder, timeout=10)
    for i in range(500):
        client.create(f"{root}/n{i}", b"x")
        client.delete(f"{root}/n{i}")
    expected = [(kind, f"{root}/n{i}") for i in range(500) for kind in (CREATED, DELETED)]
    assert recorder.wait_for(1000) == expected


def test_200_deletions_by_closing_a_session(
    watched: tuple[KazooClient, PersistentWatches], hosts: str, root: str
) -> None:
    client, watches = watched
    client.ensure_path(root)
    recorder = Recorder()
    watches.add(root, recorder, timeout=10)
    owner = KazooClient(hosts=hosts, timeout=SESSION_TIMEOUT)
    owner.start(timeout=15)
    try:
        for i in range(200):
            owner.create(f"{root}/e{i}", b"x", ephemeral=True)
        recorder.wait_for(200)
    finally:
        owner.stop()
        owner.close()
    seen = recorder.wait_for(400)
    assert seen[:200] == [(CREATED, f"{root}/e{i}") for i in range(200)]
    assert sorted(seen[200:]) == sorted((DELETED, f"{root}/e{i}") for i in range(200))


def test_subscriptions_share_the_server_watch_until_the_last_is_removed(
    watched: tuple[KazooClient, PersistentWatches], zookeeper_cluster: ZooKeeperCluster, root: str
) -> None:
    cluster = zookeeper_cluster
    client, watches = watched
    client.ensure_path(root)

    def watched_paths() -> str:
        return cluster.command(cluster.members[0], "wchp")

    first, second, nested = Recorder(), Recorder(), Recorder()
    one = watches.add(root, first, timeout=10)
    two = watches.add(root, second, timeout=10)
    three = watches.add(f"{root}/inner", nested, timeout=10)
    client.create(f"{root}/inner/x", b"", makepath=True)
    # One notification per event and connection, handed to every covering subscription.
    assert first.wait_for(2) == second.wait_for(2) == [(CREATED, f"{root}/inner"), (CREATED, f"{root}/inner/x")]
    assert nested.wait_for(2) == [(CREATED, f"{root}/inner"), (CREATED, f"{root}/inner/x")]
    assert watches.paths == (root, f"{root}/inner")

    watches.remove(one)
    watches.remove(one)  # idempotent
    client.create(f"{root}/y")
    assert second.wait_for(3)[-1] == (CREATED, f"{root}/y")
    assert f"{root}\n" in watched_paths()
    assert len(first.seen()) == 2

    watches.remove(two)
    wait_until(lambda: f"{root}\n" not in watched_paths(), 10, message="the server dropped the watch on the root")
    assert f"{root}/inner\n" in watched_paths()
    watches.remove(three)
    wait_until(lambda: root not in watched_paths(), 10, message="the server dropped every watch")
    assert not watches.paths
    assert first.reasons == second.reasons == nested.reasons == []


def test_close_tells_subscribers(watched: tuple[KazooClient, PersistentWatches], root: str) -> None:
    _, watches = watched
    recorder = Recorder()
    watches.add(root, recorder, timeout=10)
    watches.close()
    assert recorder.reasons == ["closed"]
    assert watches.paths == ()


class Failing(Recorder):
    """A subscriber with a bug: it raises on every call."""

    def notify(self, notification: Notification) -> None:
        super().notify(notification)
        raise RuntimeError("subscriber bug")

    def lost(self, reason: str) -> None:
        super().lost(reason)
        raise RuntimeError("subscriber bug")


def test_a_subscriber_that_raises_ends_neither_the_connection_nor_the_others(
    watched: tuple[KazooClient, PersistentWatches], root: str
) -> None:
    # The notifications are dispatched on kazoo's connection thread: an exception
    # escaping there ended that thread and left the client dead for good.
    client, watches = watched
    client.ensure_path(root)
    failing, recorder = Failing(), Recorder()
    watches.add(root, failing, timeout=10)
    watches.add(root, recorder, timeout=10)
    client.create(f"{root}/a", b"1")
    client.create(f"{root}/b", b"2")
    assert recorder.wait_for(2) == [(CREATED, f"{root}/a"), (CREATED, f"{root}/b")]
    assert failing.seen() == recorder.seen()
    assert client.connected and client.exists(f"{root}/a") is not None
    watches.close()
    assert failing.reasons == ["closed"] and recorder.reasons == ["closed"]
