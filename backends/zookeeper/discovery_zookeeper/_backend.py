"""The ZooKeeper backend (``zookeeper://h1:2181,h2:2181/root``, alias ``zk://``) on kazoo.

One kazoo client per backend holds one ZooKeeper session at a time. Keys
below the root are znodes: service paths are persistent znodes with empty
data, instances are native EPHEMERAL znodes of the client's session holding
the value, service definitions persistent znodes with data. A put bound to a
:class:`ZooKeeperSession` replaces an existing node only if its
``ephemeralOwner`` is the client's current session (the fencing: a node left
by an older session, or another client's, is never taken for ours). Watches
are persistent recursive watches (:mod:`discovery_zookeeper._persistent_watch`)
read into changes by :mod:`discovery_zookeeper._stream`; revisions are zxids.
A listing reads its znodes with ``multiRead`` (:mod:`discovery_zookeeper._multi_read`),
hundreds per request. A slow reply on a live connection is waited for
(:mod:`discovery_zookeeper._patience`): a request times out only when
nothing at all moved on the connection for ``request_timeout`` seconds,
never because other traffic (a burst of watch events) is ahead of it.
kazoo drops every watch when its connection drops, even inside the session
timeout, and never replays them, so each open stream ends with
``Gap("connection-loss")`` and the core re-lists; when the session is lost the
client starts a new one by itself, and every :class:`ZooKeeperSession` of the
old one turns not alive so the core puts its registrations again.
Keys form a tree whose leaves hold values, and ZooKeeper keeps the znodes
between them: a persistent znode without data or children (left behind by an
instance or service that is gone) is no key and gives way to a put, while a
put below an instance or any znode with data, or onto a znode with a key
below it, is a :class:`~discovery.errors.NameConflict`. Nothing waits on a
server that is down when it need not: a session's delete is then deferred to
the reconnection (or made moot by the session's expiry), and a watch gives up
quickly, since the core reopens it with its own back-off.

A registration costs one request, as with kazoo alone, once the backend has
checked its parents: see :class:`_Pin` and :meth:`ZooKeeperBackend.put`.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Mapping, MutableSequence, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from kazoo.client import KazooClient
from kazoo.exceptions import (
    BadVersionError,
    NoAuthError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    UnimplementedError,
)
from kazoo.protocol.states import KazooState, KeeperState, ZnodeStat
from kazoo.retry import KazooRetry
from kazoo.security import OPEN_ACL_UNSAFE

from discovery._background import start_thread
from discovery.backend import Backend, ChangeStream, Listing, Option, Record, Session, Target, key_held
from discovery.capabilities import Capability
from discovery.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    DiscoveryError,
    InvalidOption,
    InvalidValue,
    NameConflict,
    RegistryClosed,
    SessionExpired,
    Unsupported,
)
from discovery_zookeeper._acl import ACL_HELP, parse_acl
from discovery_zookeeper._errors import BACKEND, ERRORS, boundary
from discovery_zookeeper._guarded_create import EPHEMERAL, Created, GuardedCreate
from discovery_zookeeper._kazoo_private import drop_connection, redacting_logger, send_request, shut_socket
from discovery_zookeeper._multi_read import READS_PER_REQUEST, ReadFailed, read_many
from discovery_zookeeper._paths import REFUSED_CHARACTERS, Namespace, join, parent
from discovery_zookeeper._patience import Patience
from discovery_zookeeper._persistent_watch import PersistentWatches
from discovery_zookeeper._stream import FinishedStream, ZooKeeperChangeStream

__all__ = ["MIN_WATCH_VERSION", "ZooKeeperBackend", "ZooKeeperSession"]

_log = logging.getLogger("discovery.zookeeper")

MIN_WATCH_VERSION = (3, 6)
"""The oldest ZooKeeper with persistent recursive watches (``addWatch``)."""

_VERSION = re.compile(r"Zookeeper version:\s*(\d+)\.(\d+)(?:\.(\d+))?")
_DEAD_STATES = frozenset({KeeperState.CLOSED, KeeperState.AUTH_FAILED})
# A znode deleted between the children listing and its read, or one whose ACL hides it.
_GONE_OR_HIDDEN = frozenset({NoNodeError.code, NoAuthError.code})
# How long watch() waits for a connection. The core opens and reopens streams
# from its watch thread with its own back-off, which Watch.close() interrupts;
# a long wait in here would hold close() up while the server is down. Long
# enough for kazoo's reconnection after a blip (its first retries come within
# about 0.2 s).
_WATCH_PATIENCE = 0.5
# Attempts at a put that ZooKeeper refuses below an ephemeral znode we cannot
# find again (it went away meanwhile): retried, but not forever.
_EPHEMERAL_PARENT_RETRIES = 5
_CONNECTION_ERRORS = (BackendUnavailable, BackendTimeout)
_FLUSHER_JOIN = 2.0
# Parents a backend remembers as checked (see _Pin); past this many, it forgets them all and checks again.
_MAX_PINS = 4096
# The version a ZooKeeper check (or a conditional write) accepts whatever the znode's version is.
_ANY_VERSION = -1
_MULTI_BYTES = 512 * 1024
"""The most path and data bytes one bulk ``multi`` carries (the server's request limit is 1 MiB)."""


@dataclass(frozen=True)
class _Pin:
    """What a registration below one parent znode may take as checked, so that it costs one request.

    A put of an instance first checks, with a read of every znode between
    the root and the new one, that none of them is a key (an instance, or a
    znode with data): ZooKeeper itself refuses children only below an
    ephemeral znode. Once a put below a parent has read those znodes bare
    (persistent, no data) and then created ``anchor``, an ephemeral of the
    ZooKeeper session ``session_id``, the next put below the same parent
    sends one ``multi`` (:class:`~discovery_zookeeper._guarded_create.GuardedCreate`):
    ``check`` each of those znodes at the data version read, ``check`` that
    ``anchor`` exists (any version: an update of it changes nothing here),
    then ``create``. It applies only if all of them still hold, atomically:

    - a znode turned into a key by a write of its data has a new data
      version: the check fails;
    - a znode deleted and created again (with data, at version 0) had to be
      childless to be deleted, so ``anchor``, below all of them, was
      deleted first: its check fails;
    - ``anchor`` is an ephemeral of ``session_id``, so it is gone once that
      session is: a create that would run on a newer session fails too.

    A failed multi writes nothing; the put then goes the long way (reads,
    create) and pins the parent again. What a pin cannot see is the
    contrived case where another client deletes our live ``anchor``, turns
    a parent into a key and creates a znode at ``anchor``'s path again, all
    between two of our puts: the same kind of race as the long way's own
    window between its reads and its create.

    Attributes:
        session_id: the ZooKeeper session that created ``anchor``.
        anchor: the server path of an ephemeral znode of that session below the parent.
        guards: ``(server path, data version)`` of each znode between the root and the parent, parent included.
    """

    session_id: int
    anchor: str
    guards: tuple[tuple[str, int], ...]


class ZooKeeperSession(Session):
    """A registry session bound to the kazoo client's current ZooKeeper session.

    ZooKeeper has one session per connection, with the timeout negotiated at
    connect (the ``session_timeout`` option): the ``ttl`` asked for is kept
    for the core but does not change how long instances outlive a crash.
    Several sessions of one backend share the ZooKeeper session. Keys put
    under this session are remembered so that :meth:`close` can remove them.

    Args:
        backend: the backend that opened it.
        ttl: the ttl asked for, advisory.
        session_id: the ZooKeeper session id it is bound to.
    """

    # kazoo keeps the ZooKeeper session with its own pings, which the backend
    # never sees: no keep-alive is counted, rather than a count that means nothing.
    counts_keepalives: ClassVar[bool] = False

    def __init__(self, backend: ZooKeeperBackend, ttl: float, session_id: int) -> None:
        super().__init__(ttl, backend)
        self.session_id = session_id
        self._backend = backend
        self._keys: set[str] = set()
        self._keys_lock = threading.Lock()

    @property
    def id(self) -> str:
        """The ZooKeeper session id, in hex (``0x100004f2a1c0000``)."""
        return f"0x{self.session_id:x}"

    @property
    def keys(self) -> frozenset[str]:
        """The keys put under this session and not deleted since."""
        with self._keys_lock:
            return frozenset(self._keys)

    def holds(self, key: str) -> bool:
        """Whether ``key`` was put under this session and not deleted since."""
        with self._keys_lock:
            return key in self._keys

    def _track(self, key: str, held: bool) -> None:
        with self._keys_lock:
            if held:
                self._keys.add(key)
            else:
                self._keys.discard(key)

    def close(self) -> None:
        """Delete the keys this session holds, then turn not alive; the ZooKeeper session goes on. Idempotent.

        Never waits for a server that cannot be reached: the deletes are then
        deferred to the reconnection, or made moot by the session's expiry.

        Raises:
            BackendError: a delete failed; the keys then go when the ZooKeeper session ends.
        """
        try:
            if self.alive:
                for key in sorted(self.keys):
                    self._backend.delete(key, self)
        finally:
            self._backend._forget(self)
            self.mark_lost()

    def __repr__(self) -> str:
        return f"<ZooKeeperSession {self.id} alive={self.alive} ttl={self.ttl:g}>"


class ZooKeeperBackend(Backend):
    """The registry on a ZooKeeper ensemble (3.6 or newer for watches), through kazoo.

    Connects in the constructor and creates the root znode if it is missing.

    Args:
        target: hosts, root and options, parsed from the URL by the core.

    Raises:
        InvalidOption: a timeout that is not a positive number, ``auth_digest`` not ``user:password``,
            or an ``acl`` that does not parse (see :mod:`discovery_zookeeper._acl`).
        BackendUnavailable: no server could be reached within ``connect_timeout``.
        AuthenticationFailed: the server refused the credentials.
        BackendError: the root could not be created.
    """

    name: ClassVar[str] = "zookeeper"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.NATIVE_EPHEMERAL})
    default_port: ClassVar[int] = 2181
    # ZooKeeper has no limit of its own on a path: path and value travel in one
    # request, which the server refuses (dropping the connection) above
    # jute.maxbuffer, 1,048,575 bytes by default. Measured on 3.8.0, a create
    # (the larger request) passes while path + value <= 1,048,528 bytes. The
    # key gets a budget far above the longest name the core accepts (17
    # segments of 128 characters, about 6.6 KB), the value the rest, less an
    # 8 KiB margin (1,032,144 would still pass).
    max_key_bytes: ClassVar[int] = 16 * 1024
    max_value_bytes: ClassVar[int] = 1_024_000
    max_batch: ClassVar[int] = 128
    refused_characters: ClassVar[tuple[tuple[int, int], ...]] = REFUSED_CHARACTERS
    options: ClassVar[Mapping[str, Option]] = {
        "session_timeout": Option(
            float, 10.0, "ZooKeeper session timeout, seconds: how long instances outlive a crash", positive=True
        ),
        "connect_timeout": Option(float, 10.0, "seconds to wait for a connection to the ensemble", positive=True),
        "request_timeout": Option(
            float,
            10.0,
            "seconds a request waits while nothing at all moves on the connection; "
            "a reply slowed by other traffic on a live connection is waited for",
            positive=True,
        ),
        "auth_digest": Option(str, "", "digest credentials 'user:password' added to the connection"),
        "acl": Option(str, "", ACL_HELP),
        "use_ssl": Option(bool, False, "connect with TLS"),
        "ca": Option(str, "", "TLS: CA certificate file"),
        "certfile": Option(str, "", "TLS: client certificate file"),
        "keyfile": Option(str, "", "TLS: client key file"),
        "verify_certs": Option(
            bool, True, "TLS: verify the server's certificate and host name (false is insecure and logs a warning)"
        ),
    }

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        values = {name: self.option(name) for name in self.options}
        self._session_timeout = float(values["session_timeout"])
        self._connect_timeout = float(values["connect_timeout"])
        self._request_timeout = float(values["request_timeout"])
        self._namespace = Namespace(target.root)
        self._client_options = self._kazoo_options(values)
        # Every znode the client creates (root, service paths, instances, definitions) gets the configured ACL.
        acl = parse_acl(str(values["acl"]), str(values["auth_digest"]))
        self._client_options["default_acl"] = list(acl) or None
        self._acl = tuple(acl) or tuple(OPEN_ACL_UNSAFE)
        self._authenticated = bool(values["auth_digest"])
        # Parent znode path -> what puts below it may take as checked (see _Pin).
        self._pins: dict[str, _Pin] = {}
        self._state = threading.Condition()
        self._sessions: list[ZooKeeperSession] = []
        self._closed = False
        self._abandoned = False
        # Deletes of session keys owed to the server once it is reachable again:
        # key -> the ZooKeeper session id the znode belongs to.
        self._deferred: dict[str, int] = {}
        self._deferred_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._floor = 0
        self._version: tuple[int, int] | None = None
        self._version_checked = False
        self._client = KazooClient(**self._client_options)
        self._watches = PersistentWatches(self._client)
        self._patience = Patience(self._client, self._request_timeout)
        self._client.add_listener(self._state_changed)
        try:
            self._client.start(timeout=self._connect_timeout)
        except self._client.handler.timeout_exception as exc:
            self._release()
            raise BackendUnavailable(
                BACKEND, f"no server of {self._hosts()} answered within {self._connect_timeout:g} s", exc
            ) from exc
        try:
            if self._namespace.root != "/":
                with boundary(f"create root {self._namespace.root}", "", self._authenticated):
                    self._wait(self._client.ensure_path_async(self._namespace.root))
        except BaseException:
            self._release()
            raise

    # -- Backend primitives ------------------------------------------------------

    def key_size(self, key: str) -> int:
        """The UTF-8 size of the key's znode path, root included, as it travels in a request."""
        key = key.strip("/")
        return len((join(self._namespace.root, key) if key else self._namespace.root).encode("utf-8", "surrogatepass"))

    def list(self, prefix: str) -> Listing:
        """Read every record under ``prefix``: ephemeral znodes and znodes with data.

        Persistent znodes with empty data (service paths) are not records. The
        listing is many reads, not one snapshot: a children listing per level,
        then the znodes' data in ``multiRead`` requests of a few hundred
        (:mod:`discovery_zookeeper._multi_read`); its revision is the largest
        zxid the reads saw (``czxid``, ``mzxid``, ``pzxid``), never below an
        earlier listing's.

        Args:
            prefix: ``""`` or a key prefix ending with ``/``.

        Returns:
            The records with ``create_revision=czxid``, ``mod_revision=mzxid``.

        Raises:
            RegistryClosed: the backend was closed.
            BackendUnavailable: not connected within ``connect_timeout``, or the connection dropped.
            BackendTimeout: nothing moved on the connection for ``request_timeout`` seconds while a reply was due.
            AuthenticationFailed: a znode on the path refuses this client.
            PermissionDenied: the same, on a connection with ``auth_digest`` credentials.
            BackendError: another read failure.
        """
        base = self._namespace.base(prefix)
        records: list[Record] = []
        revision = self._floor
        self._await_connection()
        with boundary(f"list {prefix!r}", prefix.rstrip("/"), self._authenticated):
            frontier = [base]
            first = True
            while frontier:
                listings = [(path, self._client.get_children_async(path, include_data=True)) for path in frontier]
                reads: list[str] = []
                for path, result in listings:
                    try:
                        children, stat = self._wait(result)
                    except NoNodeError:
                        if first:
                            revision = max(revision, self._nearest_pzxid(parent(base)))
                        continue
                    revision = max(revision, stat.czxid, stat.mzxid, stat.pzxid)
                    for child in children:
                        child_path = join(path, child)
                        if self._namespace.key(child_path) is not None:
                            reads.append(child_path)
                first = False
                frontier = []
                for read, reply in read_many(self._client, reads, READS_PER_REQUEST):
                    for path, outcome in zip(read, self._wait(reply), strict=True):
                        if isinstance(outcome, ReadFailed):
                            if outcome.code in _GONE_OR_HIDDEN:
                                continue
                            raise outcome.exception()
                        data, stat = outcome
                        revision = max(revision, stat.czxid, stat.mzxid, stat.pzxid)
                        key = self._namespace.key(path)
                        if key is not None and (stat.ephemeralOwner or data):
                            records.append(Record(key, data, stat.czxid, stat.mzxid))
                        if stat.numChildren:
                            frontier.append(path)
        with self._state:
            self._floor = revision = max(self._floor, revision)
        return Listing(revision, tuple(records))

    def watch(self, prefix: str, after_revision: int | None) -> ChangeStream:
        """Open a persistent recursive watch below ``prefix``; returns once the server acknowledged it.

        Args:
            prefix: ``""`` or a key prefix ending with ``/``; its znode need not exist.
            after_revision: ZooKeeper cannot resume from a past revision, so
                anything but None gives a stream whose only item is
                ``Gap("no-resume")``.

        Returns:
            The stream of changes below the prefix.

        Raises:
            RegistryClosed: the backend was closed.
            Unsupported: the server is older than ZooKeeper 3.6 (no ``addWatch``).
            BackendUnavailable: not connected within half a second (the core
                retries with its own back-off), or the connection dropped.
            BackendTimeout: nothing moved on the connection for ``request_timeout`` seconds.
            BackendError: the server refused the watch.
        """
        self._check_usable()
        if after_revision is not None:
            return FinishedStream("no-resume", self._is_closed)
        self._await_connection(min(self._connect_timeout, _WATCH_PATIENCE))
        self._require_persistent_watches()
        base = self._namespace.base(prefix)
        stream = ZooKeeperChangeStream(
            self._client, self._namespace, base, self._patience, self._is_dead, self._is_closed
        )
        try:
            with boundary(f"watch {prefix!r}", prefix.rstrip("/"), self._authenticated):
                subscription = self._watches.add(base, stream, self._request_timeout, wait=self._patience.wait)
        except BackendError as exc:
            if isinstance(exc.orig, UnimplementedError):
                raise self._unsupported("the server") from exc.orig
            raise
        stream.attach(lambda: self._watches.remove(subscription))
        return stream

    def open_session(self, ttl: float) -> ZooKeeperSession:
        """Bind a session to the client's current ZooKeeper session, waiting for a connection if needed.

        Args:
            ttl: advisory: ZooKeeper's session timeout is per connection (the
                ``session_timeout`` option), not per registration.

        Returns:
            The session; it turns not alive when the ZooKeeper session is lost.

        Raises:
            RegistryClosed: the backend was closed.
            BackendUnavailable: no connection within ``connect_timeout``.
        """
        deadline = time.monotonic() + self._connect_timeout
        with self._state:
            session_id = self._current_session_id(deadline)
            session = ZooKeeperSession(self, ttl, session_id)
            self._sessions.append(session)
            return session

    def put(self, key: str, value: bytes, session: Session | None) -> int:
        """Write a key; with a session, as an ephemeral znode of the current ZooKeeper session.

        Missing parents are created as persistent znodes with empty data;
        every znode between the root and the key is checked first (none may
        be a key), by a read of them all, or, once a put below the same
        parent has done that, by version checks in the same atomic ``multi``
        as the create (see :class:`_Pin`): one request, as with kazoo alone.
        A persistent znode without data found at the key is no key: if nothing
        below it is a key either (what a gone instance or service leaves
        behind), it is removed and the key created in its place; the removal
        is conditional (ZooKeeper refuses to delete a znode with children, or
        one whose data changed), so a concurrent registrant below it is safe.

        Args:
            key: the key relative to the root.
            value: the bytes to store.
            session: None for a persistent znode (created or overwritten);
                else a session of this backend: the ephemeral znode is created,
                or replaced if its ``ephemeralOwner`` is this session.

        Returns:
            The zxid of the write (the znode's new ``mzxid``).

        Raises:
            AlreadyRegistered: with a session, the znode exists and is not an
                ephemeral of this session.
            NameConflict: a key lies below ``key`` (the ``conflict``), or an
                instance or a znode with data lies above it.
            InvalidName: the key holds a character ZooKeeper refuses.
            InvalidInput: the session was not opened by this backend.
            SessionExpired: the session is closed, or no longer the client's ZooKeeper session.
            RegistryClosed: the backend was closed.
            BackendUnavailable: not connected within ``connect_timeout``, or the connection dropped.
            BackendTimeout: nothing moved on the connection for ``request_timeout`` seconds while a reply was due.
            AuthenticationFailed: the ACL refuses this client.
            PermissionDenied: the same, on a connection with ``auth_digest`` credentials; nothing was changed.
            BackendError: another failure.
        """
        path = self._namespace.path(key)
        self._await_connection()
        if session is None:
            with boundary(f"put {key}", key, self._authenticated):
                return self._put_persistent(key, path, value)
        owned = self._own(session)
        with self._flush_lock, self._deferred_lock:
            # A key put again before its deferred delete ran is ours again: the delete is off.
            self._deferred.pop(key, None)
        with boundary(f"put {key}", key, self._authenticated):
            revision = self._put_ephemeral(key, path, value, owned)
        owned._track(key, True)
        return revision

    def put_many(self, items: Sequence[tuple[str, bytes]], session: Session) -> tuple[int, ...]:
        """Write up to :attr:`max_batch` ephemeral znodes of ``session``, all or none.

        The first key below each parent not yet pinned (see :class:`_Pin`)
        goes the long way of :meth:`put`, which pins the parent; the others
        are created in one guarded ``multi``: the parents' checks and every
        create, applied together or not at all, sharing one zxid. When the
        ``multi`` is refused (a znode exists already, a parent changed) or
        the batch is too large for one request, the rest go one by one; if
        any of them fails, what the batch wrote is deleted before the error
        is raised.

        Raises:
            InvalidValue: more than :attr:`max_batch` items.
            The errors of :meth:`put`.
        """
        if len(items) > self.max_batch:
            raise InvalidValue("items", len(items), f"at most {self.max_batch} keys per batch on {self.name}")
        owned = self._own(session)
        revisions: dict[str, int] = {}
        try:
            pending: MutableSequence[tuple[str, str, bytes]] = []
            for key, value in items:
                path = self._namespace.path(key)
                if self._pinned(path, key, owned):
                    pending.append((key, path, value))
                else:
                    revisions[key] = self.put(key, value, session)
            if pending:
                zxid = self._create_many_pinned(pending, owned)
                for key, _, value in pending:
                    revisions[key] = zxid if zxid is not None else self.put(key, value, session)
        except BaseException:
            for key in revisions:
                with contextlib.suppress(DiscoveryError):
                    self.delete(key, session)
            raise
        return tuple(revisions[key] for key, _ in items)

    def _pinned(self, path: str, key: str, session: ZooKeeperSession) -> bool:
        """Whether ``path`` is a new key below a parent pinned for ``session`` (one ``multi`` can create it)."""
        pin = self._pins.get(parent(path))
        return (
            pin is not None and pin.session_id == session.session_id and pin.anchor != path and not session.holds(key)
        )

    def _create_many_pinned(self, pending: Sequence[tuple[str, str, bytes]], session: ZooKeeperSession) -> int | None:
        """Create every pending znode in one guarded ``multi``; the zxid, or None when refused (nothing written)."""
        if sum(len(path) + len(value) for _, path, value in pending) > _MULTI_BYTES:
            return None
        guards: dict[str, int] = {}
        for _, path, _ in pending:
            pin = self._pins[parent(path)]
            guards.update(pin.guards)
            guards[pin.anchor] = _ANY_VERSION
        (_, first, value), *rest = pending
        request = GuardedCreate(
            tuple(guards.items()), first, value, self._acl, EPHEMERAL, tuple((path, data) for _, path, data in rest)
        )
        with self._flush_lock, self._deferred_lock:
            for key, _, _ in pending:
                self._deferred.pop(key, None)
        with boundary(f"put {pending[0][0]} and {len(rest)} more", pending[0][0], self._authenticated):
            reply = self._client.handler.async_result()
            send_request(self._client, request, reply)
            (outcome,) = self._wait(reply)
        if not isinstance(outcome, Created):
            return None
        if self.session_id != session.session_id:
            raise SessionExpired(BACKEND, f"session {session.id} expired while writing {len(pending)} keys")
        for key, _, _ in pending:
            session._track(key, True)
        return outcome.zxid

    def delete(self, key: str, session: Session | None = None) -> bool:
        """Delete a key; with ``session``, only while its znode is an ephemeral of that session.

        A persistent znode without data (a service path) is no key: it is not
        deleted. With a session and no connection to the server, the delete
        does not wait: it is deferred to the reconnection, and made moot if
        the ZooKeeper session expires first (its ephemeral znodes go with it).

        Args:
            key: the key relative to the root.
            session: None to delete whatever key is there; else a session of this backend.

        Returns:
            Whether a key was deleted (or, deferred, is owed a delete); False
            with a session that is closed or lost.

        Raises:
            InvalidName: the key holds a character ZooKeeper refuses.
            InvalidInput: the session was not opened by this backend.
            RegistryClosed: the backend was closed.
            BackendUnavailable: without a session: not connected within
                ``connect_timeout``, or the connection dropped.
            BackendTimeout: nothing moved on the connection for ``request_timeout`` seconds while a reply was due.
            AuthenticationFailed: the ACL refuses this client.
            PermissionDenied: the same, on a connection with ``auth_digest`` credentials; nothing was changed.
            BackendError: another failure.
        """
        path = self._namespace.path(key)
        if session is None:
            self._await_connection()
            with boundary(f"delete {key}", key, self._authenticated):
                return self._delete_key(path)
        self._check_usable()
        owned = self._own_session(session, ZooKeeperSession)
        if not owned.alive:
            return False
        if not self._client.connected:
            return self._defer_delete(key, owned)
        try:
            with boundary(f"delete {key}", key, self._authenticated):
                deleted = self._delete_owned(path, owned.session_id)
        except _CONNECTION_ERRORS as exc:
            _log.info("zookeeper: delete of %s failed (%s); deferred to the reconnection", key, exc)
            return self._defer_delete(key, owned)
        owned._track(key, False)
        return deleted

    def close(self) -> None:
        """Stop the client: the ZooKeeper session ends and its ephemeral znodes go. Idempotent.

        Never waits for a server that is down: the session then expires on
        the server, with its ephemeral znodes, after the session timeout.
        """
        with self._state:
            if self._closed:
                return
            self._closed = True
            # Threads waiting for a connection give up now.
            self._state.notify_all()
        self._client.remove_listener(self._state_changed)
        self._watches.close()
        self._release()
        with self._deferred_lock:
            # Moot: closing the client ends the session, or it expires, and its znodes go.
            self._deferred.clear()
            flusher = self._flusher
        if flusher is not None:
            # Stopping the client failed its requests: the thread ends at once.
            flusher.join(timeout=_FLUSHER_JOIN)
        self._sessions_lost(in_background=False)

    def abandon(self) -> None:
        """Drop the connection without ending the session, as a crashed process would.

        The server expires the session, and removes its ephemeral znodes, after
        the session timeout. The backend is unusable afterwards; :meth:`close`
        still releases it.
        """
        with self._state:
            self._abandoned = True
        drop_connection(self._client, self._connect_timeout)

    def server_version(self) -> str:
        """The version of the server the client is connected to (``"3.8.0"``), from the ``srvr`` command.

        Returns:
            The version, or ``"unknown"`` when the server does not answer ``srvr``.
        """
        try:
            answer = self._client.command(b"srvr")
        except Exception:  # a report must not fail because a four-letter word is disabled
            return "unknown"
        match = _VERSION.search(answer)
        if match is None:
            return "unknown"
        return ".".join(part for part in match.groups() if part is not None)

    # -- fault injection ---------------------------------------------------------

    def expire_session(self) -> None:
        """Make the server expire this client's ZooKeeper session, as a long partition would.

        Another connection takes over the session and closes it; this client
        then finds its session expired, reports its sessions lost and starts a
        new ZooKeeper session. For tests and the conformance suite.

        Raises:
            BackendUnavailable: not connected, or the other connection failed.
        """
        client_id = self._client.client_id
        if client_id is None:
            raise BackendUnavailable(BACKEND, "not connected: no session to expire")
        other = KazooClient(**{**self._client_options, "client_id": client_id})
        try:
            with ERRORS.boundary("expire session"):
                other.start(timeout=self._connect_timeout)
                other.stop()
        finally:
            other.close()

    def drop_connection(self) -> None:
        """Cut the client's connection under it, as a network blip would; kazoo reconnects within the session.

        Every open stream then reports ``Gap("connection-loss")``; sessions stay
        alive. For tests and the conformance suite.

        Raises:
            BackendUnavailable: not connected.
        """
        self._check_usable()
        if not shut_socket(self._client):
            raise BackendUnavailable(BACKEND, "not connected: no connection to drop")

    @property
    def session_id(self) -> int | None:
        """The client's current ZooKeeper session id, None while it has none."""
        client_id = self._client.client_id
        return None if client_id is None else int(client_id[0])

    # -- internals ---------------------------------------------------------------

    def _kazoo_options(self, values: Mapping[str, object]) -> dict[str, Any]:
        digest = str(values["auth_digest"])
        if digest and not all(digest.partition(":")[::2]):
            raise InvalidOption("auth_digest", digest, "expected digest credentials 'user:password'")
        verify = bool(values["verify_certs"])
        if values["use_ssl"] and not verify:
            _log.warning(
                "zookeeper: verify_certs=false: the server's certificate and host name are not checked, "
                "so anyone between this client and %s can pose as the server and read the credentials",
                self._hosts(),
            )
        return {
            "hosts": self._hosts(),
            "timeout": self._session_timeout,
            "connection_retry": KazooRetry(max_tries=-1, delay=0.05, backoff=2, max_jitter=0.1, max_delay=1.0),
            "auth_data": [("digest", digest)] if digest else None,
            "use_ssl": bool(values["use_ssl"]),
            "ca": str(values["ca"]) or None,
            "certfile": str(values["certfile"]) or None,
            "keyfile": str(values["keyfile"]) or None,
            "verify_certs": verify,
            # kazoo checks no host name unless asked: a certificate for any name the CA signed would do.
            "check_hostname": verify,
            # kazoo logs the digest and the session password at DEBUG: its logger gets a filter that masks them.
            "logger": redacting_logger(),
        }

    def _hosts(self) -> str:
        return ",".join(f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in self.target.hosts)

    def _wait(self, result: Any) -> Any:
        """The value of a kazoo async result, waited for while the connection makes progress (see ``_patience``)."""
        return self._patience.wait(result, self._is_closed)

    def _release(self) -> None:
        try:
            self._client.stop()
            self._client.close()
        except Exception:  # releasing must not raise; the threads are daemons
            _log.debug("stopping the kazoo client failed", exc_info=True)

    def _is_dead(self) -> bool:
        return self._closed or self._client.client_state in _DEAD_STATES

    def _is_closed(self) -> bool:
        return self._closed

    def _check_usable(self) -> None:
        if self._closed:
            raise RegistryClosed(f"{self.name} backend is closed")
        if self._abandoned:
            raise BackendUnavailable(BACKEND, "the backend was abandoned, as by a crash")

    def _await_connection(self, patience: float | None = None) -> None:
        """Wait up to ``patience`` (default ``connect_timeout``) for a connection; kazoo would queue a request forever.

        Raises:
            BackendUnavailable: the backend is closed, or still not connected.
        """
        deadline = time.monotonic() + (self._connect_timeout if patience is None else patience)
        with self._state:
            while True:
                self._check_usable()
                if self._client.connected:
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BackendUnavailable(BACKEND, f"not connected to {self._hosts()}")
                self._state.wait(remaining)

    def _state_changed(self, state: str) -> None:
        # Called on kazoo's connection thread: never block here.
        with self._state:
            self._state.notify_all()
        if state == KazooState.LOST:
            self._sessions_lost(in_background=True)
        elif state == KazooState.CONNECTED:
            self._flush_soon()

    def _sessions_lost(self, in_background: bool) -> None:
        with self._state:
            lost, self._sessions = self._sessions, []
        if not lost:
            return

        def report() -> None:
            for session in lost:
                # Each listener is guarded by the core: one that raises cannot stop the others.
                session.mark_lost()

        if in_background:
            # Off kazoo's connection thread: a user's listener may block or call back into the backend.
            start_thread("discovery-zookeeper-session-lost", report)
        else:
            report()

    def _defer_delete(self, key: str, session: ZooKeeperSession) -> bool:
        """Owe the server the delete of ``key``, an ephemeral of ``session``, until the connection is back."""
        with self._deferred_lock:
            self._deferred[key] = session.session_id
        session._track(key, False)
        _log.info("zookeeper: not connected; the delete of %s waits for the reconnection or the session's expiry", key)
        if self._client.connected:
            # The connection came back between the check and the deferral.
            self._flush_soon()
        return True

    def _flush_soon(self) -> None:
        """Run the deferred deletes in the background, unless they already run or there are none."""
        with self._deferred_lock:
            if not self._deferred or self._flusher is not None or self._closed:
                return
            self._flusher = start_thread("discovery-zookeeper-deferred-deletes", self._flush, self._flush_died)

    def _flush_died(self, exc: BaseException) -> None:
        with self._deferred_lock:
            self._flusher = None

    def _flush(self) -> None:
        """Send the deferred deletes; stop at the first connection failure (the next reconnection resumes)."""
        while True:
            # Held through each delete, so that a put of the same key (which
            # cancels its delete under this lock) cannot interleave with it; a
            # deferral only takes the short ``_deferred_lock``, never waits here.
            with self._flush_lock:
                with self._deferred_lock:
                    if not self._deferred or self._closed:
                        self._flusher = None
                        return
                    key, session_id = next(iter(self._deferred.items()))
                if self.session_id in (None, session_id):
                    try:
                        with ERRORS.boundary(f"deferred delete {key}"):
                            self._delete_owned(self._namespace.path(key), session_id)
                    except _CONNECTION_ERRORS as exc:
                        _log.info("zookeeper: deferred delete of %s failed (%s); retried on reconnection", key, exc)
                        with self._deferred_lock:
                            self._flusher = None
                        return
                    except BackendError as exc:
                        _log.warning("zookeeper: deferred delete of %s failed (%s); given up", key, exc)
                # Else that ZooKeeper session is gone, and its ephemeral znodes with it.
                with self._deferred_lock:
                    if self._deferred.get(key) == session_id:
                        del self._deferred[key]

    def _forget(self, session: ZooKeeperSession) -> None:
        with self._state:
            if session in self._sessions:
                self._sessions.remove(session)

    def _current_session_id(self, deadline: float) -> int:
        """The client's session id, waiting for a connection until ``deadline``. Caller holds ``_state``."""
        while True:
            self._check_usable()
            client_id = self._client.client_id
            if client_id is not None:
                return int(client_id[0])
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BackendUnavailable(BACKEND, f"not connected to {self._hosts()}")
            self._state.wait(remaining)

    def _own(self, session: Session) -> ZooKeeperSession:
        """The session as ours, if it is still bound to the client's current ZooKeeper session.

        Raises:
            InvalidInput: the session was not opened by this backend.
            SessionExpired: the session is closed, or the ZooKeeper session it was bound to is gone.
            BackendUnavailable: no connection within ``connect_timeout`` to tell.
        """
        session = self._own_session(session, ZooKeeperSession)
        if not session.alive:
            raise SessionExpired(BACKEND, f"session {session.id} is closed or lost")
        with self._state:
            current = self._current_session_id(time.monotonic() + self._connect_timeout)
        if current != session.session_id:
            raise SessionExpired(BACKEND, f"session {session.id} expired; the client now has 0x{current:x}")
        return session

    def _put_persistent(self, key: str, path: str, value: bytes) -> int:
        self._refuse_below_keys(key, path)
        ephemeral_parents = 0
        while True:
            try:
                _, stat = self._wait(self._client.create_async(path, value, makepath=True, include_data=True))
                return int(stat.mzxid)
            except NodeExistsError:
                pass
            except NoChildrenForEphemeralsError as exc:
                ephemeral_parents = self._below_ephemeral(key, path, exc, ephemeral_parents)
                continue
            stat = self._wait(self._client.exists_async(path))
            if stat is None:
                continue
            if not stat.ephemeralOwner and not stat.dataLength:
                self._vacate(key, path, stat.version)
                continue
            try:
                stat = self._wait(self._client.set_async(path, value, version=stat.version))
            except (NoNodeError, BadVersionError):
                continue
            return int(stat.mzxid)

    def _put_ephemeral(self, key: str, path: str, value: bytes, session: ZooKeeperSession) -> int:
        revision = self._create_pinned(key, path, value, session)
        if revision is not None:
            return revision
        checked = self._refuse_below_keys(key, path)
        ephemeral_parents = 0
        while True:
            try:
                _, stat = self._wait(
                    self._client.create_async(path, value, ephemeral=True, makepath=True, include_data=True)
                )
            except NodeExistsError:
                pass
            except NoChildrenForEphemeralsError as exc:
                ephemeral_parents = self._below_ephemeral(key, path, exc, ephemeral_parents)
                checked = None
                continue
            else:
                if stat.ephemeralOwner != session.session_id:
                    # The session changed while the request waited: the znode belongs to the new one.
                    raise SessionExpired(BACKEND, f"session {session.id} expired while writing {key}")
                if checked is not None:
                    self._pin(path, stat, checked)
                return int(stat.mzxid)
            checked = None
            stat = self._wait(self._client.exists_async(path))
            if stat is None:
                continue
            if stat.ephemeralOwner != session.session_id:
                if stat.ephemeralOwner or stat.dataLength:
                    raise key_held(key)
                self._vacate(key, path, stat.version)
                continue
            # ZooKeeper can condition a write on the data version only, not on the owner: the
            # version guards against our own concurrent writes; only a delete plus a re-create by
            # another session at the same version, between these two requests, could slip through.
            try:
                stat = self._wait(self._client.set_async(path, value, version=stat.version))
            except (NoNodeError, BadVersionError):
                continue
            return int(stat.mzxid)

    def _refuse_below_keys(self, key: str, path: str) -> tuple[tuple[str, int], ...] | None:
        """Raise :class:`NameConflict` if an instance or a znode with data lies between the root and ``path``.

        ZooKeeper refuses children of an ephemeral znode by itself (the
        create fails), but happily creates them below a persistent znode
        with data; both are keys, so both are checked here, with one
        pipelined read of the ancestors, before anything is written.

        Returns:
            ``(path, data version)`` of every znode between the root and
            ``path``, all found bare; None when some of them do not exist yet.
        """
        ancestors = self._namespace.ancestors(path)
        replies = [(ancestor, self._client.exists_async(ancestor)) for ancestor in ancestors]
        checked: list[tuple[str, int]] | None = []
        for ancestor, reply in replies:
            stat = self._wait(reply)
            if stat is None:
                checked = None
                continue
            if stat.ephemeralOwner or stat.dataLength:
                raise NameConflict(key, self._namespace.key(ancestor) or ancestor)
            if checked is not None:
                checked.append((ancestor, int(stat.version)))
        return None if checked is None else tuple(checked)

    def _pin(self, path: str, stat: ZnodeStat, checked: tuple[tuple[str, int], ...]) -> None:
        """Remember that the znodes between the root and ``path`` were read bare before ``path`` was created."""
        pins = self._pins
        if len(pins) >= _MAX_PINS:
            pins.clear()
        pins[parent(path)] = _Pin(int(stat.ephemeralOwner), path, checked)

    def _unpin(self, path: str) -> None:
        """Forget the pin anchored at ``path``, a znode just deleted (its check would fail anyway)."""
        directory = parent(path)
        pin = self._pins.get(directory)
        if pin is not None and pin.anchor == path:
            self._pins.pop(directory, None)

    def _create_pinned(self, key: str, path: str, value: bytes, session: ZooKeeperSession) -> int | None:
        """Create the ephemeral ``path`` in one guarded ``multi``, if its parent is pinned (see :class:`_Pin`).

        Returns:
            The zxid of the create; None when the parent is not pinned for
            this session or a check failed (nothing was written: the caller
            goes the long way, which reads, decides and pins again).

        Raises:
            SessionExpired: the client's ZooKeeper session changed while the request waited.
        """
        directory = parent(path)
        pin = self._pins.get(directory)
        if pin is None or pin.session_id != session.session_id or pin.anchor == path or session.holds(key):
            # Not pinned, or a key this session holds already: an update, which the long way does.
            return None
        guards = (*pin.guards, (pin.anchor, _ANY_VERSION))
        reply = self._client.handler.async_result()
        send_request(self._client, GuardedCreate(guards, path, value, self._acl, EPHEMERAL), reply)
        (outcome,) = self._wait(reply)
        if not isinstance(outcome, Created):
            # The znode exists (the guards held: the pin stays), or a guard failed (the pin goes):
            # the long way sorts it out.
            if outcome.index < len(guards) and self._pins.get(directory) is pin:
                self._pins.pop(directory, None)
            return None
        if self.session_id != session.session_id:
            # The create ran on this session (the anchor, one of its ephemerals, was there),
            # which has ended since: the znode went with it.
            raise SessionExpired(BACKEND, f"session {session.id} expired while writing {key}")
        self._pins[directory] = _Pin(pin.session_id, path, pin.guards)
        return outcome.zxid

    def _below_ephemeral(self, key: str, path: str, exc: NoChildrenForEphemeralsError, attempts: int) -> int:
        """ZooKeeper refused ``path`` below an ephemeral znode: raise :class:`NameConflict` naming it.

        Returns:
            ``attempts`` plus one, when the ephemeral ancestor is gone already and the put may be retried.

        Raises:
            NameConflict: an instance (or a znode with data) lies above ``key``.
            BackendError: the ephemeral ancestor stayed out of sight (the root itself is ephemeral).
        """
        self._refuse_below_keys(key, path)
        if attempts >= _EPHEMERAL_PARENT_RETRIES:
            raise ERRORS.translate(exc, f"put {key}") from exc
        return attempts + 1

    def _vacate(self, key: str, path: str, version: int) -> None:
        """Clear the persistent znode without data at ``path`` for a put, or raise :class:`NameConflict`.

        The znode and any znodes below it are no keys if none of them is an
        instance or holds data (a service path left behind): they are
        deleted, deepest first, each only at the data version read and only
        if childless (ZooKeeper's own rule), so a key created below them
        meanwhile stays, and the caller, which looks again, sees it.

        Raises:
            NameConflict: a key lies below ``path``; its key is the ``conflict``.
        """
        leftovers: list[tuple[str, int]] = []
        found = self._first_key_below(path, leftovers)
        if found is not None:
            raise NameConflict(key, self._namespace.key(found) or found)
        leftovers.append((path, version))
        replies = [self._client.delete_async(znode, version=znode_version) for znode, znode_version in leftovers]
        for reply in replies:
            # A znode gone, written or given a child meanwhile: the caller looks again.
            with contextlib.suppress(NoNodeError, NotEmptyError, BadVersionError):
                self._wait(reply)

    def _first_key_below(self, path: str, leftovers: MutableSequence[tuple[str, int]]) -> str | None:
        """The path of a key below ``path``, depth first; else None, every znode below added to ``leftovers``."""
        # Children are added before their parent: deleted in this order, deepest first.
        try:
            children = self._wait(self._client.get_children_async(path))
        except NoNodeError:
            return None
        replies = [(join(path, child), self._client.exists_async(join(path, child))) for child in sorted(children)]
        stats = [(child, self._wait(reply)) for child, reply in replies]
        for child, stat in stats:
            if stat is not None and (stat.ephemeralOwner or stat.dataLength):
                return child
        for child, stat in stats:
            if stat is None:
                continue
            if stat.numChildren:
                found = self._first_key_below(child, leftovers)
                if found is not None:
                    return found
            leftovers.append((child, stat.version))
        return None

    def _delete_key(self, path: str) -> bool:
        """Delete the key at ``path``: an ephemeral znode or one with data; a bare service znode is left alone."""
        while True:
            stat = self._wait(self._client.exists_async(path))
            if stat is None or not (stat.ephemeralOwner or stat.dataLength):
                return False
            try:
                self._wait(self._client.delete_async(path, version=stat.version))
            except (NoNodeError, NotEmptyError):
                # Gone meanwhile; or, holding data and children, a foreign znode that no key can be.
                return False
            except BadVersionError:
                continue
            self._unpin(path)
            return True

    def _delete_owned(self, path: str, session_id: int) -> bool:
        while True:
            try:
                _, stat = self._wait(self._client.get_async(path))
            except NoNodeError:
                return False
            if stat.ephemeralOwner != session_id:
                return False
            try:
                self._wait(self._client.delete_async(path, version=stat.version))
            except NoNodeError:
                return False
            except BadVersionError:
                continue
            self._unpin(path)
            return True

    def _nearest_pzxid(self, path: str) -> int:
        while True:
            stat = self._wait(self._client.exists_async(path))
            if stat is not None:
                return int(stat.pzxid)
            path = parent(path)

    def _require_persistent_watches(self) -> None:
        """Refuse early, with the version in the message, when ``srvr`` names a server older than 3.6.

        Asked once per backend; when ``srvr`` is disabled the ``addWatch``
        reply itself (``UnimplementedError``) tells.
        """
        if not self._version_checked:
            match = _VERSION.search(self._srvr())
            self._version = None if match is None else (int(match.group(1)), int(match.group(2)))
            self._version_checked = True
        if self._version is not None and self._version < MIN_WATCH_VERSION:
            raise self._unsupported("ZooKeeper {}.{}".format(*self._version))

    def _srvr(self) -> str:
        try:
            return str(self._client.command(b"srvr"))
        except Exception:  # the version check is a courtesy; addWatch itself is the real test
            return ""

    def _unsupported(self, server: str) -> Unsupported:
        required = ".".join(map(str, MIN_WATCH_VERSION))
        return Unsupported(
            f"complete watches: persistent recursive watches (addWatch) need ZooKeeper {required} or newer, "
            f"and {server} is older",
            self.name,
        )
