"""The registry: the user-facing API over one backend.

:func:`connect` resolves the URL and options (see :mod:`discovery._config`),
loads the backend plugin for the scheme and returns a :class:`Registry`.
Every call validates its input before touching the store. Registrations
share one session (lease) per ttl; a keeper thread re-creates them after the
server drops a session (both in :mod:`discovery._registration`). Watches are built by the core's watch engine, so
every backend keeps the same event contract.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from discovery._codec import (
    decode_min_instances,
    definition_key,
    encode_definition,
    instance_key,
    key_prefix,
    parse_key,
)
from discovery._config import Settings, resolve
from discovery._registration import Registration, Registrations, RegistrationStats
from discovery._secrets import redact_url
from discovery._status import build_status
from discovery._validation import (
    MAX_REVISION,
    check_address,
    check_fits,
    check_instance_id,
    check_meta,
    check_min_instances,
    check_port,
    check_prefix,
    check_service,
    check_ttl,
)
from discovery._watch import Watch, snapshot_of
from discovery.backend import Backend, Session
from discovery.cache import ServiceCache
from discovery.capabilities import Capability
from discovery.errors import (
    CapabilityMissing,
    InvalidOption,
    InvalidValue,
    NotFound,
    RegistryClosed,
)
from discovery.models import Instance, Snapshot, StatusNode


def connect(
    url: str | None = None,
    *,
    config: str | os.PathLike[str] | None = None,
    require: Iterable[Capability | str] = (),
    **options: object,
) -> Registry:
    """Connect to a registry.

    Args:
        url: ``memory://``, ``etcd://h1:2379,h2:2379/root``, ``etcd2://...``,
            ``zookeeper://...`` (alias ``zk://``). Default: ``$DISCOVERY_URL``,
            else ``url`` in the config file's ``[registry]`` table, else ``memory://``.
        config: the config file; default ``$DISCOVERY_CONFIG``, else ``./discovery.toml`` if present.
        require: capabilities the backend must have.
        **options: core and backend options; they win over the URL's query
            string, which wins over the config file.

    Returns:
        A connected registry (a context manager).

    Raises:
        UnknownBackend: no installed backend serves the scheme.
        InvalidOption: an unknown option or a bad value.
        CapabilityMissing: the backend lacks a required capability.
        ConfigurationError: the config file is missing or unreadable.
        BackendError: the server could not be reached.
    """
    resolved = resolve(url, config, options)
    wanted = set()
    for item in require:
        try:
            wanted.add(item if isinstance(item, Capability) else Capability(item))
        except ValueError:
            raise InvalidOption(
                "require", item, f"unknown capability; known: {[c.value for c in Capability]}"
            ) from None
    missing = wanted - resolved.backend.capabilities
    if missing:
        raise CapabilityMissing(resolved.backend.name, (c.value for c in missing))
    backend = resolved.backend(resolved.target)
    return Registry(backend, resolved.url, resolved.settings)


class Registry:
    """A connected service registry. Use :func:`connect` to make one."""

    def __init__(self, backend: Backend, url: str, settings: Settings) -> None:
        self.backend = backend
        self.url = redact_url(url)
        """The registry's URL as it may be shown: passwords masked (``etcd://svc:***@host/root``)."""
        self.settings = settings
        self._lock = threading.Lock()
        self._registrations = Registrations(backend, settings.meta_limit)
        self._watches: list[Watch] = []
        self._closed = False

    @property
    def capabilities(self) -> frozenset[Capability]:
        """What the backend can do."""
        return self.backend.capabilities

    def _check_open(self) -> None:
        if self._closed:
            raise RegistryClosed("registry is closed")

    def _check_service(self, service: str, key: str) -> None:
        """Check a service path, and that ``key`` built from it fits the backend."""
        check_service(service)
        check_fits("service", service, key, self.backend)

    def _check_instance(self, service: str, instance_id: str) -> None:
        """Check a service path and instance id, and that the instance's key fits the backend."""
        self._check_service(service, key_prefix(service))
        check_instance_id(instance_id)
        check_fits("instance_id", instance_id, instance_key(service, instance_id), self.backend)

    def _check_prefix(self, prefix: str) -> str:
        """Check a prefix (``""`` for everything) and return it normalised."""
        prefix = check_prefix(prefix)
        if prefix:
            check_fits("prefix", prefix, key_prefix(prefix), self.backend)
        return prefix

    # -- service definitions -------------------------------------------------

    def define(self, service: str, min_instances: int = 1) -> None:
        """Declare a service and how many instances it needs to be up. Persistent.

        Raises:
            InvalidName: bad service path.
            InvalidValue: bad ``min_instances``.
            BackendError: the write failed.
        """
        self._check_service(service, definition_key(service))
        check_min_instances(min_instances)
        self._check_open()
        self.backend.put(definition_key(service), encode_definition(min_instances), None)

    def undefine(self, service: str) -> None:
        """Remove a service definition (its instances stay).

        Raises:
            InvalidName: bad service path.
            NotFound: the service is not defined.
            BackendError: the delete failed.
        """
        self._check_service(service, definition_key(service))
        self._check_open()
        if not self.backend.delete(definition_key(service)):
            raise NotFound(service)

    def definitions(self, prefix: str = "") -> dict[str, int]:
        """The defined services under ``prefix`` and their ``min_instances``.

        Raises:
            InvalidName: bad prefix.
            BackendError: the read failed.
        """
        prefix = self._check_prefix(prefix)
        self._check_open()
        return {
            parsed.service: decode_min_instances(record.value)
            for record in self.backend.list(key_prefix(prefix)).records
            if (parsed := parse_key(record.key)) is not None and parsed.is_definition
        }

    # -- registrations -------------------------------------------------------

    def register(
        self,
        service: str,
        instance_id: str,
        *,
        address: str | None = None,
        port: int | None = None,
        meta: Mapping[str, Any] | None = None,
        ttl: float | None = None,
    ) -> Registration:
        """Register a live instance, kept alive in the background until closed.

        Registering an id this registry already holds replaces its data.

        Args:
            service: the service path, like ``buzz/buzzadmin/api``.
            instance_id: unique within the service, like ``host-1:8080``.
            address: where it listens.
            port: its port, 1..65535.
            meta: JSON metadata, at most ``meta_limit`` bytes encoded.
            ttl: seconds after which the instance expires if this process
                dies (default: the ``default_ttl`` option).

        Returns:
            The registration (a context manager; ``close()`` deregisters).

        Raises:
            InvalidName: bad service path or instance id.
            InvalidMeta: bad metadata.
            InvalidValue: bad address, port or ttl.
            AlreadyRegistered: another live registrant holds this id.
            BackendError: the write failed.
        """
        self._check_instance(service, instance_id)
        check_address(address)
        check_port(port)
        clean_meta = check_meta(meta, self.settings.meta_limit)
        ttl = check_ttl(self.settings.default_ttl if ttl is None else ttl, self.backend.min_ttl)
        self._check_open()
        return self._registrations.register(service, instance_id, address, port, clean_meta, ttl)

    def register_many(self, instances: Iterable[Instance], *, ttl: float | None = None) -> list[Registration]:
        """Register many live instances at once, each kept alive and restored like one from :meth:`register`.

        Every instance is checked before anything is sent. They are written
        in batches of the backend's ``max_batch`` (etcd: one transaction of
        up to 60 keys; ZooKeeper: one ``multi`` of up to 128), all or none per batch;
        etcd v2, which has no multi-key write, writes a batch key by key and
        deletes what it wrote if one fails. When a batch fails, the error is
        raised and the batches before it stay registered
        (:meth:`registrations` lists them). An id this registry already holds
        is updated in place, as :meth:`register` does.

        Args:
            instances: what to register: each :class:`Instance`'s ``service``,
                ``id``, ``address``, ``port`` and ``meta`` (its ``revision`` is ignored).
            ttl: seconds after which the instances expire if this process
                dies (default: the ``default_ttl`` option).

        Returns:
            The registrations, in the order given.

        Raises:
            InvalidName: a bad service path or instance id.
            InvalidMeta: bad metadata.
            InvalidValue: a bad address, port or ttl, the same id twice, or an item that is not an Instance.
            AlreadyRegistered: another live registrant holds an id of the failed batch.
            BackendError: a write failed.
        """
        chosen = list(instances)
        seen: set[tuple[str, str]] = set()
        checked: list[Instance] = []
        for index, instance in enumerate(chosen):
            if not isinstance(instance, Instance):
                raise InvalidValue("instances", type(instance).__name__, f"item {index} is not an Instance")
            self._check_instance(instance.service, instance.id)
            check_address(instance.address)
            check_port(instance.port)
            meta = check_meta(instance.meta, self.settings.meta_limit)
            if (instance.service, instance.id) in seen:
                raise InvalidValue("instances", instance.path, f"item {index} repeats an id given before")
            seen.add((instance.service, instance.id))
            checked.append(Instance(instance.service, instance.id, instance.address, instance.port, meta))
        ttl = check_ttl(self.settings.default_ttl if ttl is None else ttl, self.backend.min_ttl)
        self._check_open()
        return self._registrations.register_many(checked, ttl)

    def deregister(self, service: str, instance_id: str) -> None:
        """Remove an instance now, whoever registered it.

        Raises:
            InvalidName: bad service path or instance id.
            NotFound: no such instance.
            BackendError: the delete failed.
        """
        self._check_instance(service, instance_id)
        self._check_open()
        key = instance_key(service, instance_id)
        registration = self._registrations.get(key)
        if registration is not None:
            registration.close()
            return
        if not self.backend.delete(key):
            raise NotFound(service, instance_id)

    def registrations(self) -> list[Registration]:
        """The registrations this registry keeps alive."""
        return self._registrations.all()

    @property
    def sessions(self) -> tuple[Session, ...]:
        """The sessions (leases) this registry holds, one per ttl in use."""
        return self._registrations.sessions

    def registration_stats(self) -> RegistrationStats:
        """Registrations held and alive, re-registrations after lost sessions, keep-alives sent (for metrics).

        Read from memory, without waiting for a write in flight.

        Raises:
            Nothing: it answers after :meth:`close` too (with what was counted).
        """
        return self._registrations.stats()

    # -- reads ---------------------------------------------------------------

    def instances(self, service: str) -> list[Instance]:
        """The live instances of exactly this service, sorted by id.

        Raises:
            InvalidName: bad service path.
            BackendError: the read failed.
        """
        self._check_service(service, key_prefix(service))
        self._check_open()
        return [i for i in self.snapshot(service).instances if i.service == service]

    def snapshot(self, prefix: str = "") -> Snapshot:
        """Every instance under ``prefix`` (``""`` for all) at one revision.

        Raises:
            InvalidName: bad prefix.
            BackendError: the read failed.
        """
        prefix = self._check_prefix(prefix)
        self._check_open()
        return snapshot_of(self.backend.list(key_prefix(prefix)))

    def status(self, prefix: str = "") -> StatusNode:
        """The monitoring view of the hierarchy under ``prefix``: up, degraded or down.

        Raises:
            InvalidName: bad prefix.
            BackendError: the read failed.
        """
        prefix = self._check_prefix(prefix)
        self._check_open()
        top = prefix.split("/", 1)[0]
        counts: dict[str, int] = {}
        definitions: dict[str, int] = {}
        for record in self.backend.list(key_prefix(top)).records:
            parsed = parse_key(record.key)
            if parsed is None:
                continue
            if parsed.is_definition:
                definitions[parsed.service] = decode_min_instances(record.value)
            else:
                counts[parsed.service] = counts.get(parsed.service, 0) + 1
        return build_status(prefix, counts, definitions)

    def watch(self, prefix: str = "", *, since: int | None = None, buffer_size: int | None = None) -> Watch:
        """Watch every change to the instances under ``prefix``.

        ``w.snapshot`` holds the instances when the stream began; iterating
        ``w`` yields every change after it, in order, none silently lost.

        Args:
            prefix: a service path, or ``""`` for everything.
            since: replay the changes after this past revision instead of
                starting from a listing. ``w.snapshot`` is then empty, an
                instance first seen is ADDED (even if it existed before
                ``since``), and a removal of one never seen carries
                ``instance=None``. Where the backend's history no longer
                reaches ``since`` (or it cannot resume, see
                ``Capability.RESUME_FROM_REVISION``), the watch re-lists and
                emits the current instances flagged ``resync=True``.
            buffer_size: events buffered before a slow consumer gets a
                resync (default: the ``buffer_size`` option).

        Raises:
            InvalidName: bad prefix.
            InvalidValue: bad buffer size.
            BackendError: the stream could not be opened.
        """
        prefix = self._check_prefix(prefix)
        size = self.settings.buffer_size if buffer_size is None else buffer_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InvalidValue("buffer_size", size, "must be a positive integer")
        if since is not None and (
            isinstance(since, bool) or not isinstance(since, int) or not 0 <= since <= MAX_REVISION
        ):
            raise InvalidValue("since", since, f"must be a revision, an integer in 0..{MAX_REVISION}")
        self._check_open()
        watch = Watch(
            self.backend, prefix, buffer_size=size, reconnect_timeout=self.settings.reconnect_timeout, since=since
        )
        with self._lock:
            self._watches = [w for w in self._watches if not w.closed]
            self._watches.append(watch)
        return watch

    def cache(self, prefix: str = "", *, buffer_size: int | None = None) -> ServiceCache:
        """Keep every instance under ``prefix`` in memory, current, for lookups without a server request.

        The cache is kept by one :meth:`watch`, so it never misses a change:
        see :class:`~discovery.cache.ServiceCache`. Its first listing is in
        memory when this returns. Pick instances to call with
        ``cache.provider(service).pick()``.

        Args:
            prefix: a service path, or ``""`` for everything.
            buffer_size: as for :meth:`watch`.

        Raises:
            InvalidName: bad prefix.
            InvalidValue: bad buffer size.
            BackendError: the watch could not be opened.
        """
        return ServiceCache(self.watch(prefix, buffer_size=buffer_size))

    def watches(self) -> list[Watch]:
        """The watches open on this registry, those of its caches included, oldest first.

        Raises:
            Nothing: after :meth:`close` the list is empty.
        """
        with self._lock:
            return [watch for watch in self._watches if not watch.closed]

    # -- lifecycle -----------------------------------------------------------

    def close(self) -> None:
        """Close watches, deregister every registration at once, release the backend. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            watches, self._watches = self._watches, []
        for watch in watches:
            watch.close()
        self._registrations.close()
        self.backend.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Registry {self.url!r} backend={self.backend.name}>"
