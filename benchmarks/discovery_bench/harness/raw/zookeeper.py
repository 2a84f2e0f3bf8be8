"""The ZooKeeper baseline: kazoo alone.

``create(..., ephemeral=True, makepath=True)`` for registrations, and
``create_async`` for the pipelined figure; a ``ChildrenWatch`` and a ``get()``
of each new child for watches.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from discovery_bench.harness.raw.base import TIMEOUT, RawChannel, RawRegistrant, ValueCallback
from discovery_bench.harness.targets import BenchTarget


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
    """kazoo's ChildrenWatch on the directory, and a read of each new child for its value."""

    describes = "kazoo ChildrenWatch, then get() of each new child"

    def __init__(self, target: BenchTarget, service: str) -> None:
        super().__init__(target, service)
        hosts = ",".join(f"{h}:{p}" for h, p in target.hosts)
        self._writer = KazooClient(hosts=hosts)
        self._reader = KazooClient(hosts=hosts)
        self._writer.start(timeout=TIMEOUT)
        self._reader.start(timeout=TIMEOUT)
        self._lists: queue.Queue[list[str] | None] = queue.Queue()

    def start(self, on_value: ValueCallback) -> None:
        self._writer.ensure_path(self.directory)
        armed = threading.Event()

        def changed(children: list[str]) -> bool:
            armed.set()
            if self._stopped.is_set():
                return False
            self._lists.put(list(children))
            return True

        def loop() -> None:
            known: set[str] = set()
            while (children := self._lists.get()) is not None:
                for child in sorted(set(children) - known):
                    known.add(child)
                    try:
                        data, _ = self._reader.get(f"{self.directory}/{child}")
                    except NoNodeError:
                        continue
                    on_value(data, time.perf_counter())

        self._reader.ChildrenWatch(self.directory, changed)
        armed.wait(TIMEOUT)
        self._spawn(loop)

    def write(self, name: str, value: bytes) -> None:
        self._writer.create(f"{self.directory}/{name}", value)

    def close(self) -> None:
        self._stopped.set()
        self._lists.put(None)
        self._join()
        try:
            self._writer.delete(self.directory, recursive=True)
        except NoNodeError:
            pass
        finally:
            for client in (self._reader, self._writer):
                client.stop()
                client.close()
