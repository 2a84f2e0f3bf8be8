"""The asyncio registry and registration: coroutines over one :class:`discovery.Registry`.

Each coroutine runs the sync method of the same name in a worker thread
(:func:`~discovery.aio._bridge.call`), so validation, the backend and its
errors are exactly those of the sync API; what only reads memory (a
registration's ``alive``, the registry's ``capabilities``) is answered on
the loop.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from discovery._background import call_listener
from discovery._registration import UNSET, Registration
from discovery.aio._bridge import ClosedOnExit, Opening, call, on_loop
from discovery.aio._cache import AsyncServiceCache
from discovery.aio._watch import AsyncWatch
from discovery.cache import ServiceCache
from discovery.capabilities import Capability
from discovery.models import Instance, Snapshot, StatusNode
from discovery.registry import Registry
from discovery.registry import connect as connect_sync

AsyncStateListener = Callable[["AsyncRegistration", bool], object]


def connect(
    url: str | None = None,
    *,
    config: str | os.PathLike[str] | None = None,
    require: Iterable[Capability | str] = (),
    **options: object,
) -> Opening[AsyncRegistry]:
    """Connect to a registry in a worker thread: ``async with connect(url) as reg``, or ``reg = await connect(url)``.

    Args:
        url: as for :func:`discovery.connect`.
        config: as for :func:`discovery.connect`.
        require: capabilities the backend must have.
        **options: core and backend options, as for :func:`discovery.connect`.

    Returns:
        An opening of the registry; leaving its ``async with`` block closes
        the registry (every registration is deregistered).

    Raises:
        UnknownBackend: no installed backend serves the scheme.
        InvalidOption: an unknown option or a bad value.
        CapabilityMissing: the backend lacks a required capability.
        ConfigurationError: the config file is missing or unreadable.
        BackendError: the server could not be reached.
    """

    async def open_registry() -> AsyncRegistry:
        registry = await call(
            functools.partial(connect_sync, url, config=config, require=require, **options), Registry.close
        )
        return AsyncRegistry(registry)

    return Opening(open_registry)


class AsyncRegistry(ClosedOnExit):
    """A connected registry for asyncio code. Use :func:`discovery.aio.connect` to make one.

    An async context manager: leaving it (or ``await reg.close()``) closes
    the registry and deregisters everything it registered.
    """

    def __init__(self, registry: Registry) -> None:
        self.sync = registry
        """The underlying :class:`discovery.Registry` (blocking: call it from a thread)."""

    @property
    def url(self) -> str:
        """The registry's URL."""
        return self.sync.url

    @property
    def capabilities(self) -> frozenset[Capability]:
        """What the backend can do."""
        return self.sync.capabilities

    async def define(self, service: str, min_instances: int = 1) -> None:
        """Declare a service and how many instances it needs to be up. Persistent.

        Raises:
            InvalidName: bad service path.
            InvalidValue: bad ``min_instances``.
            BackendError: the write failed.
        """
        await call(functools.partial(self.sync.define, service, min_instances))

    async def undefine(self, service: str) -> None:
        """Remove a service definition (its instances stay).

        Raises:
            InvalidName: bad service path.
            NotFound: the service is not defined.
            BackendError: the delete failed.
        """
        await call(functools.partial(self.sync.undefine, service))

    async def definitions(self, prefix: str = "") -> dict[str, int]:
        """The defined services under ``prefix`` and their ``min_instances``.

        Raises:
            InvalidName: bad prefix.
            BackendError: the read failed.
        """
        return await call(functools.partial(self.sync.definitions, prefix))

    def register(
        self,
        service: str,
        instance_id: str,
        *,
        address: str | None = None,
        port: int | None = None,
        meta: Mapping[str, Any] | None = None,
        ttl: float | None = None,
    ) -> Opening[AsyncRegistration]:
        """Register a live instance, kept alive in the background: ``r = await reg.register(...)`` or ``async with``.

        Arguments as for :meth:`discovery.Registry.register`. If the awaiting
        task is cancelled, the registration is closed as soon as it is made.

        Returns:
            An opening of the registration; leaving its ``async with`` block deregisters.

        Raises:
            InvalidName: bad service path or instance id.
            InvalidMeta: bad metadata.
            InvalidValue: bad address, port or ttl.
            AlreadyRegistered: another live registrant holds this id.
            RegistryClosed: the registry was closed.
            BackendError: the write failed.
        """
        make = functools.partial(
            self.sync.register, service, instance_id, address=address, port=port, meta=meta, ttl=ttl
        )

        async def open_registration() -> AsyncRegistration:
            return AsyncRegistration(await call(make, Registration.close), asyncio.get_running_loop())

        return Opening(open_registration)

    async def register_many(
        self, instances: Iterable[Instance], *, ttl: float | None = None
    ) -> list[AsyncRegistration]:
        """Register many live instances at once (see :meth:`discovery.Registry.register_many`).

        Returns:
            The registrations, in the order given.

        Raises:
            As :meth:`discovery.Registry.register_many`.
        """
        made = await call(functools.partial(self.sync.register_many, list(instances), ttl=ttl), _close_all)
        loop = asyncio.get_running_loop()
        return [AsyncRegistration(registration, loop) for registration in made]

    async def deregister(self, service: str, instance_id: str) -> None:
        """Remove an instance now, whoever registered it.

        Raises:
            InvalidName: bad service path or instance id.
            NotFound: no such instance.
            BackendError: the delete failed.
        """
        await call(functools.partial(self.sync.deregister, service, instance_id))

    async def instances(self, service: str) -> list[Instance]:
        """The live instances of exactly this service, sorted by id.

        Raises:
            InvalidName: bad service path.
            BackendError: the read failed.
        """
        return await call(functools.partial(self.sync.instances, service))

    async def snapshot(self, prefix: str = "") -> Snapshot:
        """Every instance under ``prefix`` (``""`` for all) at one revision.

        Raises:
            InvalidName: bad prefix.
            BackendError: the read failed.
        """
        return await call(functools.partial(self.sync.snapshot, prefix))

    async def status(self, prefix: str = "") -> StatusNode:
        """The monitoring view of the hierarchy under ``prefix``: up, degraded or down.

        Raises:
            InvalidName: bad prefix.
            BackendError: the read failed.
        """
        return await call(functools.partial(self.sync.status, prefix))

    def watch(self, prefix: str = "", *, since: int | None = None, buffer_size: int | None = None) -> AsyncWatch:
        """Watch every change to the instances under ``prefix``: ``async for event in reg.watch(prefix)``.

        Arguments as for :meth:`discovery.Registry.watch`. The stream opens
        in a worker thread on first use (``async with``, ``await``, or the
        first ``async for`` step), where the errors below are raised.

        Returns:
            The watch: an async iterator and an async context manager.

        Raises:
            InvalidName: bad prefix.
            InvalidValue: bad ``since`` or buffer size.
            RegistryClosed: the registry was closed.
            BackendError: the stream could not be opened.
        """
        return AsyncWatch(functools.partial(self.sync.watch, prefix, since=since, buffer_size=buffer_size), prefix)

    def cache(self, prefix: str = "", *, buffer_size: int | None = None) -> Opening[AsyncServiceCache]:
        """Keep every instance under ``prefix`` in memory: ``cache = await reg.cache(prefix)`` or ``async with``.

        See :meth:`discovery.Registry.cache`; the cache's first listing is in
        memory when the await returns.

        Returns:
            An opening of the cache; leaving its ``async with`` block closes it.

        Raises:
            InvalidName: bad prefix.
            InvalidValue: bad buffer size.
            RegistryClosed: the registry was closed.
            BackendError: the watch could not be opened.
        """
        make = functools.partial(self.sync.cache, prefix, buffer_size=buffer_size)

        async def open_cache() -> AsyncServiceCache:
            return AsyncServiceCache(await call(make, ServiceCache.close))

        return Opening(open_cache)

    async def close(self) -> None:
        """Close watches, deregister every registration at once, release the backend. Idempotent."""
        await call(self.sync.close)

    def __repr__(self) -> str:
        return f"<AsyncRegistry {self.url!r} backend={self.sync.backend.name}>"


class AsyncRegistration(ClosedOnExit):
    """One instance this process keeps registered, for asyncio code. Made by :meth:`AsyncRegistry.register`.

    An async context manager: leaving it (or ``await registration.close()``) deregisters.
    """

    def __init__(self, registration: Registration, loop: asyncio.AbstractEventLoop) -> None:
        self.sync = registration
        """The underlying :class:`discovery.Registration` (blocking: call it from a thread)."""
        self._loop = loop

    @property
    def service(self) -> str:
        """The service path."""
        return self.sync.service

    @property
    def instance_id(self) -> str:
        """The instance id."""
        return self.sync.instance_id

    @property
    def ttl(self) -> float:
        """Seconds after which the instance expires if this process dies."""
        return self.sync.ttl

    @property
    def key(self) -> str:
        """The instance's key below the registry's root."""
        return self.sync.key

    @property
    def instance(self) -> Instance:
        """The instance as this registration last wrote it."""
        return self.sync.instance

    @property
    def alive(self) -> bool:
        """Whether the instance is registered on the server right now."""
        return self.sync.alive

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (or the registry closed)."""
        return self.sync.closed

    def on_change(self, listener: AsyncStateListener) -> None:
        """Call ``listener(registration, alive)`` on the event loop whenever :attr:`alive` changes.

        An exception the listener raises is logged with its traceback and
        ignored, as in the sync API.
        """

        def changed(_: Registration, alive: bool) -> None:
            on_loop(self._loop, call_listener, f"registration {self.key}", listener, self, alive)

        self.sync.on_change(changed)

    async def update(
        self,
        *,
        meta: Mapping[str, Any] | None = UNSET,
        address: str | None = UNSET,
        port: int | None = UNSET,
    ) -> Instance:
        """Change the live instance: watchers see one UPDATED event. See :meth:`discovery.Registration.update`.

        Returns:
            The instance as written.

        Raises:
            InvalidMeta: bad metadata; nothing is written.
            InvalidValue: bad address or port; nothing is written.
            RegistryClosed: the registration was closed.
            BackendError: the write failed; the registration keeps its old data.
        """
        return await call(functools.partial(self.sync.update, meta=meta, address=address, port=port))

    async def close(self) -> None:
        """Deregister now: watchers see REMOVED at once, not after the ttl. Idempotent.

        Raises:
            BackendError: the server could not be told; the registration stays
                open, so calling close() again retries.
        """
        await call(self.sync.close)

    def __repr__(self) -> str:
        return f"<AsyncRegistration {self.key!r} alive={self.alive} ttl={self.ttl:g}>"


def _close_all(registrations: list[Registration]) -> None:
    """Deregister what a cancelled bulk registration made."""
    for registration in registrations:
        registration.close()
