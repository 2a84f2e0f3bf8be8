"""Persistent recursive watches (ZooKeeper 3.6+ ``addWatch``) on top of kazoo's connection.

kazoo 2.11 only knows one-shot watches, which lose every change between a
trigger and the re-registration. ZooKeeper 3.6 added ``addWatch`` (request
type 106; body: the path as a length-prefixed UTF-8 string, then the mode as
a 32-bit big-endian int, 1 = persistent recursive): the server then notifies
every create, data change and delete at or below the path, for as long as the
connection lives, through ordinary watch events (xid -1, body: type, state,
path) that kazoo's dispatcher drops because no one-shot watcher asked for
them. ``removeWatches`` (type 18; body: path, then the watcher type, 3 =
any) ends it. :class:`PersistentWatches` taps the client's connection
so those events reach its subscribers before kazoo drops them, sends both
requests through kazoo's own request queue (both through
:mod:`discovery_zookeeper._kazoo_private`), and
tells every subscriber when the connection drops (a subscriber that raises
is logged and cannot end kazoo's connection thread): kazoo never replays
watches on a new connection (no ``SetWatches``), so a persistent watch ends
with its connection and its subscribers must re-add it and re-read. Two
ZooKeeper 3.8 facts shape the use: notifications carry no zxid, and a
one-shot watch set later on the same path by the same connection replaces
the persistent one (fixed in 3.9), so a client using this module must not
set one-shot watches on watched paths.
"""

from __future__ import annotations

import enum
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from kazoo.client import KazooClient
from kazoo.protocol.states import KazooState

from discovery._background import call_listener
from discovery_zookeeper._kazoo_private import send_request, tap_watch_events

__all__ = [
    "ADD_WATCH",
    "MODE_PERSISTENT_RECURSIVE",
    "REMOVE_WATCHES",
    "WATCHER_TYPE_ANY",
    "AddWatchRequest",
    "Notification",
    "NotificationKind",
    "PersistentWatches",
    "RemoveWatchesRequest",
    "Subscriber",
    "Subscription",
]

ADD_WATCH = 106
"""ZooKeeper's request type (OpCode) of ``addWatch``."""
REMOVE_WATCHES = 18
"""ZooKeeper's request type (OpCode) of ``removeWatches``."""
MODE_PERSISTENT_RECURSIVE = 1
"""``AddWatchMode.PERSISTENT_RECURSIVE``: the node and all its descendants, until removed."""
WATCHER_TYPE_ANY = 3
"""``WatcherType.Any`` in ``removeWatches``: every kind of watch on the path, persistent ones included."""

_INT = struct.Struct("!i")


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return _INT.pack(len(data)) + data


@dataclass(frozen=True)
class AddWatchRequest:
    """The ``addWatch`` request, in the shape kazoo's request queue expects.

    Attributes:
        path: the server path to watch.
        mode: the watch mode (:data:`MODE_PERSISTENT_RECURSIVE`).
    """

    type: ClassVar[int] = ADD_WATCH
    path: str
    mode: int = MODE_PERSISTENT_RECURSIVE

    def serialize(self) -> bytes:
        """The request body: path, then mode."""
        return _string(self.path) + _INT.pack(self.mode)

    @classmethod
    def deserialize(cls, buffer: bytes, offset: int) -> None:
        """The reply has no body beyond its header; kazoo calls this for a successful reply."""
        return None


@dataclass(frozen=True)
class RemoveWatchesRequest:
    """The ``removeWatches`` request, in the shape kazoo's request queue expects.

    Attributes:
        path: the server path whose watches to remove.
        watcher_type: which watches (:data:`WATCHER_TYPE_ANY`).
    """

    type: ClassVar[int] = REMOVE_WATCHES
    path: str
    watcher_type: int = WATCHER_TYPE_ANY

    def serialize(self) -> bytes:
        """The request body: path, then watcher type."""
        return _string(self.path) + _INT.pack(self.watcher_type)

    @classmethod
    def deserialize(cls, buffer: bytes, offset: int) -> None:
        """The reply has no body beyond its header; kazoo calls this for a successful reply."""
        return None


class NotificationKind(enum.IntEnum):
    """The event type of a watch notification, as ZooKeeper numbers it."""

    CREATED = 1
    DELETED = 2
    DATA_CHANGED = 3
    CHILDREN_CHANGED = 4


@dataclass(frozen=True)
class Notification:
    """One change the server notified, without its data or zxid (ZooKeeper 3.8 sends neither).

    Attributes:
        kind: what happened.
        path: the server path of the node it happened to.
    """

    kind: NotificationKind
    path: str


class Subscriber(Protocol):
    """What receives a persistent watch's notifications; called on kazoo's connection thread, must not block."""

    def notify(self, notification: Notification) -> None:
        """One notification, in the order the server sent them."""

    def lost(self, reason: str) -> None:
        """The connection dropped: the watch is gone, nothing more will be notified."""


@dataclass(eq=False)
class Subscription:
    """One subscriber's persistent recursive watch on one path; compared by identity.

    Attributes:
        path: the watched server path.
        subscriber: who hears its notifications.
    """

    path: str
    subscriber: Subscriber


def _ancestors(path: str) -> list[str]:
    """``/a/b/c`` -> ``["/a/b/c", "/a/b", "/a", "/"]``: every path whose recursive watch covers ``path``."""
    paths = [path]
    while path not in ("/", ""):
        path = path.rsplit("/", 1)[0] or "/"
        paths.append(path)
    return paths


class PersistentWatches:
    """The persistent recursive watches of one kazoo client.

    Create it before ``client.start()``: it replaces the client's connection
    handler. Each :meth:`add` sends ``addWatch`` and returns once the server
    acknowledged it; the server keeps one watch per path and connection, so
    subscriptions to the same path share it, and ``removeWatches`` goes out
    when the last of them is removed. When the connection drops (kazoo
    reports SUSPENDED or LOST), every subscription ends and its subscriber
    hears :meth:`Subscriber.lost`, after every notification that arrived
    before the drop.

    Args:
        client: a kazoo client that is not started yet.
    """

    def __init__(self, client: KazooClient) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._by_path: dict[str, list[Subscription]] = {}
        tap_watch_events(client, self._tapped)
        client.add_listener(self._state_changed)

    def add(
        self,
        path: str,
        subscriber: Subscriber,
        timeout: float,
        *,
        wait: Callable[[Any], object] | None = None,
    ) -> Subscription:
        """Watch ``path`` and everything below it; return once the server acknowledged it.

        Notifications may reach the subscriber before this returns: they are
        for changes after the watch was in place on the server.

        Args:
            path: the absolute server path; it need not exist.
            subscriber: who hears the notifications.
            timeout: seconds to wait for the server's answer, unless ``wait`` is given.
            wait: waits for the answer (a kazoo async result) instead, e.g.
                :meth:`discovery_zookeeper._patience.Patience.wait`.

        Returns:
            The subscription, for :meth:`remove`.

        Raises:
            kazoo.exceptions.UnimplementedError: the server predates ZooKeeper 3.6.
            kazoo.exceptions.ZookeeperError: the server refused (e.g. ``NoAuthError``).
            kazoo.exceptions.ConnectionLoss: the connection dropped first.
            kazoo.handlers.threading.KazooTimeoutError: no answer within ``timeout`` (or as ``wait`` decides).
        """
        subscription = Subscription(path, subscriber)
        reply = self._client.handler.async_result()
        # Register before sending: a notification may overtake the reply.
        with self._lock:
            self._by_path.setdefault(path, []).append(subscription)
            send_request(self._client, AddWatchRequest(path), reply)
        try:
            if wait is None:
                reply.get(timeout=timeout)
            else:
                wait(reply)
        except BaseException:
            self.remove(subscription)
            raise
        return subscription

    def remove(self, subscription: Subscription) -> None:
        """End a subscription; the last one on a path also removes the server's watch. Never raises."""
        with self._lock:
            subscriptions = self._by_path.get(subscription.path)
            if subscriptions is None or subscription not in subscriptions:
                return
            subscriptions.remove(subscription)
            if subscriptions:
                return
            del self._by_path[subscription.path]
            if self._client.connected:
                # Fire and forget: if the connection drops first, the watch is gone anyway.
                send_request(self._client, RemoveWatchesRequest(subscription.path), self._client.handler.async_result())

    @property
    def paths(self) -> tuple[str, ...]:
        """The paths watched right now, sorted."""
        with self._lock:
            return tuple(sorted(self._by_path))

    def close(self) -> None:
        """Stop listening to the client's state; live subscriptions hear :meth:`Subscriber.lost`."""
        self._client.remove_listener(self._state_changed)
        self._drop_all("closed")

    def _tapped(self, event_type: int, path: str) -> None:
        if event_type in NotificationKind._value2member_map_:
            self._dispatch(Notification(NotificationKind(event_type), path))

    def _dispatch(self, notification: Notification) -> None:
        with self._lock:
            targets = [s for path in _ancestors(notification.path) for s in self._by_path.get(path, ())]
        for subscription in targets:
            # On kazoo's connection thread: an exception escaping here would end that thread and
            # leave the client dead for good, so one subscriber's failure is logged and stops there.
            call_listener(f"zookeeper watch {subscription.path}", subscription.subscriber.notify, notification)

    def _state_changed(self, state: str) -> None:
        if state in (KazooState.SUSPENDED, KazooState.LOST):
            self._drop_all("connection-loss")

    def _drop_all(self, reason: str) -> None:
        with self._lock:
            dropped = [s for subscriptions in self._by_path.values() for s in subscriptions]
            self._by_path.clear()
        for subscription in dropped:
            call_listener(f"zookeeper watch {subscription.path}", subscription.subscriber.lost, reason)
