"""Populations: N live instances that the keep-alive, memory and resync workloads measure.

A :class:`HolderPopulation` is one :mod:`~discovery_bench.harness.holder` process
holding every instance on one connection, grown step by step (100, 1,000,
10,000) so the keep-alive cost can be read at each size, and measured from
outside with psutil (CPU seconds, resident memory); the memory and resync
measurements then reuse it rather than registering 10,000 instances again.
An in-process store (memory://) is private to a process, so its resync
population is a :class:`LocalPopulation` in the benchmark's own process.
Either can spread its instances over several services below its own
(``services``; :func:`~discovery_bench.harness.holder.service_of`), as the
dashboard workload's tree needs.
"""

from __future__ import annotations

import abc
import contextlib

import psutil

from discovery import Registration, Registry
from discovery_bench.harness import holder
from discovery_bench.harness.procs import Child, ChildFailed, Children
from discovery_bench.harness.targets import BenchTarget

_SECONDS_PER_1000 = 30.0


class Population(abc.ABC):
    """Live instances of one service (or spread over ``services`` below it), that can grow and change."""

    def __init__(self, service: str, services: int = 1) -> None:
        self.service = service
        self.services = services
        self.size = 0

    @abc.abstractmethod
    def grow(self, size: int) -> None:
        """Register instances until ``size`` are held."""

    @abc.abstractmethod
    def update(self, count: int, tag: str) -> None:
        """Change the metadata of the first ``count`` instances; return once every write is acknowledged."""

    @abc.abstractmethod
    def close(self) -> None:
        """Deregister everything."""


class HolderPopulation(Population):
    """Instances held by one holder process."""

    def __init__(self, children: Children, target: BenchTarget, service: str, ttl: float, services: int = 1) -> None:
        super().__init__(service, services)
        self._local = target.local
        url = target.url_with(**target.session_options(ttl))
        self.child: Child = children.spawn(holder.__name__, url, service, f"{ttl:g}", str(services), interactive=True)
        self.child.expect("connected", 60)
        self._process = psutil.Process(self.child.pid)

    def grow(self, size: int) -> None:
        self.child.send(f"grow {size}")
        self.child.expect("ready", 60 + (size - self.size) / 1000 * _SECONDS_PER_1000)
        self.size = max(self.size, size)

    def update(self, count: int, tag: str) -> None:
        self.child.send(f"update {count} {tag}")
        self.child.expect("updated", 60 + count / 1000 * _SECONDS_PER_1000)

    def status(self) -> tuple[int, int]:
        """(registrations alive, sessions held) as the holder sees them."""
        alive, sessions, _ = self.health()
        return alive, sessions

    def health(self) -> tuple[int, int, int]:
        """(registrations alive, sessions held, re-registrations since the holder started) as the holder sees them.

        A re-registration is an instance the server dropped (its key expired,
        its session or lease was lost) that the holder wrote again.
        """
        self.child.send("status")
        fields = self.child.expect("status", 30)
        return int(fields[1]), int(fields[2]), int(fields[3])

    def open_watch(self) -> int:
        """Open a watch over the population inside the holder; return the instances in its snapshot."""
        self.child.send("watch")
        return int(self.child.expect("watching", 60 + self.size / 1000 * _SECONDS_PER_1000)[1])

    def cpu_seconds(self) -> float:
        """User plus system CPU seconds the holder has used."""
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        """The holder's resident memory, bytes."""
        return int(self._process.memory_info().rss)

    def close(self, *, deregister: bool = False) -> None:
        """Deregister everything and end the holder; on a server of our own, which is about to stop, just kill it.

        Args:
            deregister: deregister even on a server of our own, when other
                workloads follow on it and N instances expiring later would
                disturb them.
        """
        if self._local and not deregister:
            self.child.kill()
            return
        if self.child.running:
            with contextlib.suppress(ChildFailed):  # already gone: finish() below reaps it
                self.child.send("quit")
        self.child.finish(30)


class LocalPopulation(Population):
    """Instances held by a registry in this process (for memory://)."""

    def __init__(self, target: BenchTarget, service: str, ttl: float, services: int = 1) -> None:
        super().__init__(service, services)
        self._registry: Registry = target.connect()
        self._ttl = ttl
        self._registrations: list[Registration] = []

    def grow(self, size: int) -> None:
        for index in range(len(self._registrations), size):
            service = holder.service_of(self.service, self.services, index)
            self._registrations.append(
                self._registry.register(service, f"p{index}", address="127.0.0.1", ttl=self._ttl)
            )
        self.size = max(self.size, size)

    def update(self, count: int, tag: str) -> None:
        for registration in self._registrations[:count]:
            registration.update(meta={"v": tag})

    def close(self) -> None:
        self._registry.close()
