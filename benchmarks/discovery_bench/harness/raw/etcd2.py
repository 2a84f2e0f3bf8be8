"""The etcd v2 baseline: python-etcd alone.

``client.write(key, value, ttl=...)`` for registrations; a recursive
``read(wait=True, waitIndex=...)`` loop for watches, re-reading the index
when the history window has moved past it.
"""

from __future__ import annotations

import contextlib
import math
import time

import etcd

from discovery_bench.harness.raw.base import TIMEOUT, RawChannel, RawRegistrant, ValueCallback, host_port
from discovery_bench.harness.targets import BenchTarget


class Etcd2Registrant(RawRegistrant):
    """Writes keys with a ttl through python-etcd."""

    describes = "python-etcd client.write(key, value, ttl=...)"

    def __init__(self, target: BenchTarget, service: str, ttl: float) -> None:
        super().__init__(target, service, ttl)
        host, port = host_port(target)
        self._client = etcd.Client(host=host, port=port, protocol="http", read_timeout=TIMEOUT)

    def register(self, instance_id: str, value: bytes) -> None:
        self._client.write(f"{self.directory}/{instance_id}", value.decode(), ttl=math.ceil(self.ttl))

    def close(self) -> None:
        with contextlib.suppress(etcd.EtcdKeyNotFound):
            self._client.delete(self.directory, recursive=True, dir=True)
        self._client.http.clear()


class Etcd2Channel(RawChannel):
    """Writes keys and follows them with a recursive wait loop through python-etcd."""

    describes = "python-etcd read(dir, wait=True, recursive=True, waitIndex=last+1) loop"

    def __init__(self, target: BenchTarget, service: str) -> None:
        super().__init__(target, service)
        host, port = host_port(target)
        self._writer = etcd.Client(host=host, port=port, protocol="http", read_timeout=TIMEOUT)
        self._reader = etcd.Client(host=host, port=port, protocol="http", read_timeout=TIMEOUT)
        self.gaps = 0

    def start(self, on_value: ValueCallback) -> None:
        first = self._writer.write(f"{self.directory}/start", "{}")
        index = int(first.modifiedIndex) + 1

        def loop() -> None:
            nonlocal index
            while not self._stopped.is_set():
                try:
                    result = self._reader.read(self.directory, wait=True, recursive=True, waitIndex=index, timeout=1.0)
                except etcd.EtcdEventIndexCleared:
                    self.gaps += 1
                    index = int(self._reader.read(self.directory).etcd_index) + 1
                    continue
                except (etcd.EtcdException, OSError, ValueError):
                    continue
                arrived = time.perf_counter()
                index = int(result.modifiedIndex) + 1
                if result.value is not None:
                    on_value(str(result.value).encode(), arrived)

        self._spawn(loop)

    def write(self, name: str, value: bytes) -> None:
        self._writer.write(f"{self.directory}/{name}", value.decode())

    def close(self) -> None:
        self._stopped.set()
        self._join()
        with contextlib.suppress(etcd.EtcdKeyNotFound):
            self._writer.delete(self.directory, recursive=True, dir=True)
        self._writer.http.clear()
        self._reader.http.clear()
