"""Resync cost: how long a watcher over N instances (10,000 by default) takes to converge after a gap.

Two measurements per round, on the keep-alive population (for an in-process
store, memory://, one in the benchmark's own process, since a watch cannot
see another process's store).
*Requested*: a known fraction of the instances is updated, the watcher
receives those updates normally, then ``watch.request_resync(reason)`` with
a reason of its own forces a re-list; timed until that resync's
``RESYNCED`` notice, and only the events between its ``RESYNC_STARTED`` and
``RESYNCED`` notices count as its own (a minimal resync emits none; a resync
the backend started for another reason, such as etcd v2's history window,
is not this one). *In a gap*: a watcher with a one-event buffer does not
read while the fraction is updated, so its stream overflows and stops; when
it reads again the watch re-lists and must emit exactly the changed
instances, flagged ``resync=True``; timed from the first read until the last
changed instance arrived. Both are then timed until the watch is proved
converged by :func:`converge`: the watch's snapshot plus its events equals a
fresh listing *at the listing's revision* (the events up to that revision,
once an event past it shows they all arrived), or after a quiet period
without events, when nothing more is pending. Comparing at a known revision
matters where the population keeps changing (etcd v2 keys that expire and
are re-registered faster than the check can catch a quiet moment): a check
that waits for the store to stand still then reports a failure to converge
that is really the store never standing still.
"""

from __future__ import annotations

import time
from typing import Any

from discovery import Event, Notice, NoticeKind, Registry, Watch
from discovery.testing.checks import collect, state
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
    "the fraction changed: the diff must hold exactly those), each timed until the watch is proved converged: "
    "snapshot + events equal a fresh listing at its revision, or after a quiet period."
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


def converge(watch: Watch, registry: Registry, events: list[Event], timeout: float, quiet: float = _QUIET) -> str:
    """Read events into ``events`` until snapshot + events provably equals the store; say how it was proved.

    Each attempt lists the store (revision R), then reads the watch until an
    item past R arrives (every event up to R has then been delivered, in
    order) or ``quiet`` seconds pass without one (nothing is pending), and
    compares the listing with the snapshot plus the events up to R. A cut
    that falls inside a gap (events before a resync, the resync's after R)
    does not compare equal, and the next attempt takes a new listing.

    Returns:
        ``"at revision"`` or ``"after quiet"``.

    Raises:
        AssertionError: no attempt compared equal within ``timeout`` seconds,
            or an event does not fit the state (the stream broke the contract).
    """
    deadline = time.monotonic() + timeout
    attempts = 0
    while True:
        attempts += 1
        listing = registry.snapshot(watch.prefix)
        passed = False
        while not passed:
            item = watch.next_item(quiet)
            if item is None:
                break
            if isinstance(item, Event):
                events.append(item)
                passed = item.revision > listing.revision
            elif isinstance(item, Notice) and item.kind is NoticeKind.BROKEN:
                raise AssertionError(f"the watch broke: {item.reason}")
        upto = [event for event in events if event.revision <= listing.revision] if passed else events
        try:
            applied = watch.snapshot.apply(upto)
        except ValueError as exc:
            raise AssertionError(f"the events do not fit the snapshot: {exc}") from exc
        if state(applied) == state(listing):
            return "at revision" if passed else "after quiet"
        if time.monotonic() > deadline:
            missing = len(state(listing).keys() - state(applied).keys())
            extra = len(state(applied).keys() - state(listing).keys())
            raise AssertionError(
                f"watch did not converge in {timeout:g} s ({attempts} listings compared; last: {missing} "
                f"instances missing from the watch, {extra} extra, at revision {listing.revision})"
            )


def own_resync(watch: Watch, reason: str, timeout: float, events: list[Event]) -> tuple[float, int]:
    """Request a resync with ``reason`` and read until its ``RESYNCED`` notice.

    Every event read goes into ``events``; those between this resync's
    ``RESYNC_STARTED`` and ``RESYNCED`` notices are its own.

    Returns:
        (seconds from the request to the notice, the resync's own events).

    Raises:
        AssertionError: no such notice within ``timeout`` seconds.
    """
    started = time.perf_counter()
    watch.request_resync(reason)
    inside, own = False, 0
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        item = watch.next_item(remaining)
        if isinstance(item, Event):
            events.append(item)
            own += int(inside)
        elif isinstance(item, Notice) and item.reason == reason:
            if item.kind is NoticeKind.RESYNC_STARTED:
                inside = True
            elif item.kind is NoticeKind.RESYNCED:
                return time.perf_counter() - started, own
    raise AssertionError(f"the requested resync did not finish in {timeout:g} s")


def _requested(
    registry: Registry, population: Population, changed: int, tag: str, timeout: float, obs: Observations
) -> None:
    expected = {f"p{i}" for i in range(changed)}
    with registry.watch(population.service) as watch:
        population.update(changed, tag)
        events: list[Event] = []
        collect(watch, lambda seen: _carrying(seen, tag) >= expected, timeout, events)
        started = time.perf_counter()
        seconds, own = own_resync(watch, f"bench-{tag}", timeout, events)
        obs.add(m.REQUESTED_RESYNC_S, seconds)
        converge(watch, registry, events, timeout)
        obs.add(m.REQUESTED_CONVERGED_S, time.perf_counter() - started)
        obs.add(m.REQUESTED_EVENTS, own)


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
        how = converge(watch, registry, events, timeout)
        obs.add(m.GAP_CONVERGED_S, time.perf_counter() - started)
        obs.add(m.GAP_DELIVERED_S, delivered)
        obs.add(m.GAP_MISSING, len(expected - arrival.keys()))
        obs.add(m.GAP_EXTRA, len({e.instance_id for e in events if e.resync} - expected))
        if watch.gap_reasons:
            obs.note(f"resyncs after: {', '.join(sorted(set(watch.gap_reasons)))}", SECTION)
        if how == "at revision":
            obs.note("converged at a listing's revision: the population was still changing", SECTION)
