"""Fault scenarios for deployments that can play them: restarts, leader loss, lost history, lost connections.

Each scenario holds a service cache (:class:`~discovery.testing.checks.CacheProbe`)
to the same promise as the watch. Each mixin names the hook it needs; a backend's test module combines the
mixins its deployment supports (``class TestEtcdCluster(RegistrySuite,
LeaderKillSuite, EtcdClusterFixtures)``), so nothing is skipped at run time:
what runs is declared in code. Under every fault the contract is the same:
the watch stays alive, and either every change arrives, or a resync is
flagged and the watcher converges to the store.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from discovery import BackendError, EventKind, NoticeKind, Registration, Registry, connect
from discovery.testing.checks import CacheProbe, assert_ordered, collect, kinds_by_instance, wait_converged
from discovery.testing.fixtures import RegistryFixtures
from discovery.testing.proxy import blocked, proxied

Parity = dict[str, Any]


def retry(action: Callable[[], Any], timeout: float) -> Any:
    """Call ``action`` until it stops raising BackendError (the server is coming back)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return action()
        except BackendError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class _LoadWriter:
    """Registers instances and deregisters every other one, riding out server faults."""

    def __init__(self, registry: Registry, service: str, count: int, ttl: float, timeout: float) -> None:
        self.registry = registry
        self.service = service
        self.count = count
        self.ttl = ttl
        self.timeout = timeout
        self.progress = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="load-writer", daemon=True)

    def _run(self) -> None:
        try:
            for i in range(self.count):
                register = functools.partial(self.registry.register, self.service, f"i{i}", ttl=self.ttl)
                registration: Registration = retry(register, self.timeout)
                if i % 2:
                    retry(registration.close, self.timeout)
                self.progress = i + 1
        except BaseException as exc:
            self.error = exc

    def start(self) -> _LoadWriter:
        self._thread.start()
        return self

    def wait_progress(self, done: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.progress < done and self.error is None:
            assert time.monotonic() < deadline, f"writer stuck at {self.progress}/{done}"
            time.sleep(0.02)

    def join(self) -> None:
        self._thread.join(self.timeout)
        assert not self._thread.is_alive(), "writer did not finish"
        if self.error is not None:
            raise self.error


def _check_under_fault(registry: Registry, other: Registry, fault: Callable[[], None], count: int, fx: Any) -> Parity:
    with other.watch("load") as watch, CacheProbe(other, "load") as probe:
        writer = _LoadWriter(registry, "load", count, fx.ttl * 20, fx.timeout).start()
        writer.wait_progress(count // 3, fx.timeout)
        fault()
        writer.join()
        events = wait_converged(watch, other, [], fx.timeout)
        assert not watch.closed
        probe.assert_converged(other, fx.timeout)
    assert_ordered(events)
    if watch.resyncs == 0:
        # A write whose reply the fault cut off is retried and may land twice:
        # the UPDATED it then causes is a real change, so only ADDED and
        # REMOVED are compared with what the writer did.
        history = {
            path: [kind for kind in kinds if kind is not EventKind.UPDATED]
            for path, kinds in kinds_by_instance(events).items()
        }
        expected = {f"load/i{i}": [EventKind.ADDED] + ([EventKind.REMOVED] if i % 2 else []) for i in range(count)}
        wrong = {path: history.get(path) for path in expected if history.get(path) != expected[path]}
        assert history == expected, f"no resync was flagged, so every change must have arrived; differing: {wrong}"
    present = sorted(i.id for i in other.instances("load"))
    assert present == sorted(f"i{i}" for i in range(0, count, 2))
    return {"expected": count + count // 2, "seen": len(events), "resyncs": watch.resyncs}


class ServerRestartSuite(RegistryFixtures):
    """A server (every member) killed with SIGKILL and restarted on its data, mid-stream (hook: restart_server)."""

    def test_server_killed_and_restarted_mid_stream(self, registry: Registry, other: Registry, parity: Parity) -> None:
        parity.update(_check_under_fault(registry, other, self.restart_server, self.load, self))


class LeaderKillSuite(RegistryFixtures):
    """A cluster's leader killed with SIGKILL under load (hook: kill_leader)."""

    def test_leader_killed_under_load(self, registry: Registry, other: Registry, parity: Parity) -> None:
        parity.update(_check_under_fault(registry, other, self.kill_leader, self.load, self))


class HistoryGapSuite(RegistryFixtures):
    """A watch resuming from a revision the server's history no longer holds (hooks: lose_history, gap_reason)."""

    def test_watch_from_lost_history_resyncs(self, registry: Registry, parity: Parity) -> None:
        lease = registry.register("hist", "a", meta={"n": 0}, ttl=self.ttl * 20)
        registry.register("hist", "gone", ttl=self.ttl * 20).close()
        since = registry.snapshot("hist").revision
        for n in range(1, 11):
            lease.update(meta={"n": n})
        registry.register("hist", "b", ttl=self.ttl * 20)
        self.lose_history(registry, since)
        with registry.watch("hist", since=since) as watch:
            events = collect(watch, lambda e: {x.instance_id for x in e} >= {"a", "b"}, self.timeout)
            events = wait_converged(watch, registry, events, self.timeout)
        parity.update(expected=2, seen=len(events), resyncs=watch.resyncs)
        assert watch.gap_reasons[:1] == (self.gap_reason,)
        assert all(e.resync for e in events)
        assert {(e.instance_id, e.kind) for e in events} == {("a", EventKind.ADDED), ("b", EventKind.ADDED)}
        final = {e.instance_id: e.instance for e in events}
        assert final["a"] is not None and final["a"].meta.get("n") == 10


class ConnectionLossSuite(RegistryFixtures):
    """The watcher's connection lost for less than the session timeout (hook: connection_lost)."""

    def test_connection_loss_shorter_than_session(self, registry: Registry, other: Registry, parity: Parity) -> None:
        kept = other.register("conn", "watcher-own", ttl=self.ttl * 20)
        with other.watch("conn") as watch, CacheProbe(other, "conn") as probe:
            registry.register("conn", "before", ttl=self.ttl * 20)
            events = collect(watch, lambda e: len(e) >= 1, self.timeout)
            with self.connection_lost(other):
                retry(lambda: registry.register("conn", "during", ttl=self.ttl * 20), self.timeout)
            retry(lambda: registry.register("conn", "after", ttl=self.ttl * 20), self.timeout)
            events = wait_converged(watch, other, events, self.timeout)
            parity.update(expected=3, seen=len(events), resyncs=watch.resyncs)
            probe.assert_converged(other, self.timeout)
            assert NoticeKind.RESYNC_STARTED in [n.kind for n in probe.notices]
        assert "connection-loss" in watch.gap_reasons
        assert {e.instance_id for e in events} >= {"before", "during", "after"}
        assert kept.alive


class PartitionSuite(RegistryFixtures):
    """One client cut off while the store changes and its history is lost (hooks: lose_history, gap_reason).

    The client connects through loopback proxies (:mod:`discovery.testing.proxy`)
    that are then blocked, so only it is cut off. For deployments reached over
    the network; an in-process store has no connection to cut.
    """

    def test_cache_cut_off_while_history_is_lost_converges(self, registry: Registry, url: str, parity: Parity) -> None:
        lease = registry.register("part", "a", meta={"n": 0}, ttl=self.ttl * 20)
        with (
            proxied(url) as (through, proxies),
            connect(through, reconnect_timeout=self.timeout) as cut_off,
            CacheProbe(cut_off, "part") as probe,
        ):
            assert probe.cache.wait_for(lambda c: [i.id for i in c.instances("part")] == ["a"], self.timeout)
            with blocked(proxies):
                assert probe.cache.wait_for(lambda c: not c.connected, self.timeout), "the cut was not noticed"
                since = registry.snapshot("part").revision
                lease.update(meta={"n": 1})
                registry.register("part", "b", ttl=self.ttl * 20)
                registry.register("part", "gone", ttl=self.ttl * 20).close()
                self.lose_history(registry, since)
            probe.assert_converged(registry, self.timeout)
            reasons = [n.reason for n in probe.notices if n.kind is NoticeKind.RESYNC_STARTED]
            kinds = [n.kind for n in probe.notices]
            parity.update(expected=3, seen=len(probe.events), resyncs=len(reasons))
        assert self.gap_reason in reasons, reasons
        assert NoticeKind.DISCONNECTED in kinds and NoticeKind.CONNECTED in kinds, kinds
        assert all(e.resync for e in probe.events)
        assert [(i.id, dict(i.meta)) for i in probe.cache.instances("part")] == [("a", {"n": 1}), ("b", {})]


@contextlib.contextmanager
def paused(pause: Callable[[], None], resume: Callable[[], None], seconds: float) -> Iterator[None]:
    """Pause something (a server with SIGSTOP) for at least ``seconds``, resume it on exit."""
    pause()
    started = time.monotonic()
    try:
        yield
        remaining = seconds - (time.monotonic() - started)
        if remaining > 0:
            time.sleep(remaining)
    finally:
        resume()


__all__ = [
    "ConnectionLossSuite",
    "HistoryGapSuite",
    "LeaderKillSuite",
    "PartitionSuite",
    "ServerRestartSuite",
    "paused",
    "retry",
]
