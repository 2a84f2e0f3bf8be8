"""Lookups: ``reg.instances()`` against ``cache.instances()`` and ``provider.pick()``; write → visible in a cache.

With N instances of one service registered (1,000 in the default profile;
held by a holder process, or in this process for memory://, so their
keep-alive does not run in the measuring process), each round times three
lookups of that service, one after the other, each for ``lookup_seconds``:
``reg.instances(service)`` (a request to the server every call),
``cache.instances(service)`` and ``cache.provider(service).pick()``
(round-robin, the default strategy), both answered from memory by a cache
opened on the service. Calls are timed in batches (:func:`time_calls`): a
calibration run says how long one call takes, then each batch makes as many
calls as fill about :data:`BATCH_SECONDS` (one call for anything slower), so
the timer's own cost (tens of nanoseconds) stays below 0.01 % of what it
times; the rate is the calls ÷ the seconds the batches took, and the p99 per
call is the p99 over batches of each batch's seconds ÷ its calls. For a
server call that is the p99 of single calls; for a lookup from memory it is
the p99 of 1 ms averages, which still shows a pause (a GIL switch, a
collection) that falls in a batch, diluted over its calls.

Then, in the same round, a writer registers new instances of the same
service at ``lookup_writes``'s rate with a ``perf_counter`` timestamp in
their meta, as the propagation workload does, while a watch on its own
connection and a cache on another both receive them: the watch's latency is
taken when its consumer thread gets the ADDED event, the cache's when the
instance is in the cache's published view (checked in the cache's subscriber,
which the cache calls after publishing). Both see the same writes in the same
round, so their p99s make a fair ratio; the goal is a cache p99 within 1.2x
the watch's. The new instances are deregistered before the next backend.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from discovery import Event, EventKind, ServiceCache
from discovery_bench.harness.collector import EventCollector
from discovery_bench.harness.targets import BenchTarget
from discovery_bench.metrics import Metric
from discovery_bench.metrics import catalogue as m
from discovery_bench.report.results import Observations
from discovery_bench.workloads.base import Workload
from discovery_bench.workloads.population import HolderPopulation, LocalPopulation, Population
from discovery_bench.workloads.propagation import Tally, drive, timed

BATCH_SECONDS = 0.001
"""How long one timed batch of lookups lasts, about: long beside the timer's cost, short beside a round."""
MOST_PER_BATCH = 100_000
"""The most calls in one batch, whatever the calibration says."""

_TTL = 60.0
_READY_SECONDS = 60.0
_SETTLE_SECONDS = 3.0
_WARM_UP_INSTANCES = 100
_WARM_UP_WRITES = 50


def batch_size(seconds_per_call: float, batch_seconds: float = BATCH_SECONDS, most: int = MOST_PER_BATCH) -> int:
    """How many calls to time together so that a batch lasts about ``batch_seconds``.

    Returns:
        At least 1 (a call slower than ``batch_seconds`` is timed alone), at most ``most``.
    """
    if seconds_per_call <= 0:
        return most
    return max(1, min(most, int(batch_seconds / seconds_per_call)))


@dataclass
class Timing:
    """Calls timed in batches.

    Attributes:
        batch: calls per batch.
        calls: calls timed in all.
        seconds: the seconds the batches took, added up.
        per_call_s: each batch's seconds ÷ its calls.
    """

    batch: int
    calls: int = 0
    seconds: float = 0.0
    per_call_s: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Calls per second."""
        return self.calls / self.seconds if self.seconds > 0 else 0.0

    def per_call_us(self) -> list[float]:
        """Each batch's seconds per call, in microseconds."""
        return [seconds * 1e6 for seconds in self.per_call_s]

    def add(self, calls: int, seconds: float) -> None:
        """Record one batch."""
        self.calls += calls
        self.seconds += seconds
        self.per_call_s.append(seconds / calls)


def calibrate(
    call: Callable[[], object], batch_seconds: float = BATCH_SECONDS, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Seconds one call takes, from calls made until ``batch_seconds`` have passed (at least one)."""
    calls = 0
    started = clock()
    while True:
        call()
        calls += 1
        elapsed = clock() - started
        if elapsed >= batch_seconds:
            return elapsed / calls


def time_calls(
    call: Callable[[], object],
    duration: float,
    batch_seconds: float = BATCH_SECONDS,
    clock: Callable[[], float] = time.perf_counter,
) -> Timing:
    """Call ``call`` in timed batches for about ``duration`` seconds (at least one batch).

    Args:
        call: the lookup.
        duration: how long to go on.
        batch_seconds: how long a batch should last (see :func:`batch_size`).
        clock: the timer.

    Returns:
        The batches' sizes and times.
    """
    timing = Timing(batch_size(calibrate(call, batch_seconds, clock), batch_seconds))
    calls = range(timing.batch)
    deadline = clock() + duration
    while True:
        started = clock()
        for _ in calls:
            call()
        ended = clock()
        timing.add(timing.batch, ended - started)
        if ended >= deadline:
            return timing


class _Visibility:
    """When each write became visible in the cache's view, measured in the cache's subscriber."""

    def __init__(self, cache: ServiceCache, service: str) -> None:
        self.tally = Tally()
        self.unseen = 0
        self._cache = cache
        self._service = service

    def on_event(self, event: Event) -> None:
        arrived = time.perf_counter()
        if event.kind is not EventKind.ADDED:
            return
        if event.instance_id in self._cache.view(self._service).by_id:
            timed(self.tally, event, arrived)
        else:
            self.unseen += 1  # told before it was published: the cache would break its promise


class LookupWorkload(Workload):
    """Lookups per second and p99 per call, registry against cache and provider; cache visibility against the watch."""

    name = "lookup"
    title = "Lookups: registry, cache and provider"
    description = (
        "N instances of one service registered: reg.instances() (a server request each), cache.instances() and "
        "provider.pick() (round-robin, from memory) timed in batches of about 1 ms, calls/s and p99 per call "
        "(p99 over batches of the batch's time ÷ its calls). Then new instances written at the given rate, "
        "with a perf_counter timestamp, reach a watch and a cache on their own connections in the same round: "
        "write → watch event against write → visible in the cache's view."
    )

    def metrics(self) -> list[Metric]:
        timings = [family.at(kind) for kind in m.LOOKUP_KINDS for family in (m.LOOKUP_PER_S, m.LOOKUP_P99_US)]
        return [
            *timings,
            m.CACHE_SPEEDUP,
            m.CACHE_VISIBLE_P50_MS,
            m.CACHE_VISIBLE_P99_MS,
            m.WATCH_EVENT_P50_MS,
            m.WATCH_EVENT_P99_MS,
            m.VISIBLE_VS_EVENT,
            m.CACHE_VISIBLE,
            m.WATCH_EVENT_DELIVERED,
        ]

    def params(self) -> dict[str, Any]:
        rate, writes = self.profile.lookup_writes
        return {
            "instances": self.profile.lookup_instances,
            "seconds_per_lookup": self.profile.lookup_seconds,
            "batch_ms": BATCH_SECONDS * 1000,
            "strategy": "round-robin",
            "rate": m.rate_label(rate),
            "writes": writes,
            "rounds": self.profile.lookup_rounds,
        }

    def rounds(self) -> int:
        return self.profile.lookup_rounds

    def warm_up(self) -> bool:
        return self.profile.warm_up

    def run(self, target: BenchTarget, round_index: int) -> Observations:
        warm = round_index < 0
        instances = min(self.profile.lookup_instances, _WARM_UP_INSTANCES) if warm else self.profile.lookup_instances
        seconds = min(self.profile.lookup_seconds, 0.1) if warm else self.profile.lookup_seconds
        rate, writes = self.profile.lookup_writes
        writes = min(writes, _WARM_UP_WRITES) if warm else writes
        service = self.ctx.naming.service("lookup", "warm" if warm else f"r{round_index}")
        obs = Observations()
        population = self._population(target, service)
        try:
            population.grow(instances)
            self._lookups(target, service, instances, seconds, obs)
            self._visibility(target, service, rate, writes, obs)
        finally:
            if isinstance(population, HolderPopulation):
                population.close(deregister=True)
            else:
                population.close()
        return obs

    def _population(self, target: BenchTarget, service: str) -> Population:
        if target.traits.in_process:
            return LocalPopulation(target, service, _TTL)
        return HolderPopulation(self.ctx.children, target, service, _TTL)

    def _lookups(self, target: BenchTarget, service: str, instances: int, seconds: float, obs: Observations) -> None:
        with target.connect() as reader:
            # A follower may answer a fresh connection a moment behind the holder's acknowledged writes.
            deadline = time.monotonic() + _READY_SECONDS
            while (found := len(reader.instances(service))) != instances:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{found} instances of {service} listed, {instances} registered")
                time.sleep(0.05)
            timings = {"registry": time_calls(functools.partial(reader.instances, service), seconds)}
            with reader.cache(service) as cache:
                if not cache.wait_for(lambda c: len(c.view(service).instances) == instances, _READY_SECONDS):
                    raise AssertionError(f"the cache holds {len(cache.instances(service))} of {instances} instances")
                timings["cache"] = time_calls(functools.partial(cache.instances, service), seconds)
                timings["pick"] = time_calls(cache.provider(service).pick, seconds)
        for kind, timing in timings.items():
            obs.add(m.LOOKUP_PER_S.at(kind), timing.rate)
            obs.observe(m.LOOKUP_P99_US.at(kind), timing.per_call_us())
        obs.note(f"calls per timed batch: {', '.join(f'{kind} {t.batch:,}' for kind, t in timings.items())}")

    def _visibility(self, target: BenchTarget, service: str, rate: float | None, n: int, obs: Observations) -> None:
        events = Tally()
        with (
            target.connect() as writer,
            target.connect() as watching,
            target.connect() as caching,
            watching.watch(service) as watch,
            caching.cache(service) as cache,
        ):
            visibility = _Visibility(cache, service)
            cache.subscribe(visibility.on_event)
            collector = EventCollector(watch, functools.partial(timed, events))

            def write(seq: int, ts: float) -> None:
                writer.register(
                    service, f"w{seq}", address="127.0.0.1", port=8080, meta={"seq": seq, "ts": ts}, ttl=_TTL
                )

            try:
                drive(write, visibility.tally, rate, n)
                deadline = time.monotonic() + _SETTLE_SECONDS
                while events.count() < n and time.monotonic() < deadline:
                    time.sleep(0.01)
            finally:
                collector.stop()
        none = "no write seen"
        obs.add(m.CACHE_VISIBLE, visibility.tally.count() / n)
        obs.add(m.WATCH_EVENT_DELIVERED, events.count() / n)
        for metric, samples in (
            (m.CACHE_VISIBLE_P50_MS, visibility.tally.latencies_ms),
            (m.CACHE_VISIBLE_P99_MS, visibility.tally.latencies_ms),
            (m.WATCH_EVENT_P50_MS, events.latencies_ms),
            (m.WATCH_EVENT_P99_MS, events.latencies_ms),
        ):
            obs.observe(metric, samples, none)
        if visibility.unseen:
            obs.note(f"{visibility.unseen} ADDED events told before the instance was in the cache's view")
