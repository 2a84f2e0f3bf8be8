"""The service cache: every instance under a prefix, kept current in memory by one complete watch.

``reg.cache(prefix)`` opens one :class:`~discovery.Watch` (the core's engine:
no second engine, no polling) and a thread that applies its events, in
order, to a model of the services under the prefix. Lookups —
:meth:`ServiceCache.instances`, :meth:`ServiceCache.services`,
:meth:`ServiceCache.status`, and the providers of :mod:`discovery.provider`
— are answered from memory, never from the server. Because the watch never
misses a change and resyncs with ordinary events after a gap, applying the
cache's events to its first snapshot always gives its contents, and after
any fault the cache converges to the store.

The thread drains what the watch has delivered, applies it, publishes a new
immutable :class:`ServiceView` for each service that changed (so a lookup
never sees a half-applied change and never returns an instance whose
``REMOVED`` was applied), and only then calls the subscribers, in order,
with each event and each change of state (:class:`~discovery.models.Notice`:
disconnected, connected, resync started, resynced, broken). A subscriber that
raises is logged and never stops the cache. A watch that breaks leaves the
cache :attr:`~ServiceCache.broken`, reported to callers and subscribers,
never silently frozen.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any

from discovery._background import call_listener, start_thread
from discovery._status import build_status
from discovery._validation import check_prefix
from discovery.errors import InvalidValue, RegistryClosed, WatchBroken
from discovery.models import Event, EventKind, Instance, Notice, NoticeKind, Snapshot, StatusNode, WatchStatus

if TYPE_CHECKING:
    from discovery._watch import Watch
    from discovery.provider import Filter, Provider

__all__ = ["CacheState", "ServiceCache", "ServiceView", "Subscription"]

_log = logging.getLogger("discovery.cache")
_POLL_SECONDS = 0.5
_DRAIN_AT_ONCE = 10_000

EventListener = Callable[[Event], object]
StateListener = Callable[[Notice], object]


@dataclass(frozen=True)
class ServiceView:
    """The live instances of one service at one moment, immutable; a new view replaces it on every change.

    Attributes:
        service: the service path.
        version: grows with every change to the service's instances (a
            provider keeps what it derives from a view until the version moves).
        instances: the instances, sorted by id.
        by_id: the same instances by id.
    """

    service: str
    version: int
    instances: tuple[Instance, ...] = ()
    by_id: Mapping[str, Instance] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Subscription:
    """A subscriber's start: the contents its events continue from, and how to stop them.

    Attributes:
        snapshot: the cache's contents when the subscription began.
        cancel: stops the subscriber's calls; idempotent.
    """

    snapshot: Snapshot
    cancel: Callable[[], None]


@dataclass(frozen=True)
class CacheState:
    """Where the cache stands.

    Attributes:
        connected: the watch has a stream the server confirmed.
        resyncing: a resync is under way: its events are still to come.
        broken: the error the watch gave up with; None while it goes on.
        revision: the revision of the last change applied.
    """

    connected: bool
    resyncing: bool
    broken: WatchBroken | None
    revision: int


class ServiceCache:
    """Every instance under a prefix, in memory, kept current by one watch. Made by :meth:`discovery.Registry.cache`.

    A context manager: leaving it (or :meth:`close`) stops the watch.
    """

    def __init__(self, watch: Watch) -> None:
        self.prefix = watch.prefix
        self._watch = watch
        self._cond = threading.Condition()
        self._members: dict[str, dict[str, Instance]] = {}
        self._views: dict[str, ServiceView] = {}
        self._version = 0
        self._event_listeners: list[EventListener] = []
        self._state_listeners: list[StateListener] = []
        first = watch.snapshot
        self.first_snapshot: Snapshot = first
        """The instances when the cache began; its events continue from it."""
        for instance in first.instances:
            self._members.setdefault(instance.service, {})[instance.id] = instance
        self._publish(set(self._members))
        self._revision = first.revision
        self._status = WatchStatus()
        self._broken: WatchBroken | None = None
        self._closed = False
        self._thread = start_thread(f"discovery-cache-{self.prefix or '/'}", self._run, self._died)

    # -- lookups -------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether the first listing is in memory (always, once :meth:`Registry.cache` returned) and not broken."""
        return self._broken is None and not self._closed

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the cache is current: its first listing applied and no resync under way.

        Returns:
            True when current; False if ``timeout`` seconds passed first.

        Raises:
            WatchBroken: the watch gave up; the contents may be stale.
            RegistryClosed: the cache was closed.
        """
        with self._cond:
            current = self._cond.wait_for(
                lambda: self._closed or self._broken is not None or not self._status.resyncing, timeout
            )
            self._check_usable()
            return current

    def wait_for(self, condition: Callable[[ServiceCache], bool], timeout: float) -> bool:
        """Wait until ``condition(cache)`` holds, checked after each applied change; False at the deadline.

        Raises:
            WatchBroken: the watch gave up first.
            RegistryClosed: the cache was closed.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while not condition(self):
                self._check_usable()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, _POLL_SECONDS))
            return True

    @property
    def revision(self) -> int:
        """The revision of the last change applied (the first snapshot's before any)."""
        return self._revision

    def services(self) -> list[str]:
        """The services with at least one live instance, sorted."""
        with self._cond:
            return sorted(self._views)

    def view(self, service: str) -> ServiceView:
        """The current immutable view of ``service`` (empty, version 0, when it has no instance). O(1)."""
        view = self._views.get(service)
        return view if view is not None else ServiceView(service, 0)

    def instances(self, service: str) -> list[Instance]:
        """The live instances of exactly ``service``, sorted by id, from memory."""
        return list(self.view(service).instances)

    def snapshot(self) -> Snapshot:
        """Every instance in the cache, at :attr:`revision`."""
        with self._cond:
            instances = [instance for service in sorted(self._views) for instance in self._views[service].instances]
            return Snapshot(self._revision, tuple(instances))

    def status(self, prefix: str = "") -> StatusNode:
        """The monitoring tree under ``prefix``, computed from memory as :meth:`Registry.status` computes it.

        Service definitions come from the cache's watch, so a definition
        above the cache's prefix is not seen: a service whose ancestor is a
        down defined service above the prefix is not marked ``parent-down``
        (:meth:`Registry.status` reads from the top-level service). Cache the
        top-level service, or everything, for the same tree.

        Args:
            prefix: a service path at or below the cache's prefix (``""``:
                the cache's whole prefix).

        Raises:
            InvalidName: a bad prefix.
            InvalidValue: ``prefix`` lies outside the cache's prefix.
        """
        prefix = check_prefix(prefix) or self.prefix
        if self.prefix and prefix != self.prefix and not prefix.startswith(self.prefix + "/"):
            raise InvalidValue("prefix", prefix, f"outside the cache's prefix {self.prefix!r}")
        with self._cond:
            counts = {service: len(view.instances) for service, view in self._views.items()}
        return build_status(prefix, counts, self._watch.definitions)

    def provider(
        self,
        service: str,
        strategy: str = "round-robin",
        *,
        filter: Filter | None = None,
        zone: str | None = None,
        **policy: Any,
    ) -> Provider:
        """A picker of instances of ``service`` from this cache; see :class:`discovery.provider.Provider`."""
        from discovery.provider import Provider

        return Provider(self, service, strategy, filter=filter, zone=zone, **policy)

    # -- state and listeners -------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the watch has a stream the server confirmed."""
        return self._status.connected and self._broken is None and not self._closed

    @property
    def resyncing(self) -> bool:
        """Whether a resync is under way (its events are still to be applied)."""
        return self._status.resyncing

    @property
    def broken(self) -> WatchBroken | None:
        """The error the watch gave up with, or None while the cache is kept current."""
        return self._broken

    @property
    def state(self) -> CacheState:
        """Connected, resyncing, broken and revision, read together."""
        with self._cond:
            return CacheState(self.connected, self._status.resyncing, self._broken, self._revision)

    def subscribe(self, on_event: EventListener, on_state: StateListener | None = None) -> Subscription:
        """Call ``on_event(event)`` for every event after the cache applied it, and ``on_state(notice)`` on changes.

        Both run on the cache's thread, in the order the watch delivered
        them; resync events are flagged ``resync=True`` and come between the
        ``RESYNC_STARTED`` and ``RESYNCED`` notices; ``DEFINITIONS`` tells
        that a service definition changed (see :meth:`status`). A listener
        that raises is logged and ignored.

        Returns:
            The subscription: its :attr:`~Subscription.snapshot` is the
            cache's contents when it began, so applying the events it
            receives to that snapshot gives the cache's contents, nothing
            missed, nothing twice; :meth:`~Subscription.cancel` ends it.
        """
        with self._cond:
            self._event_listeners.append(on_event)
            if on_state is not None:
                self._state_listeners.append(on_state)
            snapshot = self.snapshot()

        def cancel() -> None:
            with self._cond:
                if on_event in self._event_listeners:
                    self._event_listeners.remove(on_event)
                if on_state is not None and on_state in self._state_listeners:
                    self._state_listeners.remove(on_state)

        return Subscription(snapshot, cancel)

    def request_resync(self, reason: str = "requested") -> None:
        """Re-list and apply the difference, as after a gap (see :meth:`discovery.Watch.request_resync`).

        Useful as a periodic consistency check; subscribers hear
        ``RESYNC_STARTED``, the resync's events (if anything differed), then ``RESYNCED``.
        """
        self._watch.request_resync(reason)

    def close(self) -> None:
        """Stop the watch and the cache's thread. Idempotent; lookups keep answering from the last contents."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._watch.close()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> ServiceCache:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ServiceCache {self.prefix!r} revision={self._revision} services={len(self._views)}>"

    # -- the cache's thread --------------------------------------------------

    def _check_usable(self) -> None:
        if self._closed:
            raise RegistryClosed(f"cache of {self.prefix!r} is closed")
        if self._broken is not None:
            raise self._broken

    def _run(self) -> None:
        while True:
            try:
                items = self._drain()
            except RegistryClosed:
                # Closed directly, or with the registry that made it.
                with self._cond:
                    self._closed = True
                    self._cond.notify_all()
                return
            except WatchBroken as exc:
                self._break(exc)
                return
            if items:
                self._apply(items)

    def _drain(self) -> list[Event | Notice]:
        """Wait for the next item, then take whatever else the watch has already delivered."""
        first = self._watch.next_item(_POLL_SECONDS)
        if first is None:
            return []
        items = [first]
        while len(items) < _DRAIN_AT_ONCE and (item := self._watch.next_item(0)) is not None:
            items.append(item)
        return items

    def _apply(self, items: list[Event | Notice]) -> None:
        changed: set[str] = set()
        with self._cond:
            for item in items:
                if isinstance(item, Notice):
                    self._note(item)
                    continue
                members = self._members.setdefault(item.service, {})
                if item.kind is EventKind.REMOVED:
                    members.pop(item.instance_id, None)
                elif item.instance is not None:
                    members[item.instance_id] = item.instance
                if not members:
                    del self._members[item.service]
                changed.add(item.service)
                self._revision = max(self._revision, item.revision)
            self._publish(changed)
            self._cond.notify_all()
            event_listeners = list(self._event_listeners)
            state_listeners = list(self._state_listeners)
        for item in items:
            if isinstance(item, Notice):
                if item.kind is NoticeKind.BROKEN:
                    continue  # told once, by _break, when the watch raises
                for on_state in state_listeners:
                    call_listener(f"cache {self.prefix!r}", on_state, item)
            else:
                for on_event in event_listeners:
                    call_listener(f"cache {self.prefix!r}", on_event, item)

    def _note(self, notice: Notice) -> None:
        """Track the watch's state from a notice (a break is told by the watch raising). Caller holds the lock."""
        if notice.kind is NoticeKind.BROKEN:
            return
        self._status = self._status.after(notice)
        if notice.kind is NoticeKind.RESYNCED:
            self._revision = max(self._revision, notice.revision)

    def _publish(self, services: set[str]) -> None:
        """Replace the views of ``services`` with new immutable ones. Caller holds the lock (or is the constructor)."""
        for service in services:
            members = self._members.get(service)
            if not members:
                self._views.pop(service, None)
                continue
            self._version += 1
            ordered = tuple(sorted(members.values(), key=lambda instance: instance.id))
            self._views[service] = ServiceView(service, self._version, ordered, MappingProxyType(dict(members)))

    def _break(self, error: WatchBroken) -> None:
        _log.error("cache of %r: the watch broke: %s", self.prefix, error)
        with self._cond:
            self._broken = error
            self._status = WatchStatus(False, False, str(error))
            self._cond.notify_all()
            state_listeners = list(self._state_listeners)
        notice = Notice(NoticeKind.BROKEN, str(error), self._revision)
        for on_state in state_listeners:
            call_listener(f"cache {self.prefix!r}", on_state, notice)

    def _died(self, exc: BaseException) -> None:
        self._break(WatchBroken(self.prefix, f"the cache's thread died: {exc!r}"))
