"""Registrations: instances kept alive in the background, and brought back after a lost session.

A :class:`Registration` holds the latest data of one instance and the session
(lease) it is bound to. :class:`Registrations` is the registry's set of them:
one session per ttl, shared by the registrations of that ttl, and a keeper
thread. The backend keeps a session alive; when the server drops it (or one
key of it, on etcd v2), the registrations on it turn not alive, their
listeners hear it, and the keeper opens a new session and writes each
instance again with its latest data. ``close()`` deregisters at once. The two
classes are one unit and only this module touches their private parts. Lock
order: the set's lock is always taken before a registration's.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Any

from discovery._background import RateLimitedLog, call_listener, start_thread
from discovery._codec import encode_instance, instance_key
from discovery._validation import check_address, check_meta, check_port
from discovery.backend import Backend, Session
from discovery.errors import AlreadyRegistered, BackendError, RegistryClosed, SessionExpired
from discovery.models import Instance

_log = logging.getLogger("discovery.registry")
_KEEPER_RETRY_SECONDS = 0.2
_REPEAT_LOG_SECONDS = 30.0

StateListener = Callable[["Registration", bool], None]


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


class Registration:
    """One instance this process keeps registered. Created by :meth:`discovery.Registry.register`."""

    def __init__(
        self,
        owner: Registrations,
        service: str,
        instance_id: str,
        address: str | None,
        port: int | None,
        meta: dict[str, Any],
        ttl: float,
    ) -> None:
        self.service = service
        self.instance_id = instance_id
        self.ttl = ttl
        self._owner = owner
        self._address = address
        self._port = port
        self._meta = meta
        self._revision = 0
        self._session: Session | None = None
        self._alive = False
        self._closed = False
        self._lock = threading.RLock()
        self._listeners: list[StateListener] = []
        self._publish()

    @property
    def key(self) -> str:
        """The instance's key below the registry's root."""
        return instance_key(self.service, self.instance_id)

    @property
    def instance(self) -> Instance:
        """The instance as this registration last wrote it (or will write it, after a lost session). Never blocks."""
        return self._published

    def _publish(self) -> None:
        """Make the current data what :attr:`instance` returns. Caller holds the lock."""
        meta = MappingProxyType(dict(self._meta))
        self._published = Instance(self.service, self.instance_id, self._address, self._port, meta, self._revision)

    @property
    def alive(self) -> bool:
        """Whether the instance is registered on the server right now."""
        return self._alive

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def on_change(self, listener: StateListener) -> None:
        """Call ``listener(registration, alive)`` from a background thread whenever :attr:`alive` changes.

        An exception the listener raises is logged with its traceback and
        ignored: it never stops the keep-alive or the re-registration.
        """
        with self._lock:
            self._listeners.append(listener)

    def update(
        self,
        *,
        meta: Mapping[str, Any] | None = UNSET,
        address: str | None = UNSET,
        port: int | None = UNSET,
    ) -> Instance:
        """Change the live instance: watchers see one UPDATED event.

        Args:
            meta: new metadata (replaces the old), if given.
            address: new address, if given.
            port: new port, if given.

        Returns:
            The instance as written.

        Raises:
            InvalidMeta: bad metadata; nothing is written.
            InvalidValue: bad address or port; nothing is written.
            RegistryClosed: the registration was closed.
            BackendError: the write failed; the registration keeps its old data.
        """
        new_meta = self._meta if meta is UNSET else check_meta(meta, self._owner.meta_limit)
        new_address = self._address if address is UNSET else check_address(address)
        new_port = self._port if port is UNSET else check_port(port)
        expired: Session | None = None
        with self._lock:
            if self._closed:
                raise RegistryClosed(f"registration {self.key!r} is closed")
            old = (self._address, self._port, self._meta)
            self._address, self._port, self._meta = new_address, new_port, new_meta
            session = self._session
            try:
                if session is not None and session.alive:
                    self._write(session)
            except SessionExpired:
                expired = session
            except BaseException:
                self._address, self._port, self._meta = old
                raise
            self._publish()
            instance = self.instance
        if expired is not None:
            # The server dropped the session: the keeper writes the new data
            # as soon as it has a new one. Told outside our lock, because the
            # set's listener takes the set's lock, and the keeper takes the
            # set's lock before ours.
            expired.mark_lost()
        return instance

    def _write(self, session: Session) -> None:
        """Write the instance bound to ``session``. Caller holds the lock.

        Raises:
            AlreadyRegistered: another live registrant holds the key.
            BackendError: the write failed.
        """
        self._written(session, self._owner.backend.put(self.key, self._value(), session))

    def _value(self) -> bytes:
        return encode_instance(self._address, self._port, self._meta)

    def _written(self, session: Session, revision: int) -> None:
        """The instance was written bound to ``session`` at ``revision``. Caller holds the lock."""
        self._revision = revision
        self._publish()
        self._session = session
        self._set_alive(True)

    def _set_alive(self, alive: bool) -> None:
        with self._lock:
            if alive == self._alive:
                return
            self._alive = alive
            listeners = list(self._listeners)
        for listener in listeners:
            call_listener(f"registration {self.key}", listener, self, alive)

    def _session_lost(self, session: Session) -> None:
        with self._lock:
            if self._session is session:
                self._set_alive(False)

    def close(self) -> None:
        """Deregister now: watchers see REMOVED at once, not after the ttl. Idempotent.

        Raises:
            BackendError: the server could not be told; the registration stays
                open (and alive in the background), so calling close() again
                retries.
        """
        with self._lock:
            if self._closed:
                return
            session = self._session
            if session is not None and session.alive:
                self._owner.backend.delete(self.key, session)
            self._closed = True
        self._owner._forget(self)
        self._set_alive(False)

    def _end(self) -> None:
        """Closed with its registry: not alive, never written again (the session's close removes the key)."""
        with self._lock:
            self._closed = True
        self._set_alive(False)

    def __enter__(self) -> Registration:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Registration {self.key!r} alive={self._alive} ttl={self.ttl:g}>"


@dataclass(frozen=True)
class RegistrationStats:
    """The registrations of one registry and their keep-alives, read at once (for :mod:`discovery.metrics`).

    Attributes:
        registered: registrations held open, alive or waiting to be written again.
        alive: those registered on the server right now.
        reregistrations: registrations written again after the server
            dropped their session (or, on etcd v2, their key), since the registry began.
        keepalive_requests: keep-alive requests the backend sent for the
            sessions of this registry, past ones included; None when its
            sessions do not count them (see ``Session.counts_keepalives``)
            or none was opened yet.
        keepalive_failures: of those, the ones that did not renew (no
            answer, an error, or the session or key found gone); None as above.
    """

    registered: int
    alive: int
    reregistrations: int
    keepalive_requests: int | None
    keepalive_failures: int | None


class Registrations:
    """The instances one registry keeps registered: a session per ttl and a keeper that restores lost ones.

    Args:
        backend: the store the instances are written to.
        meta_limit: the largest encoded metadata an update may carry, in bytes.
    """

    def __init__(self, backend: Backend, meta_limit: int) -> None:
        self.backend = backend
        self.meta_limit = meta_limit
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._sessions: dict[float, Session] = {}
        self._registrations: dict[str, Registration] = {}
        self._keeper: threading.Thread | None = None
        self._closed = False
        self._warnings = RateLimitedLog(_log, _REPEAT_LOG_SECONDS)
        self._reregistrations = 0
        # Keep-alives of the sessions replaced so far, so the totals never go
        # back. Its own lock, never held over a server call (the set's lock
        # is, during writes), makes a replacement and a read of the totals atomic.
        self._stats_lock = threading.Lock()
        self._past_keepalives = (0, 0)
        self._keepalives_counted = False

    def register(
        self,
        service: str,
        instance_id: str,
        address: str | None,
        port: int | None,
        meta: dict[str, Any],
        ttl: float,
    ) -> Registration:
        """Write an instance bound to the session of ``ttl`` and keep it registered; input already checked.

        An id already held with the same ttl is updated in place; with
        another ttl it is closed and registered anew.

        Raises:
            RegistryClosed: the set was closed.
            AlreadyRegistered: another live registrant holds this id.
            BackendError: the write failed.
        """
        with self._lock:
            if self._closed:
                raise RegistryClosed("registry is closed")
            existing = self._registrations.get(instance_key(service, instance_id))
            if existing is not None and existing.ttl == ttl:
                existing.update(meta=meta, address=address, port=port)
                return existing
            if existing is not None:
                existing.close()
            registration = Registration(self, service, instance_id, address, port, meta, ttl)
            with registration._lock:
                try:
                    registration._write(self._session(ttl))
                except SessionExpired:
                    # The cached session died behind our back: mark it, retry once on a new one.
                    self._sessions[ttl].mark_lost()
                    registration._write(self._session(ttl))
            self._registrations[registration.key] = registration
            self._start_keeper()
            return registration

    def register_many(self, instances: Sequence[Instance], ttl: float) -> list[Registration]:
        """Write new instances bound to the session of ``ttl``, ``max_batch`` per request; input already checked.

        Ids this set already holds are registered one by one, as
        :meth:`register` does (updated in place). The rest go in batches of
        the backend's ``max_batch``, each written all or none
        (:meth:`Backend.put_many`). A failed batch raises; the batches before
        it stay registered.

        Raises:
            RegistryClosed: the set was closed.
            AlreadyRegistered: another live registrant holds an id of the failed batch.
            BackendError: a write failed.
        """
        with self._lock:
            if self._closed:
                raise RegistryClosed("registry is closed")
            made: dict[str, Registration] = {}
            fresh: list[Registration] = []
            for instance in instances:
                key = instance_key(instance.service, instance.id)
                if key in self._registrations:
                    made[key] = self.register(
                        instance.service, instance.id, instance.address, instance.port, dict(instance.meta), ttl
                    )
                else:
                    registration = Registration(
                        self, instance.service, instance.id, instance.address, instance.port, dict(instance.meta), ttl
                    )
                    fresh.append(registration)
                    made[key] = registration
            size = max(1, self.backend.max_batch)
            for start in range(0, len(fresh), size):
                batch = fresh[start : start + size]
                try:
                    self._write_batch(batch, self._session(ttl))
                except SessionExpired:
                    # The cached session died behind our back: mark it, retry once on a new one.
                    self._sessions[ttl].mark_lost()
                    self._write_batch(batch, self._session(ttl))
                for registration in batch:
                    self._registrations[registration.key] = registration
            if fresh:
                self._start_keeper()
            return [made[instance_key(i.service, i.id)] for i in instances]

    def _write_batch(self, batch: list[Registration], session: Session) -> None:
        """Write ``batch`` in one :meth:`Backend.put_many`. Caller holds the set's lock (the registrations are new)."""
        revisions = self.backend.put_many([(r.key, r._value()) for r in batch], session)
        for registration, revision in zip(batch, revisions, strict=True):
            with registration._lock:
                registration._written(session, revision)

    def get(self, key: str) -> Registration | None:
        """The registration of ``key``, if this set holds it."""
        with self._lock:
            return self._registrations.get(key)

    def all(self) -> list[Registration]:
        """Every registration held."""
        with self._lock:
            return list(self._registrations.values())

    @property
    def sessions(self) -> tuple[Session, ...]:
        """The sessions (leases) held, one per ttl in use."""
        with self._lock:
            return tuple(self._sessions.values())

    def stats(self) -> RegistrationStats:
        """How many registrations are held and alive, how many were restored, and the sessions' keep-alives."""
        # Not under the set's lock, which a write to the server may hold: a
        # scrape must not wait on the network. Copying a dict's values is atomic.
        registrations = tuple(self._registrations.values())
        with self._stats_lock:
            requests, failures = self._past_keepalives
            for session in self._sessions.values():
                requests += session.keepalive_requests
                failures += session.keepalive_failures
            counted = self._keepalives_counted
        reregistrations = self._reregistrations
        return RegistrationStats(
            len(registrations),
            sum(1 for registration in registrations if registration.alive),
            reregistrations,
            requests if counted else None,
            failures if counted else None,
        )

    def close(self) -> None:
        """Stop the keeper, end every registration and close the sessions (their keys go at once). Idempotent."""
        with self._wake:
            if self._closed:
                return
            self._closed = True
            self._wake.notify_all()
            sessions = list(self._sessions.values())
            registrations = list(self._registrations.values())
            self._registrations.clear()
        for registration in registrations:
            registration._end()
        for session in sessions:
            try:
                session.close()
            except BackendError as exc:
                _log.warning("could not end session %s: %s", session.id, exc)

    def _forget(self, registration: Registration) -> None:
        with self._lock:
            if self._registrations.get(registration.key) is registration:
                del self._registrations[registration.key]

    def _session(self, ttl: float) -> Session:
        """The live session for ``ttl``, opened if needed. Caller holds the lock."""
        session = self._sessions.get(ttl)
        if session is None or not session.alive:
            old = session
            session = self.backend.open_session(ttl)
            session.add_listener(functools.partial(self._session_changed, session))
            session.add_key_listener(functools.partial(self._key_lost, session))
            with self._stats_lock:
                if old is not None:
                    requests, failures = self._past_keepalives
                    self._past_keepalives = (requests + old.keepalive_requests, failures + old.keepalive_failures)
                self._keepalives_counted = self._keepalives_counted or session.counts_keepalives
                self._sessions[ttl] = session
        return session

    def _session_changed(self, session: Session, alive: bool) -> None:
        if alive:
            return
        for registration in self.all():
            registration._session_lost(session)
        with self._wake:
            self._wake.notify_all()

    def _key_lost(self, session: Session, key: str) -> None:
        registration = self.get(key)
        if registration is not None:
            registration._session_lost(session)
            with self._wake:
                self._wake.notify_all()

    def _start_keeper(self) -> None:
        """Start the keeper thread, or a new one if the last died. Caller holds the lock."""
        if self._keeper is None or not self._keeper.is_alive():
            self._keeper = start_thread("discovery-keeper", self._keep, self._keeper_died)

    def _keeper_died(self, exc: BaseException) -> None:
        # Only a BaseException that is not an Exception gets here (each round
        # catches the rest); the registrations still need a keeper.
        with self._lock:
            if not self._closed:
                self._start_keeper()

    def _keep(self) -> None:
        """Re-create registrations whose session the server dropped, with their latest data."""
        while True:
            with self._wake:
                if self._closed:
                    return
                lost = [r for r in self._registrations.values() if not r.alive and not r.closed]
                if not lost:
                    self._wake.wait(1.0)
                    continue
            for registration in lost:
                try:
                    self._restore(registration)
                except Exception:
                    # A bug must not end re-registration for every instance of this registry.
                    _log.exception("re-registering %s failed unexpectedly; retrying", registration.key)
            with self._wake:
                if not self._closed:
                    self._wake.wait(_KEEPER_RETRY_SECONDS)

    def _restore(self, registration: Registration) -> None:
        """Write one lost registration again on a live session; failures are logged, rate-limited."""
        try:
            with self._lock, registration._lock:
                if registration.closed or registration.alive or self._closed:
                    return
                registration._write(self._session(registration.ttl))
                self._reregistrations += 1
            self._warnings.clear(registration.key)
            _log.info("re-registered %s", registration.key)
        except AlreadyRegistered:
            self._warnings.warn(registration.key, "cannot re-register %s: held by another registrant", registration.key)
        except SessionExpired:
            with self._lock:
                session = self._sessions.get(registration.ttl)
            if session is not None:
                session.mark_lost()
        except BackendError as exc:
            self._warnings.info(registration.key, "re-registering %s failed: %s", registration.key, exc)
