"""Failure detection: seconds from a registrant's SIGKILL until a watcher sees its instance REMOVED, against the ttl.

For each ttl of the profile, as many registrant processes as repetitions
each register one instance with that ttl (on ZooKeeper the ttl is the
session timeout, passed as ``?session_timeout=`` in the URL); once the
watcher has seen them all, they are killed one at a time with SIGKILL and
the time until the watcher delivers each REMOVED is recorded. The goal is
detection within ttl + 1 s. The server's own clock dominates, so a round
runs on all backends at once. An in-process store (memory://) abandons an
in-process registry instead of killing a process.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from discovery import EventKind, Registry
from discovery_bench.harness.collector import EventCollector
from discovery_bench.harness.procs import Child, start_registrants, wait_ready
from discovery_bench.harness.targets import BenchTarget
from discovery_bench.metrics import Metric
from discovery_bench.metrics import catalogue as m
from discovery_bench.report.results import Observations
from discovery_bench.workloads.base import Workload


def _removed(collector: EventCollector, instance_id: str, events: object) -> bool:
    return collector.first_time(EventKind.REMOVED, instance_id) is not None


class DetectionWorkload(Workload):
    """Seconds from SIGKILL to REMOVED delivered, per ttl."""

    name = "detection"
    title = "Failure detection"
    description = (
        "A registrant process killed with SIGKILL: seconds until the watcher sees REMOVED, "
        "against the configured ttl (ZooKeeper: the session timeout). Goal: within ttl + 1 s."
    )
    concurrent = True

    def metrics(self) -> list[Metric]:
        return [family.at(ttl) for ttl in self.profile.detection_ttls for family in (m.DETECT_S, m.EXCESS_S, m.MISSED)]

    def params(self) -> dict[str, Any]:
        return {"ttls_s": list(self.profile.detection_ttls), "repetitions": self.profile.detection_repetitions}

    def rounds(self) -> int:
        return len(self.profile.detection_ttls)

    def run(self, target: BenchTarget, round_index: int) -> Observations:
        ttl = self.profile.detection_ttls[round_index]
        tag = m.ttl_tag(ttl)
        reps = self.profile.detection_repetitions
        service = self.ctx.naming.service("detection", f"ttl{tag}")
        ids = [f"d{i}" for i in range(reps)]
        obs = Observations()
        registries: list[Registry] = []
        registrants: list[Child] = []
        try:
            watcher = target.connect()
            registries.append(watcher)
            with watcher.watch(service) as watch:
                collector = EventCollector(watch)
                if target.traits.in_process:
                    for instance_id in ids:
                        registrant = target.connect()
                        registries.append(registrant)
                        registrant.register(service, instance_id, ttl=ttl)
                else:
                    url = target.url_with(**target.session_options(ttl))
                    registrants = start_registrants(self.ctx.children, url, service, ttl, ids, 1)
                    wait_ready(registrants, 60)
                if not collector.wait_for(lambda events: len(collector.ids(EventKind.ADDED)) >= reps, 30):
                    raise TimeoutError("the watcher did not see every registration")
                missed = 0
                for k, instance_id in enumerate(ids):
                    killed = time.perf_counter()
                    if registrants:
                        registrants[k].kill()
                    else:
                        registries[k + 1].backend.abandon()
                    seen = collector.wait_for(functools.partial(_removed, collector, instance_id), 3 * ttl + 30)
                    removed = collector.first_time(EventKind.REMOVED, instance_id)
                    if not seen or removed is None:
                        missed += 1
                        obs.note(f"ttl {tag} s: {instance_id} not seen removed within {3 * ttl + 30:g} s")
                        continue
                    obs.add(m.DETECT_S.at(ttl), removed - killed)
                    obs.add(m.EXCESS_S.at(ttl), removed - killed - ttl)
                obs.add(m.MISSED.at(ttl), missed)
                collector.stop()
        finally:
            for child in registrants:
                child.kill()
            for registry in registries:
                registry.close()
        return obs
