"""Watch propagation: how long a change takes from the write to the watcher's consumer, at 100/s, 1,000/s and flat out.

A writer registers one new instance per write, with ``time.perf_counter()``
and a sequence number in its metadata taken just before the write; a watcher
on its own connection in the same process computes "now - ts" as each ADDED
event reaches the consuming thread. New instances rather than updates of one:
ZooKeeper cannot return every intermediate value of a node (a declared
capability), so updates may legitimately coalesce, while a creation must
never be lost on any backend. Reported per rate: p50, p99 and p99.9 latency, and the
events delivered ÷ writes. "As fast as it can" writes one after the other,
each waiting for its acknowledgement, and also reports the write rate
reached. The raw baseline does the same with the bare client's writer and
watch on the same server (:func:`~discovery_bench.harness.raw.raw_channel`), in the
same round, so the registry's p99 can be held against the client's own.
Each backend's writers and watchers run in a process of their own
(:mod:`~discovery_bench.harness.side`), started once per backend for the
workload: nothing of the benchmark's own (its other clients, threads and
garbage) shares their GIL, and a backend never measures in a process another
backend's clients have used.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from discovery import Event, EventKind
from discovery_bench.harness.collector import EventCollector
from discovery_bench.harness.raw import RAW_WATCHES, raw_channel
from discovery_bench.harness.side import Link, Message, Side, target_args, target_from
from discovery_bench.harness.targets import BenchTarget
from discovery_bench.metrics import Metric
from discovery_bench.metrics import catalogue as m
from discovery_bench.report.results import Observations
from discovery_bench.workloads.base import Context, Workload

_SETTLE_SECONDS = 3.0
_TTL = 60.0
_START_SECONDS = 60.0


class Tally:
    """Latencies and sequence numbers received, shared with the watcher's thread (the lookup workload's too)."""

    def __init__(self) -> None:
        self.latencies_ms: list[float] = []
        self.seen: set[int] = set()
        self.lock = threading.Lock()

    def receive(self, seq: int, ts: float, arrived: float) -> None:
        if seq < 0:
            return
        with self.lock:
            if seq not in self.seen:
                self.seen.add(seq)
                self.latencies_ms.append((arrived - ts) * 1000)

    def count(self) -> int:
        with self.lock:
            return len(self.seen)


def timed(tally: Tally, event: Event, arrived: float) -> None:
    """Count an ADDED event written by :func:`drive`'s writer: its latency is ``arrived`` - the ``ts`` in its meta."""
    if event.instance is None or event.kind is not EventKind.ADDED:
        return
    seq, ts = event.instance.meta.get("seq"), event.instance.meta.get("ts")
    if isinstance(seq, int) and isinstance(ts, float):
        tally.receive(seq, ts, arrived)


def drive(write: Callable[[int, float], None], tally: Tally, rate: float | None, n: int) -> float:
    """Write ``n`` changes at ``rate`` (None: back to back); wait for delivery; return the writes per second."""
    started = time.perf_counter()
    for seq in range(n):
        if rate is not None:
            delay = started + seq / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        write(seq, time.perf_counter())
    elapsed = time.perf_counter() - started
    deadline = time.monotonic() + _SETTLE_SECONDS
    while tally.count() < n and time.monotonic() < deadline:
        time.sleep(0.01)
    return n / elapsed if elapsed > 0 else float(n)


_FAMILIES = (
    m.P50_MS,
    m.P99_MS,
    m.P999_MS,
    m.DELIVERED,
    m.RAW_P50_MS,
    m.RAW_P99_MS,
    m.RAW_DELIVERED,
    m.P99_VS_RAW,
)


class PropagationWorkload(Workload):
    """Write-to-consumer latency and delivered fraction, registry and raw watch."""

    name = "propagation"
    title = "Watch propagation"
    description = (
        "A writer registers a new instance per write at 100/s, 1,000/s and as fast as it can, with a "
        "perf_counter timestamp in its meta; a watcher on its own connection in the same process computes the "
        "latency when the event reaches its consumer. Raw = the bare client's writer and watch on the same server. "
        "Each backend's writers and watchers run in a process of their own."
    )

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._sides: dict[str, Side] = {}
        self._ready: set[str] = set()

    def metrics(self) -> list[Metric]:
        metrics: list[Metric] = []
        for rate, _ in self.profile.propagation:
            metrics += [family.at(rate) for family in _FAMILIES]
            if rate is None:
                metrics += [m.WRITES_PER_S, m.RAW_WRITES_PER_S]
        return metrics

    def params(self) -> dict[str, Any]:
        return {
            "rates": [
                {"tag": m.rate_tag(rate), "rate": m.rate_label(rate), "writes": n}
                for rate, n in self.profile.propagation
            ],
            "rounds": self.profile.propagation_rounds,
            "raw_watches": RAW_WATCHES,
        }

    def rounds(self) -> int:
        return self.profile.propagation_rounds

    def warm_up(self) -> bool:
        return self.profile.warm_up

    def setup(self, target: BenchTarget) -> None:
        # Not waited for here: every backend's side starts while the others do; the first round waits.
        self._sides[target.label] = Side(self.ctx.children, propagation_side, {"target": target_args(target)})

    def teardown(self, target: BenchTarget) -> None:
        side = self._sides.pop(target.label, None)
        if side is not None:
            side.finish()

    def run(self, target: BenchTarget, round_index: int) -> Observations:
        obs = Observations()
        tag_round = "warm" if round_index < 0 else f"r{round_index}"
        rates = [(rate, min(n, 50) if round_index < 0 else n) for rate, n in self.profile.propagation]
        order = ["registry", "raw"] if round_index % 2 == 0 else ["raw", "registry"]
        # Generous: every write at the slowest pace seen (about 100/s), then the settle time, per kind.
        timeout = _START_SECONDS + sum(n / 100 + 2 * _SETTLE_SECONDS for _, n in rates) * 2
        plan = [
            {
                "rate": rate,
                "n": n,
                "services": {
                    kind: self.ctx.naming.service("propagation", tag_round, m.rate_tag(rate), kind) for kind in order
                },
            }
            for rate, n in rates
        ]
        side = self._sides[target.label]
        if target.label not in self._ready:
            side.expect("ready", _START_SECONDS)
            self._ready.add(target.label)
        answer = side.ask("round", timeout, plan=plan)
        for (rate, n), outcome in zip(rates, answer["rates"], strict=True):
            none = "no event delivered"
            registry, raw = outcome["registry"], outcome["raw"]
            obs.add(m.DELIVERED.at(rate), registry["count"] / n)
            for family in (m.P50_MS, m.P99_MS, m.P999_MS):
                obs.observe(family.at(rate), registry["latencies_ms"], none)
            obs.add(m.RAW_DELIVERED.at(rate), raw["count"] / n)
            for family in (m.RAW_P50_MS, m.RAW_P99_MS):
                obs.observe(family.at(rate), raw["latencies_ms"], none)
            if rate is None:
                obs.add(m.WRITES_PER_S, registry["speed"])
                obs.add(m.RAW_WRITES_PER_S, raw["speed"])
            tag = m.rate_tag(rate)
            obs.samples[m.LATENCY_SERIES.format(tag)] = list(registry["latencies_ms"])
            obs.samples[m.RAW_LATENCY_SERIES.format(tag)] = list(raw["latencies_ms"])
            for problem in raw["problems"]:
                obs.note(f"raw watch, {m.rate_label(rate)}: {problem}")
        return obs


def propagation_side(link: Link, args: Message) -> None:
    """The side process of one backend: answers ``round`` with every rate's tallies, registry and raw."""
    target = target_from(args["target"])
    link.send("ready")
    while (command := link.receive()) is not None:
        word, payload = command
        if word != "round":
            continue
        outcomes: list[dict[str, Any]] = []
        for step in payload["plan"]:
            rate, n = step["rate"], step["n"]
            outcome: dict[str, Any] = {}
            for kind, service in step["services"].items():
                measure = _registry if kind == "registry" else _raw
                outcome[kind] = measure(target, service, rate, n)
            outcomes.append(outcome)
        link.send("round", rates=outcomes)


def _tallied(tally: Tally, speed: float, problems: list[str] | None = None) -> dict[str, Any]:
    with tally.lock:
        latencies = [round(latency, 4) for latency in tally.latencies_ms]
    return {"count": len(latencies), "latencies_ms": latencies, "speed": speed, "problems": problems or []}


def _registry(target: BenchTarget, service: str, rate: float | None, n: int) -> dict[str, Any]:
    tally = Tally()
    with target.connect() as writer, target.connect() as reader, reader.watch(service) as watch:
        collector = EventCollector(watch, functools.partial(timed, tally))

        def write(seq: int, ts: float) -> None:
            writer.register(service, f"w{seq}", address="127.0.0.1", port=8080, meta={"seq": seq, "ts": ts}, ttl=_TTL)

        try:
            speed = drive(write, tally, rate, n)
        finally:
            collector.stop()
    return _tallied(tally, speed)


def _raw(target: BenchTarget, service: str, rate: float | None, n: int) -> dict[str, Any]:
    tally = Tally()

    def received(value: bytes, arrived: float) -> None:
        try:
            document = json.loads(value)
            tally.receive(int(document["seq"]), float(document.get("ts", 0.0)), arrived)
        except (ValueError, KeyError, TypeError):
            return

    channel = raw_channel(target, service)
    try:
        channel.start(received)
        speed = drive(
            lambda seq, ts: channel.write(f"w{seq}", json.dumps({"seq": seq, "ts": ts}).encode()), tally, rate, n
        )
        problems = channel.problems()
    finally:
        channel.close()
    return _tallied(tally, speed, problems)
