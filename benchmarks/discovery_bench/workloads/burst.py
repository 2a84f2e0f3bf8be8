"""Burst completeness: the README's story scaled up, with the naive re-watch loop on the same server as the control.

A watch and a :class:`~discovery.testing.naive.NaiveRewatchLoop` (a new watch
"from now" after every event: the story's mistake) are opened on an empty
service; registrant processes (``python -m discovery.testing._registrant``,
the ids split over several processes when the list is long) register N
instances with a short ttl and are then killed with SIGKILL, so all N expire
on the server. Every backend must deliver 2N events (N added, N removed); the
naive loop shows what the story's team saw. An in-process store (memory://)
is invisible to other processes, so there the registrant is an in-process
registry whose backend is ``abandon()``-ed instead, which stops its
keep-alives as a crash would.
What is measured is completeness, and the wait is the servers' expiry
clock, so a round runs on all backends at once.
"""

from __future__ import annotations

import time
from typing import Any

from discovery import EventKind, Registry
from discovery.testing.naive import NaiveRewatchLoop
from discovery_bench.harness.collector import EventCollector
from discovery_bench.harness.procs import Child, start_registrants, wait_ready
from discovery_bench.harness.targets import BenchTarget
from discovery_bench.metrics import Metric
from discovery_bench.metrics import catalogue as m
from discovery_bench.report.results import Observations
from discovery_bench.workloads.base import Workload

_READY_SECONDS_PER_1000 = 20.0
_NAIVE_GRACE_SECONDS = 1.0


class BurstWorkload(Workload):
    """Events delivered ÷ 2N when N instances are registered, then all expire."""

    name = "burst"
    title = "Burst completeness"
    description = (
        "N instances registered by registrant processes that are then killed with SIGKILL, so all N expire: "
        "events delivered ÷ 2N for discovery's watch, and for the naive re-watch loop (the control) "
        "on the same server at the same time."
    )
    concurrent = True

    def metrics(self) -> list[Metric]:
        return [
            m.BURST_DELIVERED,
            m.BURST_LOST,
            m.NAIVE_DELIVERED,
            m.BURST_RESYNCS,
            m.BURST_REGISTER_S,
            m.BURST_EXPIRY_S,
        ]

    def params(self) -> dict[str, Any]:
        return {
            "instances": self.profile.burst_instances,
            "ttl_s": self.profile.burst_ttl,
            "ids_per_registrant_process": self.profile.registrant_chunk,
            "rounds": self.profile.burst_rounds,
        }

    def rounds(self) -> int:
        return self.profile.burst_rounds

    def run(self, target: BenchTarget, round_index: int) -> Observations:
        n, ttl = self.profile.burst_instances, self.profile.burst_ttl
        service = self.ctx.naming.service("burst", f"r{round_index}")
        ids = [f"n{i}" for i in range(n)]
        obs = Observations()
        registries: list[Registry] = []
        registrants: list[Child] = []
        try:
            watcher = target.connect()
            registries.append(watcher)
            naive_registry = target.connect()
            registries.append(naive_registry)
            watch = watcher.watch(service)
            collector = EventCollector(watch)
            naive = NaiveRewatchLoop(naive_registry, service).start()
            started = time.perf_counter()
            ready_timeout = 30 + n / 1000 * _READY_SECONDS_PER_1000
            if target.traits.in_process:
                registrant = target.connect()
                registries.append(registrant)
                for instance_id in ids:
                    registrant.register(service, instance_id, ttl=ttl)
            else:
                url = target.url_with(**target.session_options(ttl))
                registrants = start_registrants(
                    self.ctx.children, url, service, ttl, ids, self.profile.registrant_chunk
                )
                wait_ready(registrants, ready_timeout)
            obs.add(m.BURST_REGISTER_S, time.perf_counter() - started)
            collector.wait_for(lambda events: len(collector.ids(EventKind.ADDED)) >= n, ready_timeout)
            killed = time.perf_counter()
            if registrants:
                for child in registrants:
                    child.kill()
            else:
                registries[-1].backend.abandon()
            expired = collector.wait_for(lambda events: len(collector.ids(EventKind.REMOVED)) >= n, 3 * ttl + 30)
            removed_times = [t for event, t in collector.events if event.kind is EventKind.REMOVED]
            if expired and removed_times:
                obs.add(m.BURST_EXPIRY_S, max(removed_times) - killed)
            else:
                obs.na(m.BURST_EXPIRY_S, f"only {len(collector.ids(EventKind.REMOVED))} of {n} removals seen")
            time.sleep(_NAIVE_GRACE_SECONDS)
            collector.stop()
            naive_events = naive.stop()
            seen = {(e.instance_id, e.kind) for e, _ in collector.events if e.kind is not EventKind.UPDATED}
            naive_seen = {(e.instance_id, e.kind) for e in naive_events if e.kind is not EventKind.UPDATED}
            obs.add(m.BURST_DELIVERED, len(seen) / (2 * n))
            obs.add(m.BURST_LOST, 2 * n - len(seen))
            obs.add(m.NAIVE_DELIVERED, len(naive_seen) / (2 * n))
            obs.add(m.BURST_RESYNCS, watch.resyncs)
            if watch.gap_reasons:
                obs.note(f"resyncs after: {', '.join(sorted(set(watch.gap_reasons)))}")
            if collector.error is not None:
                obs.note(f"watch failed: {collector.error}")
            watch.close()
        finally:
            for child in registrants:
                child.kill()
            for registry in registries:
                registry.close()
        return obs
