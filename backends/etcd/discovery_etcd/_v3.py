"""The etcd v3 backend (``etcd://``): leases, transactions and watches over etcd's JSON gateway.

Client choice: our own thin client (:mod:`discovery_etcd._v3client`) over
requests and the gateway, not etcd3gw, whose watch ignores the
``canceled``/``compact_revision`` answer and dies silently on errors, nor
python-etcd3, which is unmaintained and breaks on current protobuf. A
session is a lease kept alive by a background thread at a third of its
TTL; instances are keys put under it by a transaction that refuses a key
bound to another lease, so a lease revoked or expired removes all its keys
in one revision. A listing is one range read at one revision. The watch
reads ``POST /v3/watch`` line by line in a thread: it returns once etcd
confirmed the watch (``created``), resumes from ``after_revision + 1``,
delivers the events of each revision as one batch (a watch answer always
holds whole revisions), reports a watch cancelled by compaction as
``Gap("compacted")`` and a broken connection as ``BackendUnavailable``.
etcd v3 does not tell an expiry from a delete, so ``Change.expired`` is None.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

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
    DiscoveryError,
    NameConflict,
    RegistryClosed,
)
from discovery_etcd._common import OPTIONS, KeySpace, QueuedStream, Settings, abort_response
from discovery_etcd._errors import GatewayError, translate_v3
from discovery_etcd._v3client import V3Client, b64, prefix_end, unb64

__all__ = ["EtcdBackend", "LeaseSession"]

_log = logging.getLogger(__name__)

_LEASE_NOT_FOUND = "requested lease not found"

# How long stop() waits for a keep-alive in flight before leaving it to end on its own.
_STOP_JOIN_SECONDS = 0.2

# Attempts of a session put whose compares failed only because the key changed
# between the write and the read that explains it (a race with another writer).
_PUT_ATTEMPTS = 4

# A lease lost while the server was unreachable keeps its keys for this long
# after the server answers again, so the registry can take them over without
# a delete in between; then it is revoked, freeing what nobody took over.
_ORPHAN_GRACE_SECONDS = 2.0


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


class LeaseSession(Session):
    """An etcd lease, kept alive by a background thread at a third of its TTL.

    Its :attr:`id` is the lease id in decimal, as the gateway and ``etcdctl
    lease`` print it. The thread reports the session lost when etcd says the
    lease is gone (TTL 0 on keep-alive) or when keep-alives fail for longer
    than the TTL; a lease lost that way could not be revoked, so it is handed
    to the backend, whose puts take its keys over (see :meth:`EtcdBackend.put`).
    """

    def __init__(self, backend: EtcdBackend, ttl: float) -> None:
        super().__init__(ttl)
        self._backend = backend
        self._client = backend.client
        requested = max(1, math.ceil(ttl))
        with backend.boundary("grant lease"):
            granted = self._client.lease_grant(requested)
        self.lease_id = int(granted["ID"])
        self.granted_ttl = int(granted.get("TTL", requested)) or requested
        self._stopped = threading.Event()
        self._closed = False
        # key -> mod_revision of this session's last write of it: the next put
        # of the key compares against it, so an update is one round trip.
        self._written: dict[str, int] = {}
        self._thread = self._start_thread(f"etcd-keepalive-{self.lease_id}", self._keep_alive)

    @property
    def id(self) -> str:
        return str(self.lease_id)

    def written(self, key: str) -> int | None:
        """The mod_revision of this session's last write of ``key``, None if it wrote none."""
        with self._lock:
            return self._written.get(key)

    def wrote(self, key: str, revision: int | None) -> None:
        """Remember (or, with None, forget) this session's last write of ``key``."""
        with self._lock:
            if revision is None:
                self._written.pop(key, None)
            else:
                self._written[key] = revision

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
                if time.monotonic() - last_renewal >= self.granted_ttl:
                    self._lost(f"keep-alive failed for {self.granted_ttl} s: {exc}", revoke=True)
                    return
                _log.debug("lease %s keep-alive failed, retrying: %s", self.lease_id, exc)
                wait = interval / 2
                continue
            if self._stopped.is_set():
                return
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
        self._set_alive(False)

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
            with self._backend.boundary("revoke lease"):
                try:
                    self._client.lease_revoke(self.lease_id, timeout=self._backend.close_timeout)
                except GatewayError as exc:
                    if _LEASE_NOT_FOUND not in exc.message:
                        raise
        finally:
            self._set_alive(False)


class WatchStream(QueuedStream):
    """The changes under a key range, read from one ``POST /v3/watch`` answer by a thread.

    The constructor returns once etcd confirmed the watch (its ``created``
    answer), so the watch is established on the server.

    Raises:
        BackendUnavailable: no endpoint could be reached.
        BackendTimeout: etcd did not confirm the watch within the timeout.
        BackendError: etcd refused the watch.
    """

    def __init__(self, backend: EtcdBackend, start: bytes, after_revision: int | None) -> None:
        super().__init__(backend.name, f"etcd-watch-{_key_text(start)}", translate_v3)
        self._keys = backend.keys
        create: dict[str, Any] = {"key": b64(start), "range_end": b64(prefix_end(start))}
        if after_revision is not None:
            create["start_revision"] = str(after_revision + 1)
        self._created = threading.Event()
        self._created_ok = False
        self._heard = time.monotonic()
        timeout = backend.settings.timeout
        self._timeout = timeout
        with backend.boundary("open watch"):
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
        status every ``2 x timeout`` (10 s by default).
        """
        endpoint = self._response.url.rsplit("/v3/", 1)[0]
        every = max(2 * self._timeout, 2.0)
        while not self._closed.wait(every / 2):
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

    def _run(self) -> None:
        try:
            for result in V3Client.lines(self._response):
                self._heard = time.monotonic()
                if self._closed.is_set():
                    return
                if result.get("created"):
                    self._created_ok = True
                    self._created.set()
                if result.get("canceled"):
                    self._cancelled(result)
                    return
                events = result.get("events")
                if isinstance(events, list) and events:
                    for batch in self._batches(events):
                        if not self._emit(batch):
                            return
            self._emit(BackendUnavailable(self._backend, "etcd ended the watch stream"))
        except Exception as exc:
            if not self._closed.is_set():
                self._emit(translate_v3(exc, self._backend, "watch stream"))
        finally:
            self._created.set()

    def _cancelled(self, result: Mapping[str, Any]) -> None:
        compact_revision = int(result.get("compact_revision", 0))
        if compact_revision > 0:
            # The stream's position is older than the oldest revision etcd kept.
            self._created_ok = True
            self._emit(Gap("compacted"))
            return
        reason = result.get("cancel_reason") or "no reason given"
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

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self.settings = Settings.from_target(target)
        self.client = V3Client(self.settings)
        self.keys = KeySpace(target.root)
        self._sessions: weakref.WeakSet[LeaseSession] = weakref.WeakSet()
        self._streams: weakref.WeakSet[WatchStream] = weakref.WeakSet()
        self._closed = False

    @contextlib.contextmanager
    def boundary(self, action: str) -> Iterator[None]:
        """Translate client exceptions raised inside the block into discovery errors (``raise ... from``)."""
        try:
            yield
        except DiscoveryError:
            raise
        except Exception as exc:
            raise translate_v3(exc, self.name, action) from exc

    def _check_open(self) -> None:
        if self._closed:
            raise RegistryClosed(f"{self.name} backend is closed")

    def _lease(self, session: Session) -> int:
        if not isinstance(session, LeaseSession):
            raise TypeError(f"session {session!r} was not opened by an etcd backend")
        return session.lease_id

    def list(self, prefix: str) -> Listing:
        """Read every key under ``prefix`` with one range request (one revision).

        Raises:
            BackendUnavailable: no endpoint could be reached.
            BackendTimeout: etcd did not answer in time.
            AuthenticationFailed: etcd refused the credentials.
            BackendError: etcd refused the read.
        """
        self._check_open()
        start = _key_bytes(self.keys.full(prefix))
        with self.boundary("list"):
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
            BackendError: etcd refused the watch.
        """
        self._check_open()
        stream = WatchStream(self, _key_bytes(self.keys.full(prefix)), after_revision)
        self._streams.add(stream)
        return stream

    def open_session(self, ttl: float) -> Session:
        """Grant a lease of ``ceil(ttl)`` seconds (at least etcd's minimum) and keep it alive.

        Raises:
            BackendUnavailable: no endpoint could be reached.
            BackendError: etcd refused the lease.
        """
        self._check_open()
        session = LeaseSession(self, ttl)
        self._sessions.add(session)
        return session

    def put(self, key: str, value: bytes, session: Session | None) -> int:
        """Write a key; with a session, bind it to the session's lease unless another lease holds it.

        One transaction: if the key is absent, put it with the lease; else if
        its lease is this one, put it again, unless it already holds this
        value (a retried write: nothing to do); else refuse.

        Returns:
            The revision of the write.

        Raises:
            AlreadyRegistered: with a session, the key exists and is not bound to its lease.
            SessionExpired: the session's lease no longer exists.
            BackendUnavailable: no endpoint could be reached.
            BackendError: the write failed.
        """
        self._check_open()
        raw = _key_bytes(self.keys.full(key))
        full = b64(raw)
        with self.boundary("put"):
            if session is None:
                return _revision(self.client.put(raw, value))
            lease = str(self._lease(session))
            put = {"request_put": {"key": full, "value": b64(value), "lease": lease}}
            ours = {"key": full, "target": "LEASE", "result": "EQUAL", "lease": lease}
            same = {"key": full, "target": "VALUE", "result": "EQUAL", "value": b64(value)}
            answer = self.client.txn(
                [{"key": full, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
                [put],
                [
                    {
                        "request_txn": {
                            "compare": [ours, same],
                            "success": [{"request_range": {"key": full}}],
                            "failure": [{"request_txn": {"compare": [ours], "success": [put], "failure": []}}],
                        }
                    }
                ],
            )
        if answer.get("succeeded"):
            return _revision(answer)
        unchanged = _inner(answer, "response_txn")
        if unchanged.get("succeeded"):
            # Already bound to this lease with this value (a retried write
            # whose answer was lost): writing again would be a spurious update.
            kvs = _inner(unchanged, "response_range").get("kvs") or [{}]
            return int(kvs[0].get("mod_revision", 0)) or _revision(answer)
        if _inner(unchanged, "response_txn").get("succeeded"):
            return _revision(answer)
        raise key_held(key)

    def delete(self, key: str, session: Session | None = None) -> bool:
        """Delete a key; with a session, only while it is bound to the session's lease.

        Returns:
            Whether a key was deleted.

        Raises:
            BackendUnavailable: no endpoint could be reached.
            BackendError: the delete failed.
        """
        self._check_open()
        raw = _key_bytes(self.keys.full(key))
        full = b64(raw)
        with self.boundary("delete"):
            if session is None:
                return int(self.client.delete_range(raw).get("deleted", 0)) > 0
            answer = self.client.txn(
                [{"key": full, "target": "LEASE", "result": "EQUAL", "lease": str(self._lease(session))}],
                [{"request_delete_range": {"key": full}}],
                [],
            )
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
        """Stop keep-alives (leases not closed by the core expire) and watches, drop connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.abandon()
        self.client.close()

    def server_version(self) -> str:
        """etcd's version from ``/version``, ``"unknown"`` if no endpoint answers."""
        return self.client.version()
