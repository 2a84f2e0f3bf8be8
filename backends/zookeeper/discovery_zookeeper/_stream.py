"""The raw change stream of the ZooKeeper backend: notifications of a persistent watch, completed by reads.

A ZooKeeper 3.8 notification says only "this path was created / changed /
deleted", without data or zxid, so the stream reads after each one:

- created or changed: ``getData`` gives the current value with ``czxid`` and
  ``mzxid``, which become the change's create and modify revisions. If the
  node is no record (persistent with empty data: a service path) nothing is
  emitted; if a changed node just turned into one, a delete is. A read that
  returns the same ``(czxid, mzxid)`` as the last change emitted for the key
  emits nothing (several notifications, one latest value).
- created, but gone before the read: the key existed and its value is lost
  (ZooKeeper keeps no history). The stream still emits a put, with value
  None and create revision 0, so a register followed at once by a deregister
  shows up as both; its revision is the parent's ``pzxid`` read after the
  notification minus one, which lies between the create and the delete.
- deleted: the delete's revision is the ``pzxid`` of the nearest existing
  ancestor, read after the notification (``exists`` of the parent, walking up
  if the parent is gone too). Deleting a child sets its parent's ``pzxid`` to
  the deleting zxid, so the value is at least the real deletion zxid and above
  every ``mzxid`` the deleted incarnation had; later reads only see larger
  values. Expiry cannot be told from a delete: ``expired`` is None.

Reads are batched: every notification waiting in the queue is read at once,
with ``multiRead`` requests (:mod:`discovery_zookeeper._multi_read`, a few
hundred paths each, each path once however many notifications name it: the
deletes below one service share one read of its ``pzxid``). A reply comes
after the notification of every change it saw, so the notifications that
arrived while a batch was read name every change its reads may have run
ahead to. The notes whose reads none of them touches (the znode itself,
or the parent whose ``pzxid`` dates it) are told at once, in a batch of
their own; the notes of touched paths wait for the next batch, to be read
again. When every note is touched, the later notifications join the batch
and are read too, until a round of reads is overtaken by nothing. Under a
steady stream of writes a change is thus told after one round of reads,
and the batches keep commit order. Each notification is told from the
batch's newest read of its path: a read may run ahead of notifications still
on their way (a register, its session's loss and the re-registration read
as one state), so a znode read after its delete was notified, created again
or not, shows as a value-less creation before that delete, never as the
later incarnation's value before it. A burst of 10,000 expiries costs
tens of requests, not 10,000. Since a read may see a state newer than the
next notification's, :func:`order` tightens the approximate revisions and
sorts each batch into commit order (revisions never decrease within a batch;
per key they follow the key's history). A batch's revision is the largest it
holds, forced strictly above the previous batch's (+1, a synthetic value) in
the rare case where a late notification brings nothing newer; ZooKeeper
cannot resume from a revision anyway.

How a stream ends, and what its gap says:

- ``connection-loss``: the connection dropped. kazoo reports SUSPENDED or
  LOST, the watch's queue ends with a marker, and any read in flight fails
  with ``ConnectionLoss``: both give this gap. Nothing else does.
- ``timeout``: a read was due while nothing at all moved on the connection
  for ``request_timeout`` seconds (:mod:`discovery_zookeeper._patience`). A read
  that is merely slow, queued on a live connection behind the notifications
  of a burst, is waited for: that is backpressure, not loss, and a resync
  would only add load where there is too much.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable

from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError, NoNodeError
from kazoo.protocol.states import ZnodeStat

from discovery.backend import Batch, Change, ChangeKind, ChangeStream, Gap
from discovery.errors import BackendTimeout, BackendUnavailable, RegistryClosed, SessionExpired
from discovery_zookeeper._errors import BACKEND, ERRORS
from discovery_zookeeper._multi_read import READS_PER_REQUEST, ReadFailed, read_many
from discovery_zookeeper._paths import Namespace, parent
from discovery_zookeeper._patience import Patience
from discovery_zookeeper._persistent_watch import Notification, NotificationKind

__all__ = ["FinishedStream", "Observed", "ZooKeeperChangeStream", "order"]

_log = logging.getLogger("discovery.zookeeper")

_MAX_BATCH = 1000
"""Notifications read for one batch at most; the rest wait for the next call."""
_POLL = 0.5
"""Seconds between two checks that the client can still reconnect, while waiting."""
_CONNECTION_ERRORS = (BackendUnavailable, SessionExpired)
_CHANGE_KINDS = (NotificationKind.CREATED, NotificationKind.DATA_CHANGED, NotificationKind.DELETED)
Outcome = tuple[bytes, ZnodeStat] | ReadFailed
"""What one read of a ``multiRead`` gave: the znode's data and stat, or the server's refusal."""


@dataclasses.dataclass(frozen=True)
class Observed:
    """A change read after a notification.

    Attributes:
        change: the change.
        approximate: its revision is an upper bound read after the event, not the event's zxid.
    """

    change: Change
    approximate: bool


class _Lost:
    """Queue marker: the connection dropped after the notifications before it."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def order(observed: list[Observed], last_revisions: dict[str, int]) -> list[Change]:
    """Give approximate revisions their tightest safe value, then sort the batch into commit order.

    Every revision is at least the zxid of the event it reports: exact
    ones are that event's (or a later) ``mzxid``; approximate ones are
    upper bounds read after the event. Events come in commit order, so an
    approximate revision can be lowered to the smallest revision of any
    later observation and stay a bound; a value-less put is kept strictly
    below its key's next change, and an approximate change strictly above
    its key's previous one, so that the core never takes a change for a
    stale repeat. A stable sort on the revisions then orders observations
    that reads made out of order (a read sees the latest value, which may
    be newer than the next notification's).

    Args:
        observed: one batch's observations, in notification order.
        last_revisions: the stream's last revision per live key; updated.

    Returns:
        The batch's changes, revisions never decreasing.
    """
    bound: int | None = None
    next_of_key: dict[str, int] = {}
    clamped: list[Observed] = []
    for item in reversed(observed):
        change = item.change
        revision = change.mod_revision
        if item.approximate:
            if bound is not None:
                revision = min(revision, bound)
            if change.kind is ChangeKind.PUT and change.key in next_of_key:
                revision = min(revision, next_of_key[change.key] - 1)
            change = dataclasses.replace(change, mod_revision=revision)
        bound = revision if bound is None else min(bound, revision)
        next_of_key[change.key] = revision
        clamped.append(Observed(change, item.approximate))
    clamped.reverse()
    last = dict(last_revisions)
    changes: list[Change] = []
    for item in clamped:
        change = item.change
        previous = last.get(change.key)
        if item.approximate and previous is not None and change.mod_revision <= previous:
            change = dataclasses.replace(change, mod_revision=previous + 1)
        last[change.key] = change.mod_revision
        if change.kind is ChangeKind.DELETE:
            last_revisions.pop(change.key, None)
        else:
            last_revisions[change.key] = change.mod_revision
        changes.append(change)
    changes.sort(key=lambda change: change.mod_revision)
    return changes


def _gone(outcome: Outcome) -> bool:
    """Whether a read found no znode."""
    return isinstance(outcome, ReadFailed) and outcome.code == NoNodeError.code


class FinishedStream(ChangeStream):
    """A stream whose only item is a gap: what ``watch(prefix, after_revision)`` returns, since ZooKeeper cannot resume.

    Args:
        reason: the gap's reason (``no-resume``).
        backend_closed: tells whether the backend that opened it was closed.
    """

    def __init__(self, reason: str, backend_closed: Callable[[], bool]) -> None:
        self._gap = Gap(reason)
        self._backend_closed = backend_closed
        self._closed = False

    def next(self, timeout: float) -> Batch | Gap | None:
        """Return the gap, every time.

        Raises:
            RegistryClosed: the stream, or its backend, was closed.
        """
        if self._closed or self._backend_closed():
            raise RegistryClosed("change stream closed")
        return self._gap

    @property
    def confirmed(self) -> bool:
        """False: the server never saw this stream, so it cannot show the server is reachable."""
        return False

    def close(self) -> None:
        """Nothing to release; :meth:`next` refuses from now on."""
        self._closed = True


class ZooKeeperChangeStream(ChangeStream):
    """Changes below one znode, from the notifications of a persistent recursive watch.

    It is the watch's subscriber (:meth:`notify`, :meth:`lost`, called on
    kazoo's connection thread) and the core's :class:`ChangeStream`
    (:meth:`next`, :meth:`close`, called on the core's thread).

    Args:
        client: the connected kazoo client that reads.
        namespace: maps paths to keys.
        base: the watched znode; changes strictly below it are delivered.
        patience: waits for the replies of the stream's reads (as long as the connection makes progress).
        dead: tells whether the client is closed for good (it cannot reconnect).
        backend_closed: tells whether the backend that opened it was closed.
    """

    def __init__(
        self,
        client: KazooClient,
        namespace: Namespace,
        base: str,
        patience: Patience,
        dead: Callable[[], bool],
        backend_closed: Callable[[], bool],
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._below = base.rstrip("/") + "/"
        self._patience = patience
        self._dead = dead
        self._backend_closed = backend_closed
        self._cond = threading.Condition()
        self._queue: collections.deque[Notification | _Lost] = collections.deque()
        self._gap: Gap | None = None
        self._closed = False
        self._on_close: Callable[[], None] | None = None
        self._revision = 0
        self._seen: dict[str, tuple[int, int]] = {}
        self._last: dict[str, int] = {}

    # -- subscriber side (kazoo's connection thread) ---------------------------

    def notify(self, notification: Notification) -> None:
        """Queue one notification."""
        with self._cond:
            self._queue.append(notification)
            self._cond.notify_all()

    def lost(self, reason: str) -> None:
        """Queue the end of the stream: after what is queued, :meth:`next` returns a gap."""
        with self._cond:
            self._queue.append(_Lost(reason))
            self._cond.notify_all()

    # -- consumer side ---------------------------------------------------------

    def attach(self, on_close: Callable[[], None]) -> None:
        """Set what :meth:`close` calls to end the server-side watch."""
        self._on_close = on_close

    def next(self, timeout: float) -> Batch | Gap | None:
        """Wait for the next batch of changes, or the gap that ends the stream.

        Args:
            timeout: seconds to wait at most for a notification. Reading what
                the notifications report may take longer, while the connection
                makes progress (see the module's docstring); :meth:`close`
                ends that wait.

        Returns:
            A batch, a gap (then every later call returns it again): ``connection-loss``
            or ``timeout``, or None when nothing arrived in time.

        Raises:
            RegistryClosed: the stream, or its backend, was closed.
            BackendUnavailable: the client is closed for good and cannot reconnect.
            BackendError: a read failed for another reason than the connection.
        """
        deadline = time.monotonic() + timeout
        while True:
            notes = self._take(deadline)
            if notes is None or isinstance(notes, Gap):
                return notes
            try:
                outcomes: dict[str, Outcome] = {}
                self._read(notes, outcomes)
                while len(notes) < _MAX_BATCH:
                    later = self._peek_ready()
                    if not later:
                        break
                    split = self._settled(notes, outcomes, later)
                    if split is not None:
                        notes, unsettled = split
                        self._put_back(unsettled)
                        break
                    more = self._take_ready(_MAX_BATCH - len(notes))
                    notes.extend(more)
                    self._read(more, outcomes)
                observed = self._observations(notes, outcomes)
            except BackendTimeout as exc:
                _log.warning("zookeeper stream below %r: read stalled (%s); reporting a gap", self._below, exc)
                return self._finish("timeout")
            except _CONNECTION_ERRORS as exc:
                _log.info("zookeeper stream below %r: read failed (%s); reporting a gap", self._below, exc)
                return self._finish("connection-loss")
            if observed:
                return self._batch(order(observed, self._last))
            if time.monotonic() >= deadline:
                return None

    def close(self) -> None:
        """Remove the watch (shared ones stay for other streams). Idempotent; never raises."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            on_close, self._on_close = self._on_close, None
            self._cond.notify_all()
        if on_close is not None:
            try:
                on_close()
            except Exception:  # closing must never raise; the watch ends with the connection anyway
                _log.debug("zookeeper stream below %r: removing the watch failed", self._below, exc_info=True)

    # -- internals -------------------------------------------------------------

    def _finish(self, reason: str) -> Gap:
        with self._cond:
            if self._gap is None:
                self._gap = Gap(reason)
                self._queue.clear()
            return self._gap

    def _take(self, deadline: float) -> list[Notification] | Gap | None:
        """Wait for queued notifications (all up to the next marker), a gap, or the deadline."""
        with self._cond:
            while True:
                if self._closed or self._backend_closed():
                    raise RegistryClosed(f"the stream below {self._below!r} is closed")
                if self._gap is not None:
                    return self._gap
                if self._queue:
                    break
                if self._dead():
                    raise BackendUnavailable(BACKEND, f"the client is closed; the stream below {self._below!r} ended")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(min(remaining, _POLL))
            first = self._queue[0]
            if isinstance(first, _Lost):
                self._gap = Gap(first.reason)
                self._queue.clear()
                return self._gap
            return self._pop_notifications(_MAX_BATCH)

    def _take_ready(self, limit: int) -> list[Notification]:
        with self._cond:
            return self._pop_notifications(limit)

    def _peek_ready(self) -> list[Notification]:
        """The notifications queued now (up to a marker), left in the queue."""
        with self._cond:
            notes: list[Notification] = []
            for item in self._queue:
                if isinstance(item, _Lost):
                    break
                notes.append(item)
            return notes

    def _put_back(self, notes: list[Notification]) -> None:
        """Queue ``notes`` again, first, in their order: the next call reads them afresh."""
        with self._cond:
            self._queue.extendleft(reversed(notes))

    def _settled(
        self, notes: list[Notification], outcomes: dict[str, Outcome], later: list[Notification]
    ) -> tuple[list[Notification], list[Notification]] | None:
        """Split ``notes`` into those whose reads no ``later`` notification can have overtaken, and the rest.

        A reply comes after every notification of a change it saw, so a read
        of a path no later notification names (nor, for a read of a
        ``pzxid``, a child of) shows exactly the state after the notes'
        changes: those notes can be told now, in a batch of their own,
        without waiting for the later ones to be read. The notes of a path
        whose read may have seen a later change wait for the next batch,
        where they are read again with the changes that overtook them (a
        batch told them from a read ahead of its notifications otherwise,
        and later batches would carry older revisions). Notifications of
        one path stay together. None when every change the notes report was
        overtaken: then the later notifications must join the batch.
        """
        touched = {note.path for note in later}
        touched.update(parent(note.path) for note in later if note.kind is not NotificationKind.DATA_CHANGED)

        def overtaken(note: Notification) -> bool:
            if note.path in touched:
                return True
            reads_parent = note.kind is NotificationKind.DELETED or (
                note.kind is NotificationKind.CREATED and _gone(outcomes[note.path])
            )
            return reads_parent and parent(note.path) in touched

        reported = [note for note, _ in self._relevant(notes)]
        waiting = {note.path for note in reported if overtaken(note)}
        if waiting >= {note.path for note in reported}:
            return None
        settled = [note for note in notes if note.path not in waiting]
        return settled, [note for note in notes if note.path in waiting]

    def _pop_notifications(self, limit: int) -> list[Notification]:
        """Pop queued notifications up to a marker or ``limit``. Caller holds the lock."""
        notes: list[Notification] = []
        while self._queue and len(notes) < limit:
            item = self._queue[0]
            if isinstance(item, _Lost):
                break
            notes.append(item)
            self._queue.popleft()
        return notes

    def _relevant(self, notes: list[Notification]) -> list[tuple[Notification, str]]:
        """The notifications of changes strictly below the watched znode to records' paths, each with its key."""
        return [
            (note, key)
            for note in notes
            if note.kind in _CHANGE_KINDS
            and note.path.startswith(self._below)
            and (key := self._namespace.key(note.path)) is not None
        ]

    def _read(self, notes: list[Notification], outcomes: dict[str, Outcome]) -> None:
        """Read what the notifications report, with ``multiRead``, into ``outcomes`` (newer reads replace older).

        A created or changed znode is read itself; the parent of a created or
        deleted one is read for its ``pzxid`` (a bound on the revision of a
        delete, or of a creation gone before its read), in the same round, so
        that the bound is never older than the notification. Each path is
        read once, in as few requests as :data:`READS_PER_REQUEST` allows, all
        sent before the first reply is awaited.
        """
        wanted: dict[str, None] = {}
        for note, _ in self._relevant(notes):
            if note.kind is not NotificationKind.DELETED:
                wanted[note.path] = None
            if note.kind is not NotificationKind.DATA_CHANGED:
                wanted[parent(note.path)] = None
        with ERRORS.boundary(f"read below {self._below!r}"):
            outcomes.update(self._read_paths(list(wanted)))

    def _observations(self, notes: list[Notification], outcomes: dict[str, Outcome]) -> list[Observed]:
        """What a batch's notifications report, in notification order, from the batch's newest reads.

        ZooKeeper sends a notification before the reply of any read that
        sees its change, so once the queue is empty after a round of reads,
        every change those reads saw has its notification in the batch: the
        newest read of a path is the state after the path's last notification.
        A created or changed znode whose delete follows in the batch was
        therefore read too late (gone, or a later incarnation): its value is
        lost, and a creation still shows, value-less, before the delete. The
        ``pzxid`` of a gone parent comes from the nearest ancestor that
        exists, in further rounds of reads.
        """
        relevant = self._relevant(notes)
        # Per key, the position of its last delete and of its last other notification.
        last_delete: dict[str, int] = {}
        last_other: dict[str, int] = {}
        for index, (note, key) in enumerate(relevant):
            (last_delete if note.kind is NotificationKind.DELETED else last_other)[key] = index
        with ERRORS.boundary(f"read below {self._below!r}"):
            needed = [
                parent(note.path)
                for note, _ in relevant
                if note.kind is NotificationKind.DELETED
                or (note.kind is NotificationKind.CREATED and _gone(outcomes[note.path]))
            ]
            pzxids = self._nearest_pzxids(needed, outcomes) if needed else {}
            observed: list[Observed] = []
            for index, (note, key) in enumerate(relevant):
                if note.kind is NotificationKind.DELETED:
                    recreated = last_other.get(key, -1) > index
                    item = self._observe_delete(note, key, outcomes, pzxids, recreated=recreated)
                elif last_delete.get(key, -1) > index:
                    item = self._observe_undone(note, key, pzxids)
                else:
                    item = self._observe(note, key, outcomes, pzxids)
                if item is not None:
                    observed.append(item)
            return observed

    def _read_paths(self, paths: list[str]) -> dict[str, Outcome]:
        """Read ``paths`` with ``multiRead`` requests, all sent at once; each path's data and stat, or refusal."""
        outcomes: dict[str, Outcome] = {}
        cancelled = self._cancelled
        for sent, reply in read_many(self._client, paths, READS_PER_REQUEST):
            outcomes.update(zip(sent, self._patience.wait(reply, cancelled), strict=True))
        return outcomes

    def _nearest_pzxids(self, paths: list[str], outcomes: dict[str, Outcome]) -> dict[str, int]:
        """The ``pzxid`` of each path or, if it is gone, of its nearest existing ancestor (``/`` always exists).

        Reads already made (``outcomes``) are used and extended: each round
        reads, for every path not settled yet, the first ancestor-or-self
        not read so far, all in one batch of ``multiRead`` requests.
        """
        found: dict[str, int] = {}
        refused: dict[str, int | None] = {}
        pending = list(dict.fromkeys(paths))
        while pending:
            unread: dict[str, None] = {}
            unsettled: list[str] = []
            for path in pending:
                current = path
                while True:
                    if current not in outcomes:
                        unread[current] = None
                        unsettled.append(path)
                        break
                    pzxid = self._pzxid_of(current, outcomes, refused)
                    if pzxid is not None:
                        found[path] = pzxid
                        break
                    if current == "/":  # cannot be gone; settles the walk whatever happens
                        found[path] = 0
                        break
                    current = parent(current)
            if unread:
                outcomes.update(self._read_paths(list(unread)))
            pending = unsettled
        return found

    def _pzxid_of(self, path: str, outcomes: dict[str, Outcome], refused: dict[str, int | None]) -> int | None:
        """The ``pzxid`` of ``path``, read and found; None if it is gone.

        A znode whose ACL refused the read (``getData`` needs the READ
        permission, ``exists`` does not) is asked with ``exists``, once
        (remembered in ``refused``).
        """
        outcome = outcomes[path]
        if not isinstance(outcome, ReadFailed):
            return int(outcome[1].pzxid)
        if outcome.code == NoNodeError.code:
            return None
        if outcome.code != NoAuthError.code:
            raise outcome.exception()
        if path not in refused:
            stat = self._patience.wait(self._client.exists_async(path), self._cancelled)
            refused[path] = None if stat is None else int(stat.pzxid)
        return refused[path]

    def _observe(
        self, note: Notification, key: str, outcomes: dict[str, Outcome], pzxids: dict[str, int]
    ) -> Observed | None:
        """A created or changed znode, from its newest read."""
        outcome = outcomes[note.path]
        if isinstance(outcome, ReadFailed):
            if outcome.code == NoAuthError.code:
                return None
            if outcome.code != NoNodeError.code:
                raise outcome.exception()
            return self._observe_undone(note, key, pzxids)
        data, stat = outcome
        if not stat.ephemeralOwner and not data:
            if note.kind is NotificationKind.CREATED:
                return None
            self._seen.pop(key, None)
            return Observed(Change(ChangeKind.DELETE, key, None, 0, stat.mzxid, None), approximate=False)
        revisions = (stat.czxid, stat.mzxid)
        if self._seen.get(key) == revisions:
            return None
        self._seen[key] = revisions
        return Observed(Change(ChangeKind.PUT, key, bytes(data), stat.czxid, stat.mzxid), approximate=False)

    def _observe_undone(self, note: Notification, key: str, pzxids: dict[str, int]) -> Observed | None:
        """A created or changed znode deleted before its read: a creation shows, value-less, below the delete."""
        self._seen.pop(key, None)
        if note.kind is not NotificationKind.CREATED:
            return None
        revision = pzxids[parent(note.path)] - 1
        return Observed(Change(ChangeKind.PUT, key, None, 0, revision), approximate=True)

    def _observe_delete(
        self, note: Notification, key: str, outcomes: dict[str, Outcome], pzxids: dict[str, int], *, recreated: bool
    ) -> Observed | None:
        """A deleted znode; its revision is bounded by the parent's ``pzxid`` and, if re-created, by the new ``czxid``.

        A re-created znode whose newest read was told already (by a batch
        cut short before this delete's notification, whose read ran ahead
        of it) keeps what was told: the consumer holds the current
        incarnation, and a delete stamped after it would take it away.
        """
        revision = pzxids[parent(note.path)]
        outcome = outcomes.get(note.path)
        if recreated and outcome is not None and not isinstance(outcome, ReadFailed):
            czxid = int(outcome[1].czxid)
            told = self._seen.get(key)
            if told is not None and told[0] == czxid:
                return None
            revision = min(revision, czxid - 1)
        self._seen.pop(key, None)
        return Observed(Change(ChangeKind.DELETE, key, None, 0, revision, None), approximate=True)

    def _cancelled(self) -> bool:
        return self._closed or self._backend_closed()

    def _batch(self, changes: list[Change]) -> Batch:
        revision = max(change.mod_revision for change in changes)
        self._revision = max(revision, self._revision + 1)
        return Batch(self._revision, tuple(changes))
