"""Registrations: instances kept alive in the background, and brought back after a lost session.

A :class:`Registration` holds the latest data of one instance and the session
(lease) it is bound to. The backend keeps the session alive; when the server
drops it, the registration turns not alive, its listeners hear it, and the
registry's keeper opens a new session and writes the instance again with its
latest data. ``close()`` deregisters at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any

from discovery._background import call_listener
from discovery._codec import encode_instance, instance_key
from discovery._validation import check_address, check_meta, check_port
from discovery.backend import Session
from discovery.errors import RegistryClosed, SessionExpired
from discovery.models import Instance

if TYPE_CHECKING:
    from discovery.registry import Registry

StateListener = Callable[["Registration", bool], None]


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


class Registration:
    """One instance this process keeps registered. Created by :meth:`discovery.Registry.register`."""

    def __init__(
        self,
        registry: Registry,
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
        self._registry = registry
        self._address = address
        self._port = port
        self._meta = meta
        self._revision = 0
        self._session: Session | None = None
        self._alive = False
        self._closed = False
        self._lock = threading.RLock()
        self._listeners: list[StateListener] = []

    @property
    def key(self) -> str:
        """The instance's key below the registry's root."""
        return instance_key(self.service, self.instance_id)

    @property
    def instance(self) -> Instance:
        """The instance as this registration last wrote it."""
        with self._lock:
            return Instance(
                self.service,
                self.instance_id,
                self._address,
                self._port,
                MappingProxyType(dict(self._meta)),
                self._revision,
            )

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
        new_meta = self._meta if meta is UNSET else check_meta(meta, self._registry.settings.meta_limit)
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
            instance = self.instance
        if expired is not None:
            # The server dropped the session: the keeper writes the new data
            # as soon as it has a new one. Told outside our lock, because the
            # registry's listener takes the registry's lock, and the keeper
            # takes the registry's lock before ours.
            expired._set_alive(False)
        return instance

    def _write(self, session: Session) -> None:
        """Write the instance bound to ``session``. Caller holds the lock.

        Raises:
            AlreadyRegistered: another live registrant holds the key.
            BackendError: the write failed.
        """
        value = encode_instance(self._address, self._port, self._meta, session.id)
        self._revision = self._registry.backend.put(self.key, value, session)
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
                self._registry.backend.delete(self.key, session)
            self._closed = True
        self._registry._forget(self)
        self._set_alive(False)

    def __enter__(self) -> Registration:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Registration {self.key!r} alive={self._alive} ttl={self.ttl:g}>"
