"""Peer membership with tooz on the same servers (``--peers``): what a group-membership library sees.

tooz is what many teams reach for instead of a registry: its ``etcd3+http://``
and ``zookeeper://`` drivers keep group membership on the same etcd and
ZooKeeper. Its watchers are polled: ``run_watchers()`` (here every 0.1 s)
diffs the member list against the previous poll. Measured: join to
notification latency, then how many of 200 quick join+leave pairs the
watcher reports as joins and as leaves (a pair between two polls is
invisible to a diff). tooz has no etcd v2 or in-process driver, so those
backends show "not applicable".
"""

from __future__ import annotations

import contextlib
import importlib.util
import secrets
import threading
import time
from typing import Any

from tooz import coordination

from discovery_bench.harness.targets import BenchTarget
from discovery_bench.metrics import Metric
from discovery_bench.metrics import catalogue as m
from discovery_bench.report.results import Observations
from discovery_bench.workloads.base import Workload

_POLL_SECONDS = 0.1
_WAIT_SECONDS = 10.0
# tooz's drivers for the backends' servers, and the client library each needs.
_DRIVERS = {"etcd": "etcd3+http", "zookeeper": "zookeeper"}
_CLIENTS = {"etcd": "etcd3gw", "zookeeper": "kazoo"}


def tooz_url(target: BenchTarget) -> str | None:
    """The tooz coordinator URL on ``target``'s server, or None when tooz has no driver for it."""
    scheme = _DRIVERS.get(target.backend)
    if scheme is None:
        return None
    host, port = target.hosts[0]
    return f"{scheme}://{host}:{port}"


class _Seen:
    """Join and leave notifications with their arrival times, filled by the polling thread."""

    def __init__(self) -> None:
        self.joins: list[float] = []
        self.leaves: list[float] = []
        self.cond = threading.Condition()

    def joined(self, event: Any) -> None:
        with self.cond:
            self.joins.append(time.perf_counter())
            self.cond.notify_all()

    def left(self, event: Any) -> None:
        with self.cond:
            self.leaves.append(time.perf_counter())
            self.cond.notify_all()

    def wait(self, joins: int, leaves: int, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.joins) >= joins and len(self.leaves) >= leaves, timeout)


class PeersWorkload(Workload):
    """tooz group membership: notification latency and quick join+leave pairs seen."""

    name = "peers"
    title = "Peer membership (tooz)"
    description = (
        "tooz group membership on the same servers (drivers etcd3+http:// and zookeeper://), its watcher "
        "polled with run_watchers() every 0.1 s: join → notification latency, and how many joins and leaves "
        "it reports out of quick join+leave pairs."
    )

    def metrics(self) -> list[Metric]:
        pairs = self.profile.peer_pairs
        return [m.JOIN_MS_P50, m.JOIN_MS_MAX, m.LEAVE_MS_P50, m.PAIR_JOINS_SEEN.at(pairs), m.PAIR_LEAVES_SEEN.at(pairs)]

    def params(self) -> dict[str, Any]:
        return {
            "poll_interval_s": _POLL_SECONDS,
            "latency_samples": self.profile.peer_latency_samples,
            "pairs": self.profile.peer_pairs,
            "drivers": {label: f"{scheme}://" for label, scheme in _DRIVERS.items()},
        }

    def applies(self, target: BenchTarget) -> str | None:
        if tooz_url(target) is None:
            return "tooz has no driver for this backend (only etcd3+http:// and zookeeper://)"
        module = _CLIENTS[target.backend]
        if importlib.util.find_spec(module) is None:
            return f"tooz's driver needs {module}, which is not installed (pip install {module})"
        return None

    def run(self, target: BenchTarget, round_index: int) -> Observations:
        url = tooz_url(target)
        assert url is not None
        group = f"bench-{self.ctx.naming.run_id}-peers-{round_index}".encode()
        watcher = coordination.get_coordinator(url, f"watcher-{secrets.token_hex(3)}".encode())
        member = coordination.get_coordinator(url, f"member-{secrets.token_hex(3)}".encode())
        seen = _Seen()
        stop = threading.Event()
        obs = Observations()
        watcher.start(start_heart=True)
        member.start(start_heart=True)
        try:
            with contextlib.suppress(coordination.GroupAlreadyExist):
                watcher.create_group(group).get()
            watcher.watch_join_group(group, seen.joined)
            watcher.watch_leave_group(group, seen.left)

            def poll() -> None:
                while not stop.wait(_POLL_SECONDS):
                    watcher.run_watchers()

            poller = threading.Thread(target=poll, name="bench-tooz-poll", daemon=True)
            poller.start()
            join_ms: list[float] = []
            leave_ms: list[float] = []
            for k in range(self.profile.peer_latency_samples):
                started = time.perf_counter()
                member.join_group(group).get()
                if seen.wait(k + 1, k, _WAIT_SECONDS):
                    join_ms.append((seen.joins[-1] - started) * 1000)
                started = time.perf_counter()
                member.leave_group(group).get()
                if seen.wait(k + 1, k + 1, _WAIT_SECONDS):
                    leave_ms.append((seen.leaves[-1] - started) * 1000)
            obs.observe(m.JOIN_MS_P50, join_ms, "no join notified")
            obs.observe(m.JOIN_MS_MAX, join_ms, "no join notified")
            obs.observe(m.LEAVE_MS_P50, leave_ms, "no leave notified")
            obs.samples["join_ms"] = join_ms
            joins, leaves = len(seen.joins), len(seen.leaves)
            for _ in range(self.profile.peer_pairs):
                member.join_group(group).get()
                member.leave_group(group).get()
            time.sleep(3 * _POLL_SECONDS + 0.5)
            obs.add(m.PAIR_JOINS_SEEN, len(seen.joins) - joins)
            obs.add(m.PAIR_LEAVES_SEEN, len(seen.leaves) - leaves)
            stop.set()
            poller.join(timeout=5)
            watcher.unwatch_join_group(group, seen.joined)
            watcher.unwatch_leave_group(group, seen.left)
        finally:
            stop.set()
            member.stop()
            with contextlib.suppress(coordination.ToozError):
                watcher.delete_group(group).get()
            watcher.stop()
        return obs
