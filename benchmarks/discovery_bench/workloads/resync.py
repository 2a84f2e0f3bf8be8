"""Resync cost: how long a watcher over N instances (10,000 by default) takes to converge after a gap.

Two measurements per round, on the keep-alive population (for an in-process
store, memory://, one in the benchmark's own process, since a watch cannot
see another process's store).
*Requested*: a known fraction of the instances is updated, the watcher
receives those updates normally, then ``watch.request_resync()`` forces a
re-list; the diff must emit nothing (minimal resync); timed until the watch
counts the resync done, and until :func:`discovery.testing.checks.wait_converged`
returns. *In a gap*: a watcher with a one-event buffer does not read while
the fraction is updated, so its stream overflows and stops; when it reads
again the watch re-lists and must emit exactly the changed instances,
flagged ``resync=True``; timed from the first read until the last changed
instance arrived, and until ``wait_converged`` returns. ``wait_converged``
checks against a fresh listing after 0.1 s without events, both included.
"""

from __future__ import annotations

import time
from typing import Any

from discovery import Event, Registry
from discovery.testing.checks import collect, wait_converged
from discovery_bench.harness.targets import BenchTarget
from discovery_bench.metrics import Metric
from discovery_bench.metrics import catalogue as m
from discovery_bench.profiles import Profile
from discovery_bench.report.results import Observations
from discovery_bench.workloads.population import Population

_QUIET = 0.1


SECTION = "resync"
TITLE = "Resync cost"
DESCRIPTION = (
    "A watcher over N instances after a known fraction changed: forced re-list with watch.request_resync() "
    "(the changes already delivered: the diff must be empty), and a gap (a one-event buffer overflowed while "
    "the fraction changed: the diff must hold exactly those), each timed until wait_converged returns."
)


def resync_metrics() -> list[Metric]:
    """The metrics of the resync section."""
    return [
        m.REQUESTED_RESYNC_S,
        m.REQUESTED_CONVERGED_S,
        m.REQUESTED_EVENTS,
        m.GAP_DELIVERED_S,
        m.GAP_CONVERGED_S,
        m.GAP_MISSING,
        m.GAP_EXTRA,
    ]


def resync_params(profile: Profile) -> dict[str, Any]:
    """The parameters shown with the resync results."""
    n = profile.population
    return {
        "instances": n,
        "changed_per_round": max(1, int(n * profile.resync_fraction)),
        "rounds": profile.resync_rounds,
        "quiet_s": _QUIET,
    }


def measure_resync(target: BenchTarget, population: Population, profile: Profile, obs: Observations) -> None:
    """Run the resync rounds over ``population`` and file the results in ``obs``."""
    for round_index in range(profile.resync_rounds):
        _round(target, population, profile, round_index, obs)


def _round(target: BenchTarget, population: Population, profile: Profile, round_index: int, obs: Observations) -> None:
    changed = max(1, int(population.size * profile.resync_fraction))
    timeout = 30 + population.size / 1000 * 2
    with target.connect() as registry:
        _requested(registry, population, changed, f"r{round_index}a", timeout, obs)
        _in_a_gap(registry, population, changed, f"r{round_index}b", timeout, obs)


def _carrying(events: list[Event], tag: str) -> set[str]:
    """The instances whose new value (``meta["v"] == tag``) the events delivered."""
    return {e.instance_id for e in events if e.instance is not None and e.instance.meta.get("v") == tag}


def _requested(
    registry: Registry, population: Population, changed: int, tag: str, timeout: float, obs: Observations
) -> None:
    expected = {f"p{i}" for i in range(changed)}
    with registry.watch(population.service) as watch:
        population.update(changed, tag)
        events: list[Event] = []
        collect(watch, lambda seen: _carrying(seen, tag) >= expected, timeout, events)
        before, resyncs = len(events), watch.resyncs
        started = time.perf_counter()
        watch.request_resync()
        while watch.resyncs == resyncs and time.perf_counter() - started < timeout:
            if (event := watch.get(0.005)) is not None:
                events.append(event)
        obs.add(m.REQUESTED_RESYNC_S, time.perf_counter() - started)
        wait_converged(watch, registry, events, timeout, quiet=_QUIET)
        obs.add(m.REQUESTED_CONVERGED_S, time.perf_counter() - started)
        obs.add(m.REQUESTED_EVENTS, sum(1 for event in events[before:] if event.resync))


def _in_a_gap(
    registry: Registry, population: Population, changed: int, tag: str, timeout: float, obs: Observations
) -> None:
    expected = {f"p{i}" for i in range(changed)}
    with registry.watch(population.service, buffer_size=1) as watch:
        population.update(changed, tag)
        events: list[Event] = []
        started = time.perf_counter()
        arrival: dict[str, float] = {}
        while time.perf_counter() - started < timeout and not expected <= arrival.keys():
            event = watch.get(0.5)
            if event is None:
                continue
            events.append(event)
            if event.instance is not None and event.instance.meta.get("v") == tag:
                arrival.setdefault(event.instance_id, time.perf_counter())
        delivered = max(arrival.values(), default=started) - started
        wait_converged(watch, registry, events, timeout, quiet=_QUIET)
        obs.add(m.GAP_CONVERGED_S, time.perf_counter() - started)
        obs.add(m.GAP_DELIVERED_S, delivered)
        obs.add(m.GAP_MISSING, len(expected - arrival.keys()))
        obs.add(m.GAP_EXTRA, len({e.instance_id for e in events} - expected))
        if watch.gap_reasons:
            obs.note(f"resyncs after: {', '.join(sorted(set(watch.gap_reasons)))}", SECTION)
