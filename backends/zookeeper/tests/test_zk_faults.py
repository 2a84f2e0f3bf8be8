"""Connection loss and session expiry: every open stream reports a gap, sessions report their loss.

Pausing and restarting need a server of this module's own (the shared one
must stay healthy for other tests); session expiry is played on the shared
server by another connection that takes the session over and closes it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

import discovery
from discovery.backend import Batch, Change, ChangeKind, ChangeStream, Gap
from discovery.errors import BackendUnavailable, SessionExpired
from discovery.servers import ZooKeeperCluster
from discovery.testing.waiting import wait_until
from discovery_zookeeper import ZooKeeperBackend

BackendFactory = Callable[..., ZooKeeperBackend]


def next_gap(stream: ChangeStream, timeout: float = 30.0) -> Gap:
    """Read until the stream's gap; no change may come first (nothing was written)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "the stream never reported a gap"
        item = stream.next(min(remaining, 0.2))
        if isinstance(item, Gap):
            return item
        assert not isinstance(item, Batch), f"unexpected batch {item!r}"


def test_a_pause_within_the_session_timeout_ends_streams_but_keeps_the_session(
    own_cluster: ZooKeeperCluster, own_backends: BackendFactory
) -> None:
    # Six seconds: kazoo notices the silent server within 2/3 of it, and the
    # session survives until the client is back on the resumed server.
    backend = own_backends(session_timeout=6.0)
    session = backend.open_session(6)
    backend.put("buzz/api/host-1", b'{"v":1}', session)
    before = backend.session_id
    streams = [backend.watch("buzz/", None), backend.watch("", None)]
    member = own_cluster.members[0]
    member.pause()
    try:
        gaps = [next_gap(stream) for stream in streams]
    finally:
        member.resume()
    assert gaps == [Gap("connection-loss"), Gap("connection-loss")]
    assert all(stream.next(0) == Gap("connection-loss") for stream in streams)
    wait_until(lambda: backend.session_id is not None, 30, message="reconnected")
    assert backend.session_id == before and session.alive
    assert [record.key for record in backend.list("buzz/").records] == ["buzz/api/host-1"]
    for stream in streams:
        stream.close()

    fresh = backend.watch("buzz/", None)
    backend.put("buzz/api/host-1", b'{"v":2}', session)
    item = fresh.next(10)
    assert isinstance(item, Batch) and item.changes[0].value == b'{"v":2}'
    fresh.close()


def test_a_server_restart_within_the_session_timeout_ends_streams_but_keeps_the_session(
    own_cluster: ZooKeeperCluster, own_backends: BackendFactory
) -> None:
    backend = own_backends(session_timeout=20.0, connect_timeout=2.0)
    session = backend.open_session(20)
    backend.put("buzz/api/host-1", b"{}", session)
    before = backend.session_id
    stream = backend.watch("", None)
    member = own_cluster.members[0]
    member.kill()
    assert next_gap(stream) == Gap("connection-loss")
    with pytest.raises(BackendUnavailable):
        backend.watch("", None).close()
    member.restart()
    wait_until(lambda: backend.session_id is not None, 30, message="reconnected")
    assert backend.session_id == before and session.alive
    assert [record.key for record in backend.list("").records] == ["buzz/api/host-1"]
    stream.close()


def test_session_expiry_ends_streams_and_reports_sessions_lost(backends: BackendFactory) -> None:
    backend, observer = backends(), backends()
    session = backend.open_session(4)
    heard: list[bool] = []
    session.add_listener(heard.append)
    backend.put("buzz/api/host-1", b"{}", session)
    stream = backend.watch("", None)
    watching = observer.watch("buzz/", None)
    before = backend.session_id

    backend.expire_session()
    assert next_gap(stream) == Gap("connection-loss")
    wait_until(lambda: heard == [False], 30, message="the session listener heard alive=False")
    assert not session.alive
    wait_until(lambda: backend.session_id not in (None, before), 30, message="a new ZooKeeper session")

    deleted: list[Change] = []
    deadline = time.monotonic() + 30
    while not deleted and time.monotonic() < deadline:
        item = watching.next(1.0)
        assert not isinstance(item, Gap)
        if isinstance(item, Batch):
            deleted = [c for c in item.changes if c.kind is ChangeKind.DELETE and c.key == "buzz/api/host-1"]
    assert deleted and deleted[0].expired is None
    with pytest.raises(SessionExpired):
        backend.put("buzz/api/host-1", b"{}", session)

    fresh = backend.open_session(4)
    assert fresh.id != session.id
    backend.put("buzz/api/host-1", b"{}", fresh)
    assert [record.key for record in observer.list("buzz/").records] == ["buzz/api/host-1"]
    stream.close()
    watching.close()


def test_an_abandoned_client_loses_its_instances_after_the_session_timeout(backends: BackendFactory) -> None:
    crashed, observer = backends(session_timeout=2.0), backends()
    session = crashed.open_session(2)
    for i in range(20):
        crashed.put(f"crash/i{i}", b"{}", session)
    own_stream = crashed.watch("", None)
    watching = observer.watch("crash/", None)
    crashed.abandon()
    assert next_gap(own_stream) == Gap("connection-loss")
    with pytest.raises(BackendUnavailable):
        crashed.watch("", None)
    deleted: set[str] = set()
    deadline = time.monotonic() + 30
    while len(deleted) < 20:
        assert time.monotonic() < deadline, f"only {sorted(deleted)} expired"
        item = watching.next(1.0)
        assert not isinstance(item, Gap)
        if isinstance(item, Batch):
            deleted |= {c.key for c in item.changes if c.kind is ChangeKind.DELETE}
    assert deleted == {f"crash/i{i}" for i in range(20)}
    own_stream.close()
    watching.close()


def test_a_dropped_connection_ends_every_stream_and_keeps_sessions(backends: BackendFactory) -> None:
    backend = backends()
    session = backend.open_session(4)
    backend.put("buzz/api/host-1", b'{"v":1}', session)
    before = backend.session_id
    streams = [backend.watch("", None), backend.watch("buzz/", None), backend.watch("buzz/", None)]
    backend.drop_connection()
    assert [next_gap(stream) for stream in streams] == [Gap("connection-loss")] * 3
    wait_until(lambda: backend.session_id is not None, 30, message="reconnected")
    assert backend.session_id == before and session.alive
    assert backend._watches.paths == ()
    for stream in streams:
        stream.close()
    fresh = backend.watch("buzz/", None)
    backend.put("buzz/api/host-1", b'{"v":2}', session)
    item = fresh.next(10)
    assert isinstance(item, Batch) and item.changes[0].value == b'{"v":2}'
    fresh.close()


CLOSE_BOUND = 5.0
"""Seconds any close may take while the server is down: generous; it used to take 5 to 10 s each."""


def timed(close: Callable[[], None]) -> float:
    started = time.monotonic()
    close()
    return time.monotonic() - started


def test_closing_everything_is_prompt_while_the_server_is_stopped(own_cluster: ZooKeeperCluster, root: str) -> None:
    before = set(threading.enumerate())
    registry = discovery.connect(f"{own_cluster.url('zookeeper', root)}?session_timeout=4&connect_timeout=10")
    backend = registry.backend
    assert isinstance(backend, ZooKeeperBackend)
    lease = registry.register("shop/api", "host-1", ttl=4)
    registry.register("shop/api", "host-2", ttl=4)
    watch = registry.watch("shop")
    member = own_cluster.members[0]
    member.stop()
    try:
        wait_until(lambda: not backend._client.connected, 30, message="the client saw the server go")
        # The watch's thread is now trying to reopen its stream on a dead server.
        durations = {"registration": timed(lease.close), "watch": timed(watch.close), "registry": timed(registry.close)}
        assert all(seconds < CLOSE_BOUND for seconds in durations.values()), durations
        assert lease.closed and not lease.alive
        wait_until(
            lambda: set(threading.enumerate()) <= before,
            CLOSE_BOUND,
            message="every thread of the registry ended",
        )
    finally:
        member.restart()


def test_a_close_deferred_by_an_outage_deletes_on_reconnection(
    own_cluster: ZooKeeperCluster, own_backends: BackendFactory
) -> None:
    backend, observer = own_backends(session_timeout=20.0), own_backends()
    session = backend.open_session(20)
    backend.put("shop/api/host-1", b"{}", session)
    backend.put("shop/api/host-2", b"{}", session)
    kept = backend.open_session(20)
    backend.put("shop/api/host-3", b"{}", kept)
    before = backend.session_id
    member = own_cluster.members[0]
    member.kill()
    wait_until(lambda: not backend._client.connected, 30, message="the client saw the server go")
    assert timed(lambda: backend.delete("shop/api/host-1", session)) < CLOSE_BOUND
    assert timed(session.close) < CLOSE_BOUND
    assert session.keys == frozenset() and not session.alive
    # Registered again before the reconnection: that key's delete is off.
    member.restart()
    wait_until(lambda: backend._client.connected, 30, message="reconnected")
    backend.put("shop/api/host-2", b'{"v":2}', kept)
    assert backend.session_id == before and kept.alive
    wait_until(
        lambda: sorted(record.key for record in observer.list("").records) == ["shop/api/host-2", "shop/api/host-3"],
        30,
        message="the deferred delete ran once the server was back",
    )
