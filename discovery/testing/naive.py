"""The mistake from the story, kept as a negative control: a new watch "from now" after every event.

``while True: print(client.watch('/nodes/', recursive=True))`` takes one
event per call and starts every call from the present, so whatever happens
between two calls is lost. :class:`NaiveRewatchLoop` does exactly that on
top of any registry, so the suite, the demo and the benchmark can show, on
the same server, how many events it loses while a real watch loses none.
"""

from __future__ import annotations

import threading

from discovery import DiscoveryError, Event, Registry


class NaiveRewatchLoop:
    """Re-watch after each event, with no resume point, in a background thread."""

    def __init__(self, registry: Registry, prefix: str) -> None:
        self.events: list[Event] = []
        self._registry = registry
        self._prefix = prefix
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="naive-rewatch", daemon=True)

    def start(self) -> NaiveRewatchLoop:
        """Start looping; returns self."""
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                with self._registry.watch(self._prefix) as watch:
                    event = watch.get(0.5)
            except DiscoveryError:
                continue
            if event is not None:
                self.events.append(event)

    def stop(self, timeout: float = 30.0) -> list[Event]:
        """Stop looping and return the events it saw."""
        self._stop.set()
        self._thread.join(timeout)
        return self.events
