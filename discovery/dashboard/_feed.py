"""The dashboard's delta log: one subscription to the cache, turned into numbered, coalesced messages for browsers.

The cache calls :class:`Feed` on its own thread with every event and notice,
in order; the feed only queues them. Its own thread takes what queued at
most once per ``window`` seconds and turns it into Server-Sent Events
messages: consecutive events become ``events`` messages (up to
:data:`EVENTS_PER_MESSAGE` each), each state notice a ``state`` message,
then, when the status tree differs from the last one sent, one ``tree``
message. Every message gets the next sequence number and is encoded once,
into a bounded ring shared by every browser. The feed also keeps its own
model of the instances, updated with the same messages, so a ``snapshot``
is exactly the state after a given sequence number and the messages after
it continue from it, nothing missed or applied twice.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from discovery._background import call_listener, start_thread
from discovery.models import Event, EventKind, Instance, Notice, NoticeKind, StatusNode, WatchStatus

if TYPE_CHECKING:
    from discovery.cache import ServiceCache, Subscription

EVENTS_PER_MESSAGE = 500
"""The most events one ``events`` message carries; a larger burst takes several."""


def instance_data(instance: Instance) -> dict[str, Any]:
    """An instance as the dashboard sends it (see :meth:`~discovery.Instance.as_dict`)."""
    return instance.as_dict()


def tree_data(node: StatusNode) -> dict[str, Any]:
    """A status node and its subtree, as computed by the core (the browser never decides a colour).

    ``instances`` are the node's own, ``min`` its defined minimum (None if
    undefined), ``total`` the live instances in its whole subtree.
    """
    children = [tree_data(child) for child in node.children]
    return {
        "name": node.name,
        "path": node.path,
        "health": node.health.value,
        "reason": node.reason,
        "instances": node.instances,
        "min": node.min_instances,
        "total": node.instances + sum(child["total"] for child in children),
        "children": children,
    }


def _event_data(event: Event) -> dict[str, Any]:
    removed = event.instance is None or event.kind is EventKind.REMOVED
    return {
        "kind": event.kind.value,
        "service": event.service,
        "id": event.instance_id,
        "instance": None if removed or event.instance is None else instance_data(event.instance),
        "revision": event.revision,
        "resync": event.resync,
        "expired": event.expired,
    }


def _within(service: str, prefix: str) -> bool:
    return not prefix or service == prefix or service.startswith(prefix + "/")


class Feed:
    """The numbered messages browsers receive, with a bounded ring of the recent ones to resume from.

    Args:
        cache: the cache to follow (its prefix at or above ``prefix``).
        prefix: the part of the cache shown.
        header: static fields of every snapshot (backend, url, prefix).
        window: seconds between two flushes, at least: a burst is coalesced into one flush.
        ring_size: how many messages are kept to resume from.
        ring_bytes: how many encoded bytes they may take, at most.
        log_size: how many recent events and notices a snapshot carries.
    """

    def __init__(
        self,
        cache: ServiceCache,
        prefix: str,
        header: dict[str, Any],
        *,
        window: float = 0.1,
        ring_size: int = 1000,
        ring_bytes: int = 16 * 1024 * 1024,
        log_size: int = 200,
    ) -> None:
        self.cache = cache
        self.prefix = prefix
        self.epoch = secrets.token_hex(4)
        """Tells this feed's ids from those of an earlier server: an id of another epoch gets a snapshot."""
        self._header = header
        self._window = window
        self._ring_size = ring_size
        self._ring_bytes = ring_bytes
        self._cond = threading.Condition()
        self._pending: list[Event | Notice] = []
        self._ring: deque[tuple[int, bytes]] = deque()
        self._ring_total = 0
        self._dropped = 0
        """The highest sequence number no longer in the ring: an id below it cannot resume."""
        self._seq = 0
        self._log: deque[dict[str, Any]] = deque(maxlen=log_size)
        self._instances: dict[tuple[str, str], dict[str, Any]] = {}
        self._revision = 0
        self._status = WatchStatus()
        self._reason = ""
        self._tree: dict[str, Any] = {}
        self._tree_text = ""
        self._snapshot: tuple[int, bytes] | None = None
        self._listeners: list[Callable[[], None]] = []
        self._closed = False
        self._last_flush = 0.0
        self._subscription: Subscription | None = None
        self._thread: threading.Thread | None = None

    # -- life ----------------------------------------------------------------

    def start(self) -> None:
        """Subscribe to the cache and start flushing."""
        subscription = self.cache.subscribe(self._queue, self._queue)
        state = self.cache.state
        tree = tree_data(self.cache.status(self.prefix))
        with self._cond:
            self._subscription = subscription
            for instance in subscription.snapshot.instances:
                if _within(instance.service, self.prefix):
                    self._instances[(instance.service, instance.id)] = instance_data(instance)
            self._revision = subscription.snapshot.revision
            # Notices queued since the subscription began are applied on top: the state ends right either way.
            self._status = WatchStatus(
                state.connected, state.resyncing, None if state.broken is None else str(state.broken)
            )
            self._tree = tree
            self._tree_text = json.dumps(tree)
        self._thread = start_thread(f"discovery-dashboard-{self.prefix or '/'}", self._run, self._died)

    def close(self) -> None:
        """Stop following the cache and flushing. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        if self._subscription is not None:
            self._subscription.cancel()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def on_flush(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` (on the feed's thread) after every flush that added messages."""
        with self._cond:
            self._listeners.append(listener)

    # -- what browsers read --------------------------------------------------

    @property
    def seq(self) -> int:
        """The sequence number of the last message."""
        return self._seq

    def message_id(self, seq: int) -> str:
        """The SSE id of message ``seq``: ``<epoch>-<seq>``."""
        return f"{self.epoch}-{seq}"

    def parse_id(self, text: str | None) -> int | None:
        """The sequence number in an SSE id of this feed; None for no id, a malformed one or another epoch's."""
        if not text:
            return None
        epoch, _, number = text.strip().rpartition("-")
        if epoch != self.epoch or not number.isdigit():
            return None
        return int(number)

    def after(self, seq: int) -> list[tuple[int, bytes]] | None:
        """The messages after ``seq``, oldest first; None when some of them left the ring (send a snapshot)."""
        with self._cond:
            if not self._dropped <= seq <= self._seq:
                return None
            missed: list[tuple[int, bytes]] = []
            for item in reversed(self._ring):
                if item[0] <= seq:
                    break
                missed.append(item)
            missed.reverse()
            return missed

    def snapshot_data(self) -> dict[str, Any]:
        """Everything the page shows, as of the last message: the body of a ``snapshot`` message."""
        with self._cond:
            instances = [self._instances[key] for key in sorted(self._instances)]
            return {
                "type": "snapshot",
                "id": self.message_id(self._seq),
                **self._header,
                **self._state_fields(),
                "tree": self._tree,
                "instances": instances,
                "log": list(self._log),
            }

    def snapshot_message(self) -> tuple[int, bytes]:
        """A ``snapshot`` message as of the last message, and that message's sequence number."""
        with self._cond:
            cached = self._snapshot
            if cached is not None and cached[0] == self._seq:
                return cached
            seq = self._seq
            data = self.snapshot_data()
            message = seq, self._encode(seq, "snapshot", data)
            self._snapshot = message
            return message

    # -- the cache's thread --------------------------------------------------

    def _queue(self, item: Event | Notice) -> None:
        with self._cond:
            if not self._closed:
                self._pending.append(item)
                self._cond.notify_all()

    # -- the feed's thread ---------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                # Throttled: a burst gathers until the window since the last flush has passed.
                due = self._last_flush + self._window
                while not self._closed and (delay := due - time.monotonic()) > 0:
                    self._cond.wait(delay)
                if self._closed:
                    return
                items, self._pending = self._pending, []
            self._flush(items)

    def _died(self, exc: BaseException) -> None:
        """The feed's thread died of a bug: say so to the browsers, as a broken watch, rather than freeze silently."""
        with self._cond:
            self._status = dataclasses.replace(
                self._status, broken=f"the dashboard stopped following the registry: {exc!r}"
            )
            state = {"notice": NoticeKind.BROKEN.value, **self._state_fields(), "time": time.time()}
            self._append([("state", state)], None)
            listeners = list(self._listeners)
        for listener in listeners:
            call_listener("dashboard feed", listener)

    def _flush(self, items: list[Event | Notice]) -> None:
        self._last_flush = time.monotonic()
        now = time.time()
        messages: list[tuple[str, dict[str, Any]]] = []
        batch: list[dict[str, Any]] = []
        tree_may_change = False
        with self._cond:
            for item in items:
                if isinstance(item, Event):
                    if not _within(item.service, self.prefix):
                        continue
                    batch.append(self._apply(item, now))
                    tree_may_change = True
                    if len(batch) == EVENTS_PER_MESSAGE:
                        messages.append(("events", {"events": batch, "revision": self._revision, "time": now}))
                        batch = []
                    continue
                if batch:
                    messages.append(("events", {"events": batch, "revision": self._revision, "time": now}))
                    batch = []
                tree_may_change = True
                if item.kind is not NoticeKind.DEFINITIONS:
                    messages.append(("state", self._note(item, now)))
            if batch:
                messages.append(("events", {"events": batch, "revision": self._revision, "time": now}))
        tree: dict[str, Any] | None = None
        if tree_may_change:
            # The tree is the cache's, computed by the core; it may already include events of the next flush.
            tree = tree_data(self.cache.status(self.prefix))
        with self._cond:
            added = self._append(messages, tree)
            listeners = list(self._listeners)
        if added:
            for listener in listeners:
                call_listener("dashboard feed", listener)

    def _apply(self, event: Event, now: float) -> dict[str, Any]:
        """Apply an event to the feed's model and log. Caller holds the lock."""
        key = (event.service, event.instance_id)
        data = _event_data(event)
        if event.kind is EventKind.REMOVED:
            self._instances.pop(key, None)
        elif data["instance"] is not None:
            self._instances[key] = data["instance"]
        self._revision = max(self._revision, event.revision)
        entry = {key: data[key] for key in ("kind", "service", "id", "revision", "resync", "expired")}
        self._log.appendleft({**entry, "time": now})
        return data

    def _note(self, notice: Notice, now: float) -> dict[str, Any]:
        """Apply a notice to the feed's state and log; the body of its ``state`` message. Caller holds the lock."""
        self._status = self._status.after(notice)
        self._reason = notice.reason
        self._revision = max(self._revision, notice.revision)
        entry = {"kind": notice.kind.value, "reason": notice.reason, "revision": notice.revision, "time": now}
        self._log.appendleft(entry)
        return {"notice": notice.kind.value, **self._state_fields(), "time": now}

    def _state_fields(self) -> dict[str, Any]:
        reason = self._status.broken if self._status.broken is not None else self._reason
        return {"state": self._status.name, "reason": reason, "revision": self._revision}

    def _append(self, messages: Iterable[tuple[str, dict[str, Any]]], tree: dict[str, Any] | None) -> bool:
        """Number, encode and ring the messages, and a ``tree`` message if the tree changed. Caller holds the lock."""
        queued = list(messages)
        if tree is not None:
            text = json.dumps(tree)
            if text != self._tree_text:
                self._tree, self._tree_text = tree, text
                queued.append(("tree", {"tree": tree, "revision": self._revision}))
        for kind, data in queued:
            self._seq += 1
            message = self._encode(self._seq, kind, data)
            self._ring.append((self._seq, message))
            self._ring_total += len(message)
            while self._ring and (len(self._ring) > self._ring_size or self._ring_total > self._ring_bytes):
                seq, dropped = self._ring.popleft()
                self._ring_total -= len(dropped)
                self._dropped = seq
        return bool(queued)

    def _encode(self, seq: int, kind: str, data: dict[str, Any]) -> bytes:
        body = json.dumps({"type": kind, **data}, separators=(",", ":"))
        return f"id: {self.message_id(seq)}\nevent: {kind}\ndata: {body}\n\n".encode()
