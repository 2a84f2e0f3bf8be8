"""A slow reply on a live connection is backpressure, not loss; a stalled one is a timeout, with its own gap.

The anomaly of issue 18: in a burst of 10,000 expiries, a watcher's reads
queued behind the burst's notifications on its own connection, took longer
than the request timeout, and the stream reported ``connection-loss`` (a
needless resync; under more contention, a false ``WatchBroken``) although the
connection never dropped. In the benchmark the reads were slow because the
process's GIL was busy; here the watcher's link is slow instead (a loopback
proxy paces what the server sends), which makes the same queueing happen on
any machine, loaded or idle: every read sent during the burst waits behind
the notifications sent before its reply, several times the request timeout.
The stream must still wait, deliver every change and report no gap. A read
the server does not answer at all (the server is paused: the connection stays
open, nothing arrives) ends the stream with ``Gap("timeout")`` long before
kazoo's own pings notice the silence, and never with ``connection-loss``.

The bursts are real: ephemeral znodes of another connection, which the
server deletes all at once when that connection's session ends.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.security import ACL, Id, Permissions

import discovery
from discovery.backend import Batch, Change, ChangeKind, ChangeStream, Gap, Target
from discovery.errors import BackendTimeout
from discovery.servers import ZooKeeperCluster
from discovery.testing.proxy import LoopbackProxy, proxied
from discovery.testing.waiting import wait_until
from discovery_zookeeper import ZooKeeperBackend
from discovery_zookeeper._kazoo_private import messages_received

BackendFactory = Callable[..., ZooKeeperBackend]
Collector = Callable[[ChangeStream, Callable[[list[Change]], bool]], list[Change]]

BURST = 2_000
"""Ephemeral znodes expired at once (the benchmark's burst has 10,000)."""
LINK_BYTES_PER_SECOND = 40_000
"""The watcher's link during the burst: its notifications (about 70 bytes each) take about 3.5 s to pass."""
TINY = 0.5
"""A request timeout well below the time a read waits behind the burst on that link, above a server's hiccups."""
EXPIRIES_SEEN = 120.0
"""Seconds the burst's expiries may take to arrive (they need a few on the paced link)."""
VALUE = b'{"address":"127.0.0.1","meta":{},"port":8080}'


@contextlib.contextmanager
def flood(hosts: str, parent: str, count: int) -> Iterator[Callable[[], None]]:
    """Another connection holding ``count`` ephemeral znodes below ``parent``; yields what expires them all at once.

    Ending that connection's session makes the server delete every one of its
    ephemeral znodes in one transaction: ``count`` notifications at once.
    """
    client = KazooClient(hosts=hosts, timeout=30.0)
    client.start(timeout=15)
    ended = False

    def expire() -> None:
        nonlocal ended
        if not ended:
            ended = True
            client.stop()
            client.close()

    try:
        client.ensure_path(parent)
        replies = [client.create_async(f"{parent}/i{i}", VALUE, ephemeral=True) for i in range(count)]
        for reply in replies:
            reply.get(timeout=60)
        yield expire
    finally:
        expire()


class Reader:
    """Reads a stream on its own thread, as the core's pump does: the keys present, gaps, the slowest batch."""

    def __init__(self, stream: ChangeStream) -> None:
        self.stream = stream
        self.present: set[str] = set()
        self.deleted: set[str] = set()
        self.gaps: list[Gap] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self.stream.next(0.2)
            if isinstance(item, Gap):
                self.gaps.append(item)
                return
            if isinstance(item, Batch):
                for change in item.changes:
                    if change.kind is ChangeKind.DELETE:
                        self.present.discard(change.key)
                        self.deleted.add(change.key)
                    else:
                        self.present.add(change.key)
                        self.deleted.discard(change.key)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def timed_reads(backend: ZooKeeperBackend) -> list[float]:
    """Record how long each of the backend's waits for a reply took (a spy on our own code, not on kazoo)."""
    waits: list[float] = []
    patience = backend._patience
    wait = patience.wait

    def timed(result: Any, cancelled: Callable[[], bool] | None = None) -> Any:
        started = time.monotonic()
        try:
            return wait(result, cancelled)
        finally:
            waits.append(time.monotonic() - started)

    patience.wait = timed  # type: ignore[method-assign]
    return waits


def test_a_read_queued_behind_a_burst_of_expiries_waits_and_reports_no_gap(
    hosts: str, root: str, make_target: Callable[..., Target]
) -> None:
    (first, *_) = hosts.split(",")
    host, _, port = first.rpartition(":")
    with LoopbackProxy((host, int(port))) as link:
        watcher = ZooKeeperBackend(make_target(link.address, root, request_timeout=TINY))
        session_before = watcher.session_id
        stream = watcher.watch("svc/", None)
        waits = timed_reads(watcher)
        reader: Reader | None = None
        try:
            with flood(hosts, f"{root}/svc/api", BURST) as expire:
                # Read once the creations are done: their notifications wait in the stream's queue meanwhile.
                reader = Reader(stream)
                wait_until(lambda: reader.gaps or len(reader.present) == BURST, 120, message="the creations seen")
                assert reader.gaps == []
                received = messages_received(watcher._client)
                waits.clear()
                with link.throttled(LINK_BYTES_PER_SECOND):
                    expire()
                    wait_until(
                        lambda: reader.gaps or len(reader.deleted) == BURST, EXPIRIES_SEEN, message="the expiries seen"
                    )
            assert reader.gaps == [], "a slow read on a live connection is no connection loss"
            assert reader.present == set()
            # The scenario is real: some read waited longer than the request timeout...
            assert max(waits) > TINY, f"no read was slowed by the burst beyond {TINY} s: {sorted(waits)[-3:]}"
            # ...and the burst cost the notifications plus a few multiRead replies, not a read per notification.
            replies = messages_received(watcher._client) - received - BURST
            assert replies < BURST // 20, f"{replies} replies for {BURST} notifications"
            assert watcher.session_id == session_before
        finally:
            if reader is not None:
                reader.stop()
            stream.close()
            watcher.close()


def test_a_registry_watch_rides_out_a_burst_without_resync_or_break(hosts: str, root: str) -> None:
    # Its watch reads while the flood is created too: a request timeout of a second, for the server's hiccups.
    url = f"zk://{hosts}{root}?session_timeout=4&request_timeout=1"
    with proxied(url) as (through, links), discovery.connect(through) as registry:
        watch = registry.watch("buzz")
        try:
            seen: dict[str, bool] = {}

            def drained(present: bool) -> bool:
                while (event := watch.get(timeout=0.05)) is not None:
                    seen[event.instance_id] = event.kind is not discovery.EventKind.REMOVED
                return len(seen) == BURST and all(alive is present for alive in seen.values())

            with flood(hosts, f"{root}/buzz/api", BURST) as expire:
                wait_until(lambda: drained(True), 120, message="every registration seen")
                with contextlib.ExitStack() as slow:
                    for link in links:
                        slow.enter_context(link.throttled(LINK_BYTES_PER_SECOND))
                    expire()
                    wait_until(lambda: drained(False), EXPIRIES_SEEN, message="every expiry seen")
            assert "connection-loss" not in watch.gap_reasons
            assert watch.resyncs == 0, f"resynced after {watch.gap_reasons}"
            assert watch.broken is None
            assert watch.stats().state == "connected"
            assert registry.instances("buzz/api") == []
        finally:
            watch.close()


# -- a genuine timeout: the server answers nothing, the connection stays open ---------------


def test_a_read_the_server_never_answers_is_a_timeout_not_a_connection_loss(
    own_cluster: ZooKeeperCluster, own_backends: BackendFactory, root: str
) -> None:
    # kazoo notices a silent server after two thirds of the session timeout (8 s here);
    # the stall is reported after request_timeout (0.5 s), well before.
    backend = own_backends(session_timeout=12.0, request_timeout=0.5)
    session = backend.session_id
    stream = backend.watch("svc/", None)
    writer = KazooClient(hosts=own_cluster.hosts, timeout=30.0)
    writer.start(timeout=15)
    try:
        writer.create(f"{root}/svc/api/x-{uuid.uuid4().hex[:6]}", VALUE, makepath=True)
        # The notification is queued in the stream; nothing has read it yet.
        wait_until(lambda: len(stream._queue) > 0, 30, message="the notification reached the stream")  # type: ignore[attr-defined]
        member = own_cluster.members[0]
        member.pause()
        started = time.monotonic()
        item = stream.next(0.2)
        assert item == Gap("timeout")
        assert time.monotonic() - started < 6.0, "the stall was reported only when kazoo dropped the connection"
        assert stream.next(0) == Gap("timeout")
        # A listing meanwhile: the same stall, as BackendTimeout.
        with pytest.raises(BackendTimeout):
            backend.list("svc/")
        member.resume()
        # The connection comes back within the session: a new stream reads as before.
        again = backend.watch("svc/", None)
        try:
            writer.create(f"{root}/svc/api/y", VALUE)
            deadline = time.monotonic() + 30
            changes: list[Change] = []
            while not any(change.key == "svc/api/y" for change in changes):
                assert time.monotonic() < deadline, "the new stream delivered nothing"
                result = again.next(1.0)
                assert not isinstance(result, Gap), result
                if isinstance(result, Batch):
                    changes.extend(result.changes)
        finally:
            again.close()
        assert backend.session_id == session
    finally:
        stream.close()
        writer.stop()
        writer.close()


# -- the batched reads: deletes dated by their parent's pzxid, however the parent fares ---------

GONE = frozenset({"svc/a/x", "svc/a/y"})


def test_a_subtree_deleted_at_once_dates_every_delete_by_the_nearest_ancestor(
    backend: ZooKeeperBackend, kazoo_client: KazooClient, root: str, collect: Collector
) -> None:
    for key in ("svc/a/x", "svc/a/y", "svc/b/z"):
        kazoo_client.create(f"{root}/{key}", b"v", makepath=True)
    created = max(kazoo_client.exists(f"{root}/{key}").czxid for key in GONE)  # type: ignore[union-attr]
    stream = backend.watch("svc/", None)
    try:
        kazoo_client.delete(f"{root}/svc/a", recursive=True)  # the parent goes too: svc's pzxid dates them
        changes = collect(stream, lambda got: {c.key for c in got if c.kind is ChangeKind.DELETE} >= GONE)
    finally:
        stream.close()
    after = kazoo_client.exists(f"{root}/svc").pzxid  # type: ignore[union-attr]
    deletes = [c for c in changes if c.kind is ChangeKind.DELETE and c.key in GONE]
    assert all(created < c.mod_revision <= after for c in deletes), (created, after, deletes)


def test_a_parent_that_refuses_reads_still_dates_its_childrens_deletes(
    backend: ZooKeeperBackend, kazoo_client: KazooClient, root: str, collect: Collector
) -> None:
    # getData needs READ on the parent; exists does not: the stream falls back to it.
    everyone = Id("world", "anyone")
    kazoo_client.create(f"{root}/svc", b"", makepath=True)
    kazoo_client.create(f"{root}/svc/locked", b"", acl=[ACL(Permissions.CREATE | Permissions.DELETE, everyone)])
    kazoo_client.create(f"{root}/svc/locked/x", b"v", acl=[ACL(Permissions.ALL, everyone)])
    created = kazoo_client.exists(f"{root}/svc/locked/x").czxid  # type: ignore[union-attr]
    stream = backend.watch("svc/", None)
    try:
        kazoo_client.delete(f"{root}/svc/locked/x")
        changes = collect(stream, lambda got: any(c.kind is ChangeKind.DELETE for c in got))
    finally:
        stream.close()
    (delete,) = changes
    assert (delete.key, delete.kind) == ("svc/locked/x", ChangeKind.DELETE)
    assert delete.mod_revision > created
