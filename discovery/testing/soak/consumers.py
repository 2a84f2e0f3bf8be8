"""The soak's consumers: watchers of every temperament, each recording what it took, for the history checker.

``plain`` reads as fast as it can (its times judge how soon a lost
registration is back); ``slow`` takes a few milliseconds per item, so bursts
outrun it and its 2,000-event buffer overflows; ``tiny`` has an 8-event
buffer; ``resumer`` closes its watch every few seconds and opens it again
with ``since=`` the last revision it saw, where the backend declares
``resume-from-revision``; ``cache`` is a service cache whose subscriber
records its events and whose contents are compared with the store at the
end. Each runs on its own thread with its own registry (its own connection,
through the loopback proxy when given one, so that a cut connection hits the
consumers and not the writers).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from discovery import BackendError, Event, Instance, Notice, Registry, RegistryClosed, ServiceCache, Watch, WatchBroken
from discovery._background import start_thread
from discovery.capabilities import Capability
from discovery.models import NoticeKind
from discovery.testing.history import Observation, WatcherLog, converged, state_of

__all__ = ["CacheConsumer", "Consumer", "WatchConsumer", "consumers_for", "converge"]

_log = logging.getLogger(__name__)

_POLL = 0.2
_SLOW_DELAY = 0.004
"""Seconds the slow consumer takes per item: 250 items/s at best, below the soak's rate in a burst."""
_SLOW_BUFFER = 2_000
"""The slow consumer's buffer: it overflows (and resyncs) rather than fall minutes behind, so it is
at most about 8 s of its work behind the store, and catches up once the store is quiet."""


class Consumer:
    """A recording consumer on its own thread; :meth:`stop` ends it and returns its log."""

    name: str
    log: WatcherLog

    def start(self) -> None:
        raise NotImplementedError

    def revision(self) -> int:
        """The last revision this consumer has taken."""
        raise NotImplementedError

    def stop(self) -> WatcherLog:
        raise NotImplementedError


class WatchConsumer(Consumer):
    """Reads a watch with ``next_item`` and records every event and notice.

    Args:
        name: the consumer's name.
        registry: its own registry.
        prefix: what it watches.
        delay: seconds it takes per item (the slow consumer).
        buffer_size: the watch's buffer (None: the registry's default).
        reopen_every: seconds between re-opening with ``since=`` (None: never).
    """

    def __init__(
        self,
        name: str,
        registry: Registry,
        prefix: str,
        *,
        delay: float = 0.0,
        buffer_size: int | None = None,
        reopen_every: float | None = None,
    ) -> None:
        self.name = name
        self._registry = registry
        self._prefix = prefix
        self._delay = delay
        self._buffer_size = buffer_size
        self._reopen_every = reopen_every
        self._watch: Watch = registry.watch(prefix, buffer_size=buffer_size)
        snapshot = self._watch.snapshot
        self.log = WatcherLog(name, snapshot.instances, snapshot.revision)
        self._last = snapshot.revision
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = start_thread(f"soak-{self.name}", self._run, self._died)

    def revision(self) -> int:
        return self._last

    def _run(self) -> None:
        reopen_at = None if self._reopen_every is None else time.monotonic() + self._reopen_every
        while not self._stop.is_set():
            if reopen_at is not None and time.monotonic() >= reopen_at and self._between_revisions():
                self._watch.close()
                self._watch = self._reopen()
                self.log.items.append(Observation(time.time(), None))
                assert self._reopen_every is not None
                reopen_at = time.monotonic() + self._reopen_every
            try:
                item = self._watch.next_item(_POLL)
            except WatchBroken as exc:
                self.log.items.append(Observation(time.time(), Notice(NoticeKind.BROKEN, str(exc), self._last)))
                return
            except RegistryClosed:
                return
            if item is None:
                continue
            self._take(item)
            if isinstance(item, Notice) and item.kind is NoticeKind.BROKEN:
                return
            if self._delay:
                time.sleep(self._delay)

    def _between_revisions(self) -> bool:
        """Whether the last revision taken is whole: nothing is buffered, and a watch buffers a revision at once.

        A resume point is a whole revision: re-opened with ``since=`` in the
        middle of one, the rest of it would never come.
        """
        try:
            item = self._watch.next_item(0)
        except (WatchBroken, RegistryClosed):
            return True
        if item is None:
            return True
        self._take(item)
        return False

    def _take(self, item: Event | Notice) -> None:
        self.log.items.append(Observation(time.time(), item))
        if isinstance(item, Event) or item.kind in (NoticeKind.RESYNCED, NoticeKind.RESYNC_STARTED):
            self._last = max(self._last, item.revision)

    def _reopen(self) -> Watch:
        """Open the watch again from the last revision seen, retrying while the servers are away (as a user would)."""
        delay = 0.1
        while True:
            try:
                return self._registry.watch(self._prefix, since=self._last, buffer_size=self._buffer_size)
            except BackendError:
                if self._stop.wait(delay):
                    raise RegistryClosed("the consumer was stopped") from None
                delay = min(delay * 2, 2.0)

    def _died(self, exc: BaseException) -> None:
        self.log.items.append(
            Observation(time.time(), Notice(NoticeKind.BROKEN, f"consumer died: {exc!r}", self._last))
        )

    def stop(self) -> WatcherLog:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
        self._watch.close()
        self._registry.close()
        return self.log


class CacheConsumer(Consumer):
    """A service cache whose subscriber records events; its contents are the state compared at the end."""

    def __init__(self, name: str, registry: Registry, prefix: str) -> None:
        self.name = name
        self._registry = registry
        self._cache: ServiceCache = registry.cache(prefix)
        self._cache.wait_ready(30.0)
        self._lock = threading.Lock()
        self._last = 0
        self.log = WatcherLog(name, (), 0)
        self._subscription = self._cache.subscribe(self._on_item, self._on_item)
        snapshot = self._subscription.snapshot
        self._last = snapshot.revision
        self.log.start, self.log.start_revision = snapshot.instances, snapshot.revision

    def _on_item(self, item: Event | Notice) -> None:
        with self._lock:
            self.log.items.append(Observation(time.time(), item))
            if isinstance(item, Event):
                self._last = max(self._last, item.revision)

    def start(self) -> None:
        """The cache runs its own thread already."""

    def revision(self) -> int:
        return max(self._last, self._cache.revision)

    def stop(self) -> WatcherLog:
        broken = self._cache.broken
        if broken is not None:
            self.log.items.append(Observation(time.time(), Notice(NoticeKind.BROKEN, str(broken), self._last)))
        self.log.final = self._cache.snapshot().by_path()
        self._subscription.cancel()
        self._cache.close()
        self._registry.close()
        return self.log


def consumers_for(connect: Callable[[], Registry], prefix: str, capabilities: frozenset[Capability]) -> list[Consumer]:
    """The soak's consumers on one backend, each on a registry ``connect()`` opens."""
    made: list[Consumer] = [
        WatchConsumer("plain", connect(), prefix),
        WatchConsumer("slow", connect(), prefix, delay=_SLOW_DELAY, buffer_size=_SLOW_BUFFER),
        WatchConsumer("tiny", connect(), prefix, buffer_size=8),
    ]
    if Capability.RESUME_FROM_REVISION in capabilities:
        made.append(WatchConsumer("resumer", connect(), prefix, reopen_every=3.0))
    made.append(CacheConsumer("cache", connect(), prefix))
    return made


def _holds(consumer: Consumer, store: dict[str, Instance]) -> bool:
    log = consumer.log
    return converged(state_of(WatcherLog(log.name, log.start, log.start_revision, list(log.items))), store)


def converge(
    admin: Registry, consumers: list[Consumer], killed: list[str], prefix: str, *, timeout: float
) -> dict[str, Instance]:
    """Wait until the killed registrants' instances have expired and every consumer equals the store; return it.

    Expiries still due would change the store after the consumers are
    stopped, so they are waited out first: then the store is quiet. Gives
    up after ``timeout`` seconds (the checker then reports what differs).
    """
    began = time.monotonic()
    deadline = began + timeout
    store: dict[str, Instance] = {}
    behind: list[str] = []
    while time.monotonic() < deadline:
        store = admin.snapshot(prefix).by_path()
        behind = [consumer.name for consumer in consumers if not _holds(consumer, store)]
        doomed = [key for key in store if key.split("/")[1] in killed]
        if doomed:
            behind.append(f"{len(doomed)} instances of killed registrants still in the store")
        if not behind and converged(admin.snapshot(prefix).by_path(), store):
            _log.info("soak: every consumer equals the store after %.1f s", time.monotonic() - began)
            return store
        time.sleep(0.2)
    _log.warning("soak: %s still differ from the store after %g s", behind, timeout)
    return store
