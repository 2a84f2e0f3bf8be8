"""Assertions over event streams, shared by the conformance suite and the benchmark.

They state the event contract in code: ``collect`` drains a watch until a
condition holds, ``wait_converged`` proves that the snapshot plus the events
equals the store, ``assert_ordered`` that revisions never decrease, and
``kinds_by_instance`` gives the per-instance history to compare with the
real one. :class:`CacheProbe` holds a service cache to the same promise:
after any fault it converges to the store, and the events it told a
subscriber, applied to the subscription's snapshot, equal its contents.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType

from discovery import Event, EventKind, Notice, NoticeKind, Registry, ServiceCache, Snapshot, Watch


def collect(
    watch: Watch,
    until: Callable[[list[Event]], bool],
    timeout: float,
    events: list[Event] | None = None,
    message: str = "",
) -> list[Event]:
    """Read events into ``events`` until ``until(events)`` holds.

    Raises:
        AssertionError: the condition did not hold within ``timeout`` seconds.
    """
    events = [] if events is None else events
    deadline = time.monotonic() + timeout
    while not until(events):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(
                f"{message or 'condition'} not met in {timeout:g} s; {len(events)} events: {events[-5:]}"
            )
        event = watch.get(min(remaining, 0.5))
        if event is not None:
            events.append(event)
    return events


def drain(watch: Watch, quiet: float = 0.3) -> list[Event]:
    """Read events until none arrives for ``quiet`` seconds."""
    events: list[Event] = []
    while (event := watch.get(quiet)) is not None:
        events.append(event)
    return events


def state(snapshot: Snapshot) -> dict[str, tuple[str | None, int | None, dict[str, object]]]:
    """The instances of a snapshot by path, without revisions: what convergence compares."""
    return {path: (i.address, i.port, dict(i.meta)) for path, i in snapshot.by_path().items()}


def wait_converged(
    watch: Watch,
    registry: Registry,
    events: list[Event],
    timeout: float,
    prefix: str | None = None,
    quiet: float = 0.3,
) -> list[Event]:
    """Read events into ``events`` until snapshot + events equals the store; return them.

    Each comparison follows a ``quiet`` period in which no event arrived, so
    a comparison never passes while events are still pending.

    Raises:
        AssertionError: no convergence within ``timeout`` seconds, or an
            event that does not fit the state (ValueError from ``apply``).
    """
    prefix = watch.prefix if prefix is None else prefix
    deadline = time.monotonic() + timeout
    while True:
        events.extend(drain(watch, quiet))
        applied = watch.snapshot.apply(events)
        current = registry.snapshot(prefix)
        if state(applied) == state(current):
            return events
        if time.monotonic() > deadline:
            difference = _difference(state(current), state(applied))
            raise AssertionError(f"watch did not converge in {timeout:g} s; {difference}")


def _difference(store: Mapping[str, object], watched: Mapping[str, object]) -> str:
    """Where the watch's state and the store's differ, a few paths of each kind."""
    parts = []
    for label, paths in (
        ("in the store, not in the watch", sorted(store.keys() - watched.keys())),
        ("in the watch, not in the store", sorted(watched.keys() - store.keys())),
        ("different data", sorted(p for p in store.keys() & watched.keys() if store[p] != watched[p])),
    ):
        if paths:
            parts.append(f"{len(paths)} {label} ({', '.join(paths[:5])})")
    return "; ".join(parts) or "no difference in the last comparison"


def assert_ordered(events: Iterable[Event]) -> None:
    """Revisions never decrease along the stream.

    Raises:
        AssertionError: a revision went down.
    """
    last = -1
    for event in events:
        assert event.revision >= last, f"revision went down: {last} then {event}"
        last = event.revision


def kinds_by_instance(events: Iterable[Event]) -> dict[str, list[EventKind]]:
    """Each instance's event kinds, in stream order."""
    history: dict[str, list[EventKind]] = {}
    for event in events:
        history.setdefault(f"{event.service}/{event.instance_id}", []).append(event.kind)
    return history


def count(events: Iterable[Event], kind: EventKind) -> int:
    """How many events of ``kind``."""
    return sum(1 for event in events if event.kind is kind)


class CacheProbe:
    """A service cache under test, with every event and notice it told its subscribers, in order.

    Use it as a context manager around a fault scenario, then call
    :meth:`assert_converged`.
    """

    def __init__(self, registry: Registry, prefix: str) -> None:
        self.cache: ServiceCache = registry.cache(prefix)
        self.events: list[Event] = []
        self.notices: list[Notice] = []
        self.start = self.cache.subscribe(self.events.append, self.notices.append).snapshot

    def __enter__(self) -> CacheProbe:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cache.close()

    def assert_converged(self, store: Registry, timeout: float, quiet: float = 0.3) -> None:
        """Wait until the cache equals ``store`` (after a quiet period), and its events replay to its contents.

        Raises:
            AssertionError: no convergence within ``timeout``, the cache
                broke, or its events applied to its first snapshot differ
                from its contents (or do not fit it).
        """
        deadline = time.monotonic() + timeout
        prefix = self.cache.prefix
        while True:
            assert self.cache.broken is None, f"the cache broke: {self.cache.broken}"
            seen = len(self.events) + len(self.notices)
            time.sleep(quiet)
            cached, current = state(self.cache.snapshot()), state(store.snapshot(prefix))
            if len(self.events) + len(self.notices) == seen and not self.cache.resyncing and cached == current:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"cache did not converge in {timeout:g} s; {_difference(current, cached)}")
        replayed = self.start.apply(self.events)
        assert replayed.instances == self.cache.snapshot().instances, (
            "events applied to the subscription's start differ"
        )
        assert_ordered(self.events)
        starts = [n for n in self.notices if n.kind is NoticeKind.RESYNC_STARTED]
        ends = [n for n in self.notices if n.kind is NoticeKind.RESYNCED]
        assert len(starts) == len(ends), f"resyncs started {len(starts)}, finished {len(ends)}"
