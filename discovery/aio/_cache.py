"""The asyncio service cache: a :class:`discovery.ServiceCache` whose lookups run on the loop and whose waits do not.

Lookups (:meth:`~AsyncServiceCache.instances`, :meth:`~AsyncServiceCache.view`,
a provider's ``pick()``) read immutable views from memory, so they are plain
methods, safe to call on the event loop. Waiting runs in worker threads, in
slices of at most a quarter of a second, so a cancelled wait frees its
thread promptly. Subscribers are called on the event loop, in the order the
cache applied the changes.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from discovery._background import call_listener
from discovery.aio._bridge import ClosedOnExit, call, on_loop
from discovery.cache import CacheState, ServiceCache, ServiceView, Subscription
from discovery.errors import WatchBroken
from discovery.models import Event, Instance, Notice, Snapshot, StatusNode

if TYPE_CHECKING:
    from discovery.provider import Filter, Provider

_SLICE_SECONDS = 0.25


class AsyncServiceCache(ClosedOnExit):
    """Every instance under a prefix, in memory, kept current by one watch, for asyncio code.

    Made by :meth:`AsyncRegistry.cache`. An async context manager: leaving
    it (or ``await cache.close()``) stops the watch.
    """

    def __init__(self, cache: ServiceCache) -> None:
        self.sync = cache
        """The underlying :class:`discovery.ServiceCache` (its waits block: call them from a thread)."""

    @property
    def prefix(self) -> str:
        """The prefix the cache keeps."""
        return self.sync.prefix

    @property
    def first_snapshot(self) -> Snapshot:
        """The instances when the cache began; its events continue from it."""
        return self.sync.first_snapshot

    # -- waiting -------------------------------------------------------------

    async def _sliced(self, wait: Callable[[float], bool], timeout: float | None) -> bool:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            remaining = _SLICE_SECONDS if deadline is None else max(0.0, deadline - loop.time())
            if await call(functools.partial(wait, min(remaining, _SLICE_SECONDS))):
                return True
            if deadline is not None and loop.time() >= deadline:
                return False

    async def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the cache is current: its first listing applied and no resync under way.

        Returns:
            True when current; False if ``timeout`` seconds passed first.

        Raises:
            WatchBroken: the watch gave up; the contents may be stale.
            RegistryClosed: the cache was closed.
        """
        return await self._sliced(self.sync.wait_ready, timeout)

    async def wait_for(self, condition: Callable[[ServiceCache], bool], timeout: float) -> bool:
        """Wait until ``condition(cache.sync)`` holds; False at the deadline. ``condition`` runs in a worker thread.

        Raises:
            WatchBroken: the watch gave up first.
            RegistryClosed: the cache was closed.
        """
        return await self._sliced(functools.partial(self.sync.wait_for, condition), timeout)

    # -- lookups, from memory ------------------------------------------------

    def instances(self, service: str) -> list[Instance]:
        """The live instances of exactly ``service``, sorted by id, from memory."""
        return self.sync.instances(service)

    def view(self, service: str) -> ServiceView:
        """The current immutable view of ``service``. O(1)."""
        return self.sync.view(service)

    def services(self) -> list[str]:
        """The services with at least one live instance, sorted."""
        return self.sync.services()

    def snapshot(self) -> Snapshot:
        """Every instance in the cache, at its revision."""
        return self.sync.snapshot()

    def status(self, prefix: str = "") -> StatusNode:
        """The monitoring tree under ``prefix``, from memory. See :meth:`discovery.ServiceCache.status`.

        Raises:
            InvalidName: a bad prefix.
            InvalidValue: ``prefix`` lies outside the cache's prefix.
        """
        return self.sync.status(prefix)

    def provider(
        self,
        service: str,
        strategy: str = "round-robin",
        *,
        filter: Filter | None = None,
        zone: str | None = None,
        **policy: Any,
    ) -> Provider:
        """A picker of instances of ``service``: the sync provider, whose ``pick()`` never blocks.

        See :meth:`discovery.ServiceCache.provider`.
        """
        return self.sync.provider(service, strategy, filter=filter, zone=zone, **policy)

    # -- state and listeners -------------------------------------------------

    @property
    def state(self) -> CacheState:
        """Connected, resyncing, broken and revision, read together."""
        return self.sync.state

    @property
    def revision(self) -> int:
        """The revision of the last change applied."""
        return self.sync.revision

    @property
    def broken(self) -> WatchBroken | None:
        """The error the watch gave up with, or None while the cache is kept current."""
        return self.sync.broken

    @property
    def closed(self) -> bool:
        """Whether the cache was closed."""
        return self.sync.closed

    def subscribe(
        self, on_event: Callable[[Event], object], on_state: Callable[[Notice], object] | None = None
    ) -> Subscription:
        """Call ``on_event(event)`` after the cache applied each event, and ``on_state(notice)``, on this event loop.

        Call it from a coroutine on the loop that should run the listeners.
        They run in the order the cache applied the changes; one that raises
        is logged and ignored. See :meth:`discovery.ServiceCache.subscribe`.

        Returns:
            The subscription: the contents its events continue from, and ``cancel()``.
        """
        loop = asyncio.get_running_loop()
        what = f"cache {self.prefix!r}"

        def event(item: Event) -> None:
            on_loop(loop, call_listener, what, on_event, item)

        def state(notice: Notice) -> None:
            if on_state is not None:
                on_loop(loop, call_listener, what, on_state, notice)

        return self.sync.subscribe(event, state if on_state is not None else None)

    # -- lifecycle -----------------------------------------------------------

    async def close(self) -> None:
        """Stop the watch and the cache's thread. Idempotent; lookups keep answering from the last contents."""
        await call(self.sync.close)

    def __repr__(self) -> str:
        return f"<AsyncServiceCache {self.prefix!r} revision={self.revision}>"
