"""Burst completeness: the README's story scaled up, with the naive re-watch loop on the same server as the control.

A watch and a :class:`~discovery.testing.naive.NaiveRewatchLoop` (a new watch
"from now" after every event: the story's mistake) are opened on an empty
service; registrant processes (``python -m discovery.testing._registrant``,
the ids split over several processes when the list is long) register N
instances with a short ttl and are then killed with SIGKILL, so all N expire
on the server. Every backend must deliver 2N events (N added, N removed); the
naive loop shows what the story's team saw. What is measured is
completeness, and the wait is the servers' expiry clock, so a round runs on
all backends at once; but each backend's watch and naive loop run in a
process of their own (:func:`burst_side`, through
:mod:`~discovery_bench.harness.side`), so one backend's burst (10,000
expiries are about 40,000 messages on ZooKeeper) never delays another's
reads under a shared GIL. An in-process store (memory://) is invisible to
other processes, so there the registrant is a registry inside that same
side process whose backend is ``abandon()``-ed instead, which stops its
keep-alives as a crash would.
"""

from __future__ import annotations

import time
from typing import Any

from discovery import EventKind, Registry
from discovery.testing.naive import NaiveRewatchLoop
from discovery_bench.harness.collector import EventCollector
from discovery_bench.harness.procs import Child, start_registrants, wait_ready
from discovery_bench.harness.side import Link, Message, Side, target_args, target_from
from discovery_bench.harness.targets import BenchTarget
from discovery_bench.metrics import Metric
from discovery_bench.metrics import catalogue as m
from discovery_bench.report.results import Observations
from discovery_bench.workloads.base import Workload

_READY_SECONDS_PER_1000 = 20.0
_NAIVE_GRACE_SECONDS = 1.0
_START_SECONDS = 60.0
_ANSWER_SECONDS = 30.0


class BurstWorkload(Workload):
    """Events delivered ÷ 2N when N instances are registered, then all expire."""

    name = "burst"
    title = "Burst completeness"
    description = (
        "N instances registered by registrant processes that are then killed with SIGKILL, so all N expire: "
        "events delivered ÷ 2N for discovery's watch, and for the naive re-watch loop (the control) "
        "on the same server at the same time. All backends at once, each backend's watchers in a process of "
        "their own."
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
        registrants: list[Child] = []
        side = Side(self.ctx.children, burst_side, {"target": target_args(target), "service": service, "n": n})
        try:
            side.expect("watching", _START_SECONDS)
            started = time.perf_counter()
            ready_timeout = 30 + n / 1000 * _READY_SECONDS_PER_1000
            if target.traits.in_process:
                side.ask("register", ready_timeout, ids=ids, ttl=ttl)
            else:
                url = target.url_with(**target.session_options(ttl))
                registrants = start_registrants(
                    self.ctx.children, url, service, ttl, ids, self.profile.registrant_chunk
                )
                wait_ready(registrants, ready_timeout)
            obs.add(m.BURST_REGISTER_S, time.perf_counter() - started)
            side.ask("added", ready_timeout + _ANSWER_SECONDS, timeout=ready_timeout)
            for child in registrants:
                child.kill()
            expiry_timeout = 3 * ttl + 30
            result = side.ask(
                "expire",
                expiry_timeout + _NAIVE_GRACE_SECONDS + _ANSWER_SECONDS,
                timeout=expiry_timeout,
                abandon=target.traits.in_process,
            )
        finally:
            for child in registrants:
                child.kill()
            side.finish()
        if result["expiry_s"] is not None:
            obs.add(m.BURST_EXPIRY_S, result["expiry_s"])
        else:
            obs.na(m.BURST_EXPIRY_S, f"only {result['removed']} of {n} removals seen")
        obs.add(m.BURST_DELIVERED, result["seen"] / (2 * n))
        obs.add(m.BURST_LOST, 2 * n - result["seen"])
        obs.add(m.NAIVE_DELIVERED, result["naive_seen"] / (2 * n))
        obs.add(m.BURST_RESYNCS, result["resyncs"])
        if result["gap_reasons"]:
            obs.note(f"resyncs after: {', '.join(result['gap_reasons'])}")
        if result["error"]:
            obs.note(f"watch failed: {result['error']}")
        return obs


def burst_side(link: Link, args: Message) -> None:
    """One backend's watch and naive loop over the burst's service, in a process of its own.

    Commands: ``register`` (in-process stores only: register the ids here),
    ``added`` (wait until every instance was seen added), ``expire`` (abandon
    the in-process registrant if asked, wait for every removal, then answer
    with the counts).
    """
    target, service, n = target_from(args["target"]), str(args["service"]), int(args["n"])
    registries: list[Registry] = []
    try:
        watcher = target.connect()
        registries.append(watcher)
        naive_registry = target.connect()
        registries.append(naive_registry)
        watch = watcher.watch(service)
        collector = EventCollector(watch)
        naive = NaiveRewatchLoop(naive_registry, service).start()
        link.send("watching")
        while (command := link.receive()) is not None:
            word, payload = command
            if word == "register":
                registrant = target.connect()
                registries.append(registrant)
                for instance_id in payload["ids"]:
                    registrant.register(service, instance_id, ttl=float(payload["ttl"]))
                link.send("register")
            elif word == "added":
                collector.wait_for(lambda events: len(collector.ids(EventKind.ADDED)) >= n, float(payload["timeout"]))
                link.send("added", seen=len(collector.ids(EventKind.ADDED)))
            elif word == "expire":
                killed = time.perf_counter()
                if payload["abandon"]:
                    registries[-1].backend.abandon()
                expired = collector.wait_for(
                    lambda events: len(collector.ids(EventKind.REMOVED)) >= n, float(payload["timeout"])
                )
                removed_times = [t for event, t in collector.events if event.kind is EventKind.REMOVED]
                time.sleep(_NAIVE_GRACE_SECONDS)
                collector.stop()
                naive_events = naive.stop()
                seen = {(e.instance_id, e.kind) for e, _ in collector.events if e.kind is not EventKind.UPDATED}
                naive_seen = {(e.instance_id, e.kind) for e in naive_events if e.kind is not EventKind.UPDATED}
                link.send(
                    "expire",
                    expiry_s=max(removed_times) - killed if expired and removed_times else None,
                    removed=len(collector.ids(EventKind.REMOVED)),
                    seen=len(seen),
                    naive_seen=len(naive_seen),
                    resyncs=watch.resyncs,
                    gap_reasons=sorted(set(watch.gap_reasons)),
                    error=str(collector.error) if collector.error is not None else "",
                )
                watch.close()
    finally:
        for registry in registries:
            registry.close()
