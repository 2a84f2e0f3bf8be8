"""What a bare-client baseline is: a registrant of ephemeral keys, and a directory one client writes, another watches.

:class:`RawRegistrant` (for registration throughput) and :class:`RawChannel`
(for watch propagation) are implemented once per backend in the sibling
modules, with the client library alone; each says in ``describes`` what it
does, for the report. Raw keys live under the target's root, in paths of
their own, and each baseline removes what it wrote when closed.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Sequence
from typing import ClassVar

from discovery_bench.harness.targets import BenchTarget

ValueCallback = Callable[[bytes, float], None]
TIMEOUT = 10.0


def host_port(target: BenchTarget) -> tuple[str, int]:
    """The first ``(host, port)`` of ``target``'s URL."""
    return target.hosts[0]


class RawRegistrant(abc.ABC):
    """Registers ephemeral keys under one directory with a bare client."""

    describes: ClassVar[str]
    """What the baseline does, for the report."""

    def __init__(self, target: BenchTarget, service: str, ttl: float) -> None:
        self.target = target
        self.directory = f"{target.root}/{service}"
        self.ttl = ttl

    @abc.abstractmethod
    def register(self, instance_id: str, value: bytes) -> None:
        """Write one ephemeral key (lease, ttl or session) for ``instance_id``."""

    def register_async(self, ids: Sequence[str], value: bytes) -> None:
        """Issue every write without waiting, then wait for all (ZooKeeper only).

        Raises:
            NotImplementedError: the client has no asynchronous writes worth measuring.
        """
        raise NotImplementedError(f"no asynchronous baseline for {self.target.label}")

    @abc.abstractmethod
    def close(self) -> None:
        """Remove what was written and release the client."""


class RawChannel(abc.ABC):
    """A directory written by one bare client and watched by another, for propagation baselines."""

    describes: ClassVar[str]
    """What the baseline does, for the report."""

    def __init__(self, target: BenchTarget, service: str) -> None:
        self.target = target
        self.directory = f"{target.root}/{service}"
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @abc.abstractmethod
    def start(self, on_value: ValueCallback) -> None:
        """Start watching the directory; the watch is established on the server when this returns."""

    @abc.abstractmethod
    def write(self, name: str, value: bytes) -> None:
        """Create the key ``name`` in the directory with ``value``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop watching, delete the directory, release the clients."""

    def problems(self) -> list[str]:
        """What went wrong while watching that the delivered count alone would not explain (a dropped watch)."""
        return []

    def _spawn(self, loop: Callable[[], None]) -> None:
        self._thread = threading.Thread(target=loop, name=f"bench-raw-watch-{self.target.label}", daemon=True)
        self._thread.start()

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=5)
