"""The watch engine: list + watch + resync, built once for every backend.

A :class:`Watch` opens the backend's raw stream "from now", then lists, so
the two overlap and nothing falls between them; the listing becomes
``w.snapshot``. A pump thread turns raw batches into events against a model
of what the consumer has seen (per key: create revision, modify revision,
instance), which drops duplicates and stale changes from the overlap. When
the stream reports a :class:`~discovery.backend.Gap` (compaction, history
window, connection loss), when the bounded buffer overflows because the
consumer is slow, or when a broken stream cannot resume, the engine opens a
new stream, lists again and emits the difference per key as ordinary events
flagged ``resync=True``: keys whose (create, modify) revisions are unchanged
emit nothing (a backend reports a key's modify revision as that of its value's
last write, see :class:`~discovery.backend.Record`); a deleted and re-created
key emits REMOVED then ADDED.

An outage starts with the first failure (a stream that breaks, an open or
listing that fails) and ends only when a stream is *confirmed* by the server
(it acknowledged the stream or delivered through it): a stream that opens
without contacting the server and then fails does not end it. Attempts
within one outage back off exponentially, so a dead server costs a handful
of requests, not a spin, and when the outage outlasts ``reconnect_timeout``
the consumer gets :class:`~discovery.errors.WatchBroken` (at the timeout,
plus at most one attempt); the watch never ends silently. A refused
permission (:class:`~discovery.errors.PermissionDenied`), from the stream or
a reopen, ends the watch at once the same way, the refusal as the
WatchBroken's ``__cause__``: no retry would change the server's answer.

Threads: an event crosses as few as the backend allows, because each
hand-over between threads costs a wake-up, and on a busy machine a wake-up
is where the milliseconds of a watch's latency go. A stream that can push
(:class:`~discovery.backend.PushStream`: the etcd streams' reader thread,
the memory store's writer) applies each batch to the model and buffers its events itself, in
the thread that read it; the consumer is woken by that very event. The
watch's own thread is then a control thread: it sleeps until it has
something to do (a gap, an error, an overflow, a requested resync, the
close) and does it: reopen, re-list, back off, give up. Only during an
outage does it wake on a timer, to see whether the new stream was confirmed
and whether the deadline passed. A stream that cannot push is read by the
watch's thread with ``next()``, as before. One lock, the model's, orders the
two: the stream's thread holds it while it applies a batch, the control
thread while it detaches a stream, and no thread ever calls into the backend
while holding it.
"""

from __future__ import annotations

import bisect
import collections
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import TypeVar

from discovery._codec import decode_instance, decode_min_instances, key_prefix, parse_key
from discovery.backend import Backend, Batch, Change, ChangeKind, ChangeStream, Gap, Listing, PushStream
from discovery.capabilities import Capability
from discovery.errors import BackendError, DiscoveryError, PermissionDenied, RegistryClosed, WatchBroken
from discovery.models import Event, EventKind, Instance, Notice, NoticeKind, Snapshot

_log = logging.getLogger("discovery.watch")
_T = TypeVar("_T")

# How often the watch's thread looks at a stream that cannot push (ChangeStream.next's
# timeout), and at an outage (is the new stream confirmed? is the deadline past?).
# Never a delay on the path of an event: a stream wakes whoever waits on it.
_POLL_SECONDS = 0.25
_RETRY_FIRST_SECONDS = 0.05
_RETRY_MAX_SECONDS = 2.0

LAG_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds, in seconds, of the delivery-lag buckets of :class:`WatchStats` (a last, unbounded one follows)."""


class _LagHistogram:
    """How long buffered items waited for the consumer, in the fixed :data:`LAG_BUCKETS`; the watch's lock guards it."""

    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.buckets = [0] * (len(LAG_BUCKETS) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, seconds: float, items: int) -> None:
        """Count ``items`` that each waited ``seconds``."""
        self.buckets[bisect.bisect_left(LAG_BUCKETS, seconds)] += items
        self.total += seconds * items
        self.count += items


@dataclass(frozen=True)
class WatchStats:
    """What a watch has done so far, read at once by :meth:`Watch.stats` (for metrics; see :mod:`discovery.metrics`).

    Attributes:
        prefix: the watch's prefix.
        state: ``connected``, ``disconnected`` (an outage is under way),
            ``resyncing`` or ``broken``.
        events: events buffered for the consumer since the watch began, by
            kind, resync events included.
        resyncs: resyncs by reason (``compacted``, ``overflow``, ``requested``...).
        buffered: events and notices buffered, not yet taken by the consumer.
        lag_buckets: items (events and notices) the consumer took, by how
            long they waited in the buffer: one count per bound of
            :data:`LAG_BUCKETS`, then one for longer waits (not cumulative).
        lag_seconds: the total of those waits, in seconds.
        lag_count: the items counted, the sum of ``lag_buckets``.
    """

    prefix: str
    state: str
    events: Mapping[EventKind, int]
    resyncs: Mapping[str, int]
    buffered: int
    lag_buckets: tuple[int, ...]
    lag_seconds: float
    lag_count: int


@dataclass(frozen=True)
class _Stop:
    """Why a stream's batches stopped being applied: ``overflow`` (a slow consumer) or ``inconsistent-stream``."""

    reason: str


_Handover = Gap | _Stop | Exception
"""What a pushing stream's thread leaves the control thread to act on (an exception is raised there)."""


@dataclass
class _Outage:
    """Since when the watch has had no confirmed stream, and how long to wait before the next attempt."""

    started: float
    deadline: float
    delay: float = _RETRY_FIRST_SECONDS
    attempts: int = 0
    last_error: str = "no stream confirmed by the server"


@dataclass(frozen=True)
class _Known:
    """What the consumer knows of one key."""

    create_revision: int
    mod_revision: int
    instance: Instance


@dataclass
class _Cursor:
    """Where the watch stands, in revisions: what the model holds, where the stream is, what was emitted.

    Attributes:
        floor: changes at or below it are already in the model, so they are
            skipped. Only a listing from an atomic snapshot
            (``ATOMIC_SNAPSHOT``) proves that; otherwise it is 0 and the
            per-key modify revisions alone drop stale changes.
        baseline: the revision of the last listing (``since`` in replay). A
            key created after it must have been seen created.
        resume_from: the revision the raw stream has fully delivered into the
            model; a reopened stream resumes from it.
        emitted: the highest revision handed to the consumer; no event is
            ever stamped below it, not even a resync's.
        replay: started from ``since`` and not listed since: the state at
            ``since`` is unknown, so the model starts empty, a delete of a key
            never seen is still reported, and no creation can be proven missed.

    Invariants: ``floor`` is ``baseline`` or 0 (always 0 in replay);
    ``baseline <= resume_from`` and ``baseline <= emitted``. ``emitted`` never
    goes back. Each listing sets ``floor``, ``baseline`` and ``resume_from``
    to its revision, lower ones included; between listings ``resume_from``
    only grows and the other two stay put.
    """

    floor: int = 0
    baseline: int = 0
    resume_from: int = 0
    emitted: int = 0
    replay: bool = False

    @classmethod
    def listed(cls, revision: int, *, atomic: bool) -> _Cursor:
        """The cursor of a watch that begins with a listing at ``revision``."""
        return cls(floor=revision if atomic else 0, baseline=revision, resume_from=revision, emitted=revision)

    @classmethod
    def replaying(cls, since: int) -> _Cursor:
        """The cursor of a watch that replays from ``since`` without a listing."""
        return cls(baseline=since, resume_from=since, emitted=since, replay=True)

    def after_listing(self, revision: int, *, atomic: bool) -> int:
        """Move to a listing at ``revision`` that now is the model; end replay.

        Returns:
            The revision for the events that reconcile the consumer with the
            listing: the listing's, or ``emitted`` if that is higher.
        """
        self.replay = False
        self.floor = revision if atomic else 0
        self.baseline = revision
        self.resume_from = revision
        self.emitted = max(self.emitted, revision)
        return self.emitted

    def already_listed(self, mod_revision: int) -> bool:
        """Whether a change at ``mod_revision`` is already in the model by the last listing."""
        return mod_revision <= self.floor

    def created_since_listing(self, create_revision: int) -> bool:
        """Whether a key created at ``create_revision`` came after the last listing (never known in replay)."""
        return not self.replay and create_revision > self.baseline

    def batch_applied(self, revision: int) -> None:
        """The stream delivered a batch at ``revision`` and the model applied it."""
        self.resume_from = max(self.resume_from, revision)

    def emitted_up_to(self, revision: int) -> None:
        """Events up to ``revision`` were handed to the consumer."""
        self.emitted = max(self.emitted, revision)


def _known_from_listing(listing: Listing) -> dict[str, _Known]:
    known: dict[str, _Known] = {}
    for record in listing.records:
        parsed = parse_key(record.key)
        if parsed is None or parsed.is_definition:
            continue
        instance = decode_instance(parsed.service, parsed.name, record.value, record.mod_revision)
        known[record.key] = _Known(record.create_revision, record.mod_revision, instance)
    return known


def _definitions_from_listing(listing: Listing) -> dict[str, int]:
    definitions: dict[str, int] = {}
    for record in listing.records:
        parsed = parse_key(record.key)
        if parsed is not None and parsed.is_definition:
            definitions[parsed.service] = decode_min_instances(record.value)
    return definitions


def snapshot_of(listing: Listing) -> Snapshot:
    """The snapshot of the instances in a listing."""
    instances = sorted((k.instance for k in _known_from_listing(listing).values()), key=lambda i: (i.service, i.id))
    return Snapshot(listing.revision, tuple(instances))


class Watch:
    """Every change to the instances under a prefix, after :attr:`snapshot`, in order.

    Iterate it (blocking), or poll with :meth:`get`. Close it, or use it as a
    context manager. Created by :meth:`discovery.Registry.watch`.
    """

    def __init__(
        self,
        backend: Backend,
        prefix: str,
        *,
        buffer_size: int,
        reconnect_timeout: float,
        since: int | None = None,
    ) -> None:
        self.prefix = prefix
        self._backend = backend
        self._key_prefix = key_prefix(prefix)
        self._buffer_size = buffer_size
        self._reconnect_timeout = reconnect_timeout
        self._atomic = Capability.ATOMIC_SNAPSHOT in backend.capabilities
        self._every_change = Capability.INTERMEDIATE_VALUES in backend.capabilities
        # The consumers wait on _cond, the watch's own thread on _control: an
        # event buffered wakes the consumer only. One lock for both.
        lock = threading.RLock()
        self._cond = threading.Condition(lock)
        self._control = threading.Condition(lock)
        # Held over every change to the model (_known, _cursor, _outage) while a
        # stream may push; never held over a call into the backend or a stream.
        self._model = threading.Lock()
        self._attached: ChangeStream | None = None
        self._pushing = False
        self._handover: _Handover | None = None
        self._draining = False
        self._buffer: collections.deque[Event | Notice] = collections.deque()
        self._resyncing = False
        self._error: DiscoveryError | None = None
        self._closed = False
        self._resyncs = 0
        self._gap_reasons: list[str] = []
        # Plain counters for metrics, under the lock the buffer already takes.
        # The lag is measured per chunk buffered at once, not per item: each
        # stamp is (items pushed up to the chunk's end, when it was buffered).
        self._resync_reasons: collections.Counter[str] = collections.Counter()
        self._events_by_kind = dict.fromkeys(EventKind, 0)
        self._pushed = 0
        self._taken = 0
        self._stamped_through = 0
        self._stamps: collections.deque[tuple[int, float]] = collections.deque()
        self._lag = _LagHistogram()
        self._resync_requested: str | None = None
        self._outage: _Outage | None = None
        if since is None:
            self._stream, listing = self._open()
            self._cursor = _Cursor.listed(listing.revision, atomic=self._atomic)
        else:
            self._stream = backend.watch(self._key_prefix, since)
            listing = Listing(since, ())
            self._cursor = _Cursor.replaying(since)
        self._known = _known_from_listing(listing)
        self._definitions = _definitions_from_listing(listing)
        self._definitions_version = 0
        self.snapshot: Snapshot = snapshot_of(listing)
        """The instances when the stream began (empty with ``since``); the events continue from it."""
        self._thread = threading.Thread(target=self._pump, name=f"discovery-watch-{prefix or '/'}", daemon=True)
        # From here on a pushing stream delivers from its own thread, before the watch's thread even starts.
        self._adopt()
        self._thread.start()

    # -- consumer side -------------------------------------------------------

    @property
    def resyncs(self) -> int:
        """How many times the watch re-listed to close a gap."""
        return self._resyncs

    @property
    def gap_reasons(self) -> tuple[str, ...]:
        """Why each resync happened (``compacted``, ``overflow``, ``connection-loss``...)."""
        with self._cond:
            return tuple(self._gap_reasons)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def stats(self) -> WatchStats:
        """The watch's counters and state, read together: events by kind, resyncs by reason, buffer, lag."""
        with self._cond:
            if self._error is not None:
                state = "broken"
            elif self._resyncing:
                state = "resyncing"
            elif self._outage is not None:
                state = "disconnected"
            else:
                state = "connected"
            lag = self._lag
            return WatchStats(
                self.prefix,
                state,
                dict(self._events_by_kind),
                dict(self._resync_reasons),
                len(self._buffer),
                tuple(lag.buckets),
                lag.total,
                lag.count,
            )

    @property
    def connected(self) -> bool:
        """Whether the watch has a stream the server confirmed (no outage under way, not broken, not closed)."""
        return self._outage is None and self._error is None and not self._closed

    @property
    def resyncing(self) -> bool:
        """Whether a resync is under way (from its gap until its events are buffered)."""
        return self._resyncing

    @property
    def broken(self) -> WatchBroken | None:
        """The error the watch gave up with, or None while it goes on."""
        error = self._error
        return error if isinstance(error, WatchBroken) else None

    def get(self, timeout: float | None = None) -> Event | None:
        """Return the next event, waiting at most ``timeout`` seconds (None: forever).

        Notices (see :meth:`next_item`) are skipped.

        Returns:
            The next event, or None if none arrived in time.

        Raises:
            WatchBroken: the stream broke and could not be resumed.
            RegistryClosed: the watch was closed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            item = self.next_item(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if item is None or isinstance(item, Event):
                return item

    def next_item(self, timeout: float | None = None) -> Event | Notice | None:
        """Return the next event or notice, in delivery order, waiting at most ``timeout`` seconds (None: forever).

        A :class:`~discovery.models.Notice` tells of a change in the watch's
        state where it happened among the events: ``DISCONNECTED`` and
        ``CONNECTED`` around an outage, ``RESYNC_STARTED`` before and
        ``RESYNCED`` after the events of a resync.

        Raises:
            WatchBroken: the stream broke and could not be resumed.
            RegistryClosed: the watch was closed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._buffer:
                if self._closed:
                    raise RegistryClosed(f"watch on {self.prefix!r} is closed")
                if self._error is not None:
                    raise self._error
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            item = self._buffer.popleft()
            self._took(1)
            if self._draining and not self._buffer:
                self._control.notify()
            return item

    def get_batch(self, timeout: float | None = None) -> list[Event]:
        """Return the events of the next revision together (empty if none arrived in time).

        Raises:
            WatchBroken: the stream broke and could not be resumed.
            RegistryClosed: the watch was closed.
        """
        first = self.get(timeout)
        if first is None:
            return []
        batch = [first]
        with self._cond:
            while (
                self._buffer
                and (head := self._buffer[0])
                and isinstance(head, Event)
                and head.revision == first.revision
            ):
                batch.append(head)
                self._buffer.popleft()
            self._took(len(batch) - 1)
            if self._draining and not self._buffer:
                self._control.notify()
        return batch

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        try:
            event = self.get()
        except RegistryClosed:
            raise StopIteration from None
        assert event is not None
        return event

    def request_resync(self, reason: str = "requested") -> None:
        """Re-list and emit the difference, as after a gap; nothing is emitted if nothing changed.

        Useful as a periodic consistency check; the conformance suite uses it
        to force gaps.
        """
        with self._cond:
            self._resync_requested = reason
            self._control.notify()

    def close(self) -> None:
        """Stop the watch and its stream. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            self._control.notify_all()
        self._stream.close()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> Watch:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def definitions(self) -> dict[str, int]:
        """The service definitions under the prefix (service -> ``min_instances``), kept current by the stream.

        Not events: the event stream carries instances only. Empty at first
        with ``since``, until a resync lists them.
        """
        with self._cond:
            return dict(self._definitions)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until an event is buffered, the definitions change, or the watch breaks or closes.

        Returns:
            True if something is ready (then :meth:`get` or
            :attr:`definitions` has news, or :meth:`get` raises); False on timeout.
        """
        with self._cond:
            version = self._definitions_version
            return self._cond.wait_for(
                lambda: (
                    bool(self._buffer)
                    or self._definitions_version != version
                    or self._error is not None
                    or self._closed
                ),
                timeout,
            )

    def _took(self, count: int) -> None:
        """The consumer took ``count`` items: measure the lag of each chunk now fully taken. Caller holds the lock."""
        self._taken += count
        stamps = self._stamps
        if stamps and stamps[0][0] <= self._taken:
            now = time.monotonic()
            while stamps and stamps[0][0] <= self._taken:
                end, buffered_at = stamps.popleft()
                self._lag.observe(now - buffered_at, end - self._stamped_through)
                self._stamped_through = end

    # -- pump side -----------------------------------------------------------

    def _push(self, items: Sequence[Event | Notice]) -> None:
        """Buffer items for the consumer, counting events by kind and stamping the chunk. Caller holds the lock."""
        if not items:
            return
        self._buffer.extend(items)
        by_kind = self._events_by_kind
        for item in items:
            if isinstance(item, Event):
                by_kind[item.kind] += 1
        self._pushed += len(items)
        self._stamps.append((self._pushed, time.monotonic()))

    def _set_definitions(self, definitions: dict[str, int]) -> None:
        with self._cond:
            if definitions != self._definitions:
                self._definitions = definitions
                self._definitions_version += 1
                self._push((Notice(NoticeKind.DEFINITIONS, "", self._cursor.emitted),))
                self._cond.notify_all()

    def _definition_changed(self, service: str, change: Change) -> None:
        definitions = dict(self._definitions)
        if change.kind is ChangeKind.DELETE:
            definitions.pop(service, None)
        else:
            definitions[service] = decode_min_instances(change.value or b"")
        self._set_definitions(definitions)

    def _open(self) -> tuple[ChangeStream, Listing]:
        """Open a stream from now, then list: the two overlap, nothing falls between."""
        stream = self._backend.watch(self._key_prefix, None)
        try:
            listing = self._backend.list(self._key_prefix)
        except BaseException:
            stream.close()
            raise
        return stream, listing

    def _pump(self) -> None:
        """The watch's own thread: read a stream that cannot push; act on what a pushing stream hands over."""
        try:
            while not self._closed:
                if self._resync_requested is not None:
                    with self._cond:
                        reason, self._resync_requested = self._resync_requested, None
                    self._drop_stream()
                    self._resync(reason or "requested")
                    continue
                try:
                    item = self._await_handover() if self._pushing else self._pull()
                except BackendError as exc:
                    if self._closed:
                        return
                    if isinstance(exc, PermissionDenied):
                        raise  # the server will not let us read here: no retry can help
                    _log.info("watch on %r: stream broke (%s), resuming", self.prefix, exc)
                    self._drop_stream()
                    self._outage_failed(exc)
                    self._resume()
                    continue
                if isinstance(item, Gap):
                    self._drop_stream()
                    self._resync(item.reason)
                elif isinstance(item, _Stop):
                    self._recover(item.reason)
        except RegistryClosed:
            pass
        except DiscoveryError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug must reach the consumer, not end the thread silently
            _log.exception("watch on %r failed", self.prefix)
            self._fail(WatchBroken(self.prefix, f"internal error: {exc!r}"))
        finally:
            self._drop_stream()

    def _pull(self) -> Gap | _Stop | None:
        """Read the next item of a stream that cannot push; apply a batch at once.

        Returns:
            A Gap, or a _Stop when the batch could not be applied; None once
            a batch was applied or nothing came within the poll.

        Raises:
            BackendError: the stream broke.
        """
        item = self._stream.next(_POLL_SECONDS)
        with self._model:
            if self._outage is not None:
                self._check_outage(item)
            if isinstance(item, Batch):
                stop = self._apply(item)
                return None if stop is None else _Stop(stop)
        return item

    def _await_handover(self) -> Gap | _Stop | None:
        """Sleep until the pushing stream hands something over, a resync is requested or the watch closes.

        During an outage, wake every poll interval too: whether the new
        stream was confirmed, and whether the deadline passed, are not events.

        Returns:
            What the stream handed over, or None.

        Raises:
            Exception: the error the stream handed over (or a bug met in its thread).
        """
        if self._outage is not None:
            with self._model:
                if self._outage is not None:
                    self._check_outage(None)
        with self._cond:
            if self._handover is None and self._resync_requested is None and not self._closed:
                self._control.wait(_POLL_SECONDS if self._outage is not None else None)
            handover, self._handover = self._handover, None
        if isinstance(handover, Exception):
            raise handover
        if isinstance(handover, Gap) and self._outage is not None:
            with self._model:
                if self._outage is not None:
                    self._check_outage(handover)
        return handover

    def _adopt(self) -> None:
        """Let the current stream push its items from its own thread, if it can (see :class:`PushStream`)."""
        stream = self._stream
        self._pushing = isinstance(stream, PushStream)
        if isinstance(stream, PushStream):
            with self._model:
                self._attached = stream
            stream.deliver_to(partial(self._sink, stream))

    def _sink(self, stream: ChangeStream, item: Batch | Gap | DiscoveryError) -> bool:
        """Take one item in the pushing ``stream``'s thread: apply a batch and buffer its events there and then.

        Anything else (a gap, an error, a batch that would overflow the
        buffer or proves a lost change, a bug met on the way) detaches the
        stream and is left to the control thread. Never raises; never waits
        for the consumer.

        Returns:
            Whether the stream should go on handing items over.
        """
        with self._model:
            if self._attached is not stream or self._closed:
                return False
            handover: _Handover
            try:
                if isinstance(item, Batch):
                    if self._outage is not None:
                        self._check_outage(item)
                    stop = self._apply(item)
                    if stop is None:
                        return True
                    handover = _Stop(stop)
                else:
                    handover = item
            except Exception as exc:  # raised in the control thread, which reports it
                handover = exc
            self._attached = None
            with self._cond:
                self._handover = handover
                self._control.notify()
            return False

    def _drop_stream(self) -> None:
        """Detach and close the current stream: nothing it still sends reaches the model."""
        with self._model:
            self._attached = None
            with self._cond:
                self._handover = None
        self._stream.close()

    def _recover(self, reason: str) -> None:
        """Resync after the stream's batches stopped being applied (see :class:`_Stop`)."""
        self._drop_stream()
        if reason == "overflow":
            # The consumer is too slow: stop reading (no unbounded memory),
            # wait until it has taken what is buffered, then re-list.
            with self._cond:
                self._draining = True
                try:
                    self._control.wait_for(lambda: self._closed or not self._buffer)
                finally:
                    self._draining = False
            if self._closed:
                return
        else:
            _log.warning("watch on %r: the stream skipped a change without a gap; resyncing", self.prefix)
        self._resync(reason)

    def _fail(self, error: DiscoveryError) -> None:
        if not isinstance(error, WatchBroken):
            broken = WatchBroken(self.prefix, str(error))
            broken.__cause__ = error
            error = broken
        with self._model:
            self._attached = None
            with self._cond:
                self._push((Notice(NoticeKind.BROKEN, str(error), self._cursor.emitted),))
                self._error = error
                self._cond.notify_all()
        self._stream.close()

    def _notify(self, kind: NoticeKind, reason: str = "") -> None:
        """Buffer a notice after the events delivered so far."""
        with self._cond:
            self._push((Notice(kind, reason, self._cursor.emitted),))
            self._cond.notify_all()

    def _outage_failed(self, exc: BackendError) -> _Outage:
        """Record a failure: start an outage, or continue the current one.

        Raises:
            WatchBroken: the outage has lasted ``reconnect_timeout``.
        """
        now = time.monotonic()
        outage = self._outage
        if outage is None:
            outage = self._outage = _Outage(now, now + self._reconnect_timeout)
            self._notify(NoticeKind.DISCONNECTED, str(exc))
        outage.last_error = str(exc)
        if now >= outage.deadline:
            raise WatchBroken(
                self.prefix, f"no confirmed stream for {self._reconnect_timeout:g} s: {outage.last_error}"
            ) from exc
        return outage

    def _check_outage(self, item: Batch | Gap | None) -> None:
        """End the outage once the stream is confirmed; raise if it never is in time. Caller holds the model lock.

        Raises:
            WatchBroken: the stream stayed unconfirmed past ``reconnect_timeout``.
        """
        outage = self._outage
        assert outage is not None
        if isinstance(item, Batch) or self._stream.confirmed:
            self._outage = None
            self._notify(NoticeKind.CONNECTED)
        elif time.monotonic() >= outage.deadline:
            raise WatchBroken(
                self.prefix, f"no confirmed stream for {self._reconnect_timeout:g} s: {outage.last_error}"
            )

    def _retrying(self, what: str, attempt: Callable[[], _T]) -> _T:
        """Call ``attempt()`` until it succeeds, backing off within the current outage.

        Raises:
            WatchBroken: the outage lasted ``reconnect_timeout`` seconds.
            PermissionDenied: the server refused the permission, at once: no retry can help.
            RegistryClosed: the watch was closed meanwhile.
        """
        while True:
            if self._closed:
                raise RegistryClosed("watch closed")
            outage = self._outage
            if outage is not None and outage.attempts:
                # Within an outage every attempt waits its turn, the last one
                # exactly at the deadline, so WatchBroken is neither early nor late.
                pause = min(outage.delay, max(0.0, outage.deadline - time.monotonic()))
                with self._cond:
                    self._control.wait_for(lambda: self._closed, timeout=pause)
                outage.delay = min(outage.delay * 2, _RETRY_MAX_SECONDS)
                if self._closed:
                    raise RegistryClosed("watch closed")
            try:
                result = attempt()
            except PermissionDenied:
                raise
            except BackendError as exc:
                outage = self._outage_failed(exc)
                outage.attempts += 1
                _log.info("watch on %r: %s failed (%s), retrying", self.prefix, what, exc)
                continue
            if self._outage is not None:
                self._outage.attempts += 1
            return result

    def _resume(self) -> None:
        self._stream = self._retrying("resume", lambda: self._backend.watch(self._key_prefix, self._cursor.resume_from))
        self._adopt()

    def _resync(self, reason: str) -> None:
        self._resyncing = True
        self._notify(NoticeKind.RESYNC_STARTED, reason)
        try:
            self._relist(reason)
        finally:
            self._resyncing = False

    def _relist(self, reason: str) -> None:
        """List again and buffer the difference from the model as resync events, then ``RESYNCED``."""
        stream, listing = self._retrying("resync", self._open)
        self._stream = stream
        fresh = _known_from_listing(listing)
        revision = self._cursor.after_listing(listing.revision, atomic=self._atomic)
        events: list[Event] = []
        for key in sorted(self._known.keys() - fresh.keys()):
            gone = self._known[key].instance
            events.append(Event(EventKind.REMOVED, gone.service, gone.id, gone, revision, True))
        for key in sorted(fresh):
            new = fresh[key]
            old_known = self._known.get(key)
            instance = new.instance
            if old_known is None:
                events.append(Event(EventKind.ADDED, instance.service, instance.id, instance, revision, True))
            elif old_known.create_revision != new.create_revision:
                old = old_known.instance
                events.append(Event(EventKind.REMOVED, old.service, old.id, old, revision, True))
                events.append(Event(EventKind.ADDED, instance.service, instance.id, instance, revision, True))
            elif old_known.mod_revision != new.mod_revision:
                events.append(Event(EventKind.UPDATED, instance.service, instance.id, instance, revision, True))
        self._known = fresh
        self._set_definitions(_definitions_from_listing(listing))
        with self._cond:
            self._resyncs += 1
            self._gap_reasons.append(reason)
            self._resync_reasons[reason] += 1
            self._push([*events, Notice(NoticeKind.RESYNCED, reason, revision)])
            self._cond.notify_all()
        _log.info("watch on %r: resync after %s emitted %d events", self.prefix, reason, len(events))
        self._adopt()

    def _missed_creation(self, change: Change, known: _Known | None) -> bool:
        """Whether the stream provably skipped this key's creation.

        A backend that delivers every change must have shown us the creation
        of any key created after our last listing; an update to such a key we
        do not know means the stream lost an event without reporting a gap.
        """
        return (
            self._every_change
            and known is None
            and self._cursor.created_since_listing(change.create_revision)
            and change.create_revision < change.mod_revision
        )

    def _convert(self, batch: Batch) -> tuple[list[Event], dict[str, _Known | None]] | None:
        """Turn a raw batch into events without touching the instance model; return the model's updates.

        Definition changes, which are not events, are applied at once: a
        resync that may follow (overflow, a lost change) lists them again anyway.

        Returns None when the batch proves the stream lost a change.
        """
        updates: dict[str, _Known | None] = {}
        events: list[Event] = []
        # Stamped no lower than what was emitted; the cursor moves only once the events are buffered.
        emitted = self._cursor.emitted
        for change in batch.changes:
            if self._cursor.already_listed(change.mod_revision):
                continue
            parsed = parse_key(change.key)
            if parsed is None:
                continue
            if parsed.is_definition:
                self._definition_changed(parsed.service, change)
                continue
            known = updates[change.key] if change.key in updates else self._known.get(change.key)
            if known is not None and change.mod_revision <= known.mod_revision:
                continue
            revision = emitted = max(emitted, change.mod_revision)
            if change.kind is ChangeKind.DELETE:
                if known is None:
                    # In replay a delete of a key never seen is told, once: not again from a
                    # batch at or below what the stream has delivered already.
                    if (
                        self._cursor.replay
                        and change.key not in updates
                        and change.mod_revision > self._cursor.resume_from
                    ):
                        events.append(
                            Event(EventKind.REMOVED, parsed.service, parsed.name, None, revision, False, change.expired)
                        )
                        updates[change.key] = None
                    continue
                old = known.instance
                events.append(Event(EventKind.REMOVED, old.service, old.id, old, revision, False, change.expired))
                updates[change.key] = None
                continue
            if self._missed_creation(change, known):
                return None
            instance = decode_instance(parsed.service, parsed.name, change.value, change.mod_revision)
            create = change.create_revision or (known.create_revision if known else change.mod_revision)
            if known is not None and create != known.create_revision:
                old = known.instance
                events.append(Event(EventKind.REMOVED, old.service, old.id, old, revision))
                known = None
            kind = EventKind.ADDED if known is None else EventKind.UPDATED
            events.append(Event(kind, instance.service, instance.id, instance, revision))
            updates[change.key] = _Known(create, change.mod_revision, instance)
        return events, updates

    def _apply(self, batch: Batch) -> str | None:
        """Apply a batch to the model and buffer its events. Caller holds the model lock; never waits.

        Returns:
            None; or why the stream must stop, nothing applied (but definition
            changes, which the resync lists again): ``overflow``, the consumer
            is too slow; ``inconsistent-stream``, the batch proves a lost change.
        """
        converted = self._convert(batch)
        if converted is None:
            return "inconsistent-stream"
        events, updates = converted
        with self._cond:
            if self._buffer and len(self._buffer) + len(events) > self._buffer_size:
                return "overflow"
            self._push(events)
            if events:
                self._cursor.emitted_up_to(events[-1].revision)
                self._cond.notify_all()
        for key, known in updates.items():
            if known is None:
                self._known.pop(key, None)
            else:
                self._known[key] = known
        self._cursor.batch_applied(batch.revision)
        return None
