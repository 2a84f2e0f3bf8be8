"""Conformance fixtures for the in-memory backend (a fresh named store per test), and registries on its variants."""

from __future__ import annotations

import uuid
from typing import ClassVar

from discovery import Registry
from discovery._config import resolve
from discovery.memory import MemoryBackend
from discovery.testing.fixtures import RegistryFixtures


class MemoryFixtures(RegistryFixtures):
    """Runs the suite on ``memory://``; a registrant lives in-process and crashes by abandoning its leases."""

    label: ClassVar[str] = "memory"
    ttl: ClassVar[float] = 0.5
    timeout: ClassVar[float] = 30.0
    in_process_registrant: ClassVar[bool] = True

    def make_url(self) -> str:
        return f"memory://suite-{uuid.uuid4().hex[:12]}{self.unique_root()}"

    def lose_session(self, registry: Registry) -> None:
        assert isinstance(registry.backend, MemoryBackend)
        registry.backend.expire_sessions()


class MemoryHistoryFixtures(MemoryFixtures):
    """A memory store with a 20-revision history, so that history can be lost on demand."""

    window: ClassVar[int] = 20

    def make_url(self) -> str:
        return f"{super().make_url()}?history_window={self.window}"

    def lose_history(self, registry: Registry, since: int) -> None:
        for n in range(self.window + 5):
            registry.backend.put("filler/key", str(n).encode(), None)


__all__ = ["MemoryFixtures", "MemoryHistoryFixtures"]


def registry_on(backend_class: type[MemoryBackend], url: str, **options: object) -> Registry:
    """A registry on ``backend_class`` (the memory backend or a variant of it), configured as ``connect(url)`` would.

    ``options`` go to the backend's constructor: a faulty variant's fault
    (the soak's controls, the engine's tests) is set there.
    """
    resolved = resolve(url, None, {})
    return Registry(backend_class(resolved.target, **options), resolved.url, resolved.settings)
