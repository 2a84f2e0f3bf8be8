"""Keep-alive cost, then client memory and resync cost on the same population, one backend at a time.

One holder process (:class:`~discovery.bench._population.HolderPopulation`)
holds 100, then 1,000, then 10,000 instances on one connection; after each
step, over whole keep-alive periods (ttl / 3), the server's own request
counter gives requests per second (etcd ``/metrics``, ZooKeeper ``mntr``; see
:mod:`~discovery.bench._counters`) and psutil's CPU times of the holder give
the client's CPU. This is where the backends differ most: etcd v2 refreshes
every key's TTL (O(N) requests), etcd v3 keeps one lease alive and ZooKeeper
one session (O(1)). The server's history position per second shows whether
v2's refreshes, invisible to watchers, still push an idle watcher out of the
1000-event window (resyncs with reason ``history-window`` of a watcher on an
empty sibling service). The same 10,000 instances then serve the client
memory (:mod:`~discovery.bench._memory`) and resync
(:mod:`~discovery.bench._resync`) measurements, and the holder is stopped
before the next backend starts: 10,000 live instances of another backend
(etcd v2 alone sends about 1,000 refreshes per second) would otherwise load
the shared machine and servers and distort its figures. So these sections
run backend by backend rather than in interleaved rounds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from discovery.bench import _memory, _resync
from discovery.bench._counters import ServerCounters
from discovery.bench._population import HolderPopulation, LocalPopulation
from discovery.bench._results import Metric, Observations
from discovery.bench._targets import Target, base_label
from discovery.bench._workload import Workload


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
        metrics: list[Metric] = []
        for size in self.profile.keepalive_sizes:
            metrics += [
                Metric(f"requests_per_s_{size}", f"server requests/s, {size:,} instances", "/s", "lower"),
                Metric(f"cpu_pct_{size}", f"client CPU, {size:,} instances", "%", "lower"),
                Metric(f"history_per_s_{size}", f"history advance/s, {size:,} instances", "/s", "lower"),
                Metric(f"window_gaps_{size}", f"idle watcher history-window resyncs, {size:,} instances", "", "lower"),
                Metric(f"alive_{size}", f"instances kept alive ÷ N, {size:,} instances", "", "higher", digits=4),
            ]
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

    def run(self, target: Target, round_index: int) -> Observations:
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
            if base_label(target.label) == "memory":
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

    def _windows(self, target: Target, population: HolderPopulation, obs: Observations) -> None:
        counters = ServerCounters(target)
        in_process = base_label(target.label) == "memory"
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
                obs.add(f"cpu_pct_{size}", (cpu_after - cpu) / elapsed * 100)
                obs.add(f"alive_{size}", alive / size)
                if in_process:
                    for key in ("requests_per_s", "history_per_s", "window_gaps"):
                        obs.na(f"{key}_{size}", "in-process store: no server")
                    continue
                obs.add(f"requests_per_s_{size}", _rate(requests, requests_after, elapsed), "counter not available")
                obs.add(f"history_per_s_{size}", _rate(history, history_after, elapsed), "history not available")
                obs.add(f"window_gaps_{size}", sum(1 for r in idle.gap_reasons[gaps:] if "history-window" in r))
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
