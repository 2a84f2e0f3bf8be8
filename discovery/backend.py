"""The backend interface: the few primitives a store must offer.

A backend is a key-value store seen through keys relative to the registry's
root (``buzz/buzzadmin/api/host-1``), with revisions that only grow, sessions
(leases) that keep keys alive, and a raw change stream that reports its own
gaps. Everything the event contract promises (completeness, ordering, resync,
convergence) is built once, in the core, on top of these primitives; a backend
stays thin and never re-implements it. Third-party backends subclass
:class:`Backend` and register an entry point in the ``discovery.backends``
group whose name is the URL scheme.
"""

from __future__ import annotations

import abc
import builtins
import contextlib
import enum
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

from discovery._background import call_listener, start_thread
from discovery._secrets import redact_options
from discovery.capabilities import Capability
from discovery.errors import AlreadyRegistered, DiscoveryError, InvalidInput, InvalidValue, Unsupported

_S = TypeVar("_S", bound="Session")

__all__ = [
    "Backend",
    "Batch",
    "Change",
    "ChangeKind",
    "ChangeStream",
    "Gap",
    "Listing",
    "Option",
    "PushStream",
    "Record",
    "Session",
    "Sink",
    "Target",
    "key_held",
]


@dataclass(frozen=True)
class Option:
    """A backend option accepted from the URL query, config file or keywords.

    The config layer (:func:`discovery.connect`) converts and checks every
    value once, before the backend is built; a backend reads the result with
    :meth:`Backend.option` and converts nothing itself.

    Attributes:
        kind: the value's type; strings from URLs and files are converted to it.
        default: the value when none is given.
        help: one line for docs and ``discovery backends``.
        positive: a number that must be above zero.
        choices: the only values allowed (a string option's, compared in lower case).
    """

    kind: type
    default: object
    help: str
    positive: bool = False
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Target:
    """Where a backend connects: parsed from the URL, options already converted.

    Attributes:
        scheme: the URL scheme (the backend's plugin name).
        hosts: ``(host, port)`` pairs, in the URL's order.
        root: the key prefix all keys live under, like ``/services`` (``""`` for none).
        options: every option the backend declares, with its value.
    """

    scheme: str
    hosts: tuple[tuple[str, int], ...]
    root: str
    options: Mapping[str, object] = field(default_factory=dict)

    def __repr__(self) -> str:
        # The options hold the credentials: their values are masked.
        options = redact_options(self.options)
        return f"Target(scheme={self.scheme!r}, hosts={self.hosts!r}, root={self.root!r}, options={options!r})"


@dataclass(frozen=True)
class Record:
    """One stored key, as a listing returns it.

    Attributes:
        key: the key relative to the root, ``/``-separated, no leading slash.
        value: the raw stored bytes.
        create_revision: the revision that created this incarnation of the key.
        mod_revision: the revision of the last write of the key's value. A
            server that moves its own modification index without a write (an
            etcd v2 TTL refresh) must not move it: the backend reports the
            revision at which it saw the value written, or the watch engine
            would report an update that never happened.
    """

    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True)
class Listing:
    """All records under a prefix, read at one revision.

    Attributes:
        revision: the store's revision the listing reflects (at least the
            largest ``mod_revision`` it holds).
        records: the records, in any order.
    """

    revision: int
    records: tuple[Record, ...]


class ChangeKind(enum.Enum):
    """What a raw change did to its key."""

    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True)
class Change:
    """One raw change to one key.

    Attributes:
        kind: put or delete.
        key: the key relative to the root.
        value: the new value for a put; None for a delete, and for a put
            whose value the backend could not read before the key was gone
            again (ZooKeeper: created and deleted between notification and
            read) — the key existed, its value is unknown.
        create_revision: the incarnation's create revision for a put (0 if unknown).
        mod_revision: the revision of this change.
        expired: for a delete, True if by expiry, False if explicit, None if unknown.
    """

    kind: ChangeKind
    key: str
    value: bytes | None
    create_revision: int
    mod_revision: int
    expired: bool | None = None


@dataclass(frozen=True)
class Batch:
    """The changes of one revision (or of consecutive revisions delivered together), in commit order.

    Attributes:
        revision: the largest revision in the batch; a resume point.
        changes: the changes, in commit order.
    """

    revision: int
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class Gap:
    """The stream cannot prove completeness from its position; it ends here.

    Attributes:
        reason: why, for logs and resync counters (``compacted``,
            ``history-window``, ``connection-loss``, ``timeout`` (a reply
            that never came on a live connection), ``no-resume``,
            ``catch-up`` (etcd v2: more history to replay than a reopened
            stream can, one request per event)...).
    """

    reason: str


class ChangeStream(abc.ABC):
    """A raw stream of changes under a prefix, opened by :meth:`Backend.watch`."""

    @abc.abstractmethod
    def next(self, timeout: float) -> Batch | Gap | None:
        """Wait for the next item.

        Args:
            timeout: seconds to wait at most.

        Returns:
            A :class:`Batch` whose revision is above every earlier one; a
            :class:`Gap`, after which the stream is finished (asking again
            returns the same gap); or None when nothing arrived within
            ``timeout``.

        Raises:
            RegistryClosed: the stream, or the backend that opened it, was
                closed before this call (a call already waiting when it
                closes may return None instead).
            BackendError: the stream broke; the core reopens it from the last
                batch's revision, or resyncs.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the stream and release its resources. Idempotent; never raises.

        Afterwards :meth:`next` raises :class:`~discovery.errors.RegistryClosed`.
        """

    @property
    def confirmed(self) -> bool:
        """Whether the server has accepted this stream (acknowledged it, or delivered through it).

        The engine counts a reopened stream as recovered only once it is
        confirmed, so a stream that opens without contacting the server and
        then fails cannot make a dead server look alive. The default, True,
        suits a backend whose :meth:`Backend.watch` reaches the server before
        it returns.
        """
        return True


Sink = Callable[[Batch | Gap | DiscoveryError], bool]
"""What a :class:`PushStream` hands its items to; it returns whether the stream should go on."""


@runtime_checkable
class PushStream(Protocol):
    """A change stream that hands its items over from the thread that reads them: an optional extension.

    A :class:`ChangeStream` that also has ``deliver_to``
    saves the engine a thread: instead of the watch's thread waking on
    :meth:`ChangeStream.next` for every batch, the
    stream's own thread (a reader, or the writer of an in-process store)
    calls ``sink(item)``, and the watch applies the batch and wakes its
    consumer there and then.
    """

    def deliver_to(self, sink: Sink) -> None:
        """From now on, hand each item to ``sink`` instead of keeping it for ``next``.

        The items are those ``next`` would have returned or raised (a Batch,
        a Gap, the error that broke the stream), in the same order, one call
        at a time: first those already waiting (from the calling thread),
        then each as it comes (from the stream's thread, which may hold the
        backend's own locks: the sink never calls into the backend, never
        waits for the consumer and never raises). After a Gap or an error,
        or once the sink returned False, nothing more is handed over. Called
        at most once, before ``next`` is ever called; a closed stream hands
        over nothing.
        """


class Session(abc.ABC):
    """A lease or session that keeps the keys put under it alive.

    The backend keeps it alive in the background. When the server drops it
    (lease expired, ZooKeeper session expired), the backend calls
    :meth:`mark_lost`; the core then opens a new session and puts its
    registrations again.

    Its keep-alive loop counts what it sends in :attr:`keepalive_requests`
    and :attr:`keepalive_failures` (plain integers, written by that loop's
    thread only, read for metrics) when the class sets
    :attr:`counts_keepalives`.

    Args:
        ttl: the ttl asked for, in seconds.
        backend: the backend that opens it; :meth:`Backend._own_session`
            accepts the session there only.
    """

    counts_keepalives: ClassVar[bool] = False
    """Whether the backend counts the session's keep-alives; False where the client library keeps it out of sight."""

    def __init__(self, ttl: float, backend: Backend | None = None) -> None:
        self.ttl = ttl
        self.keepalive_requests = 0
        """Keep-alive requests sent (lease keep-alives, TTL refreshes), if :attr:`counts_keepalives`."""
        self.keepalive_failures = 0
        """Keep-alive requests that did not renew: no answer, an error, or the session or key gone."""
        self._opened_by = backend
        self._alive = True
        self._listeners: list[Callable[[bool], None]] = []
        self._key_listeners: list[Callable[[str], None]] = []
        self._lock = threading.Lock()

    @property
    @abc.abstractmethod
    def id(self) -> str:
        """The server's id for the lease or session, as text."""

    @property
    def alive(self) -> bool:
        """Whether the server still holds the session."""
        return self._alive

    def add_listener(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(alive)`` from a background thread whenever liveness changes."""
        with self._lock:
            self._listeners.append(listener)

    def mark_lost(self) -> None:
        """Record that the server no longer holds the session; the listeners hear ``False`` once. Idempotent.

        Called by the backend when the server drops the session, and by the
        core when a write through it reports :class:`~discovery.errors.SessionExpired`.
        A session never comes back: the core opens a new one.
        """
        with self._lock:
            if not self._alive:
                return
            self._alive = False
            listeners = list(self._listeners)
        for listener in listeners:
            call_listener(f"session {self.id}", listener, False)

    def add_key_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(key)`` from a background thread when one key of this live session is gone.

        Only a backend whose keys expire one by one (etcd v2's TTL keys)
        reports this; the core then puts that key's registration again,
        under the same session.
        """
        with self._lock:
            self._key_listeners.append(listener)

    def _key_lost(self, key: str) -> None:
        """Tell the key listeners that ``key`` (relative to the root) is gone while the session lives on."""
        with self._lock:
            listeners = list(self._key_listeners)
        for listener in listeners:
            call_listener(f"session {self.id}", listener, key)

    def _count_keepalives(self, requests: int = 1, failures: int = 0) -> None:
        """Count keep-alive requests sent and, of them, those that failed. Called by the keep-alive loop only."""
        self.keepalive_requests += requests
        self.keepalive_failures += failures

    def _start_thread(self, name: str, target: Callable[[], None]) -> threading.Thread:
        """Run the session's keep-alive ``target`` in the background; if it dies, the session is lost.

        A keep-alive that dies of a bug would leave the session to expire
        while it still looks alive; instead the death is logged, the session
        is ended (its keys freed at once where the server can be told) and
        turns not alive, so the core opens a new one and registers its
        instances again.
        """
        return start_thread(name, target, self._keep_alive_died)

    def _keep_alive_died(self, _exc: BaseException) -> None:
        call_listener(f"session {self.id} (ending it after its keep-alive died)", self.close)
        self.mark_lost()

    @abc.abstractmethod
    def close(self) -> None:
        """End the session: its keys are removed at once. Idempotent: a second call does nothing.

        Afterwards the session is not alive, a :meth:`Backend.put` with it
        raises :class:`~discovery.errors.SessionExpired` and a
        :meth:`Backend.delete` with it returns False.

        Raises:
            BackendError: the server could not be told (the keys then expire
                after the ttl).
        """


def key_held(key: str) -> AlreadyRegistered:
    """Build the error for a key held by another live registrant."""
    service, _, instance_id = key.rpartition("/")
    return AlreadyRegistered(service, instance_id)


class Backend(abc.ABC):
    """A store the registry runs on. Subclasses declare what they can do.

    Class attributes:
        name: the plugin name, equal to the URL scheme.
        capabilities: what the backend can do (see :class:`Capability`).
        options: the options it accepts, beyond the core's.
        default_port: the port used when the URL names a host without one.
        min_ttl: the shortest ttl the server honours, in seconds.
        max_value_bytes: the largest value :meth:`put` can store, in bytes.
        max_key_bytes: the largest key the server takes, as :meth:`key_size` measures it.
        refused_characters: inclusive ranges of code points the server refuses
            in a name, beyond the control and space characters the core
            refuses everywhere.
        max_batch: the most keys one :meth:`put_many` call takes (a
            transaction's operation limit on the server).
    """

    name: ClassVar[str] = ""
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    options: ClassVar[Mapping[str, Option]] = {}
    default_port: ClassVar[int] = 0
    min_ttl: ClassVar[float] = 0.1
    max_value_bytes: ClassVar[int] = 1 << 30
    max_key_bytes: ClassVar[int] = 1 << 20
    refused_characters: ClassVar[tuple[tuple[int, int], ...]] = ()
    max_batch: ClassVar[int] = 128

    def __init__(self, target: Target) -> None:
        self.target = target

    def option(self, name: str) -> Any:
        """The value of one of the backend's declared :attr:`options`: the target's, else the default."""
        return self.target.options.get(name, self.options[name].default)

    def key_size(self, key: str) -> int:
        """The size of ``key`` (relative to the root) as the server measures it, to compare with :attr:`max_key_bytes`.

        The default counts the UTF-8 bytes of the root and key; a backend that
        sends keys in another form (percent-encoded in a URL) counts that form.
        """
        return len(f"{self.target.root}/{key}".encode())

    @abc.abstractmethod
    def list(self, prefix: str) -> Listing:
        """Read every key under ``prefix`` (``""`` for all, else ending in ``/``).

        Raises:
            RegistryClosed: the backend was closed.
            BackendError: the read failed.
        """

    @abc.abstractmethod
    def watch(self, prefix: str, after_revision: int | None) -> ChangeStream:
        """Open a raw change stream under ``prefix``.

        Args:
            prefix: as for :meth:`list`.
            after_revision: deliver changes after this revision; None for
                "from now". With None, the stream is established on the
                server before this returns, so a listing read afterwards
                overlaps it and nothing falls in between. A backend that
                cannot resume from a past revision returns a stream whose
                first item is a :class:`Gap`.

        Raises:
            RegistryClosed: the backend was closed.
            BackendError: the stream could not be opened.
        """

    @abc.abstractmethod
    def open_session(self, ttl: float) -> Session:
        """Start a lease or session of about ``ttl`` seconds, kept alive in the background.

        Raises:
            RegistryClosed: the backend was closed.
            BackendError: the server refused or could not be reached.
        """

    @abc.abstractmethod
    def put(self, key: str, value: bytes, session: Session | None) -> int:
        """Write a key and return the revision of the write.

        Args:
            key: the key relative to the root.
            value: the bytes to store.
            session: None for a persistent key (created or overwritten); else
                the key is bound to the session: created if absent, replaced
                if already bound to this same session.

        Raises:
            AlreadyRegistered: with a session, the key exists and is not bound
                to it (build it with :func:`key_held`).
            NameConflict: a key exists below ``key``, or ``key`` lies below an
                existing key: keys form a tree whose leaves hold values, so one
                name cannot be both (ZooKeeper and etcd v2 refuse it natively;
                other backends check it in the same atomic write).
            SessionExpired: the session no longer exists on the server, or
                was closed.
            InvalidInput: ``session`` was not opened by this backend instance
                (``field`` is ``"session"``; see :meth:`_own_session`).
            RegistryClosed: the backend was closed.
            BackendError: the write failed.
        """

    def put_many(self, items: Sequence[tuple[str, bytes]], session: Session) -> tuple[int, ...]:
        """Write up to :attr:`max_batch` keys bound to ``session``, all or none; return each write's revision.

        Each key is written as :meth:`put` writes it with a session. A
        backend with a multi-key transaction overrides this to write the
        batch in one request, atomically. This
        default writes the keys one by one and, when one fails, deletes the
        ones it wrote before raising: nothing of the batch stays, but
        watchers may see those instances come and go.

        Raises:
            InvalidValue: more than :attr:`max_batch` items.
            AlreadyRegistered, NameConflict, SessionExpired, InvalidInput,
            RegistryClosed, BackendError: as :meth:`put`; nothing of the batch is kept.
        """
        if len(items) > self.max_batch:
            raise InvalidValue("items", len(items), f"at most {self.max_batch} keys per batch on {self.name}")
        revisions: builtins.list[int] = []
        try:
            for key, value in items:
                revisions.append(self.put(key, value, session))
        except BaseException:
            for key, _ in items[: len(revisions)]:
                with contextlib.suppress(DiscoveryError):
                    self.delete(key, session)
            raise
        return tuple(revisions)

    @abc.abstractmethod
    def delete(self, key: str, session: Session | None = None) -> bool:
        """Delete a key; with ``session``, only while it is bound to that session.

        Returns:
            Whether a key was deleted (False with a session that is closed or lost).

        Raises:
            InvalidInput: ``session`` was not opened by this backend instance
                (``field`` is ``"session"``; see :meth:`_own_session`).
            RegistryClosed: the backend was closed.
            BackendError: the delete failed.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and threads. Sessions are closed first by the core. Idempotent.

        A second call does nothing. Afterwards :meth:`list`, :meth:`watch`,
        :meth:`open_session`, :meth:`put` and :meth:`delete` raise
        :class:`~discovery.errors.RegistryClosed`, and so does
        :meth:`ChangeStream.next` of every stream this backend opened.
        """

    def _own_session(self, session: Session, kind: type[_S]) -> _S:
        """``session`` as this backend's session class, if this very backend opened it.

        For :meth:`put` and :meth:`delete`. A session is valid only with the
        backend instance that opened it (passing ``backend=self`` to
        :class:`Session`): a session of another backend, or of another
        connection of this one, would bind keys to a lease or owner that this
        connection does not keep alive, or that its server does not know.

        Raises:
            InvalidInput: the session was not opened by this backend (``field`` is ``"session"``).
        """
        if not isinstance(session, kind) or session._opened_by is not self:
            raise InvalidInput(
                "session", session, f"not a session of this {self.name} backend: open it with its open_session()"
            )
        return session

    def abandon(self) -> None:
        """Stop keep-alives and drop connections without telling the server, as a crash would.

        The server then expires this backend's sessions after their ttl. Used
        by the conformance suite where a registrant cannot be a separate
        process that is killed; optional.

        Raises:
            Unsupported: the backend cannot simulate a crash in-process.
        """
        raise Unsupported("abandon", self.name)

    def server_version(self) -> str:
        """The server's version, for reports; ``"unknown"`` when the backend cannot tell."""
        return "unknown"
