"""The history checker: a recorded run of writers and watchers, held to the event contract one property at a time.

A run is a :class:`History`: every write a client had acknowledged
(:class:`Write`, with the revision the backend returned, when it returned
one), every item each consumer took from its watch in order
(:class:`WatcherLog`, events and notices with the time it took them), the
registrant processes and when each was killed, the windows in which a fault
was being played, and the store's state once the run was quiet.
:func:`check_history` runs each property's own small function over it and
returns every :class:`Anomaly` found, each naming the property, the consumer,
the key and the revision: **ordered** (revisions never decrease), **unique**
(no change delivered twice outside a resync), **atomic** (a lease's keys,
expired at one revision, arrive at one revision, together), **reliable**
(every acknowledged change between the first and the last revision a watcher
saw is delivered, or falls in a window it flagged with a resync),
**is-create** (ADDED exactly when the instance did not exist before),
**convergence** (at the end each watcher equals the store), **alive** (no
watch gave up) and **registrations-return** (a live registrant's instance
that vanished is back within ttl + 2 s, plus the time faults lasted). What a
backend cannot promise (``INTERMEDIATE_VALUES``, ``BATCHED_EXPIRY``) is taken
from its declared capabilities, never guessed. The model is etcd's robustness
tests (``tests/robustness/validate/watch.go``).
"""

from __future__ import annotations

import bisect
import enum
import functools
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from discovery.capabilities import Capability
from discovery.models import Event, EventKind, Instance, Notice, NoticeKind

__all__ = [
    "PROPERTIES",
    "Anomaly",
    "History",
    "Observation",
    "Registrant",
    "WatcherLog",
    "Write",
    "WriteKind",
    "check_history",
    "check_watcher",
    "converged",
    "state_of",
]

PROPERTIES = (
    "ordered",
    "unique",
    "atomic",
    "reliable",
    "is-create",
    "convergence",
    "alive",
    "registrations-return",
)
"""Every property the checker knows, in the order reports list them."""

_RETURN_SLACK = 2.0
"""Seconds beyond the ttl within which a lost registration must be back."""


class WriteKind(enum.Enum):
    """What an acknowledged write did."""

    REGISTER = "register"
    """Created a new incarnation of the instance (it was absent)."""
    UPDATE = "update"
    """Changed a present instance's value."""
    DEREGISTER = "deregister"
    """Deleted the instance; the backend returns no revision for it."""


@dataclass(frozen=True)
class Write:
    """One write a client made and the backend acknowledged.

    Attributes:
        client: the writer or registrant that made it.
        kind: register, update or deregister.
        key: ``service/id``.
        revision: the revision the backend returned (None for a deregister).
        at: wall-clock time of the acknowledgement (``time.time()``).
    """

    client: str
    kind: WriteKind
    key: str
    revision: int | None
    at: float


@dataclass(frozen=True)
class Observation:
    """One item a consumer took from its watch.

    Attributes:
        at: wall-clock time it was taken.
        item: the event or notice; ``None`` marks where a consumer re-opened
            its watch with ``since=`` the last revision it saw (a new segment
            in replay: the watch's model starts empty there).
    """

    at: float
    item: Event | Notice | None


@dataclass
class WatcherLog:
    """What one consumer saw, in order.

    Attributes:
        name: the consumer's name (``plain``, ``slow``, ``tiny``...).
        start: the instances of the first watch's snapshot.
        start_revision: the revision of that snapshot.
        items: every observation, in the order taken.
        final: the consumer's own idea of the state at the end, when it keeps
            one apart from its events (a service cache); None to use the
            state its events build.
    """

    name: str
    start: tuple[Instance, ...]
    start_revision: int
    items: list[Observation] = field(default_factory=list)
    final: Mapping[str, Instance] | None = None


@dataclass(frozen=True)
class Registrant:
    """A client that registered instances and kept them alive until it was killed, or the end.

    Attributes:
        name: its name, as in :attr:`Write.client`.
        ttl: the ttl its instances were registered with.
        killed_at: when it was killed (SIGKILL), or None if it lived to the end.
        holding: the keys it held (registered and alive) when it was killed:
            one lease, whose expiry is one revision. Empty if unknown.
    """

    name: str
    ttl: float
    killed_at: float | None = None
    holding: frozenset[str] = frozenset()


@dataclass
class History:
    """A whole recorded run on one backend.

    Attributes:
        backend: the backend's name, for messages.
        capabilities: what the backend declares.
        writes: every acknowledged write, any order.
        watchers: one log per consumer.
        registrants: the registrants, by name.
        faults: ``(start, end)`` wall-clock windows in which a fault was played.
        store: the store's instances once the run was quiet, by path.
        ended_at: when the run's traffic stopped.
    """

    backend: str
    capabilities: frozenset[Capability]
    writes: list[Write]
    watchers: list[WatcherLog]
    registrants: dict[str, Registrant] = field(default_factory=dict)
    faults: list[tuple[float, float]] = field(default_factory=list)
    store: Mapping[str, Instance] | None = None
    ended_at: float = 0.0

    @functools.cached_property
    def stream_lag(self) -> int:
        """How far below the revisions already delivered a change still arrived, over every consumer of the run.

        The largest gap between a delivered (not resync) event's revision and
        its value's: an event is stamped no lower than what was delivered
        before it, so the gap is how late the stream brought that value.
        Computed once per history, for every consumer's check.
        """
        lag = 0
        for log in self.watchers:
            for observation in log.items:
                item = observation.item
                if not isinstance(item, Event) or item.resync or item.kind is EventKind.REMOVED:
                    continue
                if item.instance is not None:
                    lag = max(lag, item.revision - item.instance.revision)
        return lag


@dataclass(frozen=True)
class Anomaly:
    """One breach of one property.

    Attributes:
        property: which (see :data:`PROPERTIES`).
        consumer: the consumer it was found in ("" for the run as a whole).
        key: the instance's ``service/id``.
        revision: the revision concerned.
        message: what was expected and what happened.
    """

    property: str
    consumer: str
    key: str
    revision: int
    message: str

    def __str__(self) -> str:
        return f"[{self.property}] {self.consumer}: {self.key} at revision {self.revision}: {self.message}"


def _path(event: Event) -> str:
    return f"{event.service}/{event.instance_id}"


def _value(instance: Instance) -> tuple[str | None, int | None, dict[str, object]]:
    # Not the revision: etcd v2's refreshes move a key's index without a
    # change anyone is told of, so each client knows a different one.
    return (instance.address, instance.port, dict(instance.meta))


def converged(state: Mapping[str, Instance], store: Mapping[str, Instance]) -> bool:
    """Whether a consumer's state holds exactly the store's instances, with the same values."""
    return state.keys() == store.keys() and all(_value(state[k]) == _value(store[k]) for k in store)


@dataclass
class _Walk:
    """One pass over a watcher's log: its events with positions, its resync windows, its state at the end."""

    events: list[tuple[int, Observation, Event]] = field(default_factory=list)
    resyncs: list[tuple[int, int]] = field(default_factory=list)
    state: dict[str, Instance] = field(default_factory=dict)
    last_revision: int = 0
    anomalies: list[Anomaly] = field(default_factory=list)


def _walk(log: WatcherLog) -> _Walk:
    """Apply the log's events to its start state, collecting resync windows and is-create breaches."""
    walk = _Walk(state={i.path: i for i in log.start}, last_revision=log.start_revision)
    resync_from: int | None = None
    replay_unseen: set[str] | None = None  # keys not yet seen since a re-open with since=
    for position, observation in enumerate(log.items):
        item = observation.item
        if item is None:
            replay_unseen = set(walk.state)
            continue
        if isinstance(item, Notice):
            if item.kind is NoticeKind.RESYNC_STARTED:
                resync_from = item.revision
            elif item.kind is NoticeKind.RESYNCED:
                walk.resyncs.append((resync_from if resync_from is not None else item.revision, item.revision))
                resync_from = None
                if replay_unseen is not None:
                    # A resync in replay lists the whole state, but can remove only what
                    # this watch had seen: what the consumer kept from before and the
                    # listing did not name is gone.
                    for key in replay_unseen:
                        walk.state.pop(key, None)
                replay_unseen = None  # a listing ends replay: the model is whole again
            walk.last_revision = max(walk.last_revision, item.revision)
            continue
        walk.events.append((position, observation, item))
        walk.last_revision = max(walk.last_revision, item.revision)
        key = _path(item)
        upsert = replay_unseen is not None and key in replay_unseen
        if replay_unseen is not None:
            replay_unseen.discard(key)
        present = key in walk.state
        if item.kind is EventKind.ADDED and present and not upsert:
            walk.anomalies.append(
                Anomaly("is-create", log.name, key, item.revision, "ADDED for an instance the watcher already had")
            )
        elif item.kind is not EventKind.ADDED and not present and not (upsert or item.instance is None):
            walk.anomalies.append(
                Anomaly("is-create", log.name, key, item.revision, f"{item.kind.name} for an absent instance")
            )
        if item.kind is EventKind.REMOVED:
            walk.state.pop(key, None)
        elif item.instance is not None:
            walk.state[key] = item.instance
    if resync_from is not None:
        walk.resyncs.append((resync_from, walk.last_revision))
    return walk


def _in_resync(walk: _Walk, low: int, high: int) -> bool:
    """Whether a resync window overlaps the revisions ``(low, high]``."""
    return any(start < high and end > low for start, end in walk.resyncs)


def _widen_resyncs(walk: _Walk, lag: int) -> None:
    """Without an atomic snapshot a resync's window is wider than its notices' revisions, on both sides.

    Upwards, a listing's revision is only a floor: it may hold changes up to
    the next event, so the window reaches up to (not including) the revision
    of the first event delivered after it (a change made and undone before
    the listing read its key is folded into the listing, and told by
    nothing). Downwards, a stream that reads values after their
    notification (ZooKeeper) can deliver a change after events stamped above
    its revision, up to ``lag`` below (see :attr:`History.stream_lag`): the batch a
    resync dropped may have held such changes, so the window starts ``lag``
    below its notice, that revision included.
    """
    revisions = sorted(event.revision for _, _, event in walk.events if not event.resync)
    widened = []
    for start, end in walk.resyncs:
        after = bisect.bisect_right(revisions, end)
        widened.append((start - lag - 1, revisions[after] - 1 if after < len(revisions) else walk.last_revision))
    walk.resyncs = widened


def check_ordered(log: WatcherLog, walk: _Walk, capabilities: frozenset[Capability]) -> Iterator[Anomaly]:
    """Revisions never decrease; where every value is delivered, instance revisions do not either."""
    last = log.start_revision
    last_value = log.start_revision
    by_value = Capability.INTERMEDIATE_VALUES in capabilities
    for _, _, event in walk.events:
        key = _path(event)
        if event.revision < last:
            yield Anomaly("ordered", log.name, key, event.revision, f"revision went back from {last}")
        last = max(last, event.revision)
        if by_value and not event.resync and event.kind is not EventKind.REMOVED and event.instance is not None:
            value_revision = event.instance.revision
            if value_revision < last_value:
                yield Anomaly(
                    "ordered",
                    log.name,
                    key,
                    value_revision,
                    f"a change committed at {value_revision} arrived after one committed at {last_value}",
                )
            last_value = max(last_value, value_revision)


def check_unique(log: WatcherLog, walk: _Walk) -> Iterator[Anomaly]:
    """No change is delivered twice outside a resync."""
    seen: set[tuple[str, EventKind, int]] = set()
    for _, _, event in walk.events:
        if event.resync:
            continue
        key = _path(event)
        stamp = event.instance.revision if event.instance is not None and event.kind is not EventKind.REMOVED else 0
        identity = (key, event.kind, stamp or event.revision)
        if identity in seen:
            yield Anomaly("unique", log.name, key, event.revision, f"{event.kind.name} delivered twice")
        seen.add(identity)


def check_atomic(log: WatcherLog, walk: _Walk, history: History) -> Iterator[Anomaly]:
    """The keys a killed registrant held on its one lease expire at one revision, and arrive together."""
    if Capability.BATCHED_EXPIRY not in history.capabilities:
        return
    last_removal: dict[str, tuple[int, Event]] = {}
    for position, _, event in walk.events:
        if event.kind is EventKind.REMOVED:
            last_removal[_path(event)] = (position, event)
    for registrant in history.registrants.values():
        if registrant.killed_at is None or len(registrant.holding) < 2:
            continue
        found = sorted(last_removal[key] for key in registrant.holding if key in last_removal)
        if len(found) < len(registrant.holding) or any(event.resync for _, event in found):
            continue  # still held at the end, or a resync stands for the expiry: no revision to hold it to
        first_position, first = found[0]
        revisions = sorted({event.revision for _, event in found})
        if len(revisions) > 1:
            odd = next(event for _, event in found if event.revision != first.revision)
            yield Anomaly(
                "atomic",
                log.name,
                _path(odd),
                odd.revision,
                f"{registrant.name}'s lease expired at one revision, but its keys arrived at revisions {revisions}",
            )
        elif found[-1][0] - first_position != len(found) - 1:
            yield Anomaly(
                "atomic", log.name, _path(first), first.revision, f"{registrant.name}'s expiry was split by other items"
            )


def _owners(history: History) -> dict[str, str]:
    return {write.key: write.client for write in history.writes if write.client in history.registrants}


def check_reliable(log: WatcherLog, walk: _Walk, history: History) -> Iterator[Anomaly]:
    """Every acknowledged change after the watcher's start and up to its last revision was delivered or resynced."""
    every_value = Capability.INTERMEDIATE_VALUES in history.capabilities
    if Capability.ATOMIC_SNAPSHOT not in history.capabilities:
        _widen_resyncs(walk, history.stream_lag)
    delivered: dict[str, list[Event]] = defaultdict(list)
    for _, _, event in walk.events:
        delivered[_path(event)].append(event)
    by_key: dict[str, list[Write]] = defaultdict(list)
    for write in history.writes:
        by_key[write.key].append(write)
    # A listing that is no atomic snapshot may hold a key at a revision above its own.
    listed = {instance.path: instance.revision for instance in log.start}
    for key, writes in by_key.items():
        ordered = sorted(writes, key=lambda w: w.at)
        events = delivered.get(key, [])
        values = sorted(e.instance.revision for e in events if e.kind is not EventKind.REMOVED and e.instance)
        removals = sorted(e.revision for e in events if e.kind is EventKind.REMOVED)
        stream = sorted(max(e.revision, e.instance.revision if e.instance else 0) for e in events)
        start = max(log.start_revision, listed.get(key, 0))
        for index, write in enumerate(ordered):
            if write.kind is WriteKind.DEREGISTER:
                yield from _check_removal(log.name, walk, key, ordered, index, removals, start)
                continue
            revision = write.revision
            if revision is None or revision <= start or revision > walk.last_revision:
                continue
            if _in_resync(walk, revision - 1, revision):
                continue
            # Without intermediate values a later read may stand for this change.
            later = bisect.bisect_left(stream, revision) < len(stream)
            if not (_contains(values, revision) if every_value else later):
                yield Anomaly(
                    "reliable",
                    log.name,
                    key,
                    revision,
                    f"the acknowledged {write.kind.value} by {write.client} was never delivered",
                )


def _contains(sorted_values: list[int], value: int) -> bool:
    index = bisect.bisect_left(sorted_values, value)
    return index < len(sorted_values) and sorted_values[index] == value


def _check_removal(
    consumer: str, walk: _Walk, key: str, writes: list[Write], index: int, removals: list[int], start: int
) -> Iterator[Anomaly]:
    """A deregister (no revision) must show as a REMOVED between the writes around it, or in a resync."""
    before = next((w.revision for w in reversed(writes[:index]) if w.revision is not None), None)
    after = next((w.revision for w in writes[index + 1 :] if w.revision is not None), None)
    if before is None or before < start or before >= walk.last_revision:
        return
    if after is not None and after > walk.last_revision:
        after = None
    upper = after if after is not None else walk.last_revision + 1
    if any(before < removed <= upper for removed in removals):
        return
    if _in_resync(walk, before, upper):
        return
    if after is None and walk.last_revision <= before:
        return
    yield Anomaly(
        "reliable",
        consumer,
        key,
        before,
        f"the deregister by {writes[index].client} after revision {before} was never delivered",
    )


def check_is_create(log: WatcherLog, walk: _Walk, history: History) -> Iterator[Anomaly]:
    """ADDED exactly when the instance did not exist: the watcher's own state transitions, and every fresh register.

    An acknowledged update is not held to UPDATED: a registration whose
    session was lost puts its instance back with its next write, a create.
    """
    yield from walk.anomalies
    creates = {(w.key, w.revision) for w in history.writes if w.kind is WriteKind.REGISTER and w.revision is not None}
    for _, _, event in walk.events:
        if event.resync or event.kind is not EventKind.UPDATED or event.instance is None:
            continue
        if (_path(event), event.instance.revision) in creates:
            yield Anomaly(
                "is-create", log.name, _path(event), event.revision, f"a new instance delivered as {event.kind.name}"
            )


def check_convergence(log: WatcherLog, walk: _Walk, history: History) -> Iterator[Anomaly]:
    """At the end the consumer's state equals the store's."""
    if history.store is None:
        return
    state = dict(log.final) if log.final is not None else walk.state
    for key in sorted(state.keys() | history.store.keys()):
        mine, truth = state.get(key), history.store.get(key)
        if mine is None and truth is not None:
            yield Anomaly("convergence", log.name, key, truth.revision, "in the store, missing from the consumer")
        elif truth is None and mine is not None:
            yield Anomaly("convergence", log.name, key, mine.revision, "held by the consumer, gone from the store")
        elif mine is not None and truth is not None and _value(mine) != _value(truth):
            yield Anomaly(
                "convergence",
                log.name,
                key,
                truth.revision,
                f"consumer holds {_value(mine)} (revision {mine.revision}), the store {_value(truth)}",
            )


def check_alive(log: WatcherLog) -> Iterator[Anomaly]:
    """The watch never gave up."""
    for observation in log.items:
        item = observation.item
        if isinstance(item, Notice) and item.kind is NoticeKind.BROKEN:
            yield Anomaly("alive", log.name, "", item.revision, f"the watch broke: {item.reason}")


def check_registrations_return(log: WatcherLog, walk: _Walk, history: History) -> Iterator[Anomaly]:
    """A live registrant's instance that vanished is back within ttl + 2 s, plus the time faults lasted."""
    owner = _owners(history)
    gone_since: dict[str, tuple[float, int]] = {}
    for _, observation, event in walk.events:
        key = _path(event)
        registrant = history.registrants.get(owner.get(key, ""))
        if registrant is None:
            continue
        alive_then = registrant.killed_at is None or observation.at < registrant.killed_at
        if event.kind is EventKind.REMOVED:
            if alive_then:
                gone_since[key] = (observation.at, event.revision)
            continue
        lost = gone_since.pop(key, None)
        if lost is not None:
            yield from _late_return(log, history, registrant, key, lost, observation.at)
    for key, lost in gone_since.items():
        registrant = history.registrants[owner[key]]
        if registrant.killed_at is None:
            yield from _late_return(log, history, registrant, key, lost, None)


def _late_return(
    log: WatcherLog,
    history: History,
    registrant: Registrant,
    key: str,
    lost: tuple[float, int],
    back_at: float | None,
) -> Iterator[Anomaly]:
    lost_at, revision = lost
    if registrant.killed_at is not None and back_at is None:
        return
    end = back_at if back_at is not None else history.ended_at
    allowed = registrant.ttl + _RETURN_SLACK + _fault_time(history.faults, lost_at - registrant.ttl, end)
    if end - lost_at <= allowed:
        return
    told = f"back after {end - lost_at:.1f} s" if back_at is not None else "never back"
    yield Anomaly(
        "registrations-return", log.name, key, revision, f"{registrant.name}'s instance {told}; allowed {allowed:.1f} s"
    )


def _fault_time(faults: Iterable[tuple[float, float]], start: float, end: float) -> float:
    return sum(max(0.0, min(f_end, end) - max(f_start, start)) for f_start, f_end in faults)


def state_of(log: WatcherLog) -> dict[str, Instance]:
    """The state a consumer's events build from its start snapshot."""
    return _walk(log).state


def check_watcher(log: WatcherLog, history: History) -> list[Anomaly]:
    """Every property of one consumer's log."""
    walk = _walk(log)
    anomalies: list[Anomaly] = []
    anomalies.extend(check_ordered(log, walk, history.capabilities))
    anomalies.extend(check_unique(log, walk))
    anomalies.extend(check_atomic(log, walk, history))
    anomalies.extend(check_reliable(log, walk, history))
    anomalies.extend(check_is_create(log, walk, history))
    anomalies.extend(check_convergence(log, walk, history))
    anomalies.extend(check_alive(log))
    return anomalies


def check_history(history: History, *, returns_from: str | None = None) -> list[Anomaly]:
    """Every property of every consumer of a recorded run.

    Args:
        history: the run.
        returns_from: the consumer whose times judge ``registrations-return``
            (the first watcher by default): the fastest reader, so its lag
            does not count against the registrant.

    Returns:
        The anomalies, by property in :data:`PROPERTIES` order; empty when the run kept every promise.
    """
    anomalies: list[Anomaly] = []
    for log in history.watchers:
        anomalies.extend(check_watcher(log, history))
    judge = next((log for log in history.watchers if log.name == returns_from), None)
    if judge is None and history.watchers:
        judge = history.watchers[0]
    if judge is not None:
        anomalies.extend(check_registrations_return(judge, _walk(judge), history))
    rank = {name: index for index, name in enumerate(PROPERTIES)}
    return sorted(anomalies, key=lambda a: (rank.get(a.property, len(rank)), a.consumer, a.key, a.revision))
