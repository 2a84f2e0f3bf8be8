"""A batch is told after one round of reads, unless a notification that arrived meanwhile overtook one of them.

ZooKeeper sends the notification of a change before the reply of any read
that sees it, so the notifications queued when a batch's reads return name
every change those reads may have run ahead to. Notes whose reads none of
them touches are told at once; the others wait for the next batch, read
again; when every note is touched, the later ones join the batch. Here the
"meanwhile" is made exact: the stream's first wait for a reply makes a
write on another connection and waits until its notification is queued,
then lets the read return.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kazoo.client import KazooClient

from discovery.backend import Batch, ChangeKind, ChangeStream
from discovery.testing.waiting import wait_until
from discovery_zookeeper import ZooKeeperBackend

VALUE = b'{"address":"127.0.0.1","meta":{},"port":8080}'
CHANGED = b'{"address":"127.0.0.1","meta":{},"port":9090}'


def queued(stream: ChangeStream) -> int:
    """Notifications the stream holds, not yet taken (private: the stream's queue)."""
    return len(stream._queue)  # type: ignore[attr-defined]


def during_first_read(backend: ZooKeeperBackend, stream: ChangeStream, write: Callable[[], None]) -> None:
    """Make the stream's first wait for a reply do ``write`` and wait until its notification is queued."""
    patience = backend._patience
    wait = patience.wait
    pending = [write]

    def overtaking(result: Any, cancelled: Callable[[], bool] | None = None) -> Any:
        if pending:
            before = queued(stream)
            pending.pop()()
            wait_until(lambda: queued(stream) > before, 30, message="the write's notification queued")
        return wait(result, cancelled)

    patience.wait = overtaking  # type: ignore[method-assign]


def next_batch(stream: ChangeStream) -> Batch:
    item = stream.next(10.0)
    assert isinstance(item, Batch), item
    return item


def created(stream: ChangeStream, kazoo_client: KazooClient, *paths: str) -> None:
    """Create ``paths`` and wait until the stream holds their notifications, unread."""
    before = queued(stream)
    for path in paths:
        kazoo_client.create(path, VALUE)
    wait_until(lambda: queued(stream) >= before + len(paths), 30, message="the creations queued")


@pytest.fixture
def api(kazoo_client: KazooClient, root: str) -> str:
    """The service znode the tests write below (``svc/api``), created."""
    path = f"{root}/svc/api"
    kazoo_client.ensure_path(path)
    return path


@pytest.fixture
def stream(backend: ZooKeeperBackend, api: str) -> Iterator[ChangeStream]:
    """A stream below ``svc/``, opened once the service znode exists; closed after the test."""
    opened = backend.watch("svc/", None)
    yield opened
    opened.close()


def test_a_read_no_later_notification_touches_is_told_without_waiting_for_it(
    backend: ZooKeeperBackend, kazoo_client: KazooClient, api: str, stream: ChangeStream
) -> None:
    created(stream, kazoo_client, f"{api}/a")
    # b shares a's parent, but a's creation is dated by its own read: b does not touch it.
    during_first_read(backend, stream, lambda: kazoo_client.create(f"{api}/b", VALUE))
    first = next_batch(stream)
    second = next_batch(stream)
    assert [(c.kind, c.key, c.value) for c in first.changes] == [(ChangeKind.PUT, "svc/api/a", VALUE)]
    assert [(c.kind, c.key, c.value) for c in second.changes] == [(ChangeKind.PUT, "svc/api/b", VALUE)]
    assert first.revision < second.revision


def test_a_read_a_later_notification_touches_waits_for_the_next_batch(
    backend: ZooKeeperBackend, kazoo_client: KazooClient, api: str, stream: ChangeStream
) -> None:
    created(stream, kazoo_client, f"{api}/a", f"{api}/c")
    # a's read may have seen the change already: a is told with it, after c, never before.
    during_first_read(backend, stream, lambda: kazoo_client.set(f"{api}/a", CHANGED))
    first = next_batch(stream)
    second = next_batch(stream)
    assert stream.next(0.5) is None, "the change notified meanwhile was told twice"
    stat = kazoo_client.exists(f"{api}/a")
    assert stat is not None
    assert [(c.key, c.value) for c in first.changes] == [("svc/api/c", VALUE)]
    assert [(c.key, c.value, c.create_revision, c.mod_revision) for c in second.changes] == [
        ("svc/api/a", CHANGED, stat.czxid, stat.mzxid)
    ]
    assert first.revision < second.revision


def test_when_every_read_is_touched_the_later_notifications_join_the_batch(
    backend: ZooKeeperBackend, kazoo_client: KazooClient, api: str
) -> None:
    kazoo_client.create(f"{api}/x", VALUE)
    stream = backend.watch("svc/", None)
    try:
        before = queued(stream)
        kazoo_client.delete(f"{api}/x")
        wait_until(lambda: queued(stream) > before, 30, message="the delete queued")
        # x's delete is dated by its parent's pzxid, which y's creation moves: y joins x's batch.
        during_first_read(backend, stream, lambda: kazoo_client.create(f"{api}/y", VALUE))
        batch = next_batch(stream)
    finally:
        stream.close()
    created_y = kazoo_client.exists(f"{api}/y")
    assert created_y is not None
    assert [(c.kind, c.key) for c in batch.changes] == [(ChangeKind.DELETE, "svc/api/x"), (ChangeKind.PUT, "svc/api/y")]
    delete, put = batch.changes
    assert delete.mod_revision <= put.mod_revision == created_y.mzxid
