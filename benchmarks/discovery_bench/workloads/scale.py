"""Scale: how many instances one process keeps alive at ttl 10 s on each server backend, and what each step costs.

One holder process (:class:`~discovery_bench.workloads.population.HolderPopulation`)
grows step by step (1,000, 3,000, 10,000 in the default profile; on to
100,000 in ``full``), and each step holds its instances for at least a whole
ttl, idle, so every instance has had to be kept alive at least once. The
step is held when no instance expired through it: a watcher in a process of
its own (:func:`census_side`), opened on the empty service before the first
step, saw no REMOVED event, and the holder re-registered nothing and has
every registration alive. At each step: the holder's registration rate while
growing, then over the hold the server's own request counter (keep-alive
requests/s), the holder's CPU and the server processes' CPU (psutil on the
pids of the servers the run started), then in the watcher's process the time
of a requested resync over the N instances (to its ``RESYNCED`` notice) and
of a snapshot. The first step that loses an instance, or fails in any way,
ends the growth and is reported as the backend's limit with the reason
(etcd v2, whose TTL emulation refreshes each key a third of the ttl apart,
says how many refreshes a second N keys need against what the server
received, and what the holder warned); the knee is the largest step held.
After the step of ``scale_fanout_instances`` the watcher fan-out runs over
that population: 1, then 10, then 100 watchers (each its own connection and
watch, spread over a few processes, :func:`fanout_side`), and at each level a
writer registers new instances at a steady rate with a ``CLOCK_MONOTONIC``
timestamp, a clock every process of the machine shares: the p50 and p99
from the write to each watcher's consumer, every watcher's events
delivered, and the server's CPU while the writes propagate. An in-process
store (memory://) has no server and no keep-alive traffic: the workload does
not apply to it.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from discovery import DiscoveryError, Event, EventKind, Notice, NoticeKind, Registry, Watch
from discovery_bench.harness.counters import ServerCounters, ServerCpu, server_counters
from discovery_bench.harness.side import Link, Message, Side, target_args, target_from
from discovery_bench.harness.targets import BenchTarget
from discovery_bench.metrics import Metric
from discovery_bench.metrics import catalogue as m
from discovery_bench.report.results import Observations
from discovery_bench.workloads.base import Context, Workload
from discovery_bench.workloads.population import HolderPopulation

_START_SECONDS = 60.0
_SETTLE_SECONDS = 0.5
_DELIVERY_SECONDS = 10.0
_PROBE_TTL = 60.0
_POLL = 0.2
_WARNING = re.compile(r"\b\w*Warning: .*")

STEP_FAMILIES = (
    m.SCALE_EXPIRED,
    m.SCALE_REGISTER_PER_S,
    m.SCALE_REQUESTS_PER_S,
    m.SCALE_CPU_PCT,
    m.SCALE_SERVER_CPU_PCT,
    m.SCALE_RESYNC_S,
    m.SCALE_SNAPSHOT_S,
)
"""The metrics measured at every step."""
FANOUT_FAMILIES = (m.FANOUT_P50_MS, m.FANOUT_P99_MS, m.FANOUT_DELIVERED, m.FANOUT_SERVER_CPU_PCT, m.FANOUT_OPEN_S)
"""The metrics measured at every fan-out level."""


def clock() -> float:
    """Seconds on ``CLOCK_MONOTONIC``: one clock for every process of the machine, so a latency may span two."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def _population_id(instance_id: str) -> bool:
    """Whether ``instance_id`` is one of the holder's (``p<index>``), not a fan-out probe."""
    return instance_id.startswith("p") and instance_id[1:].isdigit()


def _seconds_per_1000(size: int, seconds: float) -> float:
    return 30.0 + size / 1000 * seconds


def _describe(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:400]


def _warning(text: str) -> str | None:
    """The last Python warning the holder wrote to its standard error (etcd v2: refreshes falling behind), if any."""
    found = _WARNING.findall(text)
    return str(found[-1])[:240] if found else None


class ScaleWorkload(Workload):
    """The knee of each server backend, the cost of each step against N, and watcher fan-out."""

    name = "scale"
    title = "Scale: how far one process goes"
    description = (
        "One holder process grows step by step at one ttl; each step holds its instances idle for at least a ttl. "
        "Held = no instance expired (a watcher in its own process saw no REMOVED, the holder re-registered "
        "nothing). Per step: registrations/s while growing, server requests/s, holder and server CPU over the "
        "hold, a requested resync and a snapshot over the N instances. The first step that loses an instance "
        "is the limit (with the reason); the knee is the largest step held. Then the fan-out: more and more "
        "watchers (each its own connection) over one step's population: write → consumer p50/p99, events "
        "delivered and the server's CPU."
    )

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.concurrent = self.profile.scale_all_at_once

    def metrics(self) -> list[Metric]:
        steps = [family.at(size) for size in self.profile.scale_steps for family in STEP_FAMILIES]
        fanout = [family.at(count) for count in self.profile.scale_fanout for family in FANOUT_FAMILIES]
        return [m.SCALE_KNEE, m.SCALE_LIMIT, *steps, *fanout]

    def params(self) -> dict[str, Any]:
        rate, writes = self.profile.scale_fanout_writes
        return {
            "steps": list(self.profile.scale_steps),
            "ttl_s": self.profile.scale_ttl,
            "hold_s": self.profile.scale_hold,
            "fanout_watchers": list(self.profile.scale_fanout),
            "fanout_instances": self.profile.scale_fanout_instances,
            "fanout_rate": m.rate_label(rate),
            "fanout_writes": writes,
            "fanout_processes": self.profile.scale_fanout_processes,
        }

    def applies(self, target: BenchTarget) -> str | None:
        if not target.traits.has_server:
            return "in-process store: no server and no keep-alive traffic (its limit is the process's memory)"
        return None

    def run(self, target: BenchTarget, round_index: int) -> Observations:
        obs = Observations()
        service = self.ctx.naming.service("scale", f"r{round_index}")
        steps = self.profile.scale_steps
        server_pids = self.ctx.server_pids.get(target.traits.server or "", [])
        load = _Load(server_counters(target), ServerCpu(server_pids))
        obs.note(f"requests counted by {load.counters.request_counter}")
        args = {"target": target_args(target), "service": service}
        # Started together, so their interpreters start in parallel; the fan-out's connect only when asked to.
        census = Side(self.ctx.children, census_side, args)
        sides = [Side(self.ctx.children, fanout_side, args) for _ in range(self.profile.scale_fanout_processes)]
        population: HolderPopulation | None = None
        held, limit = 0, None
        try:
            population = HolderPopulation(self.ctx.children, target, service, self.profile.scale_ttl)
            census.expect("watching", _START_SECONDS)
            losses = _Losses(population, census)
            for size in steps:
                try:
                    reason = self._step(target, population, census, losses, load, size, obs)
                except Exception as exc:  # a figure, never a crash: the step that failed is the limit
                    reason = f"the step failed: {_describe(exc)}"
                    if tail := population.child.stderr_tail(300):
                        reason += f"; holder stderr: ...{tail}"
                if reason is not None:
                    limit = (size, reason)
                    break
                held = size
                if size == self.profile.scale_fanout_instances:
                    try:
                        self._fanout(target, service, sides, load, obs)
                    except Exception as exc:  # the fan-out's figures fail; the knee and the steps stand
                        keys = [
                            family.at(count).key for count in self.profile.scale_fanout for family in FANOUT_FAMILIES
                        ]
                        obs.failed([key for key in keys if key not in obs.values], f"fan-out: {_describe(exc)}")
                    if lost := losses.since(size)[0]:
                        obs.note(f"{lost:,} expiries among {size:,} instances during the fan-out (its watchers' load)")
        finally:
            for side in [census, *sides]:
                side.finish()
            if population is not None:
                # Deregistering is one request where a lease or session holds every instance, and then nothing
                # of this backend expires later under the next one's measurement; with a request per instance
                # (etcd v2: N deletes, longer than the expiry) the holder is killed and its keys expire.
                population.close(deregister=not target.traits.keepalive_per_instance)
            load.counters.close()
        self._conclude(held, limit, obs)
        return obs

    def _step(
        self,
        target: BenchTarget,
        population: HolderPopulation,
        census: Side,
        losses: _Losses,
        load: _Load,
        size: int,
        obs: Observations,
    ) -> str | None:
        """Grow to ``size``, hold, measure; the reason the step was not held, or None."""
        grown_from = population.size
        started = time.perf_counter()
        population.grow(size)
        obs.add(m.SCALE_REGISTER_PER_S.at(size), (size - grown_from) / (time.perf_counter() - started))
        time.sleep(_SETTLE_SECONDS)
        window = load.start(population)
        time.sleep(self.profile.scale_hold)
        requests_per_s = load.stop(window, population, size, obs)
        timeout = _seconds_per_1000(size, 5)
        resync = census.ask("resync", timeout + 30, timeout=timeout)
        obs.add(m.SCALE_RESYNC_S.at(size), resync["seconds"], resync.get("error", "no value"))
        snapshot = census.ask("snapshot", timeout + 30)
        obs.add(m.SCALE_SNAPSHOT_S.at(size), snapshot["seconds"])
        expired, detail = losses.since(size)
        obs.add(m.SCALE_EXPIRED.at(size), expired)
        if losses.error:
            return f"the census watch failed: {losses.error}"
        if expired == 0:
            if losses.lagging:
                obs.note(f"{size:,}: {losses.lagging} (the holder had every instance alive)")
            return None
        reason = f"{expired:,} expiries among {size:,} instances at ttl {self.profile.scale_ttl:g} s ({detail})"
        if target.traits.keepalive_per_instance:
            needed = size * 3 / self.profile.scale_ttl
            received = f"{requests_per_s:,.0f}" if requests_per_s is not None else "an unknown number of"
            reason += f"; TTL emulation needs N x 3 / ttl = {needed:,.0f} refreshes/s, the server received {received}/s"
        if warning := _warning(population.child.stderr_tail(10_000_000)):
            reason += f"; the holder warned: {warning}"
        return reason

    def _fanout(self, target: BenchTarget, service: str, sides: list[Side], load: _Load, obs: Observations) -> None:
        """1, 10, 100 watchers over the population: propagation p50/p99, delivery and server CPU per level.

        Each watcher process answers for its own watchers. They are all
        closed at the end (the processes finished), so the steps after the
        fan-out measure the holder alone again.
        """
        rate, writes = self.profile.scale_fanout_writes
        size = self.profile.scale_fanout_instances
        for side in sides:
            side.expect("ready", _START_SECONDS)
        watching = [0] * len(sides)
        with contextlib.ExitStack() as finish:
            for side in sides:
                finish.callback(side.finish)
            writer = finish.enter_context(target.connect())
            for level in self.profile.scale_fanout:
                shares = _shares(level - sum(watching), watching)
                started = time.perf_counter()
                for side, share in zip(sides, shares, strict=True):
                    if share:
                        side.send("open", count=share)
                for index, (side, share) in enumerate(zip(sides, shares, strict=True)):
                    if share:
                        side.expect("open", 60 + share * _seconds_per_1000(size, 3))
                        watching[index] += share
                obs.add(m.FANOUT_OPEN_S.at(level), time.perf_counter() - started)
                self._level(
                    writer,
                    service,
                    [s for s, n in zip(sides, watching, strict=True) if n],
                    level,
                    rate,
                    writes,
                    load,
                    obs,
                )

    def _level(
        self,
        writer: Registry,
        service: str,
        sides: list[Side],
        level: int,
        rate: float,
        writes: int,
        load: _Load,
        obs: Observations,
    ) -> None:
        tag = f"f{level}"
        cpu_before, started = load.cpu.seconds(), time.perf_counter()
        for seq in range(writes):
            delay = started + seq / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            meta = {"probe": tag, "seq": seq, "ts": clock()}
            writer.register(service, f"{tag}-{seq}", address="127.0.0.1", port=8080, meta=meta, ttl=_PROBE_TTL)
        latencies: list[float] = []
        resyncs: list[str] = []
        for side in sides:
            side.send("collect", tag=tag, writes=writes, timeout=_DELIVERY_SECONDS)
        for side in sides:
            answer = side.expect("collect", _DELIVERY_SECONDS + 30)
            latencies += answer["latencies_ms"]
            resyncs += answer["resyncs"]
        cpu_after, elapsed = load.cpu.seconds(), time.perf_counter() - started
        expected = writes * level
        obs.add(m.FANOUT_DELIVERED.at(level), len(latencies) / expected)
        for family, q in ((m.FANOUT_P50_MS, 50.0), (m.FANOUT_P99_MS, 99.0)):
            late = f"{len(latencies) / expected:.0%} delivered within {_DELIVERY_SECONDS:g} s: the p{q:g} is later"
            obs.add(family.at(level), censored_percentile(latencies, expected, q), late)
        obs.add(m.FANOUT_SERVER_CPU_PCT.at(level), _percent(cpu_before, cpu_after, elapsed), load.cpu_na)
        if resyncs:
            reasons = ", ".join(f"{reason} {resyncs.count(reason)}" for reason in sorted(set(resyncs)))
            obs.note(
                f"{level:,} watchers: {len(resyncs)} resyncs of the watchers while the writes propagated ({reasons})"
            )

    def _conclude(self, held: int, limit: tuple[int, str] | None, obs: Observations) -> None:
        """File the knee and the limit; say why the steps and fan-out levels not reached have no value."""
        obs.add(m.SCALE_KNEE, held)
        fanout_size = self.profile.scale_fanout_instances
        if limit is None:
            obs.na(m.SCALE_LIMIT, f"every step held, up to {self.profile.scale_steps[-1]:,} (the profile's largest)")
            obs.note(f"knee ≥ {held:,}: every step held")
        else:
            size, reason = limit
            obs.add(m.SCALE_LIMIT, size)
            obs.note(f"knee {held:,}; limit at {size:,}: {reason}")
        for size in self.profile.scale_steps:
            if limit is not None and size == limit[0]:
                why = "not measured: the step failed (see the notes)"
            elif limit is not None and size > limit[0]:
                why = f"not reached: the growth stopped at {limit[0]:,}"
            else:
                why = "not measured"
            for family in STEP_FAMILIES:
                obs.add(family.at(size), None, why)
        if held < fanout_size:
            for count in self.profile.scale_fanout:
                for family in FANOUT_FAMILIES:
                    obs.add(family.at(count), None, f"{fanout_size:,} instances were not held (knee {held:,})")


def censored_percentile(arrived: list[float], expected: int, q: float) -> float | None:
    """The ``q``-th percentile of ``expected`` latencies of which only ``arrived`` came (the others: later than all).

    Interpolated between ranks as :func:`discovery_bench.stats.percentile`;
    None when the rank falls among the latencies that never came, since the
    percentile is then later than anything measured.
    """
    if expected <= 0 or not arrived:
        return None
    position = (expected - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    if high >= len(arrived):
        return None
    ordered = sorted(arrived)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class _Losses:
    """The instances the server dropped since the last account: the census's REMOVED events, the holder's view.

    Both counts are cumulative in their processes; each account starts where
    the last one ended, so nothing between two steps goes unseen.
    """

    def __init__(self, population: HolderPopulation, census: Side) -> None:
        self._population = population
        self._census = census
        self._removed = 0
        self._rewritten = 0
        self.error = ""
        self.lagging = ""

    def since(self, size: int) -> tuple[int, str]:
        """(instances lost since the last account, how each side saw it), once the census saw ``size`` added.

        The larger of: REMOVED events of the holder's instances the census
        saw, re-registrations the holder made, and instances it does not have
        alive.
        """
        wait = _seconds_per_1000(size, 10)
        synced = self._census.ask("sync", wait + 30, n=size, timeout=wait)
        alive, _, rewritten = self._population.health()
        removed = int(synced["removed"]) - self._removed
        rewrote = rewritten - self._rewritten
        self._removed, self._rewritten = int(synced["removed"]), rewritten
        self.error = str(synced["error"])
        seen = f"watcher: {removed:,} REMOVED; holder: {rewrote:,} re-registered, {alive:,} of {size:,} alive"
        self.lagging = ""
        if int(synced["added"]) < size:
            self.lagging = f"the watcher saw {int(synced['added']):,} of {size:,} added in {wait:g} s"
            seen += f"; {self.lagging}"
        return max(removed, rewrote, size - alive), seen


def _shares(more: int, watching: list[int]) -> list[int]:
    """``more`` new watchers spread over the processes so that each ends with as many as the others, or one more."""
    counts = list(watching)
    for _ in range(more):
        counts[counts.index(min(counts))] += 1
    return [after - before for after, before in zip(counts, watching, strict=True)]


def _percent(before: float | None, after: float | None, elapsed: float) -> float | None:
    if before is None or after is None or elapsed <= 0:
        return None
    return (after - before) / elapsed * 100


class _Load:
    """The server's request counter and CPU, and the holder's CPU, over one hold window."""

    def __init__(self, counters: ServerCounters, cpu: ServerCpu) -> None:
        self.counters = counters
        self.cpu = cpu
        self.cpu_na = (
            "server CPU not visible: a registry given with --url runs in processes the benchmark did not start"
        )

    def start(self, population: HolderPopulation) -> tuple[float | None, float, float | None, float]:
        return self.counters.requests(), population.cpu_seconds(), self.cpu.seconds(), time.monotonic()

    def stop(
        self,
        window: tuple[float | None, float, float | None, float],
        population: HolderPopulation,
        size: int,
        obs: Observations,
    ) -> float | None:
        """File the window's figures for step ``size``; return the server requests per second (None if unknown)."""
        requests, cpu, server_cpu, started = window
        elapsed = time.monotonic() - started
        requests_after, cpu_after, server_cpu_after = (
            self.counters.requests(),
            population.cpu_seconds(),
            self.cpu.seconds(),
        )
        per_s = (requests_after - requests) / elapsed if requests is not None and requests_after is not None else None
        obs.add(m.SCALE_REQUESTS_PER_S.at(size), per_s, "request counter not available")
        obs.add(m.SCALE_CPU_PCT.at(size), (cpu_after - cpu) / elapsed * 100)
        obs.add(m.SCALE_SERVER_CPU_PCT.at(size), _percent(server_cpu, server_cpu_after, elapsed), self.cpu_na)
        return per_s


@dataclass
class _OwnResync:
    """A resync the census requested: when, the events between its notices, and its duration once it ended."""

    started: float
    events: int = 0
    seconds: float | None = None


class _Census:
    """A watch's count of the holder's instances added and removed, read in a thread, and its own resyncs."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch
        self.added: set[str] = set()
        self.removed = 0
        self.error = ""
        self._cond = threading.Condition()
        self._resyncs: dict[str, _OwnResync] = {}
        self._inside: _OwnResync | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._consume, name="bench-census", daemon=True)
        self._thread.start()

    def _consume(self) -> None:
        while not self._stopped:
            try:
                item = self.watch.next_item(_POLL)
            except DiscoveryError as exc:
                with self._cond:
                    self.error = _describe(exc)
                    self._cond.notify_all()
                return
            if item is None:
                continue
            with self._cond:
                if isinstance(item, Event):
                    self._count(item)
                else:
                    self._notice(item)
                self._cond.notify_all()

    def _count(self, event: Event) -> None:
        if self._inside is not None:
            self._inside.events += 1
        if not _population_id(event.instance_id):
            return
        if event.kind is EventKind.ADDED:
            self.added.add(event.instance_id)
        elif event.kind is EventKind.REMOVED:
            self.removed += 1

    def _notice(self, notice: Notice) -> None:
        own = self._resyncs.get(notice.reason)
        if own is None:
            return
        if notice.kind is NoticeKind.RESYNC_STARTED:
            self._inside = own
        elif notice.kind is NoticeKind.RESYNCED:
            self._inside = None
            own.seconds = time.perf_counter() - own.started

    def wait_added(self, n: int, timeout: float) -> None:
        """Wait until ``n`` of the holder's instances were seen added (or the watch failed, or ``timeout``)."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.added) >= n or bool(self.error), timeout)

    def resync(self, reason: str, timeout: float) -> _OwnResync | None:
        """Request a resync and wait for its ``RESYNCED`` notice; None when it did not come within ``timeout``."""
        own = _OwnResync(time.perf_counter())
        with self._cond:
            self._resyncs[reason] = own
        self.watch.request_resync(reason)
        with self._cond:
            self._cond.wait_for(lambda: own.seconds is not None or bool(self.error), timeout)
        return own if own.seconds is not None else None

    def stop(self) -> None:
        """Stop reading (the watch is closed by its owner)."""
        self._stopped = True
        self._thread.join(timeout=5)


def census_side(link: Link, args: Message) -> None:
    """The scale workload's watcher, in a process of its own: counts the population's ADDED and REMOVED events.

    Commands: ``sync`` (wait until ``n`` instances were seen added, then
    answer the counts), ``resync`` (a requested resync, timed to its
    ``RESYNCED`` notice), ``snapshot`` (a timed ``reg.snapshot()``).
    """
    target, service = target_from(args["target"]), str(args["service"])
    with target.connect() as registry, registry.watch(service) as watch:
        census = _Census(watch)
        link.send("watching")
        resyncs = 0
        try:
            while (command := link.receive()) is not None:
                word, payload = command
                if word == "sync":
                    census.wait_added(int(payload["n"]), float(payload["timeout"]))
                    link.send("sync", added=len(census.added), removed=census.removed, error=census.error)
                elif word == "resync":
                    resyncs += 1
                    own = census.resync(f"scale-{resyncs}", float(payload["timeout"]))
                    if own is None:
                        link.send("resync", seconds=None, error=f"no RESYNCED within {payload['timeout']:g} s")
                    else:
                        link.send("resync", seconds=own.seconds, events=own.events)
                elif word == "snapshot":
                    started = time.perf_counter()
                    snapshot = registry.snapshot(service)
                    link.send("snapshot", seconds=time.perf_counter() - started, instances=len(snapshot.instances))
        finally:
            census.stop()


class _Probes:
    """Latencies of the fan-out's probe instances, per level tag, as a watcher's consumer thread receives them."""

    def __init__(self) -> None:
        self.latencies_ms: dict[str, list[float]] = {}
        self.seen: dict[tuple[int, str], int] = {}
        self.cond = threading.Condition()

    def consume(self, index: int, watch: Watch, stopped: threading.Event) -> None:
        while not stopped.is_set():
            try:
                event = watch.get(_POLL)
            except DiscoveryError:
                return
            arrived = clock()
            if event is None or event.kind is not EventKind.ADDED or event.instance is None:
                continue
            tag, ts = event.instance.meta.get("probe"), event.instance.meta.get("ts")
            if isinstance(tag, str) and isinstance(ts, float):
                with self.cond:
                    self.latencies_ms.setdefault(tag, []).append((arrived - ts) * 1000)
                    self.seen[index, tag] = self.seen.get((index, tag), 0) + 1
                    self.cond.notify_all()

    def delivered(self, tag: str, watchers: int) -> int:
        """The probes of level ``tag`` the first ``watchers`` watchers received, added up."""
        return sum(self.seen.get((index, tag), 0) for index in range(watchers))

    def collect(self, tag: str, watchers: int, writes: int, timeout: float) -> tuple[list[float], int]:
        """Wait until each watcher received the level's ``writes`` (or ``timeout``); (latencies in ms, delivered)."""
        with self.cond:
            self.cond.wait_for(lambda: self.delivered(tag, watchers) >= writes * watchers, timeout)
            latencies = [round(value, 4) for value in self.latencies_ms.get(tag, [])]
            return latencies, self.delivered(tag, watchers)


def fanout_side(link: Link, args: Message) -> None:
    """Fan-out watchers in a process of their own: ``open`` adds watchers (each its own connection), ``collect``.

    ``collect`` waits until every watcher here received every write of a
    level (or the timeout), then answers the latencies and the count.
    """
    target, service = target_from(args["target"]), str(args["service"])
    probes = _Probes()
    stopped = threading.Event()
    registries: list[Registry] = []
    watches: list[Watch] = []
    threads: list[threading.Thread] = []
    reported: dict[int, int] = {}  # per watch, the resyncs already reported
    link.send("ready")
    try:
        while (command := link.receive()) is not None:
            word, payload = command
            if word == "open":
                for _ in range(int(payload["count"])):
                    registry = target.connect()
                    registries.append(registry)
                    watch = registry.watch(service)
                    watches.append(watch)
                    thread = threading.Thread(
                        target=probes.consume, args=(len(threads), watch, stopped), name="bench-fanout", daemon=True
                    )
                    threads.append(thread)
                    thread.start()
                link.send("open", watchers=len(registries))
            elif word == "collect":
                latencies, delivered = probes.collect(
                    str(payload["tag"]), len(registries), int(payload["writes"]), float(payload["timeout"])
                )
                resyncs: list[str] = []
                for index, watch in enumerate(watches):
                    reasons = watch.gap_reasons
                    resyncs += reasons[reported.get(index, 0) :]
                    reported[index] = len(reasons)
                link.send("collect", latencies_ms=latencies, delivered=delivered, resyncs=resyncs)
    finally:
        stopped.set()
        for thread in threads:
            thread.join(timeout=1)
        for registry in registries:
            registry.close()
