"""The in-memory backend (``memory://name``): the embedded default and the reference model.

A thread-safe store with one global revision counter, sessions that really
expire on a timer when their keep-alive stops, and a bounded history of
revisions (``history_window``) so that watches falling behind it get a
:class:`~discovery.backend.Gap`, exactly like etcd's compaction or v2's
1000-event window. Stores are shared per name within one process:
``memory://a`` in two registries is the same store; ``memory://`` is the
store named ``default``. It tells an expiry from a delete and delivers every
intermediate value, so it declares every capability.

A watch's stream pushes (see :class:`discovery.backend.PushStream`): the
write that commits a revision hands its batch to each watch under the
store's lock, in the writer's thread, so the watch's consumer is woken by
the write itself; nothing else wakes. ``next()`` still serves whoever reads
a stream directly, woken by the commit as well.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from discovery._background import start_thread
from discovery.backend import (
    Backend,
    Batch,
    Change,
    ChangeKind,
    ChangeStream,
    Gap,
    Listing,
    Option,
    Record,
    Session,
    Sink,
    Target,
    key_held,
)
from discovery.capabilities import Capability
from discovery.errors import NameConflict, RegistryClosed, SessionExpired

__all__ = ["MemoryBackend", "MemorySession", "MemoryStore"]

_log = logging.getLogger(__name__)


@dataclass
class _Entry:
    value: bytes
    create_revision: int
    mod_revision: int
    session_id: str | None


@dataclass
class _Lease:
    ttl: float
    deadline: float
    keys: set[str] = field(default_factory=set)


class MemoryStore:
    """One named store: keys, revisions, leases and a bounded history."""

    def __init__(self, name: str, history_window: int) -> None:
        self.name = name
        lock = threading.RLock()
        # Readers of a stream's next() wait on `condition`, the reaper on its
        # own: a commit wakes neither the reaper nor a pushing watch's thread.
        self.condition = threading.Condition(lock)
        self._reaper_wake = threading.Condition(lock)
        self.pushing: list[_MemoryStream] = []
        self.revision = 0
        self.entries: dict[str, _Entry] = {}
        self.history: collections.deque[Batch] = collections.deque(maxlen=history_window)
        self.leases: dict[str, _Lease] = {}
        # How many keys lie below each directory (every proper prefix of a
        # key), so a put can refuse a name conflict without scanning.
        self.below: collections.Counter[str] = collections.Counter()
        self._lease_ids = itertools.count(1)
        self._reaper: threading.Thread | None = None

    def resize_history(self, history_window: int) -> None:
        """Change the history window (the latest connect wins)."""
        with self.condition:
            if self.history.maxlen != history_window:
                self.history = collections.deque(self.history, maxlen=history_window)

    def commit(self, changes: list[Change]) -> int:
        """Record changes already applied to ``entries`` as one revision, and hand it to the pushing streams.

        Caller holds the lock, which keeps the streams' batches in commit order.
        """
        batch = Batch(self.revision, tuple(changes))
        self.history.append(batch)
        self.condition.notify_all()
        if self.pushing:
            refused = [stream for stream in self.pushing if not stream.offer(batch)]
            for stream in refused:
                self.pushing.remove(stream)
        return self.revision

    def add_entry(self, key: str, entry: _Entry) -> None:
        """Store a new key. Caller holds the lock and has checked :meth:`conflict`."""
        self.entries[key] = entry
        for directory in _directories(key):
            self.below[directory] += 1

    def remove_entry(self, key: str) -> _Entry:
        """Remove a key and return its entry. Caller holds the lock."""
        entry = self.entries.pop(key)
        for directory in _directories(key):
            self.below[directory] -= 1
            if not self.below[directory]:
                del self.below[directory]
        return entry

    def conflict(self, key: str) -> str | None:
        """The existing key below ``key`` or above it, if any (keys form a tree). Caller holds the lock."""
        for directory in _directories(key):
            if directory in self.entries:
                return directory
        if self.below.get(key):
            return next(k for k in self.entries if k.startswith(key + "/"))
        return None

    def oldest_revision(self) -> int:
        """The first revision still in the history. Caller holds the lock."""
        return self.history[0].revision if self.history else self.revision + 1

    def grant(self, ttl: float) -> str:
        """Create a lease and return its id."""
        with self.condition:
            lease_id = f"{next(self._lease_ids):x}"
            self.leases[lease_id] = _Lease(ttl, time.monotonic() + ttl)
            if self._reaper is None:
                # One reaper per store, only while it has leases.
                self._reaper = start_thread(f"memory-reaper-{self.name}", self._reap, self._reaper_died)
            self._reaper_wake.notify_all()
            return lease_id

    def keepalive(self, lease_id: str) -> bool:
        """Push a lease's deadline; False if it is gone."""
        with self.condition:
            lease = self.leases.get(lease_id)
            if lease is None:
                return False
            lease.deadline = time.monotonic() + lease.ttl
            return True

    def revoke(self, lease_id: str, expired: bool) -> None:
        """End a lease and delete its keys in one revision."""
        with self.condition:
            lease = self.leases.pop(lease_id, None)
            if lease is None or not lease.keys:
                return
            self.revision += 1
            changes = []
            for key in sorted(lease.keys):
                self.remove_entry(key)
                changes.append(Change(ChangeKind.DELETE, key, None, 0, self.revision, expired))
            self.commit(changes)

    def _reaper_died(self, _exc: BaseException) -> None:
        with self.condition:
            self._reaper = None

    def _reap(self) -> None:
        with self.condition:
            while self.leases:
                now = time.monotonic()
                due = [lease_id for lease_id, lease in self.leases.items() if lease.deadline <= now]
                for lease_id in due:
                    self.revoke(lease_id, expired=True)
                next_deadline = min((lease.deadline for lease in self.leases.values()), default=now)
                self._reaper_wake.wait(max(0.01, next_deadline - now))
            self._reaper = None


def _directories(key: str) -> list[str]:
    """Every proper prefix of ``key`` that ends at a ``/`` (without it)."""
    parts = key.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


_stores_lock = threading.Lock()
# A store lives as long as the process: two registries connected one after
# the other to memory://a must see the same data.
_stores: dict[str, MemoryStore] = {}


def _store(name: str, history_window: int) -> MemoryStore:
    with _stores_lock:
        store = _stores.get(name)
        if store is None:
            store = MemoryStore(name, history_window)
            _stores[name] = store
        else:
            store.resize_history(history_window)
        return store


class MemorySession(Session):
    """A lease in a memory store, kept alive by a background thread."""

    counts_keepalives: ClassVar[bool] = True

    def __init__(self, store: MemoryStore, ttl: float, backend: Backend) -> None:
        super().__init__(ttl, backend)
        self._store = store
        self._id = store.grant(ttl)
        self._stopped = threading.Event()
        self._thread = self._start_thread(f"memory-keepalive-{self._id}", self._keep_alive)

    @property
    def id(self) -> str:
        return self._id

    def _keep_alive(self) -> None:
        while not self._stopped.wait(self.ttl / 3):
            renewed = self._store.keepalive(self._id)
            self._count_keepalives(1, 0 if renewed else 1)
            if not renewed:
                self._stopped.set()
                self.mark_lost()

    def abandon(self) -> None:
        """Stop the keep-alive without telling the store, as a crashed process would."""
        self._stopped.set()

    def close(self) -> None:
        self._stopped.set()
        self._store.revoke(self._id, expired=False)
        self.mark_lost()


def _hand(sink: Sink, item: Batch | Gap) -> bool:
    """Hand an item to a watch's sink; False if it wants no more. A sink that raises is a bug: logged, detached."""
    try:
        return sink(item)
    except Exception:  # never fail the write that committed the batch
        _log.exception("a watch's sink raised; the stream stops pushing to it")
        return False


class _MemoryStream(ChangeStream):
    def __init__(self, store: MemoryStore, prefix: str, next_revision: int) -> None:
        self._store = store
        self._prefix = prefix
        self._next = next_revision
        self._closed = False
        self._gap: Gap | None = None
        self._sink: Sink | None = None

    def _take(self) -> Batch | Gap | None:
        """The next item from the history; None once the stream has caught up. Caller holds the lock."""
        store = self._store
        while self._next <= store.revision:
            oldest = store.oldest_revision()
            if self._next < oldest:
                self._gap = Gap("history-window")
                return self._gap
            batch = store.history[self._next - oldest]
            self._next += 1
            changes = tuple(c for c in batch.changes if c.key.startswith(self._prefix))
            if changes:
                return Batch(batch.revision, changes)
        return None

    def next(self, timeout: float) -> Batch | Gap | None:
        deadline = time.monotonic() + timeout
        store = self._store
        with store.condition:
            while True:
                if self._closed:
                    raise RegistryClosed("change stream closed")
                if self._gap is not None:
                    return self._gap
                item = self._take()
                if item is not None:
                    return item
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                store.condition.wait(remaining)

    def deliver_to(self, sink: Sink) -> None:
        """Hand the history since the stream's position to ``sink``, then each commit as it happens (see PushStream)."""
        store = self._store
        with store.condition:
            if self._closed or self._gap is not None:
                return
            while (item := self._take()) is not None:
                if not _hand(sink, item) or isinstance(item, Gap):
                    return
            self._sink = sink
            store.pushing.append(self)

    def offer(self, batch: Batch) -> bool:
        """Hand a just-committed batch's changes under the prefix to the sink; False to stop. Caller holds the lock."""
        sink = self._sink
        if sink is None or self._closed:
            return False
        self._next = batch.revision + 1
        changes = tuple(c for c in batch.changes if c.key.startswith(self._prefix))
        return not changes or _hand(sink, Batch(batch.revision, changes))

    def close(self) -> None:
        with self._store.condition:
            self._closed = True
            if self in self._store.pushing:
                self._store.pushing.remove(self)
            self._store.condition.notify_all()


class MemoryBackend(Backend):
    """The in-process store: ``memory://`` or ``memory://<name>?history_window=N``."""

    name: ClassVar[str] = "memory"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(Capability)
    options: ClassVar[Mapping[str, Option]] = {
        "history_window": Option(int, 1000, "revisions kept for watches to resume from"),
    }
    default_port: ClassVar[int] = 0
    min_ttl: ClassVar[float] = 0.1
    # No server limits these; declared like a server's, so that what a test
    # on memory stores fits a server backend too.
    max_value_bytes: ClassVar[int] = 1024 * 1024
    max_key_bytes: ClassVar[int] = 8 * 1024

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        name = target.hosts[0][0] if target.hosts else "default"
        window = int(str(target.options.get("history_window", 1000)))
        self.store = _store(name or "default", max(1, window))
        self._root = target.root.strip("/")
        self._sessions: list[MemorySession] = []
        self._streams: weakref.WeakSet[_RootedStream] = weakref.WeakSet()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise RegistryClosed(f"{self.name} backend is closed")

    def _key(self, key: str) -> str:
        return f"{self._root}/{key}" if self._root else key

    def _relative(self, key: str) -> str:
        return key[len(self._root) + 1 :] if self._root else key

    def _full_prefix(self, prefix: str) -> str:
        return f"{self._root}/{prefix}" if self._root else prefix

    def list(self, prefix: str) -> Listing:
        self._check_open()
        full = self._full_prefix(prefix)
        with self.store.condition:
            records = tuple(
                Record(self._relative(key), entry.value, entry.create_revision, entry.mod_revision)
                for key, entry in self.store.entries.items()
                if key.startswith(full)
            )
            return Listing(self.store.revision, records)

    def watch(self, prefix: str, after_revision: int | None) -> ChangeStream:
        self._check_open()
        with self.store.condition:
            start = self.store.revision + 1 if after_revision is None else after_revision + 1
        stream = _RootedStream(_MemoryStream(self.store, self._full_prefix(prefix), start), self)
        self._streams.add(stream)
        return stream

    def open_session(self, ttl: float) -> Session:
        self._check_open()
        session = MemorySession(self.store, ttl, self)
        self._sessions.append(session)
        return session

    def put(self, key: str, value: bytes, session: Session | None) -> int:
        self._check_open()
        owner = None if session is None else self._own_session(session, MemorySession)
        full = self._key(key)
        store = self.store
        with store.condition:
            entry = store.entries.get(full)
            session_id = owner.id if owner is not None else None
            if session_id is not None:
                if session_id not in store.leases:
                    raise SessionExpired("memory", f"lease {session_id} has expired")
                if entry is not None and entry.session_id != session_id:
                    raise key_held(key)
            if entry is None and (conflict := store.conflict(full)) is not None:
                raise NameConflict(key, self._relative(conflict))
            store.revision += 1
            revision = store.revision
            if entry is not None and entry.session_id is not None and entry.session_id != session_id:
                store.leases[entry.session_id].keys.discard(full)
            if entry is None:
                store.add_entry(full, _Entry(value, revision, revision, session_id))
            else:
                store.entries[full] = _Entry(value, entry.create_revision, revision, session_id)
            create = store.entries[full].create_revision
            if session_id is not None:
                store.leases[session_id].keys.add(full)
            return store.commit([Change(ChangeKind.PUT, full, value, create, revision)])

    def delete(self, key: str, session: Session | None = None) -> bool:
        self._check_open()
        owner = None if session is None else self._own_session(session, MemorySession)
        full = self._key(key)
        store = self.store
        with store.condition:
            entry = store.entries.get(full)
            if entry is None or (owner is not None and entry.session_id != owner.id):
                return False
            store.remove_entry(full)
            if entry.session_id is not None and entry.session_id in store.leases:
                store.leases[entry.session_id].keys.discard(full)
            store.revision += 1
            store.commit([Change(ChangeKind.DELETE, full, None, 0, store.revision, False)])
            return True

    def abandon(self) -> None:
        """Stop every keep-alive without telling the store, as a crashed process would."""
        for session in self._sessions:
            session.abandon()

    def expire_sessions(self) -> None:
        """Expire every lease this backend opened, as a server dropping them would (fault injection)."""
        for session in self._sessions:
            self.store.revoke(session.id, expired=True)

    def close(self) -> None:
        self._closed = True
        for session in self._sessions:
            session.abandon()
        self._sessions.clear()
        for stream in list(self._streams):
            stream.close()

    def server_version(self) -> str:
        return "in-process"


class _RootedStream(ChangeStream):
    """Maps a store stream's full keys back to keys relative to the backend's root."""

    def __init__(self, inner: _MemoryStream, backend: MemoryBackend) -> None:
        self._inner = inner
        self._backend = backend

    def _rooted(self, batch: Batch) -> Batch:
        if not self._backend._root:
            return batch
        relative = self._backend._relative
        return Batch(
            batch.revision,
            tuple(
                Change(c.kind, relative(c.key), c.value, c.create_revision, c.mod_revision, c.expired)
                for c in batch.changes
            ),
        )

    def next(self, timeout: float) -> Batch | Gap | None:
        item = self._inner.next(timeout)
        return self._rooted(item) if isinstance(item, Batch) else item

    def deliver_to(self, sink: Sink) -> None:
        """Push the inner stream's items, keys made relative (see :meth:`_MemoryStream.deliver_to`)."""
        self._inner.deliver_to(lambda item: sink(self._rooted(item) if isinstance(item, Batch) else item))

    def close(self) -> None:
        self._inner.close()
