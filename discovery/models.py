"""The values a caller gets back: instances, events, snapshots, status nodes.

All are frozen dataclasses, safe to share between threads and to compare.
:meth:`Snapshot.apply` is the reference for the convergence promise: applying
a watch's events in order to its ``snapshot`` gives the store's state at the
last event's revision.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Instance:
    """One live instance of a service.

    Attributes:
        service: the service path, like ``buzz/buzzadmin/api``.
        id: the instance id, unique within the service.
        address: where it listens, if it said.
        port: its port, if it said.
        meta: free-form JSON metadata (``{"raw": ...}`` for a non-JSON value).
        revision: the store revision of the instance's last change.
    """

    service: str
    id: str
    address: str | None = None
    port: int | None = None
    meta: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    revision: int = 0

    @property
    def path(self) -> str:
        """``service/id``: the instance's key below the registry's root."""
        return f"{self.service}/{self.id}"

    def as_dict(self) -> dict[str, Any]:
        """The instance as a JSON-ready dict: ``service``, ``id``, ``address``, ``port``, ``meta``, ``revision``."""
        return {
            "service": self.service,
            "id": self.id,
            "address": self.address,
            "port": self.port,
            "meta": dict(self.meta),
            "revision": self.revision,
        }

    def __hash__(self) -> int:
        return hash((self.service, self.id, self.revision))


class EventKind(enum.Enum):
    """What happened to an instance."""

    ADDED = "added"
    UPDATED = "updated"
    REMOVED = "removed"


@dataclass(frozen=True)
class Event:
    """One change to one instance, as a watch delivers it.

    Attributes:
        kind: added, updated or removed.
        service: the service path.
        instance_id: the instance id.
        instance: the instance after the change; for REMOVED, the last known
            instance (None only when the watch never knew it).
        revision: the stream's revision after this event; never decreases.
        resync: True when the event comes from a re-list that closed a gap.
        expired: for REMOVED, True if the instance expired, False if it was
            deleted, None if the backend cannot tell (see
            ``Capability.EXPIRY_CAUSE``) or for a resync.
    """

    kind: EventKind
    service: str
    instance_id: str
    instance: Instance | None
    revision: int
    resync: bool = False
    expired: bool | None = None


class NoticeKind(enum.Enum):
    """A change in the state of a watch (or of a cache kept by one)."""

    DISCONNECTED = "disconnected"
    """The stream broke or could not be opened; the watch keeps trying."""
    CONNECTED = "connected"
    """The server confirmed a stream again after a disconnection."""
    RESYNC_STARTED = "resync-started"
    """A gap was found: the watch re-lists; its resync events follow."""
    RESYNCED = "resynced"
    """The resync's events (flagged ``resync=True``) have all been delivered."""
    BROKEN = "broken"
    """The watch gave up (``WatchBroken``): nothing more will come."""
    DEFINITIONS = "definitions"
    """A service definition under the prefix changed (see ``Watch.definitions``); not an event."""


@dataclass(frozen=True)
class Notice:
    """A change in a watch's state, delivered in order with its events by :meth:`Watch.next_item`.

    Attributes:
        kind: what changed.
        reason: why (the gap's reason, the error), for logs and displays.
        revision: the last revision delivered when it happened.
    """

    kind: NoticeKind
    reason: str = ""
    revision: int = 0


@dataclass(frozen=True)
class WatchStatus:
    """Where a watch stands as its notices tell it: what every reader of notices keeps (a cache, the dashboard).

    Attributes:
        connected: the watch has a stream the server confirmed.
        resyncing: a resync started and its events are not all delivered.
        broken: why the watch gave up, or None while it goes on.
    """

    connected: bool = True
    resyncing: bool = False
    broken: str | None = None

    def after(self, notice: Notice) -> WatchStatus:
        """The status once ``notice`` happened (``DEFINITIONS`` changes nothing)."""
        kind = notice.kind
        if kind is NoticeKind.DISCONNECTED:
            return dataclasses.replace(self, connected=False)
        if kind is NoticeKind.CONNECTED:
            return dataclasses.replace(self, connected=True)
        if kind is NoticeKind.RESYNC_STARTED:
            return dataclasses.replace(self, resyncing=True)
        if kind is NoticeKind.RESYNCED:
            return dataclasses.replace(self, resyncing=False)
        if kind is NoticeKind.BROKEN:
            return WatchStatus(False, False, notice.reason or "the watch gave up")
        return self

    @property
    def name(self) -> str:
        """``broken``, ``disconnected``, ``resyncing`` or ``connected``, the first that applies."""
        if self.broken is not None:
            return "broken"
        if not self.connected:
            return "disconnected"
        return "resyncing" if self.resyncing else "connected"


@dataclass(frozen=True)
class Snapshot:
    """The instances under a prefix at one revision.

    Attributes:
        revision: the store revision the snapshot reflects.
        instances: the instances, sorted by service then id.
    """

    revision: int
    instances: tuple[Instance, ...]

    def by_path(self) -> dict[str, Instance]:
        """The instances keyed by ``service/id``."""
        return {instance.path: instance for instance in self.instances}

    def apply(self, events: Iterable[Event]) -> Snapshot:
        """Return the snapshot that results from applying ``events`` in order.

        Raises:
            ValueError: an event does not fit the state (an ADDED for a present
                instance, an UPDATED or REMOVED for an absent one): the stream
                that produced it broke the event contract.
        """
        state = self.by_path()
        revision = self.revision
        for event in events:
            path = f"{event.service}/{event.instance_id}"
            if event.kind is EventKind.ADDED:
                if path in state:
                    raise ValueError(f"ADDED for present instance {path} at revision {event.revision}")
            elif path not in state:
                raise ValueError(f"{event.kind.name} for absent instance {path} at revision {event.revision}")
            if event.kind is EventKind.REMOVED:
                del state[path]
            else:
                assert event.instance is not None
                state[path] = event.instance
            revision = max(revision, event.revision)
        return Snapshot(revision, tuple(sorted(state.values(), key=lambda i: (i.service, i.id))))


class Health(enum.Enum):
    """The colour of a node in the monitoring view, best first."""

    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"

    @property
    def rank(self) -> int:
        """0 for up, 1 for degraded, 2 for down: larger is worse."""
        return _RANK[self]


_RANK = {Health.UP: 0, Health.DEGRADED: 1, Health.DOWN: 2}


@dataclass(frozen=True)
class StatusNode:
    """One level of the service hierarchy in the monitoring view.

    Attributes:
        name: the last path segment (``""`` for the root of the view).
        path: the full service path.
        health: up, degraded or down.
        reason: why: ``ok``, ``below-minimum``, ``no-instances``,
            ``parent-down`` or ``subtree`` (the worst of its children).
        instances: live instances of this exact service.
        min_instances: the defined minimum, or None if the service is not defined.
        children: the sub-levels, sorted by name.
    """

    name: str
    path: str
    health: Health
    reason: str
    instances: int = 0
    min_instances: int | None = None
    children: tuple[StatusNode, ...] = ()

    @property
    def defined(self) -> bool:
        """Whether a definition (``Registry.define``) exists for this path."""
        return self.min_instances is not None

    def find(self, path: str) -> StatusNode | None:
        """The node at ``path`` in this subtree, or None."""
        if path == self.path:
            return self
        for child in self.children:
            if path == child.path or path.startswith(child.path + "/"):
                return child.find(path)
        return None

    def walk(self) -> Iterable[StatusNode]:
        """This node, then every descendant, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()
