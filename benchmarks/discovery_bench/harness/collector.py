"""A watch read in a background thread, its events kept with the moment each arrived.

The workloads that wait for events (bursts, failure detection, resyncs) read
their watch through an :class:`EventCollector`: the consumer thread takes
each event as soon as the watch delivers it and stamps it with
``time.perf_counter()``, so a latency is "delivered to the consumer" minus
"written", never inflated by a measuring loop that was busy elsewhere.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from discovery import DiscoveryError, Event, EventKind, Watch

_POLL = 0.1


class EventCollector:
    """Consumes ``watch`` in a thread; ``events`` holds ``(event, arrival time)`` pairs in order."""

    def __init__(self, watch: Watch, on_event: Callable[[Event, float], None] | None = None) -> None:
        self.watch = watch
        self._on_event = on_event
        self.events: list[tuple[Event, float]] = []
        self.error: DiscoveryError | None = None
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._consume, name="bench-collector", daemon=True)
        self._thread.start()

    def _consume(self) -> None:
        while not self._stopped:
            try:
                event = self.watch.get(_POLL)
            except DiscoveryError as exc:
                with self._cond:
                    if not self._stopped:
                        self.error = exc
                    self._cond.notify_all()
                return
            if event is None:
                continue
            arrived = time.perf_counter()
            if self._on_event is not None:
                self._on_event(event, arrived)
            with self._cond:
                self.events.append((event, arrived))
                self._cond.notify_all()

    def wait_for(self, condition: Callable[[list[tuple[Event, float]]], bool], timeout: float) -> bool:
        """Wait until ``condition(events)`` holds; False when it did not within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not condition(self.events):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.error is not None:
                    return False
                self._cond.wait(min(remaining, 0.5))
            return True

    def ids(self, kind: EventKind) -> set[str]:
        """The instance ids seen with an event of ``kind``."""
        with self._cond:
            return {event.instance_id for event, _ in self.events if event.kind is kind}

    def first_time(self, kind: EventKind, instance_id: str) -> float | None:
        """When the first ``kind`` event of ``instance_id`` arrived, or None."""
        with self._cond:
            for event, arrived in self.events:
                if event.kind is kind and event.instance_id == instance_id:
                    return arrived
        return None

    def stop(self) -> None:
        """Stop consuming (the watch stays open; close it separately)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
