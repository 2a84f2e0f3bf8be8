"""The etcd v3 backend (``etcd://``): leases, transactions and watches over etcd's JSON gateway.

Client choice: our own thin client (:mod:`discovery_etcd._v3client`) over
requests and the gateway, not etcd3gw, whose watch ignores the
``canceled``/``compact_revision`` answer and dies silently on errors, nor
python-etcd3, which is unmaintained and breaks on current protobuf. A
session is a lease kept alive by a background thread at a third of its
TTL; instances are keys put under it by a transaction that refuses a key
bound to another lease, or a name that would be both a key and a key's
parent, so a lease revoked or expired removes all its keys in one revision.
A lease lost while etcd was unreachable is revoked once etcd answers, and
until then its keys are taken over by the session that replaces it. A
listing is one range read at one revision. The watch reads ``POST
/v3/watch`` line by line in a thread: it returns once etcd confirmed the
watch (``created``), resumes from ``after_revision + 1``,
delivers the events of each revision as one batch (a watch answer always
holds whole revisions) from that thread straight into the core's watch
(see :class:`~discovery_etcd._common.QueuedStream`), reports a watch cancelled by compaction as
``Gap("compacted")`` and a broken connection as ``BackendUnavailable``.
A key range the user's roles do not grant is refused with
:class:`~discovery.errors.PermissionDenied` naming the key or prefix: a
write or read at once, a watch when etcd cancels it at creation. etcd 3.4
checks a watch's permission only then, and a watch whose grant is revoked
goes on delivering; so a watch opened with credentials asks etcd every
``timeout`` seconds whether the user may still read its range, and ends with
PermissionDenied once it may not.
etcd v3 does not tell an expiry from a delete, so ``Change.expired`` is None.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import requests

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
    Target,
    key_held,
)
from discovery.capabilities import Capability
from discovery.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    InvalidValue,
    NameConflict,
    PermissionDenied,
    RegistryClosed,
)
from discovery_etcd._common import OPTIONS, ConnectionSettings, KeySpace, QueuedStream, abort_response
from discovery_etcd._errors import PERMISSION_DENIED, V3_ERRORS, GatewayError, keyed
from discovery_etcd._v3client import V3Client, b64, prefix_end, unb64

__all__ = ["EtcdBackend", "LeaseSession"]

_log = logging.getLogger(__name__)

_LEASE_NOT_FOUND = "requested lease not found"

# How long stop() waits for a keep-alive in flight before leaving it to end on its own.
_STOP_JOIN_SECONDS = 0.2

# Attempts of a session put whose compares failed only because the key changed
# between the write and the read that explains it (a race with another writer).
_PUT_ATTEMPTS = 4
_MAX_TXN_OPS = 128
"""etcd's default ``--max-txn-ops``: the most compares (or puts) one transaction may hold."""

# A lease lost while the server was unreachable keeps its keys for this long
# after the server answers again, so the registry can take them over without
# a delete in between; then it is revoked, freeing what nobody took over.
_ORPHAN_GRACE_SECONDS = 2.0


# Named here because EtcdBackend.list shadows the builtin inside the class.
_Ops = list[dict[str, Any]]
_Found = list[Mapping[str, Any] | None]


def _key_bytes(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


def _key_text(key: bytes) -> str:
    return key.decode("utf-8", "surrogateescape")


def _inner(answer: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    """The first response of a transaction's answer, of the given kind (empty if absent)."""
    responses = answer.get("responses") or [{}]
    inner = responses[0].get(kind) if isinstance(responses[0], dict) else None
    return inner if isinstance(inner, dict) else {}


def _revision(answer: Mapping[str, Any]) -> int:
    header = answer.get("header")
    return int(header.get("revision", 0)) if isinstance(header, dict) else 0


class _Written(NamedTuple):
    """A session's write of a key: its mod_revision and a digest of the value."""

    revision: int
    digest: bytes


class LeaseSession(Session):
    """An etcd lease, kept alive by a background thread at a third of its TTL.

    Its :attr:`id` is the lease id in decimal, as the gateway and ``etcdctl
    lease`` print it. The thread reports the session lost when etcd says the
    lease is gone (TTL 0 on keep-alive) or when keep-alives fail for longer
    than the TTL; a lease lost that way could not be revoked, so it is handed
    to the backend, whose puts take its keys over (see :meth:`EtcdBackend.put`).
    """

    counts_keepalives: ClassVar[bool] = True

    def __init__(self, backend: EtcdBackend, ttl: float) -> None:
        super().__init__(ttl, backend)
        self._backend = backend
        self._client = backend.client
        requested = max(1, math.ceil(ttl))
        with V3_ERRORS.boundary("grant lease"):
            granted = self._client.lease_grant(requested)
        self.lease_id = int(granted["ID"])
        self.granted_ttl = int(granted.get("TTL", requested)) or requested
        self._stopped = threading.Event()
        self._closed = False
        # This session's last write of each key: the next put of the key
        # compares against it, so an update is one round trip.
        self._written: dict[str, _Written] = {}
        self._thread = self._start_thread(f"etcd-keepalive-{self.lease_id}", self._keep_alive)

    @property
    def id(self) -> str:
        return str(self.lease_id)

    def written(self, key: str) -> _Written | None:
        """This session's last write of ``key``, None if it wrote none."""
        with self._lock:
            return self._written.get(key)

    def wrote(self, key: str, written: _Written | None) -> None:
        """Remember (or, with None, forget) this session's last write of ``key``."""
        with self._lock:
            if written is None:
                self._written.pop(key, None)
            else:
                self._written[key] = written

    def _keep_alive(self) -> None:
        interval = max(self.granted_ttl / 3, 0.1)
        last_renewal = time.monotonic()
        wait = interval
        while not self._stopped.wait(wait):
            try:
                remaining = self._client.lease_keepalive(
                    self.lease_id, timeout=min(self._client.settings.timeout, interval)
                )
            except Exception as exc:  # any failure counts; the lease survives it up to its TTL
                if self._stopped.is_set():
                    return
                self._count_keepalives(1, 1)
                if time.monotonic() - last_renewal >= self.granted_ttl:
                    self._lost(f"keep-alive failed for {self.granted_ttl} s: {exc}", revoke=True)
                    return
                _log.debug("lease %s keep-alive failed, retrying: %s", self.lease_id, exc)
                wait = interval / 2
                continue
            if self._stopped.is_set():
                return
            self._count_keepalives(1, 0 if remaining > 0 else 1)
            if remaining <= 0:
                self._lost("the server no longer has the lease", revoke=False)
                return
            last_renewal = time.monotonic()
            wait = interval

    def _lost(self, why: str, *, revoke: bool) -> None:
        _log.warning("etcd lease %s lost: %s", self.lease_id, why)
        self._stopped.set()
        if revoke:
            # The lease may still be alive on the server (a new leader extends
            # leases, a restarted server restores them with a fresh TTL): until
            # it is revoked it holds our keys against the session that replaces
            # it, so the backend lets that session take them over and revokes
            # the lease once the server answers again.
            try:
                self._client.lease_revoke(self.lease_id, timeout=self._backend.close_timeout)
            except GatewayError as exc:
                if _LEASE_NOT_FOUND not in exc.message:
                    self._backend.orphan(self.lease_id)
            except Exception as exc:  # the server is unreachable: the backend retries later
                _log.debug("revoking lost lease %s failed: %s", self.lease_id, exc)
                self._backend.orphan(self.lease_id)
        self.mark_lost()

    def stop(self) -> None:
        """Stop the keep-alive thread without telling the server (the lease expires after its TTL).

        Waits only briefly for a keep-alive in flight: the thread checks the
        stop flag when it returns, and a hung server must not hold up closing.
        """
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(_STOP_JOIN_SECONDS)

    def close(self) -> None:
        """Revoke the lease: etcd deletes all its keys in one revision. Idempotent.

        Waits at most :attr:`EtcdBackend.close_timeout` per endpoint, so
        closing stays prompt while the server hangs.

        Raises:
            BackendUnavailable: etcd could not be reached (the keys expire after the TTL).
            BackendTimeout: etcd did not answer in time.
            BackendError: etcd refused.
        """
        if self._closed:
            return
        self._closed = True
        self.stop()
        try:
            with V3_ERRORS.boundary("revoke lease"):
                try:
                    self._client.lease_revoke(self.lease_id, timeout=self._backend.close_timeout)
                except GatewayError as exc:
                    if _LEASE_NOT_FOUND not in exc.message:
                        raise
        finally:
            self.mark_lost()


class WatchStream(QueuedStream):
    """The changes under a key range, read from one ``POST /v3/watch`` answer by a thread.

    The constructor returns once etcd confirmed the watch (its ``created``
    answer), so the watch is established on the server. The reader thread
    hands each batch to the core's watch itself once it took the stream
    (``deliver_to``): the one wake-up between etcd and the consumer is the
    socket's, as for a bare client.

    Args:
        backend: the backend.
        prefix: the watched prefix, relative to the root (``""`` or ending in ``/``).
        after_revision: deliver changes after this revision; None for changes from now on.

    Raises:
        BackendUnavailable: no endpoint could be reached.
        BackendTimeout: etcd did not confirm the watch within the timeout.
        PermissionDenied: the user's roles do not grant reading the prefix.
        BackendError: etcd refused the watch.
    """

    def __init__(self, backend: EtcdBackend, prefix: str, after_revision: int | None) -> None:
        start = _key_bytes(backend.keys.full(prefix))
        super().__init__(backend.name, f"etcd-watch-{_key_text(start)}", V3_ERRORS)
        self._keys = backend.keys
        self._client = backend.client
        self._prefix = prefix.rstrip("/")
        self._authenticated = bool(backend.settings.user)
        create: dict[str, Any] = {"key": b64(start), "range_end": b64(prefix_end(start))}
        self._range = {k: create[k] for k in ("key", "range_end")}
        if after_revision is not None:
            create["start_revision"] = str(after_revision + 1)
        self._created = threading.Event()
        self._created_ok = False
        self._heard = time.monotonic()
        timeout = backend.settings.timeout
        self._timeout = timeout
        with keyed(V3_ERRORS, "open watch", self._prefix):
            self._http, self._response = backend.client.open_stream("/v3/watch", {"create_request": create})
        self._start()
        if not self._created.wait(timeout):
            self.close()
            raise BackendTimeout(backend.name, f"etcd did not confirm the watch within {timeout:g} s")
        if not self._created_ok:
            try:
                self.next(0)
            finally:
                self.close()
            raise BackendUnavailable(backend.name, "the watch ended before etcd confirmed it")
        start_thread(f"etcd-watch-{_key_text(start)}-check", self._check_member)

    def _check_member(self) -> None:
        """End the stream if its member stops answering: a stopped process keeps the connection open but silent.

        A member cut off from the others ends the watch itself (the watch
        requires a leader); one that is stopped (SIGSTOP, a hung host) does
        not. So while the stream is quiet, the member is asked for its
        status every ``2 x timeout`` (10 s by default). With credentials,
        each round also checks that the user may still read the range.
        """
        endpoint = self._response.url.rsplit("/v3/", 1)[0]
        every = max(2 * self._timeout, 2.0)
        while not self._closed.wait(every / 2):
            if self._authenticated and not self._still_granted():
                return
            if time.monotonic() - self._heard < every:
                continue
            try:
                self._http.post(f"{endpoint}/v3/maintenance/status", json={}, timeout=self._timeout)
            except requests.RequestException as exc:
                if not self._closed.is_set():
                    self._emit(BackendUnavailable(self._backend, f"{endpoint} stopped answering: {exc}", exc))
                    abort_response(self._response)
                return
            self._heard = time.monotonic()

    def _still_granted(self) -> bool:
        """Whether etcd still lets the user read the watched range; if not, end the stream with PermissionDenied.

        etcd 3.4 checks a watch's permission only when it creates it: after
        the grant is revoked, the watch goes on delivering. A serializable
        range read of one key, keys only, is checked against the grant like
        any read and costs the member almost nothing. Other failures are
        left to the member check and the stream itself.
        """
        body = {**self._range, "limit": "1", "keys_only": True, "serializable": True}
        try:
            self._client.call("/v3/kv/range", body, timeout=self._timeout)
        except GatewayError as exc:
            if not isinstance(V3_ERRORS.translate(exc, "check watch permission"), PermissionDenied):
                return True
            if not self._closed.is_set():
                reason = f"watch {self._prefix!r}: the grant to read it was revoked: {exc}"
                self._emit(PermissionDenied(self._backend, self._prefix, reason, exc))
                abort_response(self._response)
            return False
        except Exception as exc:  # the member check and the stream report an unreachable server
            _log.debug("checking the grant of watch %r failed: %s", self._prefix, exc)
        return True

    def _run(self) -> None:
        try:
            for result in V3Client.lines(self._response):
                self._heard = time.monotonic()
                if self._closed.is_set():
                    return
                # A refused watch comes as created and cancelled at once: not confirmed.
                if result.get("canceled"):
                    self._cancelled(result)
                    return
                if result.get("created"):
                    self._created_ok = True
                    self._created.set()
                events = result.get("events")
                if isinstance(events, list) and events:
                    for batch in self._batches(events):
                        if not self._emit(batch):
                            return
            self._emit(BackendUnavailable(self._backend, "etcd ended the watch stream"))
        except Exception as exc:
            if not self._closed.is_set():
                self._emit(V3_ERRORS.translate(exc, "watch stream"))
        finally:
            self._created.set()

    def _cancelled(self, result: Mapping[str, Any]) -> None:
        compact_revision = int(result.get("compact_revision", 0))
        if compact_revision > 0:
            # The stream's position is older than the oldest revision etcd kept.
            self._created_ok = True
            self._emit(Gap("compacted"))
            return
        reason = str(result.get("cancel_reason") or "no reason given")
        if PERMISSION_DENIED in reason:
            self._emit(PermissionDenied(self._backend, self._prefix, f"watch {self._prefix!r}: {reason}"))
            return
        self._emit(BackendError(self._backend, f"etcd cancelled the watch: {reason}"))

    def _batches(self, events: list[Any]) -> list[Batch]:
        """One batch per revision, in order: etcd sends whole revisions in one answer, never split."""
        batches: list[Batch] = []
        changes: list[Change] = []
        revision = 0
        for event in events:
            kv = event.get("kv") if isinstance(event, dict) else None
            if not isinstance(kv, dict):
                continue
            mod_revision = int(kv.get("mod_revision", 0))
            if changes and mod_revision != revision:
                batches.append(Batch(revision, tuple(changes)))
                changes = []
            revision = mod_revision
            key = self._keys.relative(_key_text(unb64(kv.get("key"))))
            if key is None:
                continue
            if event.get("type") == "DELETE":
                changes.append(Change(ChangeKind.DELETE, key, None, 0, mod_revision, None))
            else:
                create_revision = int(kv.get("create_revision", 0))
                changes.append(Change(ChangeKind.PUT, key, unb64(kv.get("value")), create_revision, mod_revision))
        if changes:
            batches.append(Batch(revision, tuple(changes)))
        return batches

    def _abort(self) -> None:
        abort_response(self._response)
        self._http.close()


class EtcdBackend(Backend):
    """etcd through its v3 API: ``etcd://host:2379[,host:2379...]/root?timeout=5``."""

    name: ClassVar[str] = "etcd"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.INTERMEDIATE_VALUES,
            Capability.ATOMIC_SNAPSHOT,
            Capability.RESUME_FROM_REVISION,
            Capability.BATCHED_EXPIRY,
            Capability.NATIVE_EPHEMERAL,
        }
    )
    options: ClassVar[Mapping[str, Option]] = OPTIONS
    default_port: ClassVar[int] = 2379
    # etcd's minimum lease TTL with default raft timing: 1.5 x the election timeout, rounded up.
    min_ttl: ClassVar[float] = 2.0
    # etcd has no key limit of its own, but a put sends its key about a dozen
    # times (the compares on every ancestor and below it): 10 KiB holds the
    # deepest, longest name the core allows (17 segments of 128 four-byte
    # characters, 8.7 KB) under a root of 1.5 KB.
    max_key_bytes: ClassVar[int] = 10_240
    # etcd refuses a request over --max-request-bytes (1.5 MiB by default).
    # Measured on etcd 3.4: a session put with a 10,238-byte key at the
    # deepest depth takes values up to 1,437,500 bytes; 2.6 % kept as margin.
    max_value_bytes: ClassVar[int] = 1_400_000
    # etcd refuses a transaction of more than --max-txn-ops (128) compares or puts; a new
    # key takes two compares (absent, nothing below) besides its ancestors' shared ones.
    max_batch: ClassVar[int] = 60

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self.settings = ConnectionSettings.of(self)
        self.client = V3Client(self.settings)
        self.keys = KeySpace(target.root)
        self._sessions: weakref.WeakSet[LeaseSession] = weakref.WeakSet()
        self._streams: weakref.WeakSet[WatchStream] = weakref.WeakSet()
        self._closed = False
        self._stopping = threading.Event()
        self._orphan_lock = threading.Lock()
        # Leases this backend lost without revoking them, each with the time
        # the server first answered about it since (None: not yet).
        self._orphans: dict[int, float | None] = {}
        self._reaper: threading.Thread | None = None

    @property
    def close_timeout(self) -> float:
        """Seconds a deregistration waits per endpoint: at most 1 s, so closing stays prompt while etcd hangs.

        What is not deregistered in time expires with its lease.
        """
        return min(self.settings.timeout, 1.0)

    def _check_open(self) -> None:
        if self._closed:
            raise RegistryClosed(f"{self.name} backend is closed")

    def _lease_session(self, session: Session) -> LeaseSession:
        return self._own_session(session, LeaseSession)

    def orphan(self, lease_id: int) -> None:
        """Adopt a lease lost without a successful revoke: puts may take its keys over, and it is revoked later."""
        with self._orphan_lock:
            if self._stopping.is_set():
                return
            self._orphans.setdefault(lease_id, None)
            if self._reaper is None:
                self._reaper = start_thread("etcd-lease-reaper", self._reap, self._reaper_died)

    def _is_orphan(self, lease_id: int) -> bool:
        with self._orphan_lock:
            return lease_id in self._orphans

    def _forget_orphan(self, lease_id: int) -> None:
        with self._orphan_lock:
            self._orphans.pop(lease_id, None)

    def _reaper_died(self, _exc: BaseException) -> None:
        # The next orphan starts a new reaper; the leases left still expire by their TTL.
        with self._orphan_lock:
            self._reaper = None

    def _reap(self) -> None:
        """Revoke the orphaned leases once the server answers, each after its keys were taken over or a grace period.

        Ends when no orphan is left or the backend closes.
        """
        while not self._stopping.wait(0.5):
            with self._orphan_lock:
                if not self._orphans:
                    self._reaper = None
                    return
                pending = dict(self._orphans)
            for lease_id, since in pending.items():
                try:
                    self._reap_one(lease_id, since)
                except Exception as exc:  # the server is still unreachable: try again next round
                    _log.debug("revoking orphaned lease %s failed, retrying: %s", lease_id, exc)
        with self._orphan_lock:
            self._reaper = None

    def _reap_one(self, lease_id: int, since: float | None) -> None:
        keys = self.client.lease_keys(lease_id, timeout=self.close_timeout)
        if keys is None:
            self._forget_orphan(lease_id)
            return
        now = time.monotonic()
        if since is None:
            with self._orphan_lock:
                if lease_id in self._orphans:
                    self._orphans[lease_id] = since = now
        if keys and since is not None and now - since < _ORPHAN_GRACE_SECONDS:
            return
        try:
            self.client.lease_revoke(lease_id, timeout=self.close_timeout)
        except GatewayError as exc:
            if _LEASE_NOT_FOUND not in exc.message:
                raise
        _log.info("revoked etcd lease %s, lost while the server was unreachable", lease_id)
        self._forget_orphan(lease_id)

    def list(self, prefix: str) -> Listing:
        """Read every key under ``prefix`` with one range request (one revision).

        Raises:
            BackendUnavailable: no endpoint could be reached.
            BackendTimeout: etcd did not answer in time.
            AuthenticationFailed: etcd refused the credentials.
            PermissionDenied: the user's roles do not grant reading the prefix.
            BackendError: etcd refused the read.
        """
        self._check_open()
        start = _key_bytes(self.keys.full(prefix))
        with keyed(V3_ERRORS, "list", prefix.rstrip("/")):
            answer = self.client.range(start, prefix_end(start))
        records = []
        for kv in answer.get("kvs", ()):
            key = self.keys.relative(_key_text(unb64(kv.get("key"))))
            if key is not None:
                value = unb64(kv.get("value"))
                records.append(Record(key, value, int(kv.get("create_revision", 0)), int(kv.get("mod_revision", 0))))
        return Listing(_revision(answer), tuple(records))

    def watch(self, prefix: str, after_revision: int | None) -> ChangeStream:
        """Open a watch under ``prefix``, established on the server when this returns.

        Args:
            prefix: as for :meth:`list`.
            after_revision: deliver changes after this revision (the stream's
                first item is ``Gap("compacted")`` if etcd no longer has them);
                None for changes from now on.

        Raises:
            BackendUnavailable: no endpoint could be reached.
            BackendTimeout: etcd did not confirm the watch in time.
            PermissionDenied: the user's roles do not grant reading the prefix.
            BackendError: etcd refused the watch.
        """
        self._check_open()
        stream = WatchStream(self, prefix, after_revision)
        self._streams.add(stream)
        return stream

    def open_session(self, ttl: float) -> LeaseSession:
        """Grant a lease of ``ceil(ttl)`` seconds (at least etcd's minimum) and keep it alive.

        Raises:
            BackendUnavailable: no endpoint could be reached.
            BackendError: etcd refused the lease.
        """
        self._check_open()
        session = LeaseSession(self, ttl)
        self._sessions.add(session)
        return session

    def _compare_absent(self, key: str) -> dict[str, Any]:
        return {
            "key": b64(_key_bytes(self.keys.full(key))),
            "target": "CREATE",
            "result": "EQUAL",
            "create_revision": "0",
        }

    def _tree_guards(self, key: str) -> _Ops:
        """The compares that keep keys a tree: no ancestor of ``key`` is a key, and no key lies below it.

        The range compare (etcd 3.3+) holds when no key exists in the range.
        """
        parts = key.split("/")
        guards = [self._compare_absent("/".join(parts[:depth])) for depth in range(1, len(parts))]
        below = _key_bytes(self.keys.full(key + "/"))
        guards.append({**self._compare_absent(key + "/"), "range_end": b64(prefix_end(below))})
        return guards

    def _obstacles(self, key: str) -> tuple[str | None, Mapping[str, Any] | None]:
        """What refused a write of ``key``: a conflicting key (relative) and the key's record, read at one revision.

        Only a failed put pays for this read.
        """
        parts = key.split("/")
        ancestors = ["/".join(parts[:depth]) for depth in range(1, len(parts))]
        below = _key_bytes(self.keys.full(key + "/"))
        reads: _Ops = [
            {"request_range": {"key": b64(_key_bytes(self.keys.full(key)))}},
            {
                "request_range": {
                    "key": b64(below),
                    "range_end": b64(prefix_end(below)),
                    "limit": "1",
                    "keys_only": True,
                }
            },
        ]
        reads += [{"request_range": {"key": b64(_key_bytes(self.keys.full(a))), "keys_only": True}} for a in ancestors]
        with keyed(V3_ERRORS, "put", key):
            answer = self.client.txn([], reads, [])
        found: _Found = []
        for response in answer.get("responses") or ():
            inner = response.get("response_range") if isinstance(response, dict) else None
            kvs = inner.get("kvs") if isinstance(inner, dict) else None
            found.append(kvs[0] if isinstance(kvs, list) and kvs and isinstance(kvs[0], dict) else None)
        found += [None] * (len(reads) - len(found))
        record, descendant, *above = found
        for ancestor, kv in zip(ancestors, above, strict=True):
            if kv is not None:
                return ancestor, record
        if descendant is not None:
            return self.keys.relative(_key_text(unb64(descendant.get("key")))) or key + "/", record
        return None, record

    def put(self, key: str, value: bytes, session: Session | None) -> int:
        """Write a key; with a session, bind it to the session's lease unless another lease holds it.

        One transaction whose compares keep the keys a tree (no key above
        ``key``, none below it) and, with a session, check the key is as the
        session expects: absent, or as its own last write left it. The value
        travels once, in the only put of the transaction. When a compare
        fails, one read finds out why: a name conflict; the key bound to this
        lease (written again, unless it already holds this value: a retried
        write whose answer was lost); the key held by a lease this backend
        lost while etcd was unreachable and could not revoke (taken over:
        etcd restores such a lease with a fresh TTL, which would otherwise
        hold the key against its own registrant); or another registrant.

        Returns:
            The revision of the write.

        Raises:
            NameConflict: a key exists above or below ``key``.
            AlreadyRegistered: with a session, the key exists and is not bound to its lease.
            SessionExpired: the session's lease no longer exists.
            PermissionDenied: the user's roles do not grant writing the key; nothing was written.
            BackendUnavailable: no endpoint could be reached.
            BackendError: the write failed.
        """
        self._check_open()
        full = b64(_key_bytes(self.keys.full(key)))
        guards = self._tree_guards(key)
        if session is None:
            put: dict[str, Any] = {"request_put": {"key": full, "value": b64(value)}}
            for _ in range(_PUT_ATTEMPTS):
                with keyed(V3_ERRORS, "put", key):
                    answer = self.client.txn(guards, [put], [])
                if answer.get("succeeded"):
                    return _revision(answer)
                conflict, _ = self._obstacles(key)
                if conflict is not None:
                    raise NameConflict(key, conflict)
            raise BackendError(self.name, f"put {key!r}: the keys around it changed under each attempt")
        lease = self._lease_session(session)
        digest = hashlib.blake2b(value, digest_size=16).digest()
        put = {"request_put": {"key": full, "value": b64(value), "lease": str(lease.lease_id)}}
        expected = lease.written(key)
        for _ in range(_PUT_ATTEMPTS):
            if expected is None:
                state = self._compare_absent(key)
            else:
                state = {"key": full, "target": "MOD", "result": "EQUAL", "mod_revision": str(expected.revision)}
            # Rewriting the value the key already holds would be a spurious update event.
            unchanged = expected is not None and expected.digest == digest
            with keyed(V3_ERRORS, "put", key):
                answer = self.client.txn([*guards, state], [] if unchanged else [put], [])
            if answer.get("succeeded"):
                revision = expected.revision if unchanged and expected is not None else _revision(answer)
                lease.wrote(key, _Written(revision, digest))
                return revision
            conflict, record = self._obstacles(key)
            if conflict is not None:
                raise NameConflict(key, conflict)
            if record is None:
                expected = None
                continue
            holder = int(record.get("lease", 0))
            current = _Written(
                int(record.get("mod_revision", 0)), hashlib.blake2b(unb64(record.get("value")), digest_size=16).digest()
            )
            if holder == lease.lease_id:
                if current.digest == digest:
                    # Already this value, read at one revision: a retried write whose answer was lost.
                    lease.wrote(key, current)
                    return current.revision
                expected = current
                continue
            if holder and self._is_orphan(holder):
                _log.info("taking %s over from etcd lease %s, lost while the server was unreachable", key, holder)
                expected = _Written(current.revision, b"")
                continue
            raise key_held(key)
        raise BackendError(self.name, f"put {key!r}: the key changed under each attempt")

    def put_many(self, items: Sequence[tuple[str, bytes]], session: Session) -> tuple[int, ...]:
        """Write up to :attr:`max_batch` new keys bound to the session's lease in one transaction, all or none.

        The transaction holds every compare :meth:`put` makes for a new key
        (no ancestor is a key, nothing lies below it, it is absent) and every
        put, so the keys are written at one revision or not at all. A batch
        with a key this session wrote before, too many compares for one
        transaction, or a compare that fails (a key taken, a name conflict)
        goes key by key instead, through :meth:`put`, which finds out why,
        and deletes what it wrote when one fails.

        Raises:
            InvalidValue: more than :attr:`max_batch` items.
            The errors of :meth:`put`.
        """
        if len(items) > self.max_batch:
            raise InvalidValue("items", len(items), f"at most {self.max_batch} keys per batch on {self.name}")
        self._check_open()
        lease = self._lease_session(session)
        if not items or any(lease.written(key) is not None for key, _ in items):
            return super().put_many(items, session)
        compares: dict[tuple[str, str], dict[str, Any]] = {}
        puts = []
        for key, value in items:
            for guard in (*self._tree_guards(key), self._compare_absent(key)):
                compares[(guard["key"], guard.get("range_end", ""))] = guard
            full = b64(_key_bytes(self.keys.full(key)))
            puts.append({"request_put": {"key": full, "value": b64(value), "lease": str(lease.lease_id)}})
        if len(compares) > _MAX_TXN_OPS:
            return super().put_many(items, session)
        with keyed(V3_ERRORS, "put", items[0][0]):
            answer = self.client.txn(list(compares.values()), puts, [])
        if not answer.get("succeeded"):
            return super().put_many(items, session)
        revision = _revision(answer)
        for key, value in items:
            lease.wrote(key, _Written(revision, hashlib.blake2b(value, digest_size=16).digest()))
        return (revision,) * len(items)

    def delete(self, key: str, session: Session | None = None) -> bool:
        """Delete a key; with a session, only while it is bound to the session's lease.

        A deregistration (with a session) waits at most :attr:`close_timeout`
        per endpoint, so closing stays prompt while etcd hangs.

        Returns:
            Whether a key was deleted.

        Raises:
            BackendUnavailable: no endpoint could be reached.
            BackendTimeout: etcd did not answer in time.
            PermissionDenied: the user's roles do not grant deleting the key; nothing was deleted.
            BackendError: the delete failed.
        """
        self._check_open()
        raw = _key_bytes(self.keys.full(key))
        full = b64(raw)
        with keyed(V3_ERRORS, "delete", key):
            if session is None:
                return int(self.client.delete_range(raw).get("deleted", 0)) > 0
            lease = self._lease_session(session)
            answer = self.client.txn(
                [{"key": full, "target": "LEASE", "result": "EQUAL", "lease": str(lease.lease_id)}],
                [{"request_delete_range": {"key": full}}],
                [],
                timeout=self.close_timeout,
            )
        lease.wrote(key, None)
        if not answer.get("succeeded"):
            return False
        return int(_inner(answer, "response_delete_range").get("deleted", 0)) > 0

    def abandon(self) -> None:
        """Stop keep-alives and watches without telling etcd, as a crash would; leases expire after their TTL."""
        for session in list(self._sessions):
            session.stop()
        for stream in list(self._streams):
            stream.close()

    def close(self) -> None:
        """Stop keep-alives (leases not closed by the core expire), watches and the lease reaper. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        self.abandon()
        self.client.close()

    def server_version(self) -> str:
        """etcd's version from ``/version``, ``"unknown"`` if no endpoint answers."""
        return self.client.version()
