"""Bare-client baselines: the same operations as the registry, with only the client library.

A registry is worth its overhead only if it stays close to what the client
library alone does on the same server, so every registration and watch
measurement has a raw twin here: python-etcd's ``client.write(key, value,
ttl=...)`` and recursive ``read(wait=True, waitIndex=...)`` loop for etcd v2; the v3
JSON gateway through ``requests`` (``/v3/lease/grant``, ``/v3/kv/put`` with
base64 key, value and lease, a ``/v3/watch`` stream) for etcd v3; kazoo's
``create(..., ephemeral=True, makepath=True)``, ``create_async`` and a
``ChildrenWatch`` for ZooKeeper. The memory backend has no client library: its
baseline is the backend's own primitives (``put`` with a session, the raw
change stream), which shows what the core's API layer costs. Raw keys live
under the target's root, in paths of their own, and each baseline removes
what it wrote when closed.
"""

from __future__ import annotations

import abc
import base64
import contextlib
import json
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import etcd
import requests
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from discovery import Registry
from discovery.backend import ChangeStream, Session
from discovery.bench._targets import Target, base_label

ValueCallback = Callable[[bytes, float], None]
_TIMEOUT = 10.0

RAW_CLIENTS = {
    "memory": "MemoryBackend.put with a session (no client library: the core's own primitive)",
    "etcd": "requests on the v3 JSON gateway: /v3/lease/grant, /v3/kv/put with the lease",
    "etcd2": "python-etcd client.write(key, value, ttl=...)",
    "zookeeper": "kazoo create(path, value, ephemeral=True, makepath=True)",
}
RAW_WATCHES = {
    "memory": "MemoryBackend.watch raw change stream",
    "etcd": "v3 JSON gateway /v3/watch stream on the prefix (requests)",
    "etcd2": "python-etcd read(dir, wait=True, recursive=True, waitIndex=last+1) loop",
    "zookeeper": "kazoo ChildrenWatch, then get() of each new child",
}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _host_port(target: Target) -> tuple[str, int]:
    return target.hosts[0]


class RawRegistrant(abc.ABC):
    """Registers ephemeral keys under one directory with a bare client."""

    def __init__(self, target: Target, service: str, ttl: float) -> None:
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


class _MemoryRegistrant(RawRegistrant):
    def __init__(self, target: Target, service: str, ttl: float) -> None:
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


class _Etcd2Registrant(RawRegistrant):
    def __init__(self, target: Target, service: str, ttl: float) -> None:
        super().__init__(target, service, ttl)
        host, port = _host_port(target)
        self._client = etcd.Client(host=host, port=port, protocol="http", read_timeout=_TIMEOUT)

    def register(self, instance_id: str, value: bytes) -> None:
        self._client.write(f"{self.directory}/{instance_id}", value.decode(), ttl=math.ceil(self.ttl))

    def close(self) -> None:
        with contextlib.suppress(etcd.EtcdKeyNotFound):
            self._client.delete(self.directory, recursive=True, dir=True)
        self._client.http.clear()


class _EtcdRegistrant(RawRegistrant):
    def __init__(self, target: Target, service: str, ttl: float) -> None:
        super().__init__(target, service, ttl)
        host, port = _host_port(target)
        self._base = f"http://{host}:{port}"
        self._http = requests.Session()
        self._lease: str | None = None

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self._http.post(f"{self._base}{path}", json=body, timeout=_TIMEOUT)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def register(self, instance_id: str, value: bytes) -> None:
        if self._lease is None:
            self._lease = str(self._post("/v3/lease/grant", {"TTL": math.ceil(self.ttl)})["ID"])
        key = f"{self.directory}/{instance_id}".encode()
        self._post("/v3/kv/put", {"key": _b64(key), "value": _b64(value), "lease": self._lease})

    def close(self) -> None:
        if self._lease is not None:
            self._post("/v3/lease/revoke", {"ID": self._lease})
        self._http.close()


class _ZooKeeperRegistrant(RawRegistrant):
    def __init__(self, target: Target, service: str, ttl: float) -> None:
        super().__init__(target, service, ttl)
        self._client = KazooClient(hosts=",".join(f"{h}:{p}" for h, p in target.hosts), timeout=max(ttl, 2.0))
        self._client.start(timeout=_TIMEOUT)

    def register(self, instance_id: str, value: bytes) -> None:
        self._client.create(f"{self.directory}/{instance_id}", value, ephemeral=True, makepath=True)

    def register_async(self, ids: Sequence[str], value: bytes) -> None:
        self._client.ensure_path(self.directory)
        pending = [
            self._client.create_async(f"{self.directory}/{instance_id}", value, ephemeral=True) for instance_id in ids
        ]
        for result in pending:
            result.get(timeout=_TIMEOUT)

    def close(self) -> None:
        try:
            self._client.delete(self.directory, recursive=True)
        except NoNodeError:
            pass
        finally:
            self._client.stop()
            self._client.close()


def raw_registrant(target: Target, service: str, ttl: float) -> RawRegistrant:
    """A bare-client registrant for ``target``'s backend, connected (connecting is not measured)."""
    kinds: dict[str, type[RawRegistrant]] = {
        "memory": _MemoryRegistrant,
        "etcd": _EtcdRegistrant,
        "etcd2": _Etcd2Registrant,
        "zookeeper": _ZooKeeperRegistrant,
    }
    return kinds[base_label(target.label)](target, service, ttl)


class RawChannel(abc.ABC):
    """A directory written by one bare client and watched by another, for propagation baselines."""

    def __init__(self, target: Target, service: str) -> None:
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

    def _spawn(self, loop: Callable[[], None]) -> None:
        self._thread = threading.Thread(target=loop, name=f"bench-raw-watch-{self.target.label}", daemon=True)
        self._thread.start()

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=5)


class _MemoryChannel(RawChannel):
    def __init__(self, target: Target, service: str) -> None:
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


class _Etcd2Channel(RawChannel):
    def __init__(self, target: Target, service: str) -> None:
        super().__init__(target, service)
        host, port = _host_port(target)
        self._writer = etcd.Client(host=host, port=port, protocol="http", read_timeout=_TIMEOUT)
        self._reader = etcd.Client(host=host, port=port, protocol="http", read_timeout=_TIMEOUT)
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


class _EtcdChannel(RawChannel):
    def __init__(self, target: Target, service: str) -> None:
        super().__init__(target, service)
        host, port = _host_port(target)
        self._base = f"http://{host}:{port}"
        self._writer = requests.Session()
        self._reader = requests.Session()
        self._response: requests.Response | None = None
        self._created = threading.Event()
        prefix = f"{self.directory}/".encode()
        self._range = {"key": _b64(prefix), "range_end": _b64(prefix[:-1] + bytes([prefix[-1] + 1]))}

    def start(self, on_value: ValueCallback) -> None:
        response = self._response = self._reader.post(
            f"{self._base}/v3/watch", json={"create_request": self._range}, stream=True, timeout=(_TIMEOUT, None)
        )
        response.raise_for_status()

        def loop() -> None:
            try:
                for line in response.iter_lines():
                    if self._stopped.is_set():
                        return
                    if not line:
                        continue
                    arrived = time.perf_counter()
                    result = json.loads(line).get("result", {})
                    if result.get("created"):
                        self._created.set()
                    for event in result.get("events", ()):
                        value = event.get("kv", {}).get("value")
                        if value:
                            on_value(base64.b64decode(value), arrived)
            except (requests.RequestException, ValueError, AttributeError):
                return

        self._spawn(loop)
        if not self._created.wait(_TIMEOUT):
            raise TimeoutError("the v3 watch stream was not created in time")

    def write(self, name: str, value: bytes) -> None:
        body = {"key": _b64(f"{self.directory}/{name}".encode()), "value": _b64(value)}
        self._writer.post(f"{self._base}/v3/kv/put", json=body, timeout=_TIMEOUT).raise_for_status()

    def close(self) -> None:
        self._stopped.set()
        self.write("stop", b"{}")
        self._join()
        if self._response is not None:
            self._response.close()
        self._writer.post(f"{self._base}/v3/kv/deleterange", json=self._range, timeout=_TIMEOUT)
        self._writer.close()
        self._reader.close()


class _ZooKeeperChannel(RawChannel):
    """kazoo's ChildrenWatch on the directory, and a read of each new child for its value."""

    def __init__(self, target: Target, service: str) -> None:
        super().__init__(target, service)
        hosts = ",".join(f"{h}:{p}" for h, p in target.hosts)
        self._writer = KazooClient(hosts=hosts)
        self._reader = KazooClient(hosts=hosts)
        self._writer.start(timeout=_TIMEOUT)
        self._reader.start(timeout=_TIMEOUT)
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
        armed.wait(_TIMEOUT)
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


def raw_channel(target: Target, service: str) -> RawChannel:
    """A bare-client writer and watcher of one directory on ``target``'s server."""
    kinds: dict[str, type[RawChannel]] = {
        "memory": _MemoryChannel,
        "etcd": _EtcdChannel,
        "etcd2": _Etcd2Channel,
        "zookeeper": _ZooKeeperChannel,
    }
    return kinds[base_label(target.label)](target, service)
