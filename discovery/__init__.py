"""discovery: a service registry with complete watches on ZooKeeper, etcd or in memory.

Pick the backend by URL alone (``memory://``, ``etcd://``, ``etcd2://``,
``zookeeper://``); every backend keeps the same promises, above all that a
watcher never silently misses an event::

    import discovery

    with discovery.connect("memory://") as reg:
        lease = reg.register("buzz/buzzadmin/api", "host-1:8080", port=8080, ttl=10)
        with reg.watch("buzz") as w:
            print(w.snapshot)
            ...
"""

from discovery._plugins import available_backends
from discovery._registration import Registration
from discovery._watch import Watch
from discovery.cache import CacheState, ServiceCache, ServiceView, Subscription
from discovery.capabilities import Capability
from discovery.errors import (
    AlreadyRegistered,
    AuthenticationFailed,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    CapabilityMissing,
    ConfigurationError,
    DiscoveryError,
    InvalidInput,
    InvalidMeta,
    InvalidName,
    InvalidOption,
    InvalidValue,
    NameConflict,
    NoInstances,
    NotFound,
    PermissionDenied,
    RegistryClosed,
    SessionExpired,
    UnknownBackend,
    Unsupported,
    WatchBroken,
)
from discovery.models import Event, EventKind, Health, Instance, Notice, NoticeKind, Snapshot, StatusNode
from discovery.provider import Provider
from discovery.registry import Registry, connect

__all__ = [
    "AlreadyRegistered",
    "AuthenticationFailed",
    "BackendError",
    "BackendTimeout",
    "BackendUnavailable",
    "CacheState",
    "Capability",
    "CapabilityMissing",
    "ConfigurationError",
    "DiscoveryError",
    "Event",
    "EventKind",
    "Health",
    "Instance",
    "InvalidInput",
    "InvalidMeta",
    "InvalidName",
    "InvalidOption",
    "InvalidValue",
    "NameConflict",
    "NoInstances",
    "NotFound",
    "Notice",
    "NoticeKind",
    "PermissionDenied",
    "Provider",
    "Registration",
    "Registry",
    "RegistryClosed",
    "ServiceCache",
    "ServiceView",
    "SessionExpired",
    "Snapshot",
    "StatusNode",
    "Subscription",
    "UnknownBackend",
    "Unsupported",
    "Watch",
    "WatchBroken",
    "available_backends",
    "connect",
]

__version__ = "0.1.0"
