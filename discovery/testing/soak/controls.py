"""Negative controls: deliberately faulty backends (and tampered recordings) that the history checker must catch.

A checker that finds nothing proves nothing unless it is shown to find what
is there. Each control here runs a short in-process soak on a memory store
whose backend breaks one promise — drops one change in a thousand, reorders
two batches, skips a gap without a resync, splits a lease's expiry, loses a
delete, breaks its watch, forgets a registration put back after a lost
session — and names the property the checker must then report. Where the
core itself masks a backend's fault (a batch delivered twice is dropped by
the per-key revision check), the control shows that too, and breaks the
recording instead (:data:`TAMPERS`), so every property has a control.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from discovery import PermissionDenied, Registry
from discovery.backend import Batch, Change, ChangeKind, ChangeStream, Gap, Session
from discovery.memory import MemoryBackend
from discovery.models import Event, EventKind
from discovery.testing.history import Anomaly, History, Observation, Registrant, WatcherLog, WriteKind, check_history
from discovery.testing.memory import registry_on
from discovery.testing.soak.consumers import Consumer, consumers_for, converge
from discovery.testing.soak.records import WriteLog, writes_in
from discovery.testing.soak.traffic import run_writer

__all__ = ["CONTROLS", "TAMPERS", "Control", "run_control"]

_PREFIX = "soak"
_TTL = 1.0
"""The registrants' ttl: short, so a killed one expires soon after the kill."""


class _FaultyStream(ChangeStream):
    """A change stream that passes everything through; subclasses break it."""

    def __init__(self, inner: ChangeStream) -> None:
        self._inner = inner
        self.batches = 0

    def next(self, timeout: float) -> Batch | Gap | None:
        return self._inner.next(timeout)

    def close(self) -> None:
        self._inner.close()

    @property
    def confirmed(self) -> bool:
        return self._inner.confirmed


class _FaultyBackend(MemoryBackend):
    """A memory backend whose watches get ``stream_class``."""

    stream_class: type[_FaultyStream] = _FaultyStream

    def watch(self, prefix: str, after_revision: int | None) -> ChangeStream:
        return self.stream_class(super().watch(prefix, after_revision))


class _Dropping(_FaultyStream):
    """Drops one change in a thousand (the 100th first, so a short run sees one)."""

    def __init__(self, inner: ChangeStream) -> None:
        super().__init__(inner)
        self._count = itertools.count(1)

    def next(self, timeout: float) -> Batch | Gap | None:
        item = self._inner.next(timeout)
        if not isinstance(item, Batch):
            return item
        kept = tuple(c for c in item.changes if next(self._count) % 1000 != 100)
        return Batch(item.revision, kept) if kept else None


class _Reordering(_FaultyStream):
    """Delivers its 30th batch that writes a value after the batch that follows it."""

    def __init__(self, inner: ChangeStream) -> None:
        super().__init__(inner)
        self._held: Batch | None = None
        self._release: Batch | None = None

    def next(self, timeout: float) -> Batch | Gap | None:
        if self._release is not None:
            release, self._release = self._release, None
            return release
        item = self._inner.next(timeout)
        if not isinstance(item, Batch):
            return item
        if any(c.kind is ChangeKind.PUT for c in item.changes):
            self.batches += 1
            if self.batches == 30:
                self._held = item
                return None
        if self._held is not None:
            self._release, self._held = self._held, None
        return item


class _SkippingResync(_FaultyStream):
    """After its 30th batch, silently skips the next ten, as a stream that lost its place but reports no gap."""

    def next(self, timeout: float) -> Batch | Gap | None:
        item = self._inner.next(timeout)
        if isinstance(item, Batch):
            self.batches += 1
            if 30 < self.batches <= 40:
                return None
        return item


class _Splitting(_FaultyStream):
    """Delivers every batch of several changes (a lease's expiry) as its first change, the rest after the next batch."""

    def __init__(self, inner: ChangeStream) -> None:
        super().__init__(inner)
        self._rest: tuple[Change, ...] = ()

    def next(self, timeout: float) -> Batch | Gap | None:
        item = self._inner.next(timeout)
        if not isinstance(item, Batch):
            return item
        rest, self._rest = self._rest, ()
        if len(item.changes) > 1:
            self._rest = item.changes[1:]
            item = Batch(item.revision, item.changes[:1])
        return Batch(item.revision, item.changes + rest) if rest else item


class _LosingDeletes(_FaultyStream):
    """Drops the tenth delete it sees."""

    def __init__(self, inner: ChangeStream) -> None:
        super().__init__(inner)
        self._deletes = 0

    def next(self, timeout: float) -> Batch | Gap | None:
        item = self._inner.next(timeout)
        if not isinstance(item, Batch):
            return item
        kept = []
        for change in item.changes:
            if change.kind is ChangeKind.DELETE:
                self._deletes += 1
                if self._deletes == 10:
                    continue
            kept.append(change)
        return Batch(item.revision, tuple(kept)) if kept else None


class _Breaking(_FaultyStream):
    """Refuses the watch for good after its 20th batch, as a revoked permission does."""

    def next(self, timeout: float) -> Batch | Gap | None:
        item = self._inner.next(timeout)
        if isinstance(item, Batch):
            self.batches += 1
            if self.batches == 20:
                raise PermissionDenied("memory", _PREFIX, "the control refuses the watch from now on")
        return item


class _Duplicating(_FaultyStream):
    """Delivers its 20th batch twice (the core drops the copy: see :data:`CONTROLS`)."""

    def __init__(self, inner: ChangeStream) -> None:
        super().__init__(inner)
        self._again: Batch | None = None

    def next(self, timeout: float) -> Batch | Gap | None:
        if self._again is not None:
            again, self._again = self._again, None
            return again
        item = self._inner.next(timeout)
        if isinstance(item, Batch):
            self.batches += 1
            if self.batches == 20:
                self._again = item
        return item


class _Forgetful(MemoryBackend):
    """Acknowledges a put under a session opened after a lost one, and stores nothing."""

    _lost_once = False

    def expire_sessions(self) -> None:
        self._lost_once = True
        super().expire_sessions()

    def put(self, key: str, value: bytes, session: Session | None) -> int:
        if self._lost_once and session is not None:
            return self.store.revision
        return super().put(key, value, session)


def _stream_backend(stream: type[_FaultyStream]) -> type[MemoryBackend]:
    return type(f"{stream.__name__.strip('_')}Backend", (_FaultyBackend,), {"stream_class": stream})


@dataclass(frozen=True)
class Control:
    """One negative control.

    Attributes:
        name: what the faulty backend does.
        backend: the faulty backend.
        expect: the property the checker must report; None when the core masks the fault.
    """

    name: str
    backend: type[MemoryBackend]
    expect: str | None


CONTROLS = (
    Control("drops one event in a thousand", _stream_backend(_Dropping), "reliable"),
    Control("reorders one batch", _stream_backend(_Reordering), "ordered"),
    Control("skips a resync", _stream_backend(_SkippingResync), "reliable"),
    Control("splits a lease's expiry", _stream_backend(_Splitting), "atomic"),
    Control("loses one delete", _stream_backend(_LosingDeletes), "convergence"),
    Control("breaks its watch", _stream_backend(_Breaking), "alive"),
    Control("forgets re-registrations", _Forgetful, "registrations-return"),
    Control("delivers a batch twice (the core drops the copy)", _stream_backend(_Duplicating), None),
)
"""The faulty backends and the property each must make the checker report."""


def _duplicate_one(log: WatcherLog) -> None:
    events = [i for i, o in enumerate(log.items) if isinstance(o.item, Event) and not o.item.resync]
    position = events[len(events) // 2]
    log.items.insert(position + 1, log.items[position])


def _relabel_one(log: WatcherLog) -> None:
    for index, observation in enumerate(log.items):
        item = observation.item
        if isinstance(item, Event) and item.kind is EventKind.UPDATED and not item.resync:
            log.items[index] = Observation(observation.at, dataclasses.replace(item, kind=EventKind.ADDED))
            return


TAMPERS: dict[str, Callable[[WatcherLog], None]] = {
    "unique": _duplicate_one,
    "is-create": _relabel_one,
}
"""Breaks of a recorded log, for the properties the core protects from any backend: property -> tamper."""


def _memory(registry: Registry) -> MemoryBackend:
    backend = registry.backend
    assert isinstance(backend, MemoryBackend)
    return backend


def run_control(
    backend: type[MemoryBackend],
    *,
    seconds: float = 6.0,
    seed: int = 1,
    tamper: Callable[[WatcherLog], None] | None = None,
) -> list[Anomaly]:
    """Soak ``backend`` in this process for ``seconds`` and return what the checker finds.

    Two writer threads, three registrants of five instances (one killed, one
    losing its session midway), and every consumer kind; ``tamper`` (if
    given) breaks the plain consumer's recording before the check.
    """
    url = f"memory://control-{uuid.uuid4().hex[:12]}/control?history_window=5000"

    def connect() -> Registry:
        return registry_on(backend, url)

    admin = connect()
    consumers: list[Consumer] = consumers_for(connect, _PREFIX, admin.capabilities)
    stop = threading.Event()
    streams: list[io.StringIO] = []
    threads: list[threading.Thread] = []
    registries: list[Registry] = []
    try:
        for consumer in consumers:
            consumer.start()
        for n in range(2):
            stream = io.StringIO()
            streams.append(stream)
            registry = connect()
            registries.append(registry)
            thread = threading.Thread(
                target=run_writer,
                args=(registry, WriteLog(stream, f"w{n}"), f"{_PREFIX}/w{n}"),
                kwargs={"seed": seed * 10 + n, "rate": 100.0, "ttl": 1.0, "keys": 20, "stop": stop},
                daemon=True,
            )
            thread.start()
            threads.append(thread)
        registrants: dict[str, Registrant] = {}
        holders: dict[str, Registry] = {}
        for n in range(3):
            name = f"r{n}"
            stream = io.StringIO()
            streams.append(stream)
            registry = connect()
            registries.append(registry)
            log = WriteLog(stream, name)
            for i in range(5):
                registration = registry.register(f"{_PREFIX}/{name}", f"i{i}", ttl=_TTL)
                log.write(WriteKind.REGISTER, registration.key, registration.instance.revision)
            holders[name] = registry
            registrants[name] = Registrant(name, _TTL)
        time.sleep(seconds / 4)
        _memory(holders["r1"]).expire_sessions()
        time.sleep(seconds / 4)
        held = frozenset(r.key for r in holders["r0"].registrations() if r.alive)
        _memory(holders["r0"]).abandon()
        registrants["r0"] = Registrant("r0", _TTL, time.time(), held)
        time.sleep(seconds / 2)
        ended_at = time.time()
        stop.set()
        for thread in threads:
            thread.join(10.0)
        store = converge(admin, consumers, ["r0"], _PREFIX, timeout=15.0)
        logs = [consumer.stop() for consumer in consumers]
        if tamper is not None:
            tamper(logs[0])
        writes = [w for stream in streams for w in writes_in(stream.getvalue().splitlines())]
        history = History("memory", admin.capabilities, writes, logs, registrants, [], store, ended_at)
        return check_history(history, returns_from="plain")
    finally:
        stop.set()
        for registry in registries:
            registry.close()
        admin.close()
