"""The in-process baseline: the memory backend's own primitives, since it has no client library.

``put`` with a session for registrations and the backend's raw change stream
for watches show what the core's API layer costs on top of its store.
"""

from __future__ import annotations

import time

from discovery import Registry
from discovery.backend import ChangeStream, Session
from discovery_bench.harness.raw.base import RawChannel, RawRegistrant, ValueCallback
from discovery_bench.harness.targets import BenchTarget


class MemoryRegistrant(RawRegistrant):
    """Puts keys with one session of the memory backend."""

    describes = "MemoryBackend.put with a session (no client library: the core's own primitive)"

    def __init__(self, target: BenchTarget, service: str, ttl: float) -> None:
        super().__init__(target, service, ttl)
        self._registry: Registry = target.connect()
        self._service = service
        self._session: Session | None = None

    def register(self, instance_id: str, value: bytes) -> None:
        backend = self._registry.backend
        if self._session is None:
            self._session = backend.open_session(self.ttl)
        backend.put(f"{self._service}/{instance_id}", value, self._session)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
        self._registry.close()


class MemoryChannel(RawChannel):
    """Puts keys and reads the memory backend's raw change stream."""

    describes = "MemoryBackend.watch raw change stream"

    def __init__(self, target: BenchTarget, service: str) -> None:
        super().__init__(target, service)
        self._registry = target.connect()
        self._service = service
        self._stream: ChangeStream | None = None
        self._written: list[str] = []

    def start(self, on_value: ValueCallback) -> None:
        stream = self._stream = self._registry.backend.watch(f"{self._service}/", None)

        def loop() -> None:
            while not self._stopped.is_set():
                item = stream.next(0.2)
                arrived = time.perf_counter()
                for change in getattr(item, "changes", ()):
                    if change.value is not None:
                        on_value(change.value, arrived)

        self._spawn(loop)

    def write(self, name: str, value: bytes) -> None:
        self._registry.backend.put(f"{self._service}/{name}", value, None)
        self._written.append(name)

    def close(self) -> None:
        self._stopped.set()
        self._join()
        if self._stream is not None:
            self._stream.close()
        for name in self._written:
            self._registry.backend.delete(f"{self._service}/{name}")
        self._registry.close()
