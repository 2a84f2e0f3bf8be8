"""Deliberately faulty variants of the memory backend, to prove the core and the suite catch faults.

They are product code with one fault each, not stand-ins for a server: the
memory backend is the reference model, and these show what happens when a
backend breaks its contract or its stream breaks.
"""

from __future__ import annotations

import threading

from discovery.backend import Batch, ChangeStream, Gap, Session, Target
from discovery.errors import BackendUnavailable
from discovery.memory import MemoryBackend, MemorySession


class _DroppingStream(ChangeStream):
    """Drops one raw change, the ``drop_at``-th, without reporting a gap."""

    def __init__(self, inner: ChangeStream, backend: DroppingBackend) -> None:
        self._inner = inner
        self._backend = backend

    def next(self, timeout: float) -> Batch | Gap | None:
        item = self._inner.next(timeout)
        if not isinstance(item, Batch):
            return item
        kept = []
        for change in item.changes:
            with self._backend.lock:
                self._backend.seen += 1
                drop = self._backend.seen == self._backend.drop_at
            if not drop:
                kept.append(change)
        return Batch(item.revision, tuple(kept))

    def close(self) -> None:
        self._inner.close()


class DroppingBackend(MemoryBackend):
    """A broken backend: its raw stream silently loses one change."""

    def __init__(self, target: Target, drop_at: int = 50) -> None:
        super().__init__(target)
        self.drop_at = drop_at
        self.seen = 0
        self.lock = threading.Lock()

    def watch(self, prefix: str, after_revision: int | None) -> ChangeStream:
        return _DroppingStream(super().watch(prefix, after_revision), self)


class _BreakingStream(ChangeStream):
    """Raises BackendUnavailable once after ``break_after`` batches, like a dropped connection."""

    def __init__(self, inner: ChangeStream, backend: FlakyBackend) -> None:
        self._inner = inner
        self._backend = backend

    def next(self, timeout: float) -> Batch | Gap | None:
        with self._backend.lock:
            if self._backend.batches == self._backend.break_after:
                self._backend.batches += 1
                self._backend.breaks += 1
                raise BackendUnavailable("memory", "stream broke")
        item = self._inner.next(timeout)
        if isinstance(item, Batch):
            with self._backend.lock:
                self._backend.batches += 1
        return item

    def close(self) -> None:
        self._inner.close()


class FlakyBackend(MemoryBackend):
    """A backend whose stream breaks once; ``refuse_watch`` makes reopening fail too."""

    def __init__(self, target: Target, break_after: int = 10) -> None:
        super().__init__(target)
        self.break_after = break_after
        self.batches = 0
        self.breaks = 0
        self.refuse_watch = False
        self.lock = threading.Lock()

    def watch(self, prefix: str, after_revision: int | None) -> ChangeStream:
        if self.refuse_watch:
            raise BackendUnavailable("memory", "server unreachable")
        return _BreakingStream(super().watch(prefix, after_revision), self)


class _DeadServerStream(ChangeStream):
    """What a lazy client's stream does against a dead server: opens without asking it, then fails."""

    def next(self, timeout: float) -> Batch | Gap | None:
        raise BackendUnavailable("memory", "connection refused")

    def close(self) -> None:
        pass

    @property
    def confirmed(self) -> bool:
        return False


class LazyDeadBackend(MemoryBackend):
    """Reads work, but every stream opened once ``server_gone`` is set fails at once, unconfirmed.

    Like etcd v2 behind python-etcd: a stream opens without contacting the
    server, and its first read fails.
    """

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self.server_gone = False
        self.opened = 0
        self.lock = threading.Lock()

    def watch(self, prefix: str, after_revision: int | None) -> ChangeStream:
        with self.lock:
            self.opened += 1
            if self.server_gone:
                return _DeadServerStream()
        return super().watch(prefix, after_revision)


class DyingKeepAliveBackend(MemoryBackend):
    """A backend whose first session's keep-alive thread dies of a bug."""

    def open_session(self, ttl: float) -> Session:
        if self._sessions:
            return super().open_session(ttl)
        session = _DyingSession(self.store, ttl, self)
        self._sessions.append(session)
        return session


class _DyingSession(MemorySession):
    def _keep_alive(self) -> None:
        raise RuntimeError("a bug in the keep-alive")
