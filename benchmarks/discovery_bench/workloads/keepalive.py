"""Keep-alive cost, then client memory and resync cost on the same population, one backend at a time.

One holder process (:class:`~discovery_bench.workloads.population.HolderPopulation`)
holds 100, then 1,000, then 10,000 instances on one connection; after each
step, over whole keep-alive periods (ttl / 3), the server's own request
counter gives requests per second (etcd ``/metrics``, ZooKeeper ``mntr``; see
:mod:`~discovery_bench.harness.counters`) and psutil's CPU times of the holder give
the client's CPU. This is where the backends differ most: etcd v2 refreshes
every key's TTL (O(N) requests), etcd v3 keeps one lease alive and ZooKeeper
one session (O(1)). The server's history position per second shows whether
v2's refreshes, invisible to watchers, still push an idle watcher out of the
1000-event window (resyncs with reason ``history-window`` of a watcher on an
empty sibling service). The same 10,000 instances then serve the client
memory (:mod:`~discovery_bench.workloads.memory`) and resync
(:mod:`~discovery_bench.workloads.resync`) measurements, and the holder is stopped
before the next backend starts: 10,000 live instances of another backend
(etcd v2 alone sends about 1,000 refreshes per second) would otherwise load
the shared machine and servers and distort its figures. So these sections
run backend by backend rather than in interleaved rounds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from discovery_bench.harness.counters import server_counters
from discovery_bench.harness.targets import BenchTarget
from discovery_bench.metrics import Metric
from discovery_bench.metrics import catalogue as m
from discovery_bench.report.results import Observations
from discovery_bench.workloads import memory as _memory
from discovery_bench.workloads import resync as _resync
from discovery_bench.workloads.base import Workload
from discovery_bench.workloads.population import HolderPopulation, LocalPopulation


class KeepaliveWorkload(Workload):
    """Server requests/s, client CPU and history advance per live-instance count; then memory and resync."""

    name = "keepalive"
    title = "Keep-alive cost"
    description = (
        "N live instances held by one process on one connection, idle: requests per second the server received "
        "(server-side counters), the client process's CPU, and how fast the server's history advances "
        "(etcd v2 TTL refreshes consume the 1000-event watch window)."
    )

    def metrics(self) -> list[Metric]:
        families = (m.REQUESTS_PER_S, m.CPU_PCT, m.HISTORY_PER_S, m.WINDOW_GAPS, m.ALIVE)
        metrics = [family.at(size) for size in self.profile.keepalive_sizes for family in families]
        return metrics + _memory.memory_metrics() + _resync.resync_metrics()

    def sections(self) -> dict[str, tuple[str, str, dict[str, Any]]]:
        return {
            _memory.SECTION: (_memory.TITLE, _memory.DESCRIPTION, {"instances": self.profile.population}),
            _resync.SECTION: (_resync.TITLE, _resync.DESCRIPTION, _resync.resync_params(self.profile)),
        }

    def params(self) -> dict[str, Any]:
        return {
            "sizes": list(self.profile.keepalive_sizes),
            "ttl_s": self.profile.keepalive_ttl,
            "window_s": round(self.profile.keepalive_window, 2),
        }

    def run(self, target: BenchTarget, round_index: int) -> Observations:
        obs = Observations()
        service = self.ctx.naming.service("keepalive", "population")
        population = HolderPopulation(self.ctx.children, target, service, self.profile.keepalive_ttl)
        try:
            rss_connected = population.rss()
            self._windows(target, population, obs)
            _guarded(
                obs,
                population,
                _memory.memory_metrics(),
                _memory.SECTION,
                lambda: _memory.measure_memory(population, rss_connected, obs),
            )
            if target.traits.in_process:
                population.close()
                local = LocalPopulation(target, self.ctx.naming.service("resync", "population"), 60.0)
                try:
                    local.grow(self.profile.population)
                    _resync.measure_resync(target, local, self.profile, obs)
                finally:
                    local.close()
            else:
                _guarded(
                    obs,
                    population,
                    _resync.resync_metrics(),
                    _resync.SECTION,
                    lambda: _resync.measure_resync(target, population, self.profile, obs),
                )
        finally:
            population.close()
        return obs

    def _windows(self, target: BenchTarget, population: HolderPopulation, obs: Observations) -> None:
        counters = server_counters(target)
        obs.note(f"requests counted by {counters.request_counter}")
        window = self.profile.keepalive_window
        with target.connect() as registry, registry.watch(self.ctx.naming.service("keepalive", "idle")) as idle:
            for size in self.profile.keepalive_sizes:
                population.grow(size)
                time.sleep(min(0.5, window / 2))
                requests, history = counters.requests(), counters.history()
                cpu, gaps, started = population.cpu_seconds(), len(idle.gap_reasons), time.monotonic()
                time.sleep(window)
                elapsed = time.monotonic() - started
                requests_after, history_after = counters.requests(), counters.history()
                cpu_after = population.cpu_seconds()
                alive, _ = population.status()
                obs.add(m.CPU_PCT.at(size), (cpu_after - cpu) / elapsed * 100)
                obs.add(m.ALIVE.at(size), alive / size)
                if not target.traits.has_server:
                    for family in (m.REQUESTS_PER_S, m.HISTORY_PER_S, m.WINDOW_GAPS):
                        obs.na(family.at(size), "in-process store: no server")
                    continue
                obs.add(m.REQUESTS_PER_S.at(size), _rate(requests, requests_after, elapsed), "counter not available")
                obs.add(m.HISTORY_PER_S.at(size), _rate(history, history_after, elapsed), "history not available")
                obs.add(m.WINDOW_GAPS.at(size), sum(1 for r in idle.gap_reasons[gaps:] if "history-window" in r))
        counters.close()


def _guarded(
    obs: Observations,
    population: HolderPopulation,
    metrics: list[Metric],
    section: str,
    measure: Callable[[], None],
) -> None:
    """Run a measurement over the population; a failure marks only its metrics, with the holder's warnings.

    The keep-alive figures measured before stand; the report shows the
    failure and what the holder process logged (a lost session, say).
    """
    try:
        measure()
    except Exception as exc:  # reported in the report, never hidden
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        message = f"{type(exc).__name__}: {first}"
        if tail := population.child.stderr_tail(400):
            message += f"; holder stderr: ...{tail}"
        obs.failed([metric.key for metric in metrics], message, section)


def _rate(before: float | None, after: float | None, elapsed: float) -> float | None:
    if before is None or after is None:
        return None
    return (after - before) / elapsed
