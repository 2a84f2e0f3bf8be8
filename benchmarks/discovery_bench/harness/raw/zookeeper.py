"""The ZooKeeper baseline: kazoo alone, with the persistent recursive watch a hand-rolled client would add itself.

``create(..., ephemeral=True, makepath=True)`` for registrations, and
``create_async`` for the pipelined figure. For watches, the best a raw
client can do on ZooKeeper 3.6+: one ``addWatch`` of mode
``PERSISTENT_RECURSIVE`` on the directory, which notifies every creation
below it for as long as the connection lives (no re-listing, no one-shot
watch to re-arm), and a pipelined ``get_async()`` of each created child for
its value. kazoo 2.11 has no ``addWatch``, so this module writes it the way
a user without the registry would (written here, not borrowed from the
registry's backend): the request is a few bytes of jute (type 106; the path
as a length-prefixed UTF-8 string, then the mode as a big-endian int) queued
through kazoo's private ``KazooClient._call``, and the notifications, which
kazoo's dispatcher drops because no one-shot watcher asked for them, are
read by wrapping the connection's private ``_read_watch_event`` on that
instance. The watch must hear every notification: the channel counts them
against the children written, and a creation not notified by the end of the
round or a connection drop (which ends a persistent watch) is reported as a
problem of the round, never hidden.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from kazoo.protocol.serialization import Watch
from kazoo.protocol.states import KazooState

from discovery_bench.harness.raw.base import TIMEOUT, RawChannel, RawRegistrant, ValueCallback
from discovery_bench.harness.targets import BenchTarget

_CREATED = 1
"""The event type of a node creation in a watch notification."""
_PERSISTENT_RECURSIVE = 1
"""``AddWatchMode.PERSISTENT_RECURSIVE``."""


@dataclass(frozen=True)
class _AddWatch:
    """ZooKeeper's ``addWatch`` request (3.6+), shaped as kazoo's request queue expects."""

    type: ClassVar[int] = 106
    path: str
    mode: int = _PERSISTENT_RECURSIVE

    def serialize(self) -> bytes:
        path = self.path.encode()
        return struct.pack("!i", len(path)) + path + struct.pack("!i", self.mode)

    @classmethod
    def deserialize(cls, buffer: bytes, offset: int) -> None:
        return None  # the reply is its header alone


class ZooKeeperRegistrant(RawRegistrant):
    """Creates ephemeral znodes through kazoo."""

    describes = "kazoo create(path, value, ephemeral=True, makepath=True)"

    def __init__(self, target: BenchTarget, service: str, ttl: float) -> None:
        super().__init__(target, service, ttl)
        self._client = KazooClient(hosts=",".join(f"{h}:{p}" for h, p in target.hosts), timeout=max(ttl, 2.0))
        self._client.start(timeout=TIMEOUT)

    def register(self, instance_id: str, value: bytes) -> None:
        self._client.create(f"{self.directory}/{instance_id}", value, ephemeral=True, makepath=True)

    def register_async(self, ids: Sequence[str], value: bytes) -> None:
        self._client.ensure_path(self.directory)
        pending = [
            self._client.create_async(f"{self.directory}/{instance_id}", value, ephemeral=True) for instance_id in ids
        ]
        for result in pending:
            result.get(timeout=TIMEOUT)

    def close(self) -> None:
        try:
            self._client.delete(self.directory, recursive=True)
        except NoNodeError:
            pass
        finally:
            self._client.stop()
            self._client.close()


class ZooKeeperChannel(RawChannel):
    """A persistent recursive watch on the directory (hand-rolled ``addWatch``), a ``get_async()`` per new child."""

    describes = (
        "kazoo + hand-rolled addWatch(dir, PERSISTENT_RECURSIVE) (ZooKeeper 3.6+; no re-listing), "
        "a pipelined get_async() of each created child"
    )

    def __init__(self, target: BenchTarget, service: str) -> None:
        super().__init__(target, service)
        hosts = ",".join(f"{h}:{p}" for h, p in target.hosts)
        self._writer = KazooClient(hosts=hosts)
        self._reader = KazooClient(hosts=hosts)
        self._on_value: ValueCallback | None = None
        self.notifications = 0
        """Creations notified below the directory."""
        self.written = 0
        """Children created by the writer."""
        self.lost: list[str] = []
        self._tap(self._reader)
        self._reader.add_listener(self._state)
        self._writer.start(timeout=TIMEOUT)
        self._reader.start(timeout=TIMEOUT)

    def _tap(self, client: KazooClient) -> None:
        """See every notification the connection reads before kazoo's dispatcher drops it (private API)."""
        connection = client._connection
        dispatch = connection._read_watch_event
        below = f"{self.directory}/"

        def read_watch_event(buffer: bytes, offset: int, *rest: Any) -> Any:
            event, _ = Watch.deserialize(buffer, offset)
            if event.type == _CREATED and event.path.startswith(below) and not self._stopped.is_set():
                self.notifications += 1
                client.get_async(event.path).rawlink(self._got)
            return dispatch(buffer, offset, *rest)

        connection._read_watch_event = read_watch_event

    def _got(self, result: Any) -> None:
        arrived = time.perf_counter()
        try:
            data, _ = result.get_nowait()
        except NoNodeError:
            return
        if self._on_value is not None:
            self._on_value(data, arrived)

    def _state(self, state: str) -> None:
        if state in (KazooState.SUSPENDED, KazooState.LOST) and not self._stopped.is_set():
            self.lost.append(f"watcher connection {state.lower()}: the persistent watch ended with it")

    def start(self, on_value: ValueCallback) -> None:
        self._on_value = on_value
        self._writer.ensure_path(self.directory)
        reply = self._reader.handler.async_result()
        self._reader._call(_AddWatch(self.directory), reply)  # kazoo's private request queue
        reply.get(timeout=TIMEOUT)

    def write(self, name: str, value: bytes) -> None:
        self._writer.create(f"{self.directory}/{name}", value)
        self.written += 1

    def problems(self) -> list[str]:
        missing = self.written - self.notifications
        unheard = [f"{missing} of {self.written} creations not notified by the end of the round"] if missing > 0 else []
        return [*self.lost, *unheard]

    def close(self) -> None:
        self._stopped.set()
        try:
            self._writer.delete(self.directory, recursive=True)
        except NoNodeError:
            pass
        finally:
            for client in (self._reader, self._writer):
                client.stop()
                client.close()
