"""Bare-client baselines: the same operations as the registry, with only the client library.

A registry is worth its overhead only if it stays close to what the client
library alone does on the same server, so every registration and watch
measurement has a raw twin here, one module per backend: python-etcd for
etcd v2 (:mod:`~discovery_bench.harness.raw.etcd2`), the v3 JSON gateway
through ``requests`` for etcd v3 (:mod:`~discovery_bench.harness.raw.etcd`),
kazoo for ZooKeeper (:mod:`~discovery_bench.harness.raw.zookeeper`). The
memory backend has no client library: its baseline is the backend's own
primitives (:mod:`~discovery_bench.harness.raw.memory`), which shows what the
core's API layer costs. :func:`raw_registrant` and :func:`raw_channel` pick
the target's; :data:`RAW_CLIENTS` and :data:`RAW_WATCHES` say what each does,
for the report.
"""

from __future__ import annotations

from discovery_bench.harness.raw.base import RawChannel, RawRegistrant, ValueCallback
from discovery_bench.harness.raw.etcd import EtcdChannel, EtcdRegistrant
from discovery_bench.harness.raw.etcd2 import Etcd2Channel, Etcd2Registrant
from discovery_bench.harness.raw.memory import MemoryChannel, MemoryRegistrant
from discovery_bench.harness.raw.zookeeper import ZooKeeperChannel, ZooKeeperRegistrant
from discovery_bench.harness.targets import BenchTarget

__all__ = [
    "RAW_CLIENTS",
    "RAW_WATCHES",
    "RawChannel",
    "RawRegistrant",
    "ValueCallback",
    "raw_channel",
    "raw_registrant",
]

_REGISTRANTS: dict[str, type[RawRegistrant]] = {
    "memory": MemoryRegistrant,
    "etcd": EtcdRegistrant,
    "etcd2": Etcd2Registrant,
    "zookeeper": ZooKeeperRegistrant,
}
_CHANNELS: dict[str, type[RawChannel]] = {
    "memory": MemoryChannel,
    "etcd": EtcdChannel,
    "etcd2": Etcd2Channel,
    "zookeeper": ZooKeeperChannel,
}

RAW_CLIENTS = {backend: kind.describes for backend, kind in _REGISTRANTS.items()}
"""Per backend, what the raw registration baseline does."""

RAW_WATCHES = {backend: kind.describes for backend, kind in _CHANNELS.items()}
"""Per backend, what the raw watch baseline does."""


def raw_registrant(target: BenchTarget, service: str, ttl: float) -> RawRegistrant:
    """A bare-client registrant for ``target``'s backend, connected (connecting is not measured)."""
    return _REGISTRANTS[target.backend](target, service, ttl)


def raw_channel(target: BenchTarget, service: str) -> RawChannel:
    """A bare-client writer and watcher of one directory on ``target``'s server."""
    return _CHANNELS[target.backend](target, service)
